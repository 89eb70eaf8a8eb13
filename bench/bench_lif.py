"""Speed of the LIF first-spike-time model on a Yin-Yang-sized network.

5000 samples through 5 -> 120 -> 3 (4 features + 1 bias spike into 120
hidden neurons, + 1 bias spike into 3 outputs), tau_m = tau_s = 1, theta = 1,
input times in [0, 2], weights N(1.5, 0.8) and N(0.5, 0.8) (the sizes and
initialisation of Göltz et al. 2021's Yin-Yang experiment). Reports

* one training epoch: batches of 150, forward + backward through
  `network_forward` + Adam step, float64 (seconds);
* inference throughput with no autograd, float64 and float32 (samples/s);
* beside them, in the same run, the **arithmetic bound** of the epoch: a
  fused numba loop doing only the arithmetic the closed form needs --
  per (sample, input, neuron) term one exponential and ~10 flops forward,
  one exponential and ~15 flops backward (963 terms per sample), and one
  Lambert W per (sample, neuron) -- with no control flow, no sorting, no
  framework; timed on one thread and divided by ``--threads`` (perfect
  scaling), so it is optimistic. The epoch is reported as a multiple of it.

Engines: ``--engine numba`` (the fused kernel, default where it applies) or
``torch`` (the vectorised reference path); see hwloop/models/ttfs/lif_kernel.py.

``--profile`` splits the epoch (this tree's kernel, ``--threads``): the
kernel's calls (forward and backward, each layer), the rest of
`LIF.spike_times` / `LIF.vjp` (checks, conversions), and the torch glue
around them (`network_forward`'s autograd and bias spikes, the loss,
backward's autograd, Adam), best of ``--repeats`` epochs.

``--baseline REV`` also times the kernel module of git revision REV
(``hwloop/models/ttfs/lif_kernel.py`` as it was there, in this process)
against this tree's: epochs alternate, REV's and this tree's, for
``--repeats`` rounds, so both see the same load on a shared machine; it
prints min and median wall and CPU time of each and their ratios.

Usage: ``python bench/bench_lif.py [--threads 2] [--repeats 5] [--engine auto|numba|torch] [--baseline REV] [--json]``.
The points are uniform in the unit square (the Yin-Yang class labels do not
matter for speed, only the input times and network shape do).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba as nb

import numpy as np
import torch

from hwloop.models import network_forward  # noqa: E402
from hwloop.models.ttfs.lif_kernel import _lambertw_neg  # noqa: E402
from hwloop.network import Layer, NeuronParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_SAMPLES, BATCH = 5000, 150
T_MAX = 4.0  # trial length in units of tau_s; inputs in [0, 2], bias at 0.9


def make_problem(seed: int = 0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0.0, 1.0, (N_SAMPLES, 2))
    feats = np.concatenate([xy, 1.0 - xy], axis=1)
    t_in = torch.tensor(2.0 * feats, dtype=dtype)  # (N, 4) times in [0, 2]
    labels = torch.tensor(rng.integers(0, 3, N_SAMPLES))
    neuron = NeuronParams(model="lif", tau_syn=1.0, tau_mem=1.0, threshold=1.0)
    w1 = rng.normal(1.5, 0.8, (5, 120))
    w2 = rng.normal(0.5, 0.8, (121, 3))
    layers = [Layer(weight=w1, neuron=neuron, bias_times=(0.9,)),
              Layer(weight=w2, neuron=neuron, bias_times=(0.9,))]
    return layers, [w1, w2], t_in, labels


def loss_fn(t_out: torch.Tensor, labels: torch.Tensor, t_max: float) -> torch.Tensor:
    """Göltz et al.'s cross-entropy on negative times (xi = 0.2), silent = t_max."""
    t = torch.where(torch.isfinite(t_out), t_out, torch.full_like(t_out, t_max))
    return torch.nn.functional.cross_entropy(-t / 0.2, labels)


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call. On a machine shared
    with other work, CPU time of a single-threaded run is the better estimate
    of the quiet wall time; wall time includes waiting for a core."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def train_epoch(layers, weights, t_in, labels, opt) -> tuple[float, float]:
    def run():
        for i in range(0, t_in.shape[0], BATCH):
            opt.zero_grad(set_to_none=True)
            out = network_forward(layers, weights, t_in[i:i + BATCH], T_MAX)[-1]
            loss = loss_fn(out, labels[i:i + BATCH], T_MAX)
            loss.backward()
            opt.step()
    return _timed(run)


