"""bitexact vs Lava: the same network and the same samples, one run.

    .venv/bin/python bench/bench_loihi.py [--net NET.hwnet] [--samples 1000] [--steps 100] [--bitexact-only]
    .venv/bin/python bench/bench_loihi.py --net NET.hwnet --kernel-baseline REV [--threads 1]

``--kernel-baseline REV`` only times the numba kernels of git revision REV
against this tree's on the same layers and inputs, alternating (both layers,
no backend), and checks that their spikes agree.

Without ``--net`` a Yin-Yang-shaped LIF network (4-120-3 + bias spikes) is
initialised at random (seeded). Inputs are the Yin-Yang test split through
the network's own encoding. Lava runs twice, and the two are reported apart:

* **fastest** (the speed figure): Lava fed its fastest way, the S samples
  as S parallel copies in one run, the input and every layer's bias spikes
  from *one* spike source (6 Lava processes for two layers, not 9: source,
  then per layer a block-diagonal ``Sparse`` and a ``TTFSLif``, plus one
  ``Sparse`` from the source to each later layer's bias rows), and only the
  output layer's first-spike steps read back (``Var.get`` of the hidden
  layers costs more than the run itself and inference does not need it).
  Its output layer is checked against bitexact's, spike for spike.
* **agreement check**: the ``lava-sim`` target as it runs (9 processes, every
  layer read), compared with bitexact spike for spike in every layer; its
  time is printed too, labelled, but it is not the speed figure.

Prints samples/s of each, the ratios (bitexact vs Lava fastest end to end,
and vs its ``run()`` alone), and the arithmetic bound (about 10 integer
operations per neuron per step, on this machine's cores, at an assumed 3e9
simple operations/s per core). Bitexact timings are wall time and process
CPU time (all threads), since the machine may be shared: CPU time over wall
time says how many cores the run really got. Exit status 1 when any
comparison disagrees.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

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


def lava_fastest(layers, steps: int, in_steps: np.ndarray) -> dict:
    """One Lava run of the batch, fed its fastest way (see the module doc): one
    spike source for inputs and biases, output layer read only. Call in a
    process of its own (`_lava_fastest_child`): Lava forks its process models.
    Same Lava time as `hwloop.backends.loihi.lava_runner` (inputs at step k+1,
    layer l's local step 0 at Lava step l+2, its bias sources one step earlier)."""
    from hwloop.backends.loihi.lava_compat import import_lava

    import_lava()
    from scipy.sparse import csr_matrix, hstack, identity, kron

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.sparse.process import Sparse
    from lava.utils.weightutils import SignMode

    from hwloop.backends.loihi.lava_procs.ttfs.ttfs import SpikeTimeSource, TTFSLif
    from hwloop.backends.loihi.lava_runner import lava_offset

    t0 = time.perf_counter()
    S, n_in = in_steps.shape

    def lava_steps(local, offset):
        local = np.asarray(local, dtype=np.int64)
        return np.where((local >= 0) & (local < steps), local + offset, -1)

    # one source: S*n_in input lines, then each layer's bias lines (shared by the copies)
    parts = [lava_steps(in_steps.reshape(-1), 1)]
    bias_cols = []
    col = S * n_in
    for li, layer in enumerate(layers):
        parts.append(lava_steps(layer.bias_steps, lava_offset(li) - 1))
        bias_cols.append((col, col + len(layer.bias_steps)))
        col += len(layer.bias_steps)
    n_src = col
    src = SpikeTimeSource(spike_step=np.concatenate(parts))
    keep, lifs = [src], []
    eye = identity(S, dtype=np.int32, format="csr")
    prev = None
    for li, layer in enumerate(layers):
        n = layer.weight.shape[1]
        kw = dict(weight_exp=int(layer.weight_exp), num_weight_bits=8, sign_mode=SignMode.MIXED)
        lif = TTFSLif(shape=(S * n,), du=int(layer.du), dv=int(layer.dv), vth=int(layer.vth),
                      bias_mant=np.tile(np.asarray(layer.bias_mant, dtype=np.int32), S),
                      bias_exp=np.tile(np.asarray(layer.bias_exp, dtype=np.int32), S), t_start=lava_offset(li))
        main_w = kron(eye, csr_matrix(np.asarray(layer.weight, dtype=np.int32).T), format="csr")
        a, b = bias_cols[li]
        # this layer's bias rows as a (S*n, n_src) matrix over the source's lines
        blocks = [csr_matrix((S * n, a), dtype=np.int32),
                  csr_matrix(np.tile(np.asarray(layer.bias_weight, dtype=np.int32).T, (S, 1))),
                  csr_matrix((S * n, n_src - b), dtype=np.int32)]
        bias_w = hstack([x for x in blocks if x.shape[1]], format="csr")
        if li == 0:  # the source feeds layer 0's input and bias rows through one connection
            w0 = hstack([main_w, bias_w[:, S * n_in:]], format="csr") if n_src > S * n_in else main_w
            conn = Sparse(weights=w0, **kw)
            src.s_out.connect(conn.s_in)
            conn.a_out.connect(lif.a_in)
            keep += [conn, lif]
        else:
            conn = Sparse(weights=main_w, **kw)
            prev.s_out.connect(conn.s_in)
            conn.a_out.connect(lif.a_in)
            keep += [conn, lif]
            if b > a:
                bconn = Sparse(weights=bias_w, **kw)
                src.s_out.connect(bconn.s_in)
                bconn.a_out.connect(lif.a_in)
                keep.append(bconn)
        lifs.append(lif)
        prev = lif
    t1 = time.perf_counter()
    last = lifs[-1]
    try:
        last.run(condition=RunSteps(num_steps=steps + len(layers)), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        t2 = time.perf_counter()
        t = np.asarray(last.t_spike.get(), dtype=np.int64).reshape(S, -1)
        t3 = time.perf_counter()
    finally:
        last.stop()
    local = t - lava_offset(len(layers) - 1)
    out = np.where((t >= 0) & (local < steps), local, -1)
    return {"out_steps": out, "build_s": t1 - t0, "run_s": t2 - t1, "read_s": t3 - t2, "processes": len(keep)}


def _lava_fastest_child(path: str) -> None:
    with open(path, "rb") as f:
        layers, steps, in_steps = pickle.load(f)
    res = lava_fastest(layers, steps, in_steps)
    with open(path, "wb") as f:
        pickle.dump(res, f)


def run_lava_fastest(layers, steps: int, in_steps: np.ndarray) -> dict:
    """`lava_fastest` in a fresh Python process; its wall time (build, run, read,
    stop) is measured in the child, the process start and Lava's import are not."""
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        pickle.dump((layers, int(steps), np.asarray(in_steps, np.int64)), f)
    try:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run([sys.executable, __file__, "--lava-fastest-child", f.name], env=env,
                             capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"Lava (fastest way) failed: {out.stderr[-2000:]}")
        with open(f.name, "rb") as g:
            return pickle.load(g)
    finally:
        os.unlink(f.name)


def compare_kernels(net: Network, t: np.ndarray, steps: int, rev: str, threads: int, rounds: int = 15) -> dict:
    """The numba kernel file of git revision ``rev`` against this tree's, the same
    layers and inputs, ``rounds`` alternating timings of both layers' kernels (no
    backend, no conversions to times): min and median wall and CPU ms per batch."""
    import importlib.util
    import inspect

    from hwloop.firmware_models.loihi import _numba_kernel as new_k

    src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:firmware_models/loihi/_numba_kernel.py"],
                         capture_output=True, text=True, check=True).stdout
    d = tempfile.mkdtemp(prefix="bitexact_kernel_")
    path = os.path.join(d, f"kernel_{rev}.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(f"kernel_{rev}", path)
    old_k = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old_k)
    old_prune = "prune_every" in inspect.signature(old_k.layer_kernel).parameters
    with open_target(f"bitexact?steps={steps}") as be:
        core = be.load(net).core
        k_in = be._compiled.to_steps(t)

    def prep(layer):
        valid = layer.bias_steps[(layer.bias_steps >= 0) & (layer.bias_steps < steps)]
        bias_step = np.zeros(steps, np.bool_)
        bias_step[valid] = True
        eff = layer.effective_bias.astype(np.int64)
        return (layer.weight.astype(np.int64), layer.weight_exp, layer.bias_input(steps), bias_step,
                int(valid.max()) if valid.size else -1, eff, bool(eff.any()), 4096 - (layer.du + 1), 4096 - layer.dv,
                layer.du + 1, layer.vth << 6, steps)

    regs = [prep(layer) for layer in core.layers]

    def run(kernel, prune):
        x = np.where((k_in >= 0) & (k_in < steps), k_in, steps).astype(np.int64)
        outs = []
        for layer, r in zip(core.layers, regs):
            o = np.empty((x.shape[0], layer.n_out), np.int64)
            kernel.layer_kernel(x, *r, *((4,) if prune else ()), o, threads=threads)
            outs.append(o)
            x = np.where(o >= 0, o, steps)
        return outs

    agree = all(np.array_equal(a, b) for a, b in zip(run(old_k, old_prune), run(new_k, False)))
    times = {"baseline": [], "this tree": []}
    for _ in range(rounds):
        for name, (k, pr) in (("baseline", (old_k, old_prune)), ("this tree", (new_k, False))):
            t0, c0 = time.perf_counter(), time.process_time()
            run(k, pr)
            times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    res = {"baseline": rev, "threads": threads, "samples": int(t.shape[0]), "agree": agree}
    for name, v in times.items():
        w, c = sorted(x[0] for x in v), sorted(x[1] for x in v)
        res[name] = {"wall_ms_min": w[0] * 1e3, "wall_ms_median": w[len(w) // 2] * 1e3,
                     "cpu_ms_min": c[0] * 1e3, "cpu_ms_median": c[len(c) // 2] * 1e3}
    b, n = res["baseline"], res["this tree"]
    res["speedup_wall_median"] = b["wall_ms_median"] / n["wall_ms_median"]
    res["speedup_cpu_median"] = b["cpu_ms_median"] / n["cpu_ms_median"]
    for name in ("baseline", "this tree"):
        r = res[name]
        print(f"{name:>10} ({rev if name == 'baseline' else 'HEAD+'}): wall {r['wall_ms_min']:.2f} min / "
              f"{r['wall_ms_median']:.2f} median ms, CPU {r['cpu_ms_min']:.2f} / {r['cpu_ms_median']:.2f} ms "
              f"per {res['samples']} samples, {threads} thread(s)")
    print(f"kernels   : this tree {res['speedup_wall_median']:.2f}x wall, {res['speedup_cpu_median']:.2f}x CPU "
          f"(medians of {rounds} alternating rounds); spikes agree: {agree}")
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default=None)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5, help="bitexact timing: best of N")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bitexact-only", action="store_true", help="skip Lava (no ratio, no agreement check)")
    ap.add_argument("--kernel-baseline", metavar="REV",
                    help="only compare the numba kernels with git revision REV's, side by side (no Lava)")
    ap.add_argument("--threads", type=int, default=None, help="--kernel-baseline: kernel threads (default: all)")
    ap.add_argument("--lava-fastest-child", help=argparse.SUPPRESS)  # internal: one Lava run in its own process
    args = ap.parse_args(argv)
    if args.lava_fastest_child:
        _lava_fastest_child(args.lava_fastest_child)
        return {"agree_spike_for_spike": True}
    net = Network.load(args.net) if args.net else random_yinyang_net()
    t = inputs(net, args.samples)
    S = args.samples
    if args.kernel_baseline:
        res = compare_kernels(net, t, args.steps, args.kernel_baseline, args.threads)
        res["agree_spike_for_spike"] = res["agree"]
        if args.json:
            print(json.dumps(res))
        return res

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
    from hwloop.backends.loihi.mapping import core_as_lava_layers

    layers = core_as_lava_layers(compiled.core)
    in_steps = compiled.to_steps(t)
    run_lava_fastest(layers, args.steps, in_steps[:2])  # Lava's own first-run costs (imports, caches)
    fast = run_lava_fastest(layers, args.steps, in_steps)
    fast_s = fast["build_s"] + fast["run_s"] + fast["read_s"]
    fast_agree = bool(np.array_equal(fast["out_steps"], m_be.info["spike_steps"][-1]))
    with open_target(f"lava-sim?steps={args.steps}&batch={S}") as ls:
        ls.load(net)
        ls.run(t[:2])  # start the worker and import Lava outside the timing
        t0 = time.perf_counter()
        m_ls = ls.run(t)
        ls_wall = time.perf_counter() - t0
    agree = all(np.array_equal(a, b) for a, b in zip(m_be.info["spike_steps"], m_ls.info["spike_steps"]))
    us = 1e6 / S
    res = {
        "network": net.summary(), "samples": S, "steps": args.steps,
        "bitexact_samples_per_s": S / be_s, "bitexact_us_per_sample": be_s * us,
        "bitexact_cpu_us_per_sample": be_cpu * us,
        "lava_fastest": {"processes": fast["processes"], "us_per_sample": fast_s * us,
                         "build_us_per_sample": fast["build_s"] * us, "run_us_per_sample": fast["run_s"] * us,
                         "read_us_per_sample": fast["read_s"] * us, "output_layer_agrees": fast_agree},
        "speedup_vs_lava_fastest": fast_s / be_s, "speedup_vs_lava_fastest_run_only": fast["run_s"] / be_s,
        "agreement_run": {"target": "lava-sim", "layers_read": len(net.layers), "us_per_sample": ls_wall * us,
                          "run_only_us_per_sample": m_ls.target_time_s * us, "agree_every_layer": agree},
        "speedup_vs_agreement_run": ls_wall / be_s,
        "agree_spike_for_spike": agree and fast_agree, "arith_bound_us_per_sample": bound_us, "cores": cores,
        "spiking_fraction": [float(np.isfinite(x).mean()) for x in m_be.times],
    }
    lf = res["lava_fastest"]
    print(compiled.format_report())
    print(f"bitexact      : {res['bitexact_samples_per_s']:10.0f} samples/s ({res['bitexact_us_per_sample']:.2f} us/sample wall, "
          f"{res['bitexact_cpu_us_per_sample']:.2f} us/sample CPU)")
    print(f"Lava fastest  : {1e6 / lf['us_per_sample']:10.1f} samples/s ({lf['us_per_sample']:.0f} us/sample: build "
          f"{lf['build_us_per_sample']:.0f}, run() {lf['run_us_per_sample']:.0f}, output layer read "
          f"{lf['read_us_per_sample']:.0f}; {lf['processes']} processes, {S} parallel copies)")
    print(f"RATIO         : bitexact is {res['speedup_vs_lava_fastest']:.0f}x Lava fed its fastest way "
          f"({res['speedup_vs_lava_fastest_run_only']:.0f}x vs its run() alone)")
    print(f"agreement run : lava-sim target, every layer read: {res['agreement_run']['us_per_sample']:.0f} us/sample "
          f"({res['agreement_run']['run_only_us_per_sample']:.0f} inside run()); bitexact {res['speedup_vs_agreement_run']:.0f}x "
          f"that (not a speed figure: it reads every hidden neuron)")
    print(f"bound         : ~{bound_us:.2f} us/sample (10 int ops x {n_neurons} neurons x {args.steps} steps / {cores} cores)")
    print(f"agree         : every layer {agree} (agreement run); output layer {fast_agree} (fastest run)")
    if args.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    r = main()
    sys.exit(0 if r["agree_spike_for_spike"] else 1)
