"""Throughput of the QIF chip link, clean and noisy, against the bound the baud rate sets.

The emulator paces its UART at the configured baud (8N1: 10 bit times per
byte), so the link has a real bound. A sample's *data* is its input spike
times going in (2 bytes each) and what the chip must say coming out: with
protocol 1.3 (RESULT_COMPACT) the fired neurons and their ticks, bit-packed,
measured as the bytes the host received after each message's header; with
1.2 and older every neuron's 16-bit tick::

    bytes/sample = 2 * n_inputs + reply data bytes / samples   (1.2: + 2 * n_neurons)
    bound        = (baud / 10) / bytes/sample          samples/s

Each row also prints the 1.2 bound (``bound_1_2_samples_per_s``) so the
gain of the compact reply reads off directly.

Framing (COBS, header, CRC: a few per cent on a clean line, more on a noisy
one where frames are cut short), retransmissions, and the chip's compute time
(overlapped with the UART by the firmware) are what the measured rate loses
against that bound.

Every measurement is ``qif-emu`` at its default link options. ``--ber``
rows put the fault-injecting proxy of the tests (`tests/linkproxy.py`)
between host and emulator (``ber 0`` through the proxy measures the proxy's
own cost); the ``direct`` row has no proxy. ``--scan`` raises the bit error
rate until the defaults stop delivering (a run that fails, or whose results
differ from the clean run's). ``--numpy-engine`` adds rows whose emulator integrates with the numpy
reference path instead of the fused kernel (``--engine numpy``), alternating
with the default rows. ``--baseline REV`` repeats the direct and
``--ber`` rows with the code of git revision REV (its ``hwloop``,
``backends`` and ``firmware_models`` assembled into a temporary package),
alternating with this tree's, so both see the same machine load.

    .venv/bin/python bench/bench_link.py --baud 921600 --ideal --ber 0 1e-4 1e-3 --scan --baseline a5bd8df
    .venv/bin/python bench/bench_link.py --baud 115200 921600          # the direct rows only

``--trains`` measures the spike-train traffic of protocol 1.4 instead: a
Randman-sized qif-trains network (20-128-10, 100 steps, spike-count
readout) run with `run_raster`, without probes and with every layer's
membrane sampled each step (``--probe-period``). A sample's data is its
RUN_TRAINS request (the input events, bit-packed) plus its TRAIN_EVENTS
(and PROBE_CODES) reply, both as the payload bytes that crossed the link::

    bytes/sample = (request + events [+ probe codes] payload bytes) / samples
    bound        = (baud / 10) / bytes/sample          samples/s

    .venv/bin/python bench/bench_link.py --trains --baud 921600

``--core`` times the emulator's integration alone, in this process (CPU
per sample of the fused kernel and of the numpy reference it replaced,
alternating, and of the kernel without noise)::

    .venv/bin/python bench/bench_link.py --core [--repeat 3]

``--timeline`` says where a run's time goes (host timestamps of every reply):
per RUN the silence after the previous RUN_DONE and the line share of its
results, for a host that pipelines its RUNs (protocol 1.5) and one that does
not (1.4), alternating:

    .venv/bin/python bench/bench_link.py --timeline --baud 921600 [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("BENCH_LINK_BASELINE"):  # a baseline run imports hwloop from PYTHONPATH instead
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # linkproxy

import hwloop.backends.qif.backend as qif_backend  # noqa: E402
from hwloop.backends import open_target  # noqa: E402
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding  # noqa: E402


def yin_yang_sized_net(hidden: int, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    q = NeuronParams(model="qif", tau_syn=1.0, tau_mem=1.0, threshold=1.0, options={"i0": 1.25, "v0": 0.5})
    return Network(
        layers=(Layer(rng.normal(0, 0.6, (5, hidden)), q, bias_times=(0.2,)),
                Layer(rng.normal(0, 0.4, (hidden + 1, 3)), q, bias_times=(0.2,))),
        encoding=InputEncoding(n_features=4), decoding=OutputDecoding(classes=("yin", "yang", "dot")), t_max=3.0,
    )


class _ProxiedProcess:
    """The emulator process as the backend sees it, when a proxy spawned it."""

    def __init__(self, proxy):
        self.proxy, self.returncode, self.stdout = proxy, None, None

    def poll(self):
        return self.returncode

    def terminate(self):
        if self.returncode is None:
            self.proxy.close()
            self.returncode = 0

    kill = terminate

    def wait(self, timeout=None):
        return self.returncode


def open_chip(baud: int, die: str, proxy: bool, emu_args: list[str]):
    """``qif-emu`` at its default link options, behind the proxy or not; ``emu_args``
    are added to the emulator's command line."""
    made = []
    real = qif_backend.spawn_emulator

    def spawn(args, timeout=30.0):
        if not proxy:
            return real(args + emu_args, timeout)
        from linkproxy import LinkProxy

        made.append(LinkProxy(args + emu_args, seed=1))
        return _ProxiedProcess(made[-1]), tempfile.TemporaryFile(), made[-1].host_path

    qif_backend.spawn_emulator = spawn
    try:
        chip = open_target(f"qif-emu?baud={baud}{die}")
    finally:
        qif_backend.spawn_emulator = real
    return chip, (made[0] if made else None)


