"""Time per sample of the theta (QIF) network 784-100-100-10, batch 1000,
float32, 2 threads: forward only, and a training step (extended forward with
pseudospikes + loss + exact backward). Also the non-leaky IF model.

Reference: the paper's public JAX code (Klos & Memmesheimer, spikegd) as
quoted in the issue: 1.8 ms/sample per training step, 0.6 ms/sample forward;
our goal is ≥ 10× faster (≤ 0.18 and ≤ 0.06 ms/sample).

Two input kinds: ``binary`` is the paper's MNIST set-up (each pixel on or off,
an "on" pixel spikes at one fixed time; their Nin_virtual = 1) with random
pixels, the case the reference figures are for; ``continuous`` gives every
input its own random time (784 distinct events per sample), a harder case.

    python bench/bench_qif.py [--batch 1000] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from hwloop.models import network_forward
from hwloop.models.qif import extended_times, pseudo_network_forward
from hwloop.network import Layer, NeuronParams

REF_TRAIN_MS, REF_FWD_MS = 1.8, 0.6
SIZES = (784, 100, 100, 10)
T = 2.0  # the paper's trial; τ = 6/π, I0 = 5/4 → Θ = 6


def build(model: str, rng: np.random.Generator):
    if model == "qif":
        neuron = NeuronParams(model="qif", tau_mem=6 / math.pi, tau_syn=6 / math.pi, options={"i0": 1.25, "v0": 0.5})
        scale = [0.5 / math.sqrt(n) * 3 for n in SIZES[:-1]]
        mean = [0.0] * 3
    else:
        neuron = NeuronParams(model="nlif", tau_syn=1.0, tau_mem=1.0, threshold=1.0)
        scale = [0.5 / math.sqrt(n) for n in SIZES[:-1]]
        mean = [4.0 / n for n in SIZES[:-1]]
    layers, weights = [], []
    for a, b, s, m in zip(SIZES[:-1], SIZES[1:], scale, mean):
        w = rng.uniform(-s, s, (a, b)) + m
        layers.append(Layer(weight=w, neuron=neuron))
        weights.append(torch.tensor(w, dtype=torch.float32, requires_grad=True))
    return layers, weights


def inputs(kind: str, batch: int, rng: np.random.Generator) -> torch.Tensor:
    if kind == "binary":
        x = np.where(rng.random((batch, SIZES[0])) < 0.2, 0.1 * T, np.inf)
    else:
        x = rng.uniform(0.0, 0.9 * T, (batch, SIZES[0]))
    return torch.tensor(x, dtype=torch.float32)


def best_of(fn, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    B = args.batch
    rows = {}
    print(f"theta/QIF network {'-'.join(map(str, SIZES))}, batch {B}, float32, {args.threads} threads; "
          f"ms per sample (best of {args.repeat})")
    print(f"{'case':34s} {'ours':>8s} {'JAX ref':>8s} {'speed-up':>9s} {'goal':>6s}")
    for model in ("qif", "nlif"):
        layers, weights = build(model, rng)
        for kind in ("binary", "continuous"):
            x = inputs(kind, B, rng)
            if model == "qif":
                fwd = lambda: extended_times(layers, weights, x, T)  # noqa: E731

                def step():
                    out = pseudo_network_forward(layers, weights, x, T)
                    loss = torch.nn.functional.cross_entropy(-out[-1], torch.zeros(B, dtype=torch.long))
                    loss.backward()
            else:
                def fwd():
                    with torch.no_grad():
                        return network_forward(layers, weights, x, T)

                def step():
                    out = network_forward(layers, weights, x, T)[-1]
                    out = torch.where(torch.isfinite(out), out, torch.full_like(out, T))
                    torch.nn.functional.cross_entropy(-out, torch.zeros(B, dtype=torch.long)).backward()
            silent = [float(torch.isinf(t).float().mean()) for t in network_forward(layers, weights, x, T)]
            for what, fn, ref, goal in (("forward", fwd, REF_FWD_MS, 0.06), ("train step", step, REF_TRAIN_MS, 0.18)):
                ms = best_of(fn, args.repeat) / B * 1e3
                key = f"{model} {kind} {what}"
                rows[key] = ms
                ref_s = f"{ref:8.2f}" if model == "qif" else f"{'-':>8s}"
                up = f"{ref / ms:8.1f}x" if model == "qif" else f"{'-':>9s}"
                ok = ("yes" if ms <= goal else "no") if model == "qif" else "-"
                print(f"{key:34s} {ms:8.4f} {ref_s} {up} {ok:>6s}")
            print(f"{'':34s} silent fraction per layer: {', '.join(f'{s:.2f}' for s in silent)}")
    return rows


if __name__ == "__main__":
    main()
