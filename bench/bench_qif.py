"""Time per sample of the theta (QIF) network 784-100-100-10, batch 1000,
float32: forward only, and a training step (extended forward with
pseudospikes + loss + exact backward). Also the non-leaky IF model.

Reference: the paper's public JAX code (Klos & Memmesheimer, spikegd) as
quoted in the issue: 1.8 ms/sample per training step, 0.6 ms/sample forward;
our goal is ≥ 10× faster (≤ 0.18 and ≤ 0.06 ms/sample).

Two input kinds: ``binary`` is the paper's MNIST set-up (each pixel on or off,
an "on" pixel spikes at one fixed time; their Nin_virtual = 1) with random
pixels, the case the reference figures are for; ``continuous`` gives every
input its own random time (784 distinct events per sample), a harder case.

QIF runs on its default engine, the numba kernel (`hwloop.models.ttfs.qif_kernel`);
``--torch`` also times the torch reference path in the same run, side by
side. The machine is shared: every figure is the best of ``--repeat`` runs,
the wall time beside the process CPU time, and the load average is printed.
OpenMP threads wait passively unless OMP_WAIT_POLICY is set (see below).

    python bench/bench_qif.py [--batch 1000] [--repeat 5] [--threads 2] [--torch] [--models qif,nlif]
"""

from __future__ import annotations

import argparse
import math
import os
import time

# torch's OpenMP workers spin-wait after each parallel region by default; on
# 2 cores they take the cores from the QIF kernel's threads (binary train step
# 0.041 instead of 0.029 ms/sample at load 1, 2.5x slower at load 8,
# measured). Passive waiting is set before torch loads; set OMP_WAIT_POLICY
# yourself to measure the other way.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hwloop.models import network_forward
from hwloop.models.ttfs import qif_kernel  # noqa: E402
from hwloop.models.ttfs.qif import extended_times, pseudo_network_forward  # noqa: E402
from hwloop.network import Layer, NeuronParams  # noqa: E402

REF_TRAIN_MS, REF_FWD_MS = 1.8, 0.6
GOAL = {"forward": REF_FWD_MS / 10, "train step": REF_TRAIN_MS / 10}
SIZES = (784, 100, 100, 10)
T = 2.0  # the paper's trial; τ = 6/π, I0 = 5/4 → Θ = 6


def build(model: str, rng: np.random.Generator, shift: float = 0.0):
    if model == "qif":
        neuron = NeuronParams(model="qif", tau_mem=6 / math.pi, tau_syn=6 / math.pi, options={"i0": 1.25, "v0": 0.5})
        scale = [0.5 / math.sqrt(n) * 3 for n in SIZES[:-1]]
        # --active: every neuron fires, as in a trained network (at the
        # default initialisation almost all are silent)
        mean = [shift, 3 * shift, 3 * shift]
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


def best_of(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best process CPU time (s) of ``repeat`` runs."""
    wall = cpu = math.inf
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def cases(model, layers, weights, x, B):
    if model == "qif":
        def fwd():
            return extended_times(layers, weights, x, T)

        def step():
            for w in weights:
                w.grad = None
            out = pseudo_network_forward(layers, weights, x, T)
            loss = torch.nn.functional.cross_entropy(-out[-1], torch.zeros(B, dtype=torch.long))
            loss.backward()
    else:
        def fwd():
            with torch.no_grad():
                return network_forward(layers, weights, x, T)

        def step():
            for w in weights:
                w.grad = None
            out = network_forward(layers, weights, x, T)[-1]
            out = torch.where(torch.isfinite(out), out, torch.full_like(out, T))
            torch.nn.functional.cross_entropy(-out, torch.zeros(B, dtype=torch.long)).backward()
    return (("forward", fwd), ("train step", step))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch", action="store_true", help="also time the QIF torch reference path (slow)")
    ap.add_argument("--models", default="qif,nlif", help="comma-separated: qif, nlif")
    ap.add_argument("--active", action="store_true",
                    help="QIF weights shifted up so that every neuron fires (default: the paper's init, mostly silent)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)  # the QIF kernel follows torch's thread count
    B = args.batch
    engines = ["numba"] + (["torch"] if args.torch else [])
    rows = {}
    print(f"theta/QIF network {'-'.join(map(str, SIZES))}, batch {B}, float32, {args.threads} threads; "
          f"ms per sample, best of {args.repeat} (wall; process CPU in brackets); "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; load average before: {os.getloadavg()[0]:.1f}")
    if not qif_kernel.available():
        print("numba is not importable: QIF runs on its torch path")
    print(f"{'case':38s} {'ours':>8s} {'(cpu)':>8s} {'JAX ref':>8s} {'speed-up':>9s} {'goal':>6s}")
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        rng = np.random.default_rng(0)
        layers, weights = build(model, rng, 0.04 if args.active and model == "qif" else 0.0)
        for kind in ("binary", "continuous"):
            x = inputs(kind, B, rng)
            silent = [float(torch.isinf(t).float().mean()) for t in network_forward(layers, weights, x, T)]
            for engine in (engines if model == "qif" else ["-"]):
                if model == "qif":
                    os.environ[qif_kernel.ENV_VAR] = engine
                for what, fn in cases(model, layers, weights, x, B):
                    fn()  # warm-up (and numba's one-off compilation, cached on disk)
                    wall, cpu = best_of(fn, args.repeat)
                    ms, cpu_ms = wall / B * 1e3, cpu / B * 1e3
                    key = f"{model} {kind} {what}" + (f" [{engine}]" if model == "qif" else "")
                    rows[key] = ms
                    if model == "qif":
                        ref = REF_FWD_MS if what == "forward" else REF_TRAIN_MS
                        extra = f"{ref:8.2f} {ref / ms:8.1f}x {'yes' if ms <= GOAL[what] else 'no':>6s}"
                    else:
                        extra = f"{'-':>8s} {'-':>9s} {'-':>6s}"
                    print(f"{key:38s} {ms:8.4f} {'(' + format(cpu_ms, '.4f') + ')':>8s} {extra}", flush=True)
            print(f"{'':38s} silent fraction per layer: {', '.join(f'{s:.2f}' for s in silent)}")
    os.environ.pop(qif_kernel.ENV_VAR, None)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return rows


if __name__ == "__main__":
    main()