def measure(baud: int, samples: int, hidden: int, die: str, ber: float | None, emu_args: list[str] = ()) -> dict:
    """One row: samples/s of a run at bit error rate ``ber`` (None: no proxy at all)."""
    net = yin_yang_sized_net(hidden)
    x = np.random.default_rng(1).uniform(0, 1, (samples, 4))
    n_neurons = sum(net.sizes[1:])
    bytes_1_2 = 2 * net.encoding.n_features + 2 * n_neurons
    row = {"baud": baud, "samples": samples, "network": "-".join(map(str, net.sizes)),
           "die": "ideal" if die else "default mismatch and noise", "line": "direct" if ber is None else f"proxy, BER {ber:g}",
           "ber": ber, "emulator_args": " ".join(emu_args), "bytes_per_sample_1_2": bytes_1_2,
           "bound_1_2_samples_per_s": round(baud / 10 / bytes_1_2, 2)}
    chip, proxy = open_chip(baud, die, ber is not None, list(emu_args))
    try:
        chip.load(net)
        chip.run(x[:8])  # warm up (first block, imports)
        clean = None
        if ber:
            chip.run_index = 10
            clean = chip.run(x)  # the reference a noisy run must reproduce
            # the first run after the line turned bad: frames cut for the clean line must be given up
            proxy.set_faults(ber=ber)
            chip.run_index = 10
            t0 = time.perf_counter()
            try:
                first = chip.run(x[:32])
                row["first_noisy_run"] = {"ok": all(np.array_equal(a, b[:32]) for a, b in zip(first.times, clean.times)),
                                          "wall_s": round(time.perf_counter() - t0, 3),
                                          "recoveries": first.info["recoveries"]}
            except Exception as exc:
                row.update(ok=False, error=f"first noisy run: {type(exc).__name__}: {exc}"[:300],
                           wall_s=round(time.perf_counter() - t0, 2))
                return row
        chip.run_index = 10
        t0 = time.perf_counter()
        try:
            m = chip.run(x)
        except Exception as exc:  # a failed run is a result here: the defaults did not deliver
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300], wall_s=round(time.perf_counter() - t0, 2))
            return row
        wall = time.perf_counter() - t0
        if proxy is not None:
            proxy.set_faults()
    finally:
        chip.close()
    same = clean is None or all(np.array_equal(a, b) for a, b in zip(m.times, clean.times))
    link = m.info["link"]
    reply = m.info.get("result_bytes")  # an older revision's client (--baseline) does not count them
    bytes_per_sample = 2 * net.encoding.n_features + (reply / samples if reply is not None else 2 * n_neurons)
    bound = baud / 10 / bytes_per_sample
    row.update(protocol=chip.chip_info.protocol, bytes_per_sample=round(bytes_per_sample, 2),
               bound_samples_per_s=round(bound, 2))
    row.update(ok=same and row.get("first_noisy_run", {}).get("ok", True),
               measured_samples_per_s=round(samples / wall, 2), ratio=round(samples / wall / bound, 3),
               wall_s=round(wall, 3), chip_compute_s=round(m.info["compute_s"], 3), recoveries=m.info["recoveries"],
               retransmits=link.get("retransmits", 0), frame_errors=link.get("frame_errors", 0))
    if not same:
        row["error"] = "results differ from the clean run"
    return row