def inference(layers, weights, t_in) -> tuple[float, float]:
    def run():
        with torch.no_grad():
            network_forward(layers, weights, t_in, T_MAX)
    return _timed(run)


@nb.njit(cache=True, error_model="numpy")
def _bound_loop(s, c, w1, w2, reps):
    """The closed form's arithmetic on the bench's shapes (see the module
    docstring), data-dependent so that nothing folds away."""
    acc = 0.0
    B = s.shape[0]
    for _ in range(reps):
        for b in range(B):
            for w in (w1, w2):
                n, n_out = w.shape
                for j in range(n_out):
                    a = 0.0
                    cc = 0.0
                    vd = 0.0
                    gt = 0.0
                    cj = c[b, j % c.shape[1]]
                    for i in range(n):
                        si = s[b, i % s.shape[1]]
                        # forward: e^s, running sums, clamped peak, threshold test (~10 flops)
                        x = w[i, j] * math.exp(si)
                        a += x
                        cc += x * si
                        sc = min(max(1.0 + cc / (a + 1.0), si), si + 1.0)
                        acc += (a * sc - cc) * 1e-9
                        # backward: e^{-x}, eps, eps', V' and the two contributions (~15 flops)
                        xm = (si - cj) * -1.0
                        e = math.exp(xm)
                        ne = xm * e
                        d = (e + ne) * w[i, j]
                        vd += d
                        gt += ne * (cj + 0.5) + d * 0.25
                    acc += vd * 1e-9 + gt * 1e-9
                    acc += _lambertw_neg(-0.3 + 0.05 * math.sin(cj))
    return acc


def arithmetic_bound(threads: int, repeats: int) -> tuple[float, float]:
    """(wall seconds per epoch on ``threads`` threads, CPU seconds per epoch)
    of the arithmetic alone (5000 samples, see above)."""
    rng = np.random.default_rng(1)
    s = rng.uniform(0.0, 2.0, (N_SAMPLES, 5))
    c = rng.uniform(0.0, 3.0, (N_SAMPLES, 7))
    w1 = rng.normal(1.5, 0.8, (5, 120))
    w2 = rng.normal(0.5, 0.8, (121, 3))
    _bound_loop(s[:10], c[:10], w1, w2, 1)  # compile
    wall, cpu = min(_timed(lambda: _bound_loop(s, c, w1, w2, 1)) for _ in range(repeats))
    return wall / threads, cpu


def profile_epoch(repeats: int, mod=None) -> dict:
    """Where an epoch's time goes (see the module docstring): seconds per
    part, of the fastest of ``repeats`` epochs; wrapping costs ~1 us per call.
    ``mod``: another kernel module (`baseline_kernel`) instead of this tree's."""
    import hwloop.models.ttfs.lif as lif_mod

    own = lif_mod.lif_kernel
    k = mod if mod is not None else own
    lif_mod.lif_kernel = k
    acc: dict = {}
    saved = {}

    def wrap(owner, name, key):
        f = getattr(owner, name)
        saved[(owner, name)] = f

        def g(*a, **kw):
            w0 = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                kk = key(a) if callable(key) else key
                acc[kk] = acc.get(kk, 0.0) + time.perf_counter() - w0
        setattr(owner, name, g)

    # this tree calls the kernels through launchers (t first); older trees
    # called the chunk kernels directly (c0, c1, t, ...)
    fwd, bwd, ti = ("_forward_launch", "_backward_launch", 0) if hasattr(k, "_forward_launch") else \
        ("_forward_chunks", "_backward_chunks", 2)
    layer = lambda a: "layer 1" if a[ti].shape[1] == 5 else "layer 2"  # noqa: E731
    wrap(k, fwd, lambda a: f"kernel forward, {layer(a)}")
    wrap(k, bwd, lambda a: f"kernel backward, {layer(a)}")
    wrap(lif_mod.LIF, "spike_times", "LIF.spike_times")
    wrap(lif_mod.LIF, "vjp", "LIF.vjp")
    os.environ["HWLOOP_LIF_ENGINE"] = "numba"
    layers, ws, t_in, labels = make_problem()
    weights = [torch.tensor(w, requires_grad=True) for w in ws]
    opt = torch.optim.Adam(weights, lr=0.005)

    def run():
        for i in range(0, t_in.shape[0], BATCH):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = network_forward(layers, weights, t_in[i:i + BATCH], T_MAX)[-1]
            t1 = time.perf_counter()
            loss = loss_fn(out, labels[i:i + BATCH], T_MAX)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            opt.step()
            t4 = time.perf_counter()
            for kk, v in (("forward", t1 - t0), ("loss", t2 - t1), ("backward", t3 - t2), ("Adam", t4 - t3)):
                acc[kk] = acc.get(kk, 0.0) + v

    try:
        run()  # warm-up
        best = None
        for _ in range(repeats):
            acc.clear()
            wall, cpu = _timed(run)
            if best is None or wall < best[0]:
                best = (wall, cpu, dict(acc))
    finally:
        for (owner, name), f in saved.items():
            setattr(owner, name, f)
        lif_mod.lif_kernel = own
    wall, cpu, a = best
    kf = sum(v for kk, v in a.items() if kk.startswith("kernel forward"))
    kb = sum(v for kk, v in a.items() if kk.startswith("kernel backward"))
    parts = {kk: v for kk, v in sorted(a.items()) if kk.startswith("kernel")}
    parts["LIF.spike_times around the kernel"] = a["LIF.spike_times"] - kf
    parts["LIF.vjp around the kernel"] = a["LIF.vjp"] - kb
    parts["network_forward around LIF.spike_times (autograd, bias spikes)"] = a["forward"] - a["LIF.spike_times"]
    parts["loss"] = a["loss"]
    parts["backward around LIF.vjp (autograd)"] = a["backward"] - a["LIF.vjp"]
    parts["Adam"] = a["Adam"]
    return {"epoch_s": wall, "epoch_cpu_s": cpu, "parts_s": parts}


