"""hwloop validate: run the same inputs through two targets and compare them
spike for spike, layer by layer.

    hwloop validate NET --target lava-sim --reference bitexact --dataset yinyang [--limit N]

Two targets "agree" on a layer when every neuron of every sample has spike
times within ``--atol`` of each other (silent on both counts as equal). The
default tolerance is 0 when both targets run on the same time grid (the same
step, e.g. ``bitexact`` and fixed-point ``lava-sim``: identical spikes are
expected), and one time step of the coarser grid otherwise (e.g. a target
against the continuous ``software`` model, whose times no grid can match
exactly). Any disagreement makes the command fail (exit status 1), with, per
layer, the number of mismatching neurons and samples and the first
mismatching sample, and a suggested ``--atol`` when the times differ by more
than the tolerance.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ._args import POSITIVE, number


def register(sub):
    p = sub.add_parser("validate", help="compare two targets spike for spike on the same inputs")
    p.add_argument("network", help=".hwnet file")
    p.add_argument("--target", required=True, help="target URL under test, e.g. lava-sim")
    p.add_argument("--reference", default="bitexact", help="reference target URL")
    p.add_argument("--dataset", default=None,
                   help="yinyang | digits | mnist (default: the data set the network's file records)")
    p.add_argument("--data-root", default=None, help="folder with MNIST IDX files")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="data set split")
    p.add_argument("--limit", type=POSITIVE, default=None, help="first N samples only (N >= 1)")
    p.add_argument("--atol", type=number(0.0), default=None,
                   help="spike times at most this far apart (the network's time unit) count as equal "
                        "(default: 0 when both targets run on the same time grid, else one step of the "
                        "coarser grid)")
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
    from hwloop.backends import check_target, open_target

    from ..data import load_dataset
    from ..errors import DatasetError
    from ..evaluation import check_limit, check_network_fits
    from ..network import Network
    from .eval import dataset_from_network

    check_limit(args.limit, "--limit")
    check_target(args.reference)  # both URLs checked before either target is opened
    check_target(args.target)
    net = Network.load(args.network)
    dataset, source = dataset_from_network(net, args.dataset, "hwloop validate")
    data = load_dataset(dataset, args.split, root=args.data_root)
    check_network_fits(net, data)
    x = data.x
    if args.limit is not None:
        x = x[: args.limit]
    t_in = net.encoding.encode(x)
    if len(t_in) == 0:
        raise DatasetError(f"{dataset}/{args.split} has no samples")
    results = {}
    with open_target(args.reference) as ref, open_target(args.target) as tgt:
        for name, backend in (("reference", ref), ("target", tgt)):
            t0 = time.perf_counter()
            backend.load(net)
            m = backend.run(t_in)
            results[name] = (m, time.perf_counter() - t0)
    m_ref, s_ref = results["reference"]
    m_tgt, s_tgt = results["target"]
    grids = {"reference": grid_step(m_ref), "target": grid_step(m_tgt)}
    atol, atol_why = default_atol(grids, args.reference, args.target) if args.atol is None else (args.atol, "--atol")
    layers = compare_layers(m_ref.times, m_tgt.times, atol)
    ok = all(r["agree"] for r in layers)
    hint = None if ok else suggest_atol(m_ref.times, m_tgt.times, layers, grids, atol, net.time_unit)
    pred_ref = _predictions(m_ref.output)
    pred_tgt = _predictions(m_tgt.output)
    res = {
        "ok": ok,
        "network": args.network,
        "target": args.target,
        "reference": args.reference,
        "dataset": dataset,
        "dataset_from": source,
        "split": args.split,
        "samples": int(t_in.shape[0]),
        "atol": atol,
        "atol_from": atol_why,
        "grid_step": grids,
        "layers": layers,
        **({"hint": hint} if hint else {}),
        "accuracy": {"reference": float(np.mean(pred_ref == data.y[: len(pred_ref)])),
                     "target": float(np.mean(pred_tgt == data.y[: len(pred_tgt)]))},
        "seconds": {"reference": s_ref, "target": s_tgt},
    }
    if not getattr(args, "json", False):
        print(f"{net.summary()}\n{args.target} vs {args.reference} on {dataset}/{args.split}, "
              f"{res['samples']} samples; spike times within {atol:.6g} {net.time_unit} count as equal "
              f"({atol_why})" + ("" if source == "option" else
                                 "\ndata set from the network file (--dataset overrides)"))
        for r in layers:
            status = "agree" if r["agree"] else (
                f"DISAGREE: {r['mismatching_neurons']} neuron(s) in {r['mismatching_samples']} sample(s), "
                f"first at sample {r['first_mismatching_sample']}, max |dt| {r['max_abs_diff']:.4g}")
            print(f"  layer {r['layer']} ({r['neurons']} neurons): {status}")
        print(f"  accuracy: {args.reference} {res['accuracy']['reference']:.4f}, "
              f"{args.target} {res['accuracy']['target']:.4f}")
        if ok:
            print("OK: identical spikes in every layer" if atol == 0 else
                  f"OK: spike times within {atol:.6g} {net.time_unit} in every layer", file=sys.stderr)
        else:
            print("FAILED: the targets disagree" + (f"; {hint}" if hint else ""), file=sys.stderr)
    return res


def grid_step(m) -> float | None:
    """The time step of the grid a target reported its times on (network units),
    or None for a target without one (the float model)."""
    for key in ("dt", "tick"):
        v = m.info.get(key)
        if v is not None:
            return float(v)
    return None


def default_atol(grids: dict, reference: str, target: str) -> tuple[float, str]:
    """0 on a shared grid (or none at all), else one step of the coarser grid."""
    ref, tgt = grids["reference"], grids["target"]
    if ref is None and tgt is None:
        return 0.0, "default: neither target has a time grid"
    if ref is not None and tgt is not None and np.isclose(ref, tgt, rtol=1e-9, atol=0):
        return 0.0, "default: both targets run on the same time grid"
    step, name = max((s, n) for s, n in ((ref, reference), (tgt, target)) if s is not None)
    return step, f"default: one time step of {name}'s grid"


def suggest_atol(ref: list[np.ndarray], test: list[np.ndarray], layers: list[dict], grids: dict, atol: float,
                 unit: str) -> str | None:
    """What a tolerance of one grid step would accept, when spike times (not
    only which neurons fire) made the targets disagree."""
    worst = max(r["max_abs_diff"] for r in layers)
    if worst <= atol:
        return "the targets disagree on which neurons fire, not only on when"
    steps = [s for s in grids.values() if s is not None]
    if not steps:
        return f"spike times differ by up to {worst:.6g} {unit}"
    step = max(steps)
    text = f"spike times differ by up to {worst:.6g} {unit} ({worst / step:.3g} steps of {step:.6g} {unit})"
    diffs = []
    for a, b in zip(ref, test):
        both = np.isfinite(a) & np.isfinite(b)
        diffs.append(np.abs(np.asarray(a)[both] - np.asarray(b)[both]))
    diffs = np.concatenate(diffs)
    if diffs.size:
        p99 = float(np.quantile(diffs, 0.99))
        text += (f"; 99 % of the spikes both fire are within {p99:.4g} {unit} "
                 f"({int(np.ceil(p99 / step - 1e-9))} step(s); --atol {p99:.4g})")
    if atol < step:
        left = compare_layers(ref, test, step)
        bad = sum(r["mismatching_neurons"] for r in left)
        text += (f"; at one step, --atol {step:.6g}, " +
                 ("they agree" if bad == 0 else f"{bad} neuron(s) in "
                  f"{max(r['mismatching_samples'] for r in left)} sample(s) still disagree"))
    return text


def _predictions(t_out: np.ndarray) -> np.ndarray:
    """First spike wins; ties and all-silent count as no class (-1)."""
    t = np.asarray(t_out)
    first = t.min(axis=1, keepdims=True)
    winners = (t == first) & np.isfinite(first)
    pred = np.where(winners.sum(axis=1) == 1, winners.argmax(axis=1), -1)
    return pred