def timeline(baud: int, samples: int, hidden: int, die: str, minor: int | None = None) -> dict:
    """Where a run's time goes: the host's arrival time of every reply message of
    one ``qif-emu`` run (default link options, no proxy), per RUN the silence
    after the previous RUN_DONE before its first result, and the share of the
    line its results used while they streamed. ``minor``: the protocol minor
    the host announces (4: one RUN at a time, as before protocol 1.5)."""
    from hwloop.backends.qif.client import ChipClient
    from hwloop.firmware_models.wire import messages as M

    net = yin_yang_sized_net(hidden)
    x = np.random.default_rng(1).uniform(0, 1, (samples, 4))
    log = []
    real = ChipClient._wait

    def wait(self, req, expect, timeout):
        m = real(self, req, expect, timeout)
        log.append((time.perf_counter(), m.type, len(m.payload)))
        return m

    chip, _ = open_chip(baud, die, False, [])
    try:
        if minor is not None:
            chip.client.hello_minor = minor
            chip.client.connect()
        chip.load(net)
        chip.run(x[:8])
        ChipClient._wait = wait
        chip.run_index = 10
        t0 = time.perf_counter()
        m = chip.run(x)
        wall = time.perf_counter() - t0
    finally:
        ChipClient._wait = real
        chip.close()
    runs, prev, first = [], 0.0, None
    part_bytes = 0
    for t, mtype, size in log:
        t -= t0
        if mtype == M.RUN_DONE:
            runs.append({"gap_s": round(first - prev, 3), "stream_s": round(t - first, 3), "bytes": part_bytes,
                         "line_share": round(part_bytes / max(t - first, 1e-9) / (baud / 10), 3)})
            prev, first, part_bytes = t, None, 0
            continue
        if first is None:
            first = t
        part_bytes += size
    return {"baud": baud, "samples": samples, "protocol": chip.chip_info.protocol if minor is None else f"1.{minor}",
            "wall_s": round(wall, 3), "samples_per_s": round(samples / wall, 1), "chip_compute_s": round(m.info["compute_s"], 3),
            "gaps_s": round(sum(r["gap_s"] for r in runs[1:]), 3), "runs": runs}  # the first RUN's wait is not between RUNs


def core_speed(samples: int, hidden: int, die: str, repeat: int) -> dict:
    """The emulator's integration alone, in this process (no link): CPU seconds per
    sample of `AnalogCore.run` on the bench's network, the fused kernel and the numpy
    reference alternating, in the firmware's chunks (16, 64, 256, 256, ...), and the
    kernel without temporal noise (what drawing the noise costs)."""
    from hwloop.firmware_models.qif_chip.core import AnalogCore
    from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH, DEFAULT_NOISE, DEFAULT_SPEC

    net = yin_yang_sized_net(hidden)
    x = np.random.default_rng(1).uniform(0, 1, (samples, 4))
    chip, _ = open_chip(921600, die, False, [])
    try:
        prog = chip.compile(net)
    finally:
        chip.close()
    ticks = prog.input_ticks(x)
    mismatch, noise = (0.0, 0.0) if die else (DEFAULT_MISMATCH, DEFAULT_NOISE)
    bounds, a, size = [], 0, 16
    while a < samples:
        bounds.append((a, min(samples, a + size)))
        a, size = bounds[-1][1], min(4 * size, AnalogCore.BLOCK)
    cases = [("numba", noise), ("numpy", noise)] + ([("numba", 0.0)] if noise else [])
    rows = {f"{e}{'' if nz == noise else ', noise off'}": [] for e, nz in cases}
    outs = {}
    for rep in range(repeat):
        for engine, nz in cases:
            core = AnalogCore(DEFAULT_SPEC, 1, mismatch, nz, engine=engine)
            core.configure(prog.config)
            core.run(ticks[:4], 99, 5000)  # warm (imports, first call)
            c0, w0 = time.process_time(), time.perf_counter()
            res = np.concatenate([core.run(ticks[a:b], 10 + rep, a) for a, b in bounds])
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            rows[f"{engine}{'' if nz == noise else ', noise off'}"].append((cpu, wall))
            outs[(engine, nz, rep)] = res
    same = [int((outs[("numba", noise, r)] != outs[("numpy", noise, r)]).sum()) for r in range(repeat)]
    return {"bench": "core", "samples": samples, "network": "-".join(map(str, net.sizes)),
            "die": "ideal" if die else "default mismatch and noise", "load": os.getloadavg(),
            "cpu_ms_per_sample": {k: [round(1e3 * c / samples, 4) for c, _ in v] for k, v in rows.items()},
            "wall_ms_per_sample": {k: [round(1e3 * w / samples, 4) for _, w in v] for k, v in rows.items()},
            "ticks_differing_numba_vs_numpy": same, "ticks": int(outs[("numba", noise, 0)].size)}


