"""The ceiling of in-the-loop training at a coarse weight step: what the best network
*representable* on that grid reaches, found in software.

From the same start network, with the same batches (the session's sample order for
``--seed``), the same loss, optimiser and learning-rate schedule as an in-the-loop
session, the float weights are trained quantisation-aware: every forward pass uses
the weights `compile_trains` would store on ``bitexact?weight_bits=B`` (the float
values its integer registers stand for: `TrainsReport.effective_weights`, the grid
re-derived from the current weights each step, as a deployment does), and the
backward pass goes straight through the rounding. Every ``--eval-every`` steps the
quantised network is measured on the target itself (validation and test split);
the network selected on validation (as a session selects) and its test accuracy are
printed as the last JSON line. ``--no-quant``: the same fine-tuning without the
rounding (a control).

    python bench/trains_qat_ceiling.py --init randman.hwnet --bits 5 --epochs 3 [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hwloop.backends import open_target  # noqa: E402
from hwloop.backends.loihi.trains_mapping import compile_trains  # noqa: E402
from hwloop.inloop import network_with  # noqa: E402
from hwloop.models.trains import Surrogate  # noqa: E402
from hwloop.network import Network  # noqa: E402
from hwloop.session.trains_parts import trains_config  # noqa: E402
from hwloop.trains_training import TrainsNetwork, _loss, load_trains_data  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", required=True, help="software-trained CUBA network (.hwnet)")
    ap.add_argument("--bits", type=int, default=5, help="bitexact?weight_bits= of the grid")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-gamma", type=float, default=0.6, help="learning rate factor after every epoch")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="sample order (a session's --seed)")
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--no-quant", action="store_true", help="plain float fine-tuning (control)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    tmpl = Network.load(a.init)
    if any(layer.recurrent is not None for layer in tmpl.layers):
        raise SystemExit("a feed-forward network only (in-the-loop sessions train the feed-forward weights)")
    tc = trains_config(tmpl)
    data = load_trains_data(tc)
    tr, va, te = (data.splits[s] for s in ("train", "val", "test"))
    params = [layer.neuron.trains_params() for layer in tmpl.layers]
    sg = Surrogate(tc.surrogate, float(tc.beta), through_reset=bool(getattr(tc, "through_reset", False)))
    ws = [torch.tensor(np.array(w), dtype=torch.float64, requires_grad=True) for w in tmpl.weights()]
    net = TrainsNetwork(weights=ws, recurrent=[None] * len(ws), params=params, surrogate=sg,
                        window=None if tmpl.decoding.window is None else tuple(tmpl.decoding.window),
                        readout=tc.readout, dt=float(tmpl.dt))
    opt = torch.optim.Adam(ws, lr=a.lr)
    target = open_target(f"bitexact?weight_bits={a.bits}")

    def grid(w):
        _, rep = compile_trains(network_with(tmpl, w), weight_bits=a.bits)
        return [torch.as_tensor(e[0]) for e in rep.effective_weights]

    def accuracy(w, split):
        target.load(network_with(tmpl, w))
        pred = [target.run_raster(split.raster[:, b:b + 500].numpy()).predictions()
                for b in range(0, split.labels.shape[0], 500)]
        return float(np.mean(np.concatenate(pred) == split.labels.numpy()))

    rows = []

    def evaluate(step):
        w = [x.detach().clone() for x in ws]
        rows.append({"step": step, "val": accuracy(w, va), "test": accuracy(w, te)})
        print(json.dumps(rows[-1]), flush=True)

    n = tr.labels.shape[0]
    per_epoch = (n + a.batch_size - 1) // a.batch_size
    evaluate(0)
    t0, step = time.perf_counter(), 0
    for epoch in range(a.epochs):
        order = np.random.default_rng([a.seed, epoch, 0]).permutation(n)  # a session's batches
        for k in range(per_epoch):
            idx = torch.as_tensor(order[k * a.batch_size:(k + 1) * a.batch_size])
            xb, yb = tr.raster[:, idx].to(torch.float64), tr.labels[idx].long()
            net.weights = ws if a.no_quant else [w + (q - w).detach() for w, q in zip(ws, grid(ws))]
            loss = _loss(net, net.forward(xb), yb, tc)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % a.eval_every == 0 or step == per_epoch * (epoch + 1):
                evaluate(step)
        for g in opt.param_groups:
            g["lr"] *= a.lr_gamma
    if rows[-1]["step"] != step:
        evaluate(step)
    best = max(rows, key=lambda r: (r["val"], -r["step"]))  # the earliest of the best, as a session selects
    print(json.dumps({"bits": a.bits, "quantised": not a.no_quant, "epochs": a.epochs, "lr": a.lr, "seed": a.seed,
                      "start": rows[0], "selected_on_val": best, "last": rows[-1],
                      "best_test_seen": max(r["test"] for r in rows), "seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
