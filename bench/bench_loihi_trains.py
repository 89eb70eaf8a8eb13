"""bitexact vs Lava on a spike-train (CUBA) network: the same network and the same samples, one run.

    .venv/bin/python bench/bench_loihi_trains.py [--net NET.hwnet] [--samples 200] [--lava-batch B] [--json]

Without ``--net`` a Randman-shaped network (20-128-10, 100 steps of 2 ms, the
stork example's sizes and time constants; hidden LIF with recurrence, a
non-spiking max-membrane readout) is drawn at random (seeded, weights scaled
so the hidden layer fires ~1-3 spikes per neuron and trial). Inputs: the
Randman test split (the STORK parameters), as the trainer encodes it.

bitexact is the target itself (``run_raster``: every layer's events and the
scores, i.e. a full `Measurement`), best of ``--repeat``. Lava is fed its
fastest way: the integer layers on Lava's standard LIF + Dense (+ recurrent
Dense) with the batch as parallel copies, ``--lava-batch`` samples per Lava
run (default: what the ``lava-sim`` target uses, the largest block-diagonal
Dense under 64 MB), reading only the outputs (the readout's spikes and its
membrane, which the max-membrane decoding needs). Both are checked to agree:
output spikes and scores identical. Timings are wall time; bitexact's process
CPU time is printed too (the machine may be shared).

``--software`` (no Lava) instead compares bitexact with the software target on
the same samples: spike agreement per layer (|both| / |either| of the
(step, sample, neuron) spikes), against the network as it is and against the
network the registers stand for (dequantised weights and decays: what is left
is integer rounding of the state), decision agreement, and the accuracy on
the Randman test labels.
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


def random_randman_net(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    hid = NeuronParams.cuba(dt=2.0, current_decay=1 - np.exp(-2 / 10), voltage_decay=1 - np.exp(-2 / 20))
    out = NeuronParams.cuba(dt=2.0, current_decay=1 - np.exp(-2 / 10), voltage_decay=1 - np.exp(-2 / 200),
                            spiking=False)
    layers = (Layer(rng.normal(0.0, 0.2, (20, 128)), hid, recurrent=rng.normal(0, 0.02, (128, 128))),
              Layer(rng.normal(0, 0.1, (128, 10)), out))
    return Network(layers, InputEncoding(20, t_at_min=0.0, t_at_max=100.0),
                   OutputDecoding(tuple(str(i) for i in range(10)), kind="max-membrane"), t_max=200.0)


def randman_raster(n: int) -> np.ndarray:
    from hwloop.trains_training import TrainsConfig, load_trains_data

    split = load_trains_data(TrainsConfig(dataset="randman", dtype="float64")).splits["test"]
    r = split.raster.numpy().astype(np.uint8)
    return np.concatenate([r] * (-(-n // r.shape[1])), axis=1)[:, :n]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default=None)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--lava-batch", type=int, default=None, help="samples per Lava run (default: the target's)")
    ap.add_argument("--repeat", type=int, default=5, help="bitexact timing: best of N")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--software", action="store_true", help="compare with the software target instead of Lava")
    ap.add_argument("--vth-sweep", default="", help="with --software: also the hidden-spike agreement with the "
                    "dequantised twin at these preferred thresholds, e.g. 512,2048,8192")
    args = ap.parse_args(argv)
    if args.software:
        return compare_software(args)
    net = Network.load(args.net) if args.net else random_randman_net()
    x = randman_raster(args.samples)
    S = args.samples
    if x.shape[0] != net.n_steps or x.shape[2] != net.encoding.n_features:
        raise SystemExit(f"the network takes ({net.n_steps}, batch, {net.encoding.n_features}) rasters; "
                         f"Randman gives {x.shape}")

    with open_target("bitexact") as be:
        compiled = be.load(net)
        be.run_raster(x[:, :4])  # load the numba kernel outside the timing
        runs, cpus, kernels = [], [], []
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            m_be = be.run_raster(x)
            runs.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            kernels.append(m_be.target_time_s)
        be_s, be_cpu, kernel_s = min(runs), min(cpus), min(kernels)

    from hwloop.backends.loihi import LAVA_TRAINS_DENSE_BYTES
    from hwloop.backends.loihi.lava_trains import TrainsRunner

    layers = compiled.layers
    L = len(layers)
    biggest = max(l.weight.size + (0 if l.recurrent is None else l.recurrent.size) for l in layers)
    per_run = args.lava_batch or max(1, int((LAVA_TRAINS_DENSE_BYTES / (4 * biggest)) ** 0.5))
    runner = TrainsRunner()
    try:
        runner.run(layers, x[:, :2], probe=[L - 1], record="output")  # start the worker, import Lava
        out_spk, out_v, out_u = [], [], []
        lava_run_s = 0.0
        t0 = time.perf_counter()
        for start in range(0, S, per_run):
            res = runner.run(layers, x[:, start:start + per_run], probe=[L - 1], record="output")
            out_spk.append(res["spikes"][-1])
            out_v.append(res["v"][-1])
            out_u.append(res["u"][-1])
            lava_run_s += res["lava_s"]
        lava_s = time.perf_counter() - t0
    finally:
        runner.close()
    from hwloop.firmware_models.loihi.trains import pre_reset

    spk = np.concatenate(out_spk, axis=1)
    v_pre = pre_reset(layers[-1], np.concatenate(out_v, axis=1), np.concatenate(out_u, axis=1))
    lava_scores = v_pre.max(axis=0) / compiled.report.scales[-1]
    agree = bool(np.array_equal(spk, m_be.raster(-1)) and np.array_equal(lava_scores, m_be.scores))
    res = {
        "network": net.summary(), "samples": S, "steps": net.n_steps, "lava_samples_per_run": per_run,
        "lava_runs": -(-S // per_run),
        "bitexact_us_per_sample": be_s / S * 1e6, "bitexact_cpu_us_per_sample": be_cpu / S * 1e6,
        "bitexact_kernel_us_per_sample": kernel_s / S * 1e6,
        "lava_us_per_sample": lava_s / S * 1e6, "lava_run_only_us_per_sample": lava_run_s / S * 1e6,
        "speedup": lava_s / be_s, "speedup_vs_lava_run_only": lava_run_s / be_s,
        "agree_outputs": agree,
        "hidden_spikes_per_neuron": [float(m_be.counts(li).mean()) for li in range(L)],
    }
    print(compiled.format_report())
    print(f"bitexact : {res['bitexact_us_per_sample']:9.1f} us/sample wall (full Measurement; "
          f"{res['bitexact_kernel_us_per_sample']:.1f} us in the kernel, {res['bitexact_cpu_us_per_sample']:.1f} us CPU)")
    print(f"lava     : {res['lava_us_per_sample']:9.1f} us/sample wall ({res['lava_runs']} runs of {per_run} parallel "
          f"copies, outputs only; {res['lava_run_only_us_per_sample']:.1f} us inside Lava's run())")
    print(f"ratio    : bitexact is {res['speedup']:.0f}x faster ({res['speedup_vs_lava_run_only']:.0f}x vs run() alone)")
    print(f"agree    : {agree} (output spikes and max-membrane scores identical)")
    print(f"activity : spikes per neuron and trial, per layer: "
          + ", ".join(f"{c:.2f}" for c in res["hidden_spikes_per_neuron"]))
    if args.json:
        print(json.dumps(res))
    return res


def compare_software(args) -> dict:
    import dataclasses

    from hwloop.backends.loihi.trains_mapping import compile_trains
    from hwloop.trains_training import TrainsConfig, load_trains_data

    net = Network.load(args.net) if args.net else random_randman_net()
    split = load_trains_data(TrainsConfig(dataset="randman", dtype="float64")).splits["test"]
    x, y = split.raster.numpy().astype(np.uint8)[:, :args.samples], split.labels.numpy()[:args.samples]
    _, rep = compile_trains(net)
    layers = []
    for layer, (w, r), row in zip(net.layers, rep.effective_weights, rep.layers):
        n = dataclasses.replace(layer.neuron, current_decay=row["current_decay_q"], voltage_decay=row["voltage_decay_q"])
        layers.append(dataclasses.replace(layer, weight=w, recurrent=r, neuron=n))
    deq = dataclasses.replace(net, layers=tuple(layers))
    bx, sw, sq = net.run("bitexact", raster=x), net.run("software", raster=x, probe=True), deq.run("software", raster=x)

    def jac(a, b, li):
        p, q = a.raster(li).astype(bool), b.raster(li).astype(bool)
        either = (p | q).sum()
        return float((p & q).sum() / either) if either else 1.0  # no spikes on either side: they agree

    res = {"network": net.summary(), "samples": int(x.shape[1]),
           "spike_agreement": [jac(bx, sw, li) for li in range(len(net.layers))],
           "spike_agreement_dequantised": [jac(bx, sq, li) for li in range(len(net.layers))],
           "spikes": [int(len(e)) for e in bx.events], "software_spikes": [int(len(e)) for e in sw.events],
           "decision_agreement": float((bx.predictions() == sw.predictions()).mean()),
           "decision_agreement_dequantised": float((bx.predictions() == sq.predictions()).mean()),
           "accuracy_bitexact": float((bx.predictions() == y).mean()),
           "accuracy_software": float((sw.predictions() == y).mean()),
           "software_membrane_range": [[float(v.min()), float(v.max())] for v in sw.probes],
           "v_range": [row["v_range"] for row in rep.layers]}
    print(rep.format())
    print(f"spikes per layer      : bitexact {res['spikes']}, software {res['software_spikes']}")
    print(f"spike agreement       : {', '.join(f'{a:.4f}' for a in res['spike_agreement'])} (vs the network), "
          f"{', '.join(f'{a:.4f}' for a in res['spike_agreement_dequantised'])} (vs its dequantised twin)")
    print("membranes in software: " + ", ".join(f"layer {li} {lo:.3g}..{hi:.3g}" for li, (lo, hi) in
                                                 enumerate(res["software_membrane_range"]))
          + " (model units; the mapping's range: " + ", ".join(f"+-{v:.4g}" for v in res["v_range"]) + ")")
    print(f"decision agreement    : {res['decision_agreement']:.4f} ({res['decision_agreement_dequantised']:.4f} "
          f"vs the dequantised twin)")
    print(f"accuracy (Randman test, {res['samples']}): bitexact {res['accuracy_bitexact']:.4f}, "
          f"software {res['accuracy_software']:.4f}")
    if args.vth_sweep:
        from hwloop.firmware_models.loihi.trains import simulate_trains

        res["vth_sweep"] = {}
        for vth in (int(v) for v in args.vth_sweep.split(",")):
            layers_v, rep_v = compile_trains(net, vth_preferred=vth)
            twin = dataclasses.replace(net, layers=tuple(
                dataclasses.replace(layer, weight=w, recurrent=r, neuron=dataclasses.replace(
                    layer.neuron, current_decay=row["current_decay_q"], voltage_decay=row["voltage_decay_q"]))
                for layer, (w, r), row in zip(net.layers, rep_v.effective_weights, rep_v.layers)))
            p = simulate_trains(layers_v, x)[0][0].astype(bool)
            q = twin.run("software", raster=x).raster(0).astype(bool)
            a = float((p & q).sum() / max(1, (p | q).sum()))
            res["vth_sweep"][vth] = {"hidden_vth": rep_v.layers[0]["vth"], "v_range": rep_v.layers[0]["v_range"],
                                     "spike_agreement_dequantised": a}
            print(f"vth_preferred {vth:6d}: hidden vth {rep_v.layers[0]['vth']}, range +-{rep_v.layers[0]['v_range']:.1f}"
                  f" thresholds, hidden spike agreement with the dequantised twin {a:.4f}")
    if args.json:
        print(json.dumps(res))
    res["agree_outputs"] = True
    return res


if __name__ == "__main__":
    r = main()
    sys.exit(0 if r["agree_outputs"] else 1)