def randman_sized_trains_net(seed: int = 0, n_in: int = 20, hidden: int = 128, n_out: int = 10, steps: int = 100) -> Network:
    rng = np.random.default_rng(seed)
    hid = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=5.0, i0=0.1)
    out = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=5.0, i0=0.1)
    return Network(layers=(Layer(rng.normal(0, 1.0, (n_in, hidden)), hid), Layer(rng.normal(0, 0.5, (hidden, n_out)), out)),
                   encoding=InputEncoding(n_features=n_in),
                   decoding=OutputDecoding(classes=tuple(f"c{i}" for i in range(n_out)), kind="spike-count"),
                   t_max=float(steps))


def measure_trains(baud: int, samples: int | None, die: str, probe: bool, probe_period: int = 1) -> dict:
    """One spike-train row (protocol 1.4): samples/s of run_raster against the link's bound;
    ``samples=None``: about 6 s of link time, from a warm-up run's bytes per sample."""
    net = randman_sized_trains_net()
    chip, _ = open_chip(baud, die + f"&probe_period={probe_period}", False, [])
    try:
        chip.load(net)
        rng = np.random.default_rng(1)

        def raster(n):
            return (rng.random((net.n_steps, n, net.encoding.n_features)) < 0.02).astype(np.uint8)

        w = chip.run_raster(raster(8), probe=probe)  # warm up; sizes the run
        per = (w.info["request_bytes"] + w.info["result_bytes"] + w.info["probe_bytes"]) / 8
        n = samples or max(16, min(4096, int(6 * baud / 10 / per)))
        r = raster(n)
        chip.run_index = 10
        t0 = time.perf_counter()
        m = chip.run_raster(r, probe=probe)
        wall = time.perf_counter() - t0
        protocol = chip.chip_info.protocol
    finally:
        chip.close()
    i = m.info
    data = i["request_bytes"] + i["result_bytes"] + i["probe_bytes"]
    bps = data / n
    bound = baud / 10 / bps
    spikes = sum(len(e) for e in m.events)
    return {"bench": "trains", "baud": baud, "samples": n, "network": "-".join(map(str, net.sizes)), "steps": net.n_steps,
            "die": "ideal" if die else "default mismatch and noise", "probes": f"every layer, period {probe_period}" if probe else "none",
            "protocol": protocol, "spikes_per_sample": round(spikes / n, 1),
            "request_bytes_per_sample": round(i["request_bytes"] / n, 1),
            "event_bytes_per_sample": round(i["result_bytes"] / n, 1), "probe_bytes_per_sample": round(i["probe_bytes"] / n, 1),
            "bytes_per_sample": round(bps, 1), "bound_samples_per_s": round(bound, 2),
            "measured_samples_per_s": round(n / wall, 2), "ratio": round(n / wall / bound, 3), "wall_s": round(wall, 3),
            "chip_compute_s": round(i["compute_s"], 3), "recoveries": i["recoveries"],
            "ok": i["recoveries"] == 0 and spikes > 0}


