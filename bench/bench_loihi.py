"""bitexact vs lava-sim: the same network and the same samples, one run.

    .venv/bin/python bench/bench_loihi.py [--net NET.hwnet] [--samples 1000] [--steps 100] [--bitexact-only]

Without ``--net`` a Yin-Yang-shaped LIF network (4-120-3 + bias spikes) is
initialised at random (seeded). Inputs are the Yin-Yang test split through
the network's own encoding. Prints samples/s of each target, their ratio,
whether they agreed spike for spike, and the arithmetic bound (about 10
integer operations per neuron per step, on this machine's cores, at an
assumed 3e9 simple operations/s per core). Bitexact timings are wall time and
process CPU time (all threads), since the machine may be shared: CPU time
over wall time says how many cores the run really got.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hwloop.backends import open_target  # noqa: E402
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding  # noqa: E402


def random_yinyang_net(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    p = NeuronParams("lif", tau_syn=1.0, tau_mem=1.0, threshold=1.0)
    l0 = Layer(rng.normal(1.0, 1.5, (5, 120)), p, bias_times=(0.9,))
    l1 = Layer(rng.normal(0.3, 1.0, (121, 3)), p, bias_times=(0.9,))
    enc = InputEncoding(4, t_at_min=0.15, t_at_max=2.0)
    return Network((l0, l1), enc, OutputDecoding(("yin", "yang", "dot")), t_max=4.0)


def inputs(net: Network, n: int) -> np.ndarray:
    try:
        from hwloop.data import load_dataset

        x = load_dataset("yinyang", "test").x
    except Exception:  # data module missing: uniform points
        x = np.random.default_rng(1).uniform(0, 1, (n, 2))
        x = np.concatenate([x, 1 - x], axis=1)
    x = np.resize(x, (n, x.shape[1]))
    return net.encoding.encode(x)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default=None)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5, help="bitexact timing: best of N")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bitexact-only", action="store_true", help="skip Lava (no ratio, no agreement check)")
    args = ap.parse_args(argv)
    net = Network.load(args.net) if args.net else random_yinyang_net()
    t = inputs(net, args.samples)
    S = args.samples

    with open_target(f"bitexact?steps={args.steps}") as be:
        compiled = be.load(net)
        be.run(t[:8])  # compile the numba kernel outside the timing
        runs, cpus = [], []
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            m_be = be.run(t)
            runs.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        be_s = min(runs)
        be_cpu = min(cpus)
    n_neurons = sum(layer.n_out for layer in net.layers)
    cores = os.cpu_count() or 1
    bound_us = 10 * n_neurons * args.steps / (cores * 3e9) * 1e6
    if args.bitexact_only:
        res = {"network": net.summary(), "samples": S, "steps": args.steps,
               "bitexact_samples_per_s": S / be_s, "bitexact_us_per_sample": be_s / S * 1e6,
               "bitexact_cpu_us_per_sample": be_cpu / S * 1e6, "arith_bound_us_per_sample": bound_us,
               "cores": cores, "agree_spike_for_spike": True}
        print(compiled.format_report())
        print(f"bitexact : {res['bitexact_samples_per_s']:10.0f} samples/s ({res['bitexact_us_per_sample']:.2f} us/sample wall, "
              f"{res['bitexact_cpu_us_per_sample']:.2f} us/sample CPU)")
        print(f"bound    : ~{bound_us:.2f} us/sample (10 int ops x {n_neurons} neurons x {args.steps} steps / {cores} cores)")
        if args.json:
            print(json.dumps(res))
        return res
    with open_target(f"lava-sim?steps={args.steps}&batch={S}") as ls:
        ls.load(net)
        ls.run(t[:2])  # start the worker and import Lava outside the timing
        t0 = time.perf_counter()
        m_ls = ls.run(t)
        ls_wall = time.perf_counter() - t0
    agree = all(np.array_equal(a, b) for a, b in zip(m_be.info["spike_steps"], m_ls.info["spike_steps"]))
    res = {
        "network": net.summary(), "samples": S, "steps": args.steps,
        "bitexact_samples_per_s": S / be_s, "bitexact_us_per_sample": be_s / S * 1e6,
        "bitexact_cpu_us_per_sample": be_cpu / S * 1e6,
        "lava_sim_samples_per_s": S / ls_wall, "lava_sim_us_per_sample": ls_wall / S * 1e6,
        "lava_sim_run_only_us_per_sample": m_ls.target_time_s / S * 1e6,
        "speedup": ls_wall / be_s, "speedup_vs_lava_run_only": m_ls.target_time_s / be_s,
        "agree_spike_for_spike": agree, "arith_bound_us_per_sample": bound_us, "cores": cores,
        "spiking_fraction": [float(np.isfinite(x).mean()) for x in m_be.times],
    }
    print(compiled.format_report())
    print(f"bitexact : {res['bitexact_samples_per_s']:10.0f} samples/s ({res['bitexact_us_per_sample']:.2f} us/sample wall, "
          f"{res['bitexact_cpu_us_per_sample']:.2f} us/sample CPU)")
    print(f"lava-sim : {res['lava_sim_samples_per_s']:10.1f} samples/s ({res['lava_sim_us_per_sample']:.0f} us/sample incl. "
          f"building {S} parallel copies, "
          f"{res['lava_sim_run_only_us_per_sample']:.0f} us inside Lava's run())")
    print(f"ratio    : bitexact is {res['speedup']:.0f}x faster ({res['speedup_vs_lava_run_only']:.0f}x vs run() alone)")
    print(f"bound    : ~{bound_us:.2f} us/sample (10 int ops x {n_neurons} neurons x {args.steps} steps / {cores} cores)")
    print(f"agree    : {agree} (spike for spike, every layer)")
    if args.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    r = main()
    sys.exit(0 if r["agree_spike_for_spike"] else 1)
