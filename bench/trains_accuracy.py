"""Test accuracy of the spike-train family, per data set and seed, with the
defaults of `hwloop.trains_training.defaults_for` (docs/models-cuba.md):

* ``randman``: the stork example's Randman set and network (20-128-10);
* ``yinyang``, ``digits``: the spike-train encodings of hwloop.data.spike_trains;
* ``delayed-xor-recurrent`` and ``delayed-xor-feedforward``: the task that
  needs memory, the same 40-64-2 network with and without recurrent
  weights.

The seed is the training seed (initialisation, batch order); the data are
the same for every seed. Accuracy is that of the weights of the best
validation epoch, on the test split. Writes ``results.json`` (resumable)
and ``table.md``.

    python bench/trains_accuracy.py [--runs randman yinyang ...] [--seeds 0 1 2] [--out runs/accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from hwloop.trains_training import defaults_for, train  # noqa: E402

RUNS = {
    "randman": ("randman", {}),
    "yinyang": ("yinyang", {}),
    "digits": ("digits", {}),
    "delayed-xor-recurrent": ("delayed-xor", {"recurrent": True}),
    "delayed-xor-feedforward": ("delayed-xor", {"recurrent": False}),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/accuracy")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    done = {(r["run"], r["seed"]) for r in rows}
    for name in a.runs:
        dataset, over = RUNS[name]
        for seed in a.seeds:
            if (name, seed) in done:
                continue
            cfg = defaults_for(dataset, seed=seed, threads=a.threads, **over)
            res = train(cfg)
            m = res.metrics
            rows.append({"run": name, "seed": seed, **{k: m["accuracy"][k] for k in ("train", "val", "test")},
                         "best_epoch": m["best_epoch"], "epochs": cfg.epochs,
                         "hidden_spikes_per_neuron": m["hidden_spikes_per_neuron"], "seconds": m["train_seconds"]})
            path.write_text(json.dumps(rows, indent=1))
            print(f"{name:26s} seed {seed}: test {m['accuracy']['test']:.4f} (val {m['accuracy']['val']:.4f}, "
                  f"best epoch {m['best_epoch']}, {m['train_seconds']:.0f} s)", file=sys.stderr, flush=True)
    lines = ["| run | epochs | test accuracy per seed (%) | mean (%) | hidden spikes / neuron / trial |",
             "|---|---|---|---|---|"]
    for name in RUNS:
        rs = sorted((r for r in rows if r["run"] == name), key=lambda r: r["seed"])
        if not rs:
            continue
        accs = [100 * r["test"] for r in rs]
        spikes = np.mean([r["hidden_spikes_per_neuron"][0] for r in rs])
        lines.append(f"| {name} | {rs[0]['epochs']} | {', '.join(f'{x:.1f}' for x in accs)} | "
                     f"**{np.mean(accs):.1f}** | {spikes:.1f} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