def _fmt_trains(r: dict) -> str:
    return (f"{'trains':>22}  baud {r['baud']:>7}  probes {r['probes']:<22} measured {r['measured_samples_per_s']:8.1f}/s "
            f"of {r['bound_samples_per_s']:.1f}  ratio {100 * r['ratio']:5.1f} %  ({r['bytes_per_sample']} B/sample: "
            f"{r['request_bytes_per_sample']} in, {r['event_bytes_per_sample']} events + {r['probe_bytes_per_sample']} probes "
            f"out; {r['spikes_per_sample']} spikes/sample; protocol {r['protocol']}; {r['network']} x {r['steps']} steps; "
            f"{r['samples']} samples, {r['wall_s']} s, chip compute {r['chip_compute_s']} s)")


def scan(baud: int, samples: int, hidden: int, die: str, bers: list[float]) -> dict:
    """Raise the BER until the defaults stop delivering; the highest that delivered."""
    rows, best = [], 0.0
    for ber in bers:
        r = measure(baud, samples, hidden, die, ber)
        rows.append(r)
        print(_fmt(r, "scan"), file=sys.stderr)
        if not r["ok"]:
            break
        best = ber
    return {"highest_ber_delivered": best, "first_failed": None if rows[-1]["ok"] else rows[-1]["ber"], "rows": rows}


def in_memory(trials: int, windows: list[int]) -> list[dict]:
    """Half of all frames damaged, in memory (socket pair, no emulator): in how many
    trials does each link give up? The exchange of `tests/test_link_arq.py`, run with
    the 1.0 link (the frozen copy in tests/wire_v1_0) and with this tree's."""
    import random

    import test_link_arq as arq
    import wire_v1_0.errors as old_errors
    import wire_v1_0.link as old_link

    from hwloop.firmware_models.wire import errors as new_errors
    from hwloop.firmware_models.wire import link as new_link

    rows = []
    for name, link_cls, err_cls in (("1.0 (go-back-N)", old_link.Link, old_errors.LinkError),
                                    ("1.1 (this tree)", new_link.Link, new_errors.LinkError)):
        for window in windows:
            arq.Link, arq.LinkError = link_cls, err_cls
            rng = random.Random(window)
            msgs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 700))) for _ in range(6)]
            gave_up = 0
            t0 = time.perf_counter()
            for trial in range(trials):
                got, errors = arq.exchange(
                    lambda fd, side: arq.FrameFaults(fd, random.Random(trial * 2 + side), 0.5), msgs,
                    window=window, timeout=10.0)
                gave_up += bool(errors)
            rows.append({"link": name, "window": window, "trials": trials, "trials_with_a_give_up": gave_up,
                         "wall_s": round(time.perf_counter() - t0, 1)})
    arq.Link, arq.LinkError = new_link.Link, new_errors.LinkError
    return rows


