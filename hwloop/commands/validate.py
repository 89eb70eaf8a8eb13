"""hwloop validate: run the same inputs through two targets and compare them
spike for spike, layer by layer.

    hwloop validate NET --target lava-sim --reference bitexact --dataset yinyang [--limit N]

Two targets "agree" on a layer when every neuron of every sample has the same
spike time (the same step, for targets on the same grid; silent on both
counts as equal). Any disagreement makes the command fail (exit status 1),
with, per layer, the number of mismatching neurons and samples and the first
mismatching sample.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def register(sub):
    p = sub.add_parser("validate", help="compare two targets spike for spike on the same inputs")
    p.add_argument("network", help=".hwnet file")
    p.add_argument("--target", required=True, help="target URL under test, e.g. lava-sim")
    p.add_argument("--reference", default="bitexact", help="reference target URL (default: bitexact)")
    p.add_argument("--dataset", required=True, help="yinyang | digits | mnist")
    p.add_argument("--data-root", default=None, help="folder with MNIST IDX files")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=None, help="first N samples only")
    p.add_argument("--atol", type=float, default=0.0,
                   help="spike times closer than this (model units) count as equal (default 0: identical)")
    p.set_defaults(func=run)
    return p


def compare_layers(ref: list[np.ndarray], test: list[np.ndarray], atol: float = 0.0) -> list[dict]:
    """Per layer: mismatching neurons/samples and the first mismatching sample."""
    rows = []
    for i, (a, b) in enumerate(zip(ref, test)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        same_silence = np.isinf(a) == np.isinf(b)
        both = np.isfinite(a) & np.isfinite(b)
        diff = np.abs(np.where(both, a, 0.0) - np.where(both, b, 0.0))
        close = diff <= atol
        bad = ~(same_silence & close)
        bad_samples = np.flatnonzero(bad.any(axis=1))
        rows.append({
            "layer": i,
            "neurons": int(a.shape[1]),
            "agree": bool(bad_samples.size == 0),
            "mismatching_neurons": int(bad.sum()),
            "mismatching_samples": int(bad_samples.size),
            "first_mismatching_sample": int(bad_samples[0]) if bad_samples.size else None,
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        })
    return rows


def run(args) -> dict:
    from hwloop.backends import open_target

    from ..data import load_dataset
    from ..errors import DatasetError
    from ..network import Network

    net = Network.load(args.network)
    data = load_dataset(args.dataset, args.split, root=args.data_root)
    x = data.x
    if args.limit is not None:
        if args.limit < 1:
            raise DatasetError(f"--limit must be >= 1, got {args.limit}")
        x = x[: args.limit]
    t_in = net.encoding.encode(x)
    results = {}
    with open_target(args.reference) as ref, open_target(args.target) as tgt:
        for name, backend in (("reference", ref), ("target", tgt)):
            t0 = time.perf_counter()
            backend.load(net)
            m = backend.run(t_in)
            results[name] = (m, time.perf_counter() - t0)
    m_ref, s_ref = results["reference"]
    m_tgt, s_tgt = results["target"]
    layers = compare_layers(m_ref.times, m_tgt.times, args.atol)
    ok = all(r["agree"] for r in layers)
    pred_ref = _predictions(m_ref.output)
    pred_tgt = _predictions(m_tgt.output)
    res = {
        "ok": ok,
        "network": args.network,
        "target": args.target,
        "reference": args.reference,
        "dataset": args.dataset,
        "split": args.split,
        "samples": int(t_in.shape[0]),
        "layers": layers,
        "accuracy": {"reference": float(np.mean(pred_ref == data.y[: len(pred_ref)])),
                     "target": float(np.mean(pred_tgt == data.y[: len(pred_tgt)]))},
        "seconds": {"reference": s_ref, "target": s_tgt},
    }
    if not getattr(args, "json", False):
        print(f"{net.summary()}\n{args.target} vs {args.reference} on {args.dataset}/{args.split}, "
              f"{res['samples']} samples")
        for r in layers:
            status = "agree" if r["agree"] else (
                f"DISAGREE: {r['mismatching_neurons']} neuron(s) in {r['mismatching_samples']} sample(s), "
                f"first at sample {r['first_mismatching_sample']}, max |dt| {r['max_abs_diff']:.4g}")
            print(f"  layer {r['layer']} ({r['neurons']} neurons): {status}")
        print(f"  accuracy: {args.reference} {res['accuracy']['reference']:.4f}, "
              f"{args.target} {res['accuracy']['target']:.4f}")
        print("OK: identical spikes in every layer" if ok else "FAILED: the targets disagree", file=sys.stderr)
    return res


def _predictions(t_out: np.ndarray) -> np.ndarray:
    """First spike wins; ties and all-silent count as no class (-1)."""
    t = np.asarray(t_out)
    first = t.min(axis=1, keepdims=True)
    winners = (t == first) & np.isfinite(first)
    pred = np.where(winners.sum(axis=1) == 1, winners.argmax(axis=1), -1)
    return pred
