"""Sample cost of the two in-the-loop gradients on the same task.

Runs in-the-loop sessions from the same start on the same target, once with
the model's exact gradient at the measured spike times (`--gradient model`)
and once per SPSA setting (`--gradient spsa`, model-free: measured losses
only, 2 target runs per perturbation pair plus one for the logged loss), and
counts what each consumed in *target samples* (samples x target runs) until
its validation accuracy first reached each threshold. Every session is a normal
session directory (`hwloop report DIR` works on each).

    python bench/bench_gradients.py [--target qif-emu] [--budget 20000] \
        [--spsa-pairs 1 4] [--thresholds 0.75 0.85] [--out runs/bench-gradients] [--no-node-pert]

    python bench/bench_gradients.py --nets H30.hwnet H60.hwnet H120.hwnet [--budget N] ...

runs the same sessions from each of several networks (one per hidden-layer
size, each trained in software, deployed as is) and prints how each
gradient's sample cost to the thresholds grows with the hidden layer; a
session that does not reach a threshold within its budget shows "> budget".

Node perturbation (Fiete & Seung, `--gradient node-perturbation`, 8 trials +
1 baseline run per step) runs beside them unless ``--no-node-pert``.

    python bench/bench_gradients.py --cosine [--hidden 30 60 120] [--trials 1 4 16 64]

instead measures, on the noise-free ideal chip (``qif-emu?mismatch=0&noise=0``:
the software model's dynamics, with current injection, which ``software``
lacks), each model-free estimator's cosine similarity with the model's exact
gradient as a function of its chip runs, for networks whose hidden layer is
the first H neurons of the shipped one.

The default start is the shipped QIF Yin-Yang network deployed as is on the
emulated chip (default mismatch), the `make demo` situation.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwloop.data import load_dataset  # noqa: E402
from hwloop.pretrained import path as pretrained  # noqa: E402
from hwloop.session import LoopConfig, run_session  # noqa: E402


def curve(directory: Path) -> list[tuple[int, int, float]]:
    """(step, target samples consumed so far, validation accuracy) per evaluation."""
    used, out = 0, []
    for line in (directory / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["kind"] == "train":
            used += row["samples"] * row["target_runs"]
        else:
            out.append((row["step"], used, row["val_accuracy"]))
    return out


def first_reaching(points, threshold: float):
    for step, used, acc in points:
        if acc >= threshold:
            return step, used
    return None, None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="qif-emu")
    ap.add_argument("--init", default=None, help="start network (default: the shipped QIF Yin-Yang net)")
    ap.add_argument("--dataset", default="yinyang")
    ap.add_argument("--budget", type=int, default=20000, help="target samples per session")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--spsa-pairs", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--spsa-sigma", type=float, default=0.02)
    ap.add_argument("--eval-every", type=int, default=10,
                    help="steps between validation runs (0: about 15 evaluations per session, whatever its steps)")
    ap.add_argument("--eval-limit", type=int, default=500)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.75, 0.85],
                    help="validation accuracies to reach")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench-gradients")
    ap.add_argument("--no-node-pert", action="store_true", help="skip the node-perturbation session")
    ap.add_argument("--cosine", action="store_true", help="cosine to the exact gradient vs runs, per hidden size")
    ap.add_argument("--hidden", type=int, nargs="+", default=[30, 60, 120])
    ap.add_argument("--trials", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--nets", nargs="+", default=None,
                    help="start networks, one per hidden-layer size (each trained in software): the sessions per "
                         "network and one table of cost against size")
    args = ap.parse_args()
    if args.cosine:
        return cosine_table(args)

    if args.nets:
        return by_size(args)
    init = args.init or str(pretrained("yinyang-qif.hwnet"))
    results = sessions(args, init, Path(args.out))
    print(f"\ntarget {args.target}: validation accuracy ({args.eval_limit} samples) and target samples "
          f"(samples x runs) until it first reached each threshold; budget {args.budget} per session")
    print_table(results, args.thresholds)
    (Path(args.out) / "summary.json").write_text(json.dumps(results, indent=2))
    return 0 if not any(math.isnan(r["final_val"]) for r in results) else 1


def sessions(args, init: str, out: Path) -> list[dict]:
    """One session per gradient (model, SPSA per pairs setting, node perturbation) from ``init``,
    each capped at ``args.budget`` target samples; their sample counts to each threshold."""
    runs = [("model", 1)] + [("spsa", p) for p in args.spsa_pairs]
    if not args.no_node_pert:
        runs.append(("node-perturbation", 8))  # the estimator's default trials (make_estimator)
    results = []
    n_train = len(load_dataset(args.dataset, "train").y)
    for kind, pairs in runs:
        per_step = args.batch_size * (1 if kind == "model" else pairs + 1 if kind == "node-perturbation"
                                      else 2 * pairs + 1)
        steps = max(1, args.budget // per_step)
        # `steps` batches: as many passes over (the first `limit` samples of) the
        # training set as that takes
        per_epoch = max(1, min(n_train, steps * args.batch_size) // args.batch_size)
        epochs = -(-steps // per_epoch)
        name = {"model": "model", "spsa": f"spsa{pairs}"}.get(kind, f"nodepert{pairs}")
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        cfg = LoopConfig(target=args.target, dataset=args.dataset, init=init, epochs=epochs,
                         batch_size=args.batch_size, lr=args.lr, lr_gamma=1.0, seed=args.seed,
                         gradient=kind, spsa_pairs=pairs, spsa_sigma=args.spsa_sigma,
                         train_limit=per_epoch * args.batch_size, eval_limit=args.eval_limit,
                         eval_every=args.eval_every, compare_software=False, final_test=False)
        t0 = time.perf_counter()
        steps = epochs * per_epoch
        cfg.eval_every = args.eval_every or max(1, steps // 15)
        print(f"{name}: {steps} steps of {args.batch_size} samples, {per_step} target samples per step",
              flush=True)
        run_session(d, cfg, progress=False)
        pts = curve(d)
        results.append({"gradient": name, "steps": steps, "target_samples": pts[-1][1],
                        "start_val": pts[0][2], "final_val": pts[-1][2], "best_val": max(p[2] for p in pts),
                        "samples_to": {str(th): first_reaching(pts, th)[1] for th in args.thresholds},
                        "seconds": time.perf_counter() - t0})
        print(json.dumps(results[-1]), flush=True)
    return results


def print_table(results, thresholds, lead: str = "") -> None:
    head = "".join(f"{'to ' + format(th, '.2f'):>22}" for th in thresholds)
    if not lead:
        print(f"{'gradient':<10}{'start':>8}{'final':>8}{'best':>8}{head}")
    for r in results:
        cells = ""
        for th in thresholds:
            got, ref = r["samples_to"][str(th)], results[0]["samples_to"][str(th)]
            if got is None:
                cells += f"{'>' + str(r['target_samples']):>22}"
            else:
                ratio = f" ({got / ref:.0f}x)" if ref else ""
                cells += f"{str(got) + ratio:>22}"
        print(f"{lead}{r['gradient']:<10}{r['start_val']:>8.3f}{r['final_val']:>8.3f}{r['best_val']:>8.3f}{cells}")


def by_size(args) -> int:
    """`sessions` for each network of ``--nets`` (one per hidden-layer size, each trained in
    software), and one table: how each gradient's sample cost grows with the hidden layer."""
    from hwloop.network import Network

    table = []
    for path in args.nets:
        net = Network.load(path)
        hidden = net.layers[0].n_out
        n_w = sum(layer.weight.size for layer in net.layers)
        print(f"== {path}: {hidden} hidden, {n_w} weights", flush=True)
        table.append((hidden, n_w, sessions(args, path, Path(args.out) / f"h{hidden}")))
    print(f"\ntarget {args.target}: validation accuracy ({args.eval_limit} samples) and target samples "
          f"(samples x runs) until it first reached each threshold; cap {args.budget} per session")
    head = "".join(f"{'to ' + format(th, '.2f'):>22}" for th in args.thresholds)
    print(f"{'hidden':>6}{'weights':>8} {'gradient':<10}{'start':>8}{'final':>8}{'best':>8}{head}")
    for hidden, n_w, results in table:
        print_table(results, args.thresholds, lead=f"{hidden:>6}{n_w:>8} ")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "by_size.json").write_text(json.dumps(
        [{"hidden": h, "weights": n, "results": r} for h, n, r in table], indent=2))
    return 0