def baseline_kernel(rev: str):
    """The LIF kernel module of git revision ``rev``, loaded beside this tree's
    (as package ``hwloop.models.ttfs``, so its relative imports resolve)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:hwloop/models/ttfs/lif_kernel.py"],
                         capture_output=True, text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="lif_kernel_"), "lif_kernel_baseline.py")
    with open(path, "w") as f:
        f.write(src.replace("cache=True", "cache=False"))  # no cache files for a one-off copy
    name = "hwloop.models.ttfs.lif_kernel_baseline"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def compare_with_baseline(rev: str, rounds: int) -> dict:
    """Epochs alternating between ``rev``'s kernel module and this tree's (see
    the module docstring): min / median wall and CPU seconds of each."""
    import hwloop.models.ttfs.lif as lif_mod

    mods = {"baseline": baseline_kernel(rev), "this tree": lif_mod.lif_kernel}
    os.environ["HWLOOP_LIF_ENGINE"] = "numba"

    def epoch(mod):
        lif_mod.lif_kernel = mod
        try:
            layers, ws, t_in, labels = make_problem()
            weights = [torch.tensor(w, requires_grad=True) for w in ws]
            opt = torch.optim.Adam(weights, lr=0.005)
            return train_epoch(layers, weights, t_in, labels, opt)
        finally:
            lif_mod.lif_kernel = mods["this tree"]

    for mod in mods.values():
        epoch(mod)  # compile, warm up
    times = {k: [] for k in mods}
    for _ in range(rounds):
        for k, mod in mods.items():
            times[k].append(epoch(mod))
    res = {"baseline_rev": rev}
    for k, v in times.items():
        wall, cpu = [x[0] for x in v], [x[1] for x in v]
        res[k] = {"wall_min_s": min(wall), "wall_median_s": statistics.median(wall),
                  "cpu_min_s": min(cpu), "cpu_median_s": statistics.median(cpu)}
    b, n = res["baseline"], res["this tree"]
    res["speedup_wall_min"] = b["wall_min_s"] / n["wall_min_s"]
    res["speedup_wall_median"] = b["wall_median_s"] / n["wall_median_s"]
    res["speedup_cpu_min"] = b["cpu_min_s"] / n["cpu_min_s"]
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--engine", choices=("auto", "numba", "torch"), default="auto")
    ap.add_argument("--torch", action="store_true", help="also time the torch path's epoch, same run")
    ap.add_argument("--profile", action="store_true", help="also split this tree's epoch into its parts")
    ap.add_argument("--baseline", metavar="REV", help="also time git revision REV's kernel module, alternating")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    def epoch(engine):
        os.environ["HWLOOP_LIF_ENGINE"] = engine
        layers, ws, t_in, labels = make_problem()
        weights = [torch.tensor(w, requires_grad=True) for w in ws]
        opt = torch.optim.Adam(weights, lr=0.005)
        train_epoch(layers, weights, t_in, labels, opt)  # warm-up
        return min(train_epoch(layers, weights, t_in, labels, opt) for _ in range(args.repeats))

    load0 = os.getloadavg()[0]
    wall, cpu = epoch(args.engine)
    bound, bound_cpu = arithmetic_bound(args.threads, args.repeats)
    result = {"threads": args.threads, "engine": args.engine, "epoch_s": wall, "epoch_cpu_s": cpu,
              "bound_epoch_s": bound, "epoch_over_bound": wall / bound,
              "bound_epoch_cpu_s": bound_cpu, "epoch_cpu_over_bound_cpu": cpu / bound_cpu}
    if args.torch:
        result["torch_epoch_s"], result["torch_epoch_cpu_s"] = epoch("torch")
    if args.profile:
        result["profile"] = profile_epoch(args.repeats)
    if args.baseline:
        result["baseline"] = compare_with_baseline(args.baseline, args.repeats)
        if args.profile:
            result["baseline"]["profile"] = profile_epoch(args.repeats, baseline_kernel(args.baseline))
    os.environ["HWLOOP_LIF_ENGINE"] = args.engine
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).split(".")[-1]
        layers, ws, t_in, _ = make_problem(dtype=dtype)
        weights = [torch.tensor(w, dtype=dtype) for w in ws]
        inference(layers, weights, t_in)  # warm-up
        wall, cpu = min(inference(layers, weights, t_in) for _ in range(args.repeats))
        result[f"inference_{name}_samples_per_s"] = N_SAMPLES / wall
        result[f"inference_{name}_samples_per_cpu_s"] = N_SAMPLES / cpu
    result["load_avg"] = (load0, os.getloadavg()[0])
    if args.json:
        print(json.dumps(result))
    else:
        r = result
        print(f"threads: {r['threads']}, engine {r['engine']} (best of {args.repeats}; CPU time in brackets; "
              f"load average {r['load_avg'][0]:.2f} at the start, {r['load_avg'][1]:.2f} at the end)")
        print(f"training epoch (5000 samples, batch {BATCH}, float64): {r['epoch_s']:.3f} s "
              f"[{r['epoch_cpu_s']:.3f} s]; arithmetic bound {r['bound_epoch_s']:.3f} s on {r['threads']} "
              f"thread(s) [{r['bound_epoch_cpu_s']:.3f} CPU-s]: {r['epoch_over_bound']:.2f}x the bound "
              f"[{r['epoch_cpu_over_bound_cpu']:.2f}x in CPU-s]")
        if args.torch:
            print(f"torch path epoch: {r['torch_epoch_s']:.3f} s [{r['torch_epoch_cpu_s']:.3f} s]: the kernel "
                  f"{r['torch_epoch_s'] / r['epoch_s']:.1f}x faster [{r['torch_epoch_cpu_s'] / r['epoch_cpu_s']:.1f}x]")
        profiles = [("this tree", r.get("profile"))]
        if args.baseline:
            profiles.append((args.baseline, r["baseline"].get("profile")))
        for who, pr in profiles:
            if pr is None:
                continue
            print(f"profile of {who} (best of {args.repeats} epochs: {pr['epoch_s'] * 1e3:.1f} ms, "
                  f"{pr['epoch_cpu_s'] * 1e3:.1f} CPU-ms):")
            for kk, v in pr["parts_s"].items():
                print(f"  {kk}: {v * 1e3:.1f} ms")
        if args.baseline:
            c = r["baseline"]
            b, n = c["baseline"], c["this tree"]
            print(f"kernel of {args.baseline} against this tree's, {args.repeats} alternating epochs: "
                  f"{b['wall_min_s']:.3f} / {n['wall_min_s']:.3f} s min wall (median {b['wall_median_s']:.3f} / "
                  f"{n['wall_median_s']:.3f}), {b['cpu_min_s']:.3f} / {n['cpu_min_s']:.3f} CPU-s: this tree "
                  f"{c['speedup_wall_min']:.2f}x faster (median {c['speedup_wall_median']:.2f}x, CPU "
                  f"{c['speedup_cpu_min']:.2f}x)")
        for name in ("float64", "float32"):
            print(f"inference {name}: {r[f'inference_{name}_samples_per_s']:,.0f} samples/s "
                  f"[{r[f'inference_{name}_samples_per_cpu_s']:,.0f} per CPU-s]")
    return result


if __name__ == "__main__":
    main()
