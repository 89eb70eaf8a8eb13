"""Throughput of the QIF chip link: samples/s against the bound the baud rate sets.

The emulator paces its UART at the configured baud (8N1: 10 bit times per
byte), so the link has a real bound. A sample's *data* is its input spike
times going in and every neuron's spike time coming out, 2 bytes each::

    bytes/sample = 2 * n_inputs + 2 * n_neurons
    bound        = (baud / 10) / bytes/sample          samples/s

Framing (COBS, header, CRC: a few per cent), ACK round trips (hidden by the
link's 4-frame window) and
the chip's compute time (overlapped with the UART by the firmware) are what
the measured rate loses against that bound. Goal: >= 80 %.

    .venv/bin/python bench/bench_link.py --baud 115200 921600 --samples 600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def bench(baud: int, samples: int, hidden: int, frame: int, chip: str = "") -> dict:
    net = yin_yang_sized_net(hidden)
    x = np.random.default_rng(1).uniform(0, 1, (samples, 4))
    with open_target(f"qif-emu?baud={baud}&frame={frame}{chip}") as chip:
        chip.load(net)
        chip.run(x[:8])  # warm up (first block, imports)
        t0 = time.perf_counter()
        m = chip.run(x)
        wall = time.perf_counter() - t0
    n_neurons = sum(net.sizes[1:])
    bytes_per_sample = 2 * net.encoding.n_features + 2 * n_neurons
    bound = baud / 10 / bytes_per_sample
    rate = samples / wall
    return {
        "baud": baud, "samples": samples, "network": "-".join(map(str, net.sizes)), "frame_payload": frame,
        "die": "ideal" if chip else "default mismatch and noise", "bytes_per_sample": bytes_per_sample, "bound_samples_per_s": round(bound, 2),
        "measured_samples_per_s": round(rate, 2), "ratio": round(rate / bound, 3), "wall_s": round(wall, 3),
        "chip_compute_s": round(m.info["compute_s"], 3), "recoveries": m.info["recoveries"],
        "retransmits": m.info["link"].get("retransmits", 0),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baud", type=int, nargs="+", default=[115200, 921600])
    p.add_argument("--samples", type=int, default=None, help="samples per measurement (default: ~6 s of link time)")
    p.add_argument("--hidden", type=int, default=120)
    p.add_argument("--frame", type=int, default=1024, help="frame payload bytes")
    p.add_argument("--ideal", action="store_true", help="ideal die (no mismatch/noise): isolates the link from chip compute")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for baud in args.baud:
        n = args.samples or max(64, int(6 * baud / 10 / (8 + 2 * (args.hidden + 3))))
        rows.append(bench(baud, n, args.hidden, args.frame, "&mismatch=0&noise=0" if args.ideal else ""))
        r = rows[-1]
        print(f"baud {r['baud']:>8}  {r['network']}  {r['bytes_per_sample']} B/sample  "
              f"bound {r['bound_samples_per_s']:8.1f}/s  measured {r['measured_samples_per_s']:8.1f}/s  "
              f"ratio {100 * r['ratio']:5.1f} %  ({r['samples']} samples, {r['wall_s']} s, chip compute "
              f"{r['chip_compute_s']} s)", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"bench": "link", "rows": rows}))
    return 0 if all(r["ratio"] >= 0.8 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
