"""A torch training step right after a `bitexact` run in the same process,
against a fresh process: the thread-pool clash of issue #18 item 4.

Each measurement is its own Python process that imports torch first (as a
user's script might), then, by mode:

* ``fresh``: nothing else;
* ``after-bitexact``: `hwloop.evaluate` of the pretrained Yin-Yang LIF
  network on ``bitexact`` (1000 test samples), what ``hwloop eval`` does;
* ``after-numba-prange`` (control): one run of a tiny numba ``prange``
  loop, which starts numba's OpenMP pool the way the `bitexact` kernel did
  before it moved to plain threads. This row shows what the benchmark
  measures when the clash is there; it is not something hwloop does.

and then times ``--steps`` training steps of what ``hwloop train`` runs
for a LIF Yin-Yang network (4+bias-120-3, batch 150, float64, forward
through `hwloop.models.network_forward`, cross-entropy, backward, Adam) at
``--threads`` torch threads. Per process the figure is the 10th percentile
of the step times (on this shared machine the low quantile is what the
code can do; the median is printed too, and the 10th percentile of the
process CPU time per step, which spinning OpenMP workers in the process
raise and other processes on the machine do not). Modes alternate process by
process for ``--rounds`` rounds, so that all see the same load; each mode's
figure is the median over its processes, printed with its ratio to
``fresh``. OMP_WAIT_POLICY is left as the caller has it (unset: torch's
default, active spinning).

    .venv/bin/python bench/bench_threads.py [--rounds 5] [--threads 2] [--steps 300] [--no-control] [--json]

Exit status 1 when ``after-bitexact`` is more than 10 % slower than ``fresh``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("fresh", "after-bitexact", "after-numba-prange")
BATCH, T_MAX = 150, 4.0


def _problem(threads: int):
    """The Yin-Yang-sized LIF network of `bench_lif.py` (4+bias-120-3), float64,
    and one training step of batch 150 as `hwloop train` does it (forward
    through `network_forward`, the TTFS cross-entropy, backward, Adam)."""
    import numpy as np
    import torch

    from hwloop.models import network_forward
    from hwloop.network import Layer, NeuronParams

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0.0, 1.0, (BATCH, 2))
    t_in = torch.tensor(2.0 * np.concatenate([xy, 1.0 - xy], axis=1))
    labels = torch.tensor(rng.integers(0, 3, BATCH))
    neuron = NeuronParams(model="lif", tau_syn=1.0, tau_mem=1.0, threshold=1.0)
    w = [rng.normal(1.5, 0.8, (5, 120)), rng.normal(0.5, 0.8, (121, 3))]
    layers = [Layer(weight=w[0], neuron=neuron, bias_times=(0.9,)), Layer(weight=w[1], neuron=neuron, bias_times=(0.9,))]
    weights = [torch.tensor(x, requires_grad=True) for x in w]
    opt = torch.optim.Adam(weights, lr=1e-4)  # small: the network stays the same kind of network over the steps

    def step():
        opt.zero_grad(set_to_none=True)
        t = network_forward(layers, weights, t_in, T_MAX)[-1]
        t = torch.where(torch.isfinite(t), t, torch.full_like(t, T_MAX))
        torch.nn.functional.cross_entropy(-t / 0.2, labels).backward()
        opt.step()

    return step


def child(mode: str, threads: int, steps: int) -> dict:
    import torch  # first, before anything of hwloop or numba

    sys.path.insert(0, str(ROOT))
    import hwloop
    from hwloop.pretrained import path as pretrained

    t0 = time.perf_counter()
    if mode == "after-bitexact":
        r = hwloop.evaluate(pretrained("yinyang-lif.hwnet"), target="bitexact", limit=1000)
        assert r["n"] == 1000
    elif mode == "after-numba-prange":
        import numba as nb
        import numpy as np

        @nb.njit(parallel=True)
        def touch(x):
            for i in nb.prange(x.shape[0]):
                x[i] += 1.0

        touch(np.zeros(1024))
    before = time.perf_counter() - t0
    step = _problem(threads)
    for _ in range(10):  # warm-up
        step()
    seconds, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    seconds.sort()
    cpu.sort()
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None  # numba's parallel pool never started in this process
    return {"mode": mode, "threads": threads, "steps": steps, "p10_s": seconds[len(seconds) // 10],
            "median_s": seconds[len(seconds) // 2], "cpu_p10_s": cpu[len(cpu) // 10], "before_seconds": before, "numba_threading_layer": layer,
            "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch threads (hwloop train --threads)")
    p.add_argument("--steps", type=int, default=300, help="timed training steps per process")
    p.add_argument("--no-control", action="store_true", help="skip the after-numba-prange control row")
    p.add_argument("--json", action="store_true")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one process's measurement
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(child(args.one, args.threads, args.steps)))
        return 0
    out = sys.stderr if args.json else sys.stdout
    modes = MODES[:2] if args.no_control else MODES
    print(f"load average before: {os.getloadavg()[0]:.1f}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"torch threads {args.threads}; {args.rounds} rounds x {len(modes)} processes, {args.steps} steps each",
          file=out, flush=True)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for rnd in range(args.rounds):
        for m in modes:
            res = subprocess.run([sys.executable, __file__, "--one", m, "--threads", str(args.threads),
                                  "--steps", str(args.steps)], capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stderr[-3000:], file=sys.stderr)
                return 2
            r = json.loads(res.stdout.strip().splitlines()[-1])
            runs[m].append(r)
            print(f"  round {rnd + 1} {m:<20} step p10 {1e3 * r['p10_s']:7.2f} ms  median {1e3 * r['median_s']:7.2f} ms"
                  f"  CPU p10 {1e3 * r['cpu_p10_s']:7.2f} ms"
                  f"  (numba pool: {r['numba_threading_layer']})", file=out, flush=True)
    fresh = statistics.median(r["p10_s"] for r in runs["fresh"])
    fresh_med = statistics.median(r["median_s"] for r in runs["fresh"])
    rows = []
    print(f"\nLIF Yin-Yang training step (batch 150, float64, {args.threads} torch threads); median over "
          f"{args.rounds} processes:", file=out)
    fresh_cpu = statistics.median(r["cpu_p10_s"] for r in runs["fresh"])
    print(f"  {'mode':<20} {'p10 step':>10} {'ratio':>7} {'median step':>12} {'ratio':>7} {'p10 CPU':>10} {'ratio':>7}",
          file=out)
    for m in modes:
        p10 = statistics.median(r["p10_s"] for r in runs[m])
        med = statistics.median(r["median_s"] for r in runs[m])
        cp = statistics.median(r["cpu_p10_s"] for r in runs[m])
        rows.append({"mode": m, "p10_step_ms": round(1e3 * p10, 3), "ratio_to_fresh": round(p10 / fresh, 3),
                     "median_step_ms": round(1e3 * med, 3), "median_ratio_to_fresh": round(med / fresh_med, 3),
                     "cpu_p10_step_ms": round(1e3 * cp, 3), "cpu_ratio_to_fresh": round(cp / fresh_cpu, 3),
                     "numba_threading_layer": runs[m][-1]["numba_threading_layer"],
                     "p10_runs_ms": [round(1e3 * r["p10_s"], 3) for r in runs[m]]})
        print(f"  {m:<20} {1e3 * p10:8.2f} ms {p10 / fresh:6.2f}x {1e3 * med:10.2f} ms {med / fresh_med:6.2f}x "
              f"{1e3 * cp:8.2f} ms {cp / fresh_cpu:6.2f}x", file=out)
    after = next(r for r in rows if r["mode"] == "after-bitexact")["ratio_to_fresh"]
    ok = after <= 1.10
    print(f"a training step after a bitexact run: {after:.2f}x a fresh process's "
          f"({'within' if ok else 'NOT within'} 10 %); load average after: {os.getloadavg()[0]:.1f}", file=out)
    if args.json:
        print(json.dumps({"bench": "threads", "threads": args.threads, "rounds": args.rounds, "steps": args.steps,
                          "rows": rows, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
