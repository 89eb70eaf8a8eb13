"""Calibration by current injection (issue #16): how well it recovers the
emulator's true per-neuron parameters, what it costs in chip runs, and what
it buys a software-trained network deployed with no in-the-loop training.

For each chip id: `hwloop calibrate` (the library call behind it) on
``qif-emu`` at its default mismatch and noise, the fitted parameters against
the emulator's truth (`hwloop.calibration.truth_of` reads the die's mismatch
pattern; the calibration itself never does), then the network evaluated on
the chip as is and with ``calib=on``, beside its software accuracy.

    python bench/bench_calibration.py [--chips 1,2,3] [--net hwloop/pretrained/yinyang-qif.hwnet] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", default="1,2,3")
    ap.add_argument("--net", default="hwloop/pretrained/yinyang-qif.hwnet")
    ap.add_argument("--limit", type=int, default=None, help="test samples (default: the whole split)")
    ap.add_argument("--neurons", type=int, default=None, help="neurons to calibrate (default: all)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HWLOOP_CALIBRATION_DIR", tempfile.mkdtemp(prefix="hwloop-cal-"))

    from hwloop.backends import open_target
    from hwloop.calibration import calibrate, truth_of
    from hwloop.evaluation import evaluate_network
    from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH
    from hwloop.network import Network

    net = Network.load(a.net)
    ds = net.provenance.dataset or "yinyang"
    sw = evaluate_network(net, ds, "test", "software", a.limit)["accuracy"]
    print(f"network {a.net} ({ds}); software accuracy {100 * sw:.1f} %")
    print("fit columns: rms error of the fit / spread (std) of the truth")
    print(f"{'chip':>5} {'runs':>5} {'samples':>7} | "
          f"{'tau gain':>12} {'D':>12} {'u0':>12} {'syn gain':>12} {'row gain':>12} | "
          f"{'as is':>6} {'calib':>6} {'software':>8}")
    for chip in (int(c, 0) for c in a.chips.split(",")):
        base = f"qif-emu?baud=0&chip_id={chip}"
        with open_target(base) as b:
            cal = calibrate(b, n_neurons=a.neurons, quiet=True)
        cal.save(os.path.join(os.environ["HWLOOP_CALIBRATION_DIR"], f"qif-{chip:#x}-fw{cal.fw_version}.json"))
        n = cal.g.size
        tr = truth_of(chip, DEFAULT_MISMATCH, n)
        errs = []
        for k in ("g", "D", "u0", "col"):
            e = getattr(cal, k) - tr[k]
            errs.append(f"{np.sqrt(np.mean(e ** 2)):.4f}/{np.std(tr[k]):.3f}")
        rows = min(cal.row0.size, n)
        true_rows = tr["row0"][: cal.row0.size] / np.mean(tr["row0"][: cal.row0.size])
        e = cal.row0[:rows] - true_rows[:rows]
        errs.append(f"{np.sqrt(np.mean(e ** 2)):.4f}/{np.std(true_rows):.3f}")
        acc = [evaluate_network(net, ds, "test", f"{base}&calib={c}", a.limit)["accuracy"] for c in ("off", "on")]
        print(f"{chip:>5} {cal.chip_runs:>5} {cal.samples:>7} | " + " ".join(f"{x:>12}" for x in errs)
              + f" | {100 * acc[0]:>5.1f}% {100 * acc[1]:>5.1f}% {100 * sw:>7.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