def assemble(rev: str) -> str:
    """A temporary package tree with revision ``rev``'s hwloop, backends, firmware_models."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-link-"))
    src, pkg = tmp / "src", tmp / "pkg"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "hwloop", "backends", "firmware_models"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    (pkg / "hwloop").parent.mkdir(parents=True)
    os.rename(src / "hwloop", pkg / "hwloop")
    os.rename(src / "backends", pkg / "hwloop" / "backends")
    os.rename(src / "firmware_models", pkg / "hwloop" / "firmware_models")
    return str(pkg)


def measure_elsewhere(pkg: str, rev: str, baud: int, samples: int, hidden: int, die: str, ber) -> dict:
    env = dict(os.environ, PYTHONPATH=pkg, BENCH_LINK_BASELINE="1")
    args = [sys.executable, __file__, "--one", json.dumps([baud, samples, hidden, die, ber, []])]
    out = subprocess.run(args, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(f"baseline run failed: {out.stderr.strip().splitlines()[-1:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["code"] = rev
    return row


def _fmt(r: dict, code: str) -> str:
    head = f"{code:>27}  baud {r['baud']:>7}  {r['line']:<18}"
    if not r["ok"]:
        return f"{head}  FAILED after {r['wall_s']} s: {r.get('error', '')[:160]}"
    first = r.get("first_noisy_run")
    turned = f"; line turned bad: 32 samples in {first['wall_s']} s, {first['recoveries']} recoveries" if first else ""
    return (f"{head}  measured {r['measured_samples_per_s']:8.1f}/s of {r['bound_samples_per_s']:.1f}  "
            f"ratio {100 * r['ratio']:5.1f} %  ({r.get('bytes_per_sample', '?')} B/sample, protocol {r.get('protocol', '?')}; "
            f"{r['measured_samples_per_s'] / r['bound_1_2_samples_per_s']:.2f}x the 1.2 bound; "
            f"{r['samples']} samples, {r['wall_s']} s, chip compute {r.get('chip_compute_s', '?')} s, "
            f"recoveries {r['recoveries']}, "
            f"host retransmits {r['retransmits']}{turned})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baud", type=int, nargs="+", default=[115200, 921600])
    p.add_argument("--samples", type=int, default=None, help="samples per measurement (default: ~6 s of link time)")
    p.add_argument("--hidden", type=int, default=120)
    p.add_argument("--ideal", action="store_true", help="ideal die (no mismatch/noise): isolates the link from chip compute")
    p.add_argument("--ber", type=float, nargs="*", default=[], help="also measure through the proxy at these bit error rates")
    p.add_argument("--no-direct", action="store_true", help="skip the row without a proxy")
    p.add_argument("--scan", action="store_true", help="find the highest bit error rate the defaults deliver at")
    p.add_argument("--scan-bers", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 7e-3, 1e-2])
    p.add_argument("--scan-samples", type=int, default=200)
    p.add_argument("--baseline", metavar="REV", help="also measure git revision REV's code, alternating with this tree's")
    p.add_argument("--no-fifo", action="store_true",
                   help="also measure this tree with the emulator's UART FIFO off (--tx-fifo 0), as the baseline's UART was")
    p.add_argument("--numpy-engine", action="store_true",
                   help="also measure this tree with the emulator's numpy integrator (--engine numpy, the reference "
                        "the fused kernel replaced), alternating with the default one")
    p.add_argument("--repeat", type=int, default=1, help="measure every row this many times")
    p.add_argument("--in-memory", action="store_true",
                   help="only the in-memory comparison of the 1.0 and 1.1 links at 50 %% damaged frames")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--trains", action="store_true",
                   help="only the spike-train traffic (protocol 1.4): run_raster without and with probes")
    p.add_argument("--probe-period", type=int, default=1, help="--trains: steps between membrane samples")
    p.add_argument("--timeline", action="store_true",
                   help="where the time goes: per RUN, the silence before its first result and the line share "
                        "of its results (host timestamps), with protocol 1.5 pipelining and without (1.4)")
    p.add_argument("--core", action="store_true",
                   help="only the emulator's integration, in this process: CPU ms per sample of the fused kernel "
                        "and of the numpy reference, alternating (--repeat times), and of the kernel without noise")
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one row as JSON (for --baseline)
    args = p.parse_args(argv)
    die = "&mismatch=0&noise=0" if args.ideal else ""
    if args.one:
        print(json.dumps(measure(*json.loads(args.one))))
        return 0
    out = sys.stderr if args.json else sys.stdout
    if args.in_memory:
        rows = in_memory(args.trials, [1, 4, 32])
        for r in rows:
            print(f"{r['link']:<16} window {r['window']:>2}: gave up in {r['trials_with_a_give_up']:>2} of {r['trials']} "
                  f"trials ({r['wall_s']} s)", file=out, flush=True)
        if args.json:
            print(json.dumps({"bench": "link-in-memory", "rows": rows}))
        return 0
    if args.core:
        n = args.samples or 1024
        r = core_speed(n, args.hidden, die, max(1, args.repeat))
        print(f"analog core, {r['network']}, {r['die']}, {n} samples in the firmware's chunks, load "
              f"{' '.join(f'{v:.2f}' for v in r['load'])}:", file=out)
        for k, v in r["cpu_ms_per_sample"].items():
            print(f"    {k:<17} {' / '.join(f'{c:.3f}' for c in v)} ms CPU per sample "
                  f"({' / '.join(f'{w:.3f}' for w in r['wall_ms_per_sample'][k])} wall)", file=out)
        best = {k: min(v) for k, v in r["cpu_ms_per_sample"].items()}
        print(f"    kernel {best['numpy'] / best['numba']:.2f}x the numpy path's speed (best CPU of each); ticks "
              f"differing between them: {r['ticks_differing_numba_vs_numpy']} of {r['ticks']}", file=out, flush=True)
        if args.json:
            print(json.dumps(r))
        return 0
    if args.timeline:
        rows = []
        for baud in args.baud:
            n = args.samples or max(64, int(6 * baud / 10 / (8 + (args.hidden + 3))))
            for _ in range(args.repeat):
                for minor in (4, None):
                    r = timeline(baud, n, args.hidden, die, minor)
                    rows.append(r)
                    print(f"protocol {r['protocol']}  baud {baud:>7}  {n} samples in {r['wall_s']} s "
                          f"({r['samples_per_s']}/s), chip compute {r['chip_compute_s']} s, silence between RUNs "
                          f"{r['gaps_s']} s", file=out, flush=True)
                    for i, run in enumerate(r["runs"]):
                        print(f"    RUN {i}: first result {run['gap_s']:.3f} s after the last RUN_DONE, then "
                              f"{run['bytes']} B in {run['stream_s']:.3f} s: {100 * run['line_share']:.1f} % of the line",
                              file=out, flush=True)
        if args.json:
            print(json.dumps({"bench": "link-timeline", "rows": rows}))
        return 0
    if args.trains:
        rows = []
        for baud in args.baud:
            for probe in (False, True):
                r = measure_trains(baud, args.samples, die, probe, args.probe_period)
                rows.append(r)
                print(_fmt_trains(r), file=out, flush=True)
        if args.json:
            print(json.dumps({"bench": "link-trains", "rows": rows}))
        return 0 if all(r["ok"] for r in rows) else 1
    pkg = assemble(args.baseline) if args.baseline else None
    rows, scans = [], []
    for baud in args.baud:
        n = args.samples or max(64, int(6 * baud / 10 / (8 + (args.hidden + 3))))  # ~6 s at ~1 B per neuron
        lines = ([] if args.no_direct else [None]) + list(args.ber)
        for _ in range(args.repeat):
            for ber in lines:
                if pkg:
                    r = measure_elsewhere(pkg, args.baseline, baud, n, args.hidden, die, ber)
                    rows.append(r)
                    print(_fmt(r, args.baseline), file=out, flush=True)
                if args.numpy_engine:
                    r = measure(baud, n, args.hidden, die, ber, ["--engine", "numpy"])
                    r["code"] = "this tree, numpy integrator"
                    rows.append(r)
                    print(_fmt(r, r["code"]), file=out, flush=True)
                if args.no_fifo:
                    r = measure(baud, n, args.hidden, die, ber, ["--tx-fifo", "0"])
                    r["code"] = "this tree, no UART FIFO"
                    rows.append(r)
                    print(_fmt(r, r["code"]), file=out, flush=True)
                r = measure(baud, n, args.hidden, die, ber)
                r["code"] = "this tree"
                rows.append(r)
                print(_fmt(r, "this tree"), file=out, flush=True)
        if args.scan:
            s = scan(baud, args.scan_samples, args.hidden, die, args.scan_bers)
            s["baud"] = baud
            scans.append(s)
            print(f"{'this tree':>22}  baud {baud:>7}  highest BER the defaults delivered at: "
                  f"{s['highest_ber_delivered']:g} (first failure: {s['first_failed']})", file=out, flush=True)
    if args.json:
        print(json.dumps({"bench": "link", "rows": rows, "scans": scans}))
    mine = [r for r in rows if r.get("code") == "this tree" and r["ber"] is None]
    return 0 if all(r["ok"] and r["ratio"] >= 0.9 for r in mine) else 1


if __name__ == "__main__":
    sys.exit(main())