def cosine_table(args) -> int:
    import dataclasses

    import numpy as np
    import torch

    from hwloop.backends import open_target
    from hwloop.inloop import spsa_gradient
    from hwloop.network import Network
    from hwloop.session.estimators import ModelGradient, NodePerturbationGradient, SpsaGradient
    from hwloop.session.parts import SessionLoss

    base = Network.load(args.init or str(pretrained("yinyang-qif.hwnet")))
    d = load_dataset(args.dataset, "train")
    xb = torch.as_tensor(base.encoding.encode(d.x[:200]), dtype=torch.float64)
    yb = torch.as_tensor(d.y[:200])

    def cos(a, b):
        a = torch.cat([g.reshape(-1) for g in a]).double()
        b = torch.cat([g.reshape(-1) for g in b]).double()
        return float(a @ b / (a.norm() * b.norm()))

    print("cosine similarity with the exact gradient (200 samples, qif-emu?mismatch=0&noise=0); "
          "cost = chip runs per estimate")
    print(f"{'hidden':>6} {'weights':>8} {'estimator':<22}" + "".join(f"{'runs ' + str(t + 1):>10}" for t in args.trials))
    for h in args.hidden:
        l0, l1 = base.layers
        nb1 = len(l1.bias_times)
        w1 = np.concatenate([l1.weight[:h], l1.weight[l1.n_in:]], axis=0)
        net = dataclasses.replace(base, layers=(dataclasses.replace(l0, weight=l0.weight[:, :h]),
                                                dataclasses.replace(l1, weight=w1)))
        assert w1.shape[0] == h + nb1
        loss = SessionLoss(LoopConfig(dataset=args.dataset), net)
        ws = [torch.as_tensor(np.array(l.weight), dtype=torch.float64).requires_grad_(True) for l in net.layers]
        n_w = sum(w.numel() for w in ws)
        with open_target("qif-emu?baud=0&mismatch=0&noise=0") as chip:
            exact = ModelGradient(net, loss).estimate(chip, ws, xb, yb, 0).grads
            row_np, row_sp = [], []
            for t in args.trials:
                est = NodePerturbationGradient(net, loss, 0.2, t, args.seed).estimate(chip, ws, xb, yb, 0)
                row_np.append(cos(est.grads, exact))
                pairs = max(1, t // 2)  # the same number of chip runs: 2 per pair
                sp = SpsaGradient(net, loss, args.spsa_sigma, pairs, args.seed).estimate(chip, ws, xb, yb, 0)
                row_sp.append(cos(sp.grads, exact))
        print(f"{h:>6} {n_w:>8} {'node perturbation':<22}" + "".join(f"{c:>10.3f}" for c in row_np))
        print(f"{h:>6} {n_w:>8} {'SPSA (pairs = runs/2)':<22}" + "".join(f"{c:>10.3f}" for c in row_sp), flush=True)
    _ = spsa_gradient
    return 0


if __name__ == "__main__":
    sys.exit(main())
