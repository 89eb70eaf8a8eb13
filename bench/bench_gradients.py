"""Sample cost of the two in-the-loop gradients on the same task.

Runs in-the-loop sessions from the same start on the same target, once with
the model's exact gradient at the measured spike times (`--gradient model`)
and once per SPSA setting (`--gradient spsa`, model-free: measured losses
only, 2 target runs per perturbation pair plus one for the logged loss), and
counts what each consumed in *target samples* (samples x target runs) until
its validation accuracy first reached each threshold. Every session is a normal
session directory (`hwloop report DIR` works on each).

    python bench/bench_gradients.py [--target qif-emu] [--budget 20000] \
        [--spsa-pairs 1 4] [--thresholds 0.75 0.85] [--out runs/bench-gradients]

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
    ap.add_argument("--eval-every", type=int, default=10, help="steps between validation runs")
    ap.add_argument("--eval-limit", type=int, default=500)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.75, 0.85],
                    help="validation accuracies to reach")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench-gradients")
    args = ap.parse_args()

    init = args.init or str(pretrained("yinyang-qif.hwnet"))
    out = Path(args.out)
    runs = [("model", 1)] + [("spsa", p) for p in args.spsa_pairs]
    results = []
    n_train = len(load_dataset(args.dataset, "train").y)
    for kind, pairs in runs:
        per_step = args.batch_size * (1 if kind == "model" else 2 * pairs + 1)
        steps = max(1, args.budget // per_step)
        # `steps` batches: as many passes over (the first `limit` samples of) the
        # training set as that takes
        per_epoch = max(1, min(n_train, steps * args.batch_size) // args.batch_size)
        epochs = -(-steps // per_epoch)
        name = "model" if kind == "model" else f"spsa{pairs}"
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        cfg = LoopConfig(target=args.target, dataset=args.dataset, init=init, epochs=epochs,
                         batch_size=args.batch_size, lr=args.lr, lr_gamma=1.0, seed=args.seed,
                         gradient=kind, spsa_pairs=pairs, spsa_sigma=args.spsa_sigma,
                         train_limit=per_epoch * args.batch_size, eval_limit=args.eval_limit,
                         eval_every=args.eval_every, compare_software=False)
        t0 = time.perf_counter()
        steps = epochs * per_epoch
        print(f"{name}: {steps} steps of {args.batch_size} samples, {per_step} target samples per step",
              flush=True)
        run_session(d, cfg, progress=False)
        pts = curve(d)
        results.append({"gradient": name, "steps": steps, "target_samples": pts[-1][1],
                        "start_val": pts[0][2], "final_val": pts[-1][2], "best_val": max(p[2] for p in pts),
                        "samples_to": {str(th): first_reaching(pts, th)[1] for th in args.thresholds},
                        "seconds": time.perf_counter() - t0})
        print(json.dumps(results[-1]), flush=True)

    print(f"\ntarget {args.target}: validation accuracy ({args.eval_limit} samples) and target samples "
          f"(samples x runs) until it first reached each threshold; budget {args.budget} per session")
    head = "".join(f"{'to ' + format(th, '.2f'):>22}" for th in args.thresholds)
    print(f"{'gradient':<10}{'start':>8}{'final':>8}{'best':>8}{head}")
    for r in results:
        cells = ""
        for th in args.thresholds:
            got, ref = r["samples_to"][str(th)], results[0]["samples_to"][str(th)]
            if got is None:
                cells += f"{'>' + str(r['target_samples']):>22}"
            else:
                ratio = f" ({got / ref:.0f}x)" if ref else ""
                cells += f"{str(got) + ratio:>22}"
        print(f"{r['gradient']:<10}{r['start_val']:>8.3f}{r['final_val']:>8.3f}{r['best_val']:>8.3f}{cells}")
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    return 0 if not any(math.isnan(r["final_val"]) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
