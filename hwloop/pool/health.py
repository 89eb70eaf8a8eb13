"""The health check a board passes before every lease.

1. **Handshake**: the target opens (for a QIF board: port opened, version
   handshake, chip id read).
2. **Identity**: the chip id answering is the one the pool file declares
   (``chip_id``) and the one the board answered with before; a board swapped
   behind the pool's back fails.
3. **A known test pattern**: a fixed network for the target's family (the
   pretrained Yin-Yang network: QIF for QIF chips, LIF for the Loihi targets)
   is deployed and the first `PATTERN_SAMPLES` validation samples are run.
   The target must answer with one time per output neuron and sample, all
   times non-negative or silent, at least `MIN_FIRING` of the samples
   answered by an output spike, and the network must classify at least `MIN_ACCURACY` of
   the pattern right (chance is 1/3; on qif-emu chip ids 1-8 at the default
   mismatch the pretrained network gets 0.67-0.90 of the 40 samples and
   answers 0.68-0.95 of them, 0.975 and 1.0 without mismatch; a dead or garbled board gets chance level or silence).

Runs in the board's actor process, so the check exercises the same path
(ports, processes) the trial then uses. Never raises for a sick board: it
returns a record with ``healthy: False`` and why.
"""

from __future__ import annotations

import time

import numpy as np

from hwloop.errors import HwloopError

PATTERN_SAMPLES = 40
MIN_FIRING = 0.5
MIN_ACCURACY = 0.5


def pattern_network(scheme: str) -> str:
    from hwloop.pretrained import path as pretrained

    return str(pretrained("yinyang-qif.hwnet" if scheme in ("qif", "qif-emu") else "yinyang-lif.hwnet"))


def check_board(url: str, expect_chip_id: int | None = None, seen_chip_id: int | None = None) -> dict:
    """Handshake, identity and the test pattern on ``url``: a JSON record."""
    from hwloop.backends import open_target, parse_target
    from hwloop.data import load_dataset
    from hwloop.data.decoding import classification_report
    from hwloop.network import Network

    t0 = time.perf_counter()
    rec = {"healthy": False, "url": url, "chip_id": None, "fw_version": None, "reason": "", "pattern_accuracy": None}
    backend = None
    try:
        try:
            backend = open_target(url)
        except HwloopError as exc:
            rec["reason"] = f"handshake failed: {exc}"
            return rec
        info = getattr(backend, "chip_info", None)
        if info is not None:
            rec["chip_id"], rec["fw_version"] = int(info.chip_id), str(info.fw_version)
            for what, want in (("declared", expect_chip_id), ("seen before", seen_chip_id)):
                if want is not None and rec["chip_id"] != want:
                    rec["reason"] = (f"chip id {rec['chip_id']:#x} answered, {what}: {want:#x} "
                                     "(a different chip on this board's port)")
                    return rec
        net = Network.load(pattern_network(parse_target(url).scheme))
        val = load_dataset("yinyang", "val")
        x, y = val.x[:PATTERN_SAMPLES], val.y[:PATTERN_SAMPLES]
        try:
            backend.load(net)
            m = backend.run(net.encoding.encode(x))
        except HwloopError as exc:
            rec["reason"] = f"test pattern failed: {exc}"
            return rec
        out = np.asarray(m.times[-1], dtype=np.float64)
        n_out = net.sizes[-1]
        if out.shape != (len(y), n_out):
            rec["reason"] = f"test pattern: {out.shape} output times, expected {(len(y), n_out)}"
            return rec
        finite = np.isfinite(out)
        if np.any(np.isnan(out)) or np.any(out[finite] < 0):
            rec["reason"] = "test pattern: output times that are not times (NaN or negative)"
            return rec
        firing = float(np.mean(finite.any(axis=1)))  # samples with an output spike (a decision)
        acc = float(classification_report(out, y)["accuracy"])
        rec.update(pattern_firing=firing, pattern_accuracy=acc)
        if firing < MIN_FIRING:
            rec["reason"] = f"test pattern: {firing:.0%} of the samples got an output spike, need {MIN_FIRING:.0%}"
            return rec
        if acc < MIN_ACCURACY:
            rec["reason"] = f"test pattern: accuracy {acc:.2f}, a healthy board gives > {MIN_ACCURACY}"
            return rec
        rec["healthy"] = True
        return rec
    finally:
        if backend is not None:
            backend.close()
        rec["seconds"] = time.perf_counter() - t0
