"""The robustness study of Zenke & Vogels (2021): test accuracy on Randman
(the stork example's data and network) over surrogate-derivative shape x
steepness beta (four decades) x seeds; writes a Markdown table, a JSON
file and a PNG plot.

Every run is `hwloop.trains_training.train` with the Randman defaults but
the surrogate (shape, beta) and the number of epochs; the accuracy is that
of the best validation epoch, on the test split. Every shape has peak 1 at
the threshold, so beta only sets its width (docs/models-cuba.md, section 2).

    python bench/robustness_surrogate.py                       # the full study: 50 epochs per run
    python bench/robustness_surrogate.py --epochs 12 --out runs/robustness   # the reduced one in the docs

The machine is shared: it runs one training at a time, on ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from hwloop.trains_training import defaults_for, load_trains_data, train  # noqa: E402

SHAPES = ("superspike", "sigmoid", "linear", "exponential")
BETAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    ap.add_argument("--betas", nargs="+", type=float, default=list(BETAS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/robustness")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base = defaults_for("randman", epochs=a.epochs, threads=a.threads)
    data = load_trains_data(base)
    results_file = out / "results.json"
    rows = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {(r["shape"], r["beta"], r["seed"]) for r in rows}
    t0 = time.perf_counter()
    for shape in a.shapes:
        for beta in a.betas:
            for seed in a.seeds:
                if (shape, beta, seed) in done:
                    continue  # resumable: a killed study picks up where it stopped
                cfg = defaults_for("randman", epochs=a.epochs, threads=a.threads, surrogate=shape, beta=beta, seed=seed)
                res = train(cfg, data=data)
                row = {"shape": shape, "beta": beta, "seed": seed, "epochs": a.epochs,
                       "test": res.metrics["accuracy"]["test"], "val": res.metrics["accuracy"]["val"],
                       "train": res.metrics["accuracy"]["train"], "best_epoch": res.metrics["best_epoch"],
                       "hidden_spikes_per_neuron": res.metrics["hidden_spikes_per_neuron"][0],
                       "seconds": res.metrics["train_seconds"]}
                rows.append(row)
                results_file.write_text(json.dumps(rows, indent=1))
                print(f"{shape:12s} beta {beta:8g} seed {seed}: test {row['test']:.4f} "
                      f"({row['seconds']:.0f} s, {time.perf_counter() - t0:.0f} s so far)", file=sys.stderr, flush=True)
    table = _table(rows, a.shapes, a.betas, a.epochs)
    (out / "table.md").write_text(table)
    print(table)
    _plot(rows, a.shapes, a.betas, out / "robustness.png")
    print(f"wrote {out / 'table.md'}, {results_file}, {out / 'robustness.png'}")
    return 0


def _stats(rows, shape, beta):
    acc = [r["test"] for r in rows if r["shape"] == shape and r["beta"] == beta]
    return (float(np.mean(acc)), float(np.std(acc)), len(acc)) if acc else (float("nan"), float("nan"), 0)


def _table(rows, shapes, betas, epochs) -> str:
    head = "| shape | " + " | ".join(f"β = {b:g}" for b in betas) + " |\n"
    head += "|---|" + "---|" * len(betas) + "\n"
    body = ""
    for shape in shapes:
        cells = []
        for b in betas:
            m, s, n = _stats(rows, shape, b)
            cells.append(f"{100 * m:.1f} ± {100 * s:.1f} (n={n})" if n else "–")
        body += f"| {shape} | " + " | ".join(cells) + " |\n"
    return (f"Randman (stork parameters), test accuracy in %, mean ± std over seeds, {epochs} epochs per run, "
            f"best validation epoch\n\n" + head + body)


def _plot(rows, shapes, betas, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for shape in shapes:
        st = [_stats(rows, shape, b) for b in betas]
        ax.errorbar(betas, [100 * m for m, _, _ in st], yerr=[100 * s for _, s, _ in st], marker="o", capsize=3,
                    label=shape)
    ax.set_xscale("log")
    ax.set_xlabel("surrogate steepness β (1 / threshold)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Randman: surrogate shape × scale")
    ax.axhline(10, color="grey", lw=0.5, ls=":")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
