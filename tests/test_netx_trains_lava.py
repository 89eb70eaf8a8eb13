"""Spike-train netx files in the real lava-dl: ``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6.0, made
importable by `hwloop.interop.lava_dl_compat`) loads our export and runs it on Lava's CPU simulator
(``Loihi2SimCfg``, fixed point); every layer's spikes (hidden ones included) must equal
`simulate_trains` on the same integer layers, spike for spike and step for step, with the alignment
`run_netx_trains` states (layer j's local step k is Lava step k + j + 1).

Lava is slow on 2 shared cores (several ms per step and process), hence few hypothesis examples and
short batches. Each test prints its figure (``INTEROP ...``) for docs/interop.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.firmware_models.loihi.trains import TrainLayer, simulate_trains
from hwloop.interop.netx import export_netx_trains, netx_train_layers, read_netx_trains, run_netx_trains

pytestmark = [pytest.mark.slow, pytest.mark.lava]


def report(*words, figs):
    print("\nINTEROP", *words, json.dumps(figs))


def padded(x, tail):
    return np.concatenate([x, np.zeros((tail,) + x.shape[1:], x.dtype)]) if tail else x


@st.composite
def train_nets(draw):
    """Random multi-spike CUBA layers in the form netx runs (exponent 0, even stored weights), tuned to
    be active: mostly excitatory weights against thresholds a few input spikes reach."""
    n_layers = draw(st.integers(1, 3))
    sizes = [draw(st.integers(2, 12)) for _ in range(n_layers + 1)]
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    layers = []
    for k in range(n_layers):
        n_in, n_out = sizes[k], sizes[k + 1]
        w = 2 * rng.integers(-60, 128, (n_in, n_out))
        rec = 2 * rng.integers(-100, 60, (n_out, n_out)) if draw(st.booleans()) else None
        layers.append(TrainLayer(w, 0, du=draw(st.integers(0, 4095)), dv=draw(st.integers(0, 4095)),
                                 vth=draw(st.integers(20, 3000)), recurrent=rec))
    steps = draw(st.integers(100, 250))
    rate = draw(st.sampled_from([0.05, 0.15, 0.3]))
    raster = (rng.random((steps, 1, sizes[0])) < rate).astype(np.uint8)
    return layers, raster


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(net=train_nets())
def test_lava_dl_runs_random_train_nets_spike_for_spike(tmp_path_factory, net):
    layers, raster = net
    path, info = export_netx_trains(layers, tmp_path_factory.mktemp("nx") / "t.net", steps=raster.shape[0])
    assert info["exact"]
    lava, _ = run_netx_trains(path, raster)
    ours, _ = simulate_trains(layers, raster)
    figs = {"sizes": [layers[0].weight.shape[0]] + [l.n_out for l in layers], "steps": raster.shape[0],
            "recurrent": info["recurrent"], "spikes_lava": [int(s.sum()) for s in lava],
            "spikes_ours": [int(s.sum()) for s in ours],
            "identical": [bool(np.array_equal(a, b)) for a, b in zip(lava, ours)]}
    report("lava-dl", "trains", "random", figs=figs)
    for a, b in zip(lava, ours):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def quiet_net(seed=7):
    """Two layers, the second recurrent, with fast decays: silent a few steps after the input stops, so
    samples can share one Lava run across netx's resets."""
    rng = np.random.default_rng(seed)
    return [TrainLayer(2 * rng.integers(-40, 120, (8, 10)), 0, du=2500, dv=1800, vth=200),
            TrainLayer(2 * rng.integers(-60, 127, (10, 4)), 0, du=3000, dv=2000, vth=220,
                       recurrent=2 * rng.integers(-90, 60, (4, 4)))]


def test_lava_dl_batch_across_resets_spike_for_spike(tmp_path):
    """Several samples in one Lava run (netx's reset_interval): each sample's spikes equal
    simulate_trains on that sample alone (batch axis), every layer, tail included."""
    layers = quiet_net()
    rng = np.random.default_rng(1)
    x = (rng.random((60, 4, 8)) < 0.2).astype(np.uint8)
    path, _ = export_netx_trains(layers, tmp_path / "q.net", steps=60)
    tail = 6
    lava, lava_v = run_netx_trains(path, x, tail=tail, probe=True)
    ours, ours_v = simulate_trains(layers, padded(x, tail), probe=True)
    figs = {"samples": 4, "steps": 60 + tail, "spikes": [int(s.sum()) for s in ours],
            "identical": [bool(np.array_equal(a, b)) for a, b in zip(lava, ours)]}
    report("lava-dl", "trains", "batch-reset", figs=figs)
    assert all(s.sum() > 0 for s in ours)  # not a comparison of silences
    for a, b in zip(lava, ours):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(lava_v, ours_v):  # and membrane for membrane (Lava's Monitor on each block's v)
        np.testing.assert_array_equal(a, b)


def test_lava_dl_runs_the_exponent_rewrite_as_written(tmp_path):
    """Layers with weight exponents: netx runs exponent 0, so the file holds the rewritten layers
    (exact for e > 0 shifted into the mantissas; approximate for e < 0: the threshold carries 2^-e).
    Lava equals simulate_trains on the file's layers; the figure against the original layers is
    reported (it is what the rewrite costs)."""
    rng = np.random.default_rng(11)
    layers = [TrainLayer(2 * rng.integers(-20, 60, (6, 8)), 1, du=1200, dv=900, vth=150),
              TrainLayer(2 * rng.integers(-100, 127, (8, 3)), -2, du=2000, dv=700, vth=90,
                         recurrent=2 * rng.integers(-100, 60, (3, 3)), rec_exp=-2)]
    x = (rng.random((150, 1, 6)) < 0.2).astype(np.uint8)
    path, info = export_netx_trains(layers, tmp_path / "e.net", steps=150)
    assert [n["exact"] for n in info["notes"]] == [True, False]
    file_layers, _ = read_netx_trains(path)
    lava, _ = run_netx_trains(path, x)
    ours, _ = simulate_trains(file_layers, x)
    orig, _ = simulate_trains(layers, x)
    figs = {"identical_to_file": [bool(np.array_equal(a, b)) for a, b in zip(lava, ours)],
            "agreement_with_original": [float((a == b).mean()) for a, b in zip(lava, orig)],
            "spikes": [int(s.sum()) for s in ours], "notes": [n.get("how", "as is") for n in info["notes"]]}
    report("lava-dl", "trains", "exponent-rewrite", figs=figs)
    assert all(s.sum() > 0 for s in ours)
    np.testing.assert_array_equal(lava[0], orig[0])  # the exact rewrite: the original layer itself
    for a, b in zip(lava, ours):
        np.testing.assert_array_equal(a, b)
    assert netx_train_layers(file_layers)[1] == [{"exact": True, "weight_exp": [0]},
                                                 {"exact": True, "weight_exp": [0, 0]}]


# ------------------------------------------------------------------ a trained Randman CUBA network

N_LAVA = 6


def predict(scores):
    """Class per sample, -1 when tied (the rule of `Measurement.predictions`)."""
    scores = np.asarray(scores, np.float64)
    top = scores == scores.max(axis=1, keepdims=True)
    return np.where(top.sum(axis=1) == 1, scores.argmax(axis=1), -1)


def readout_scores(net, spikes, volts):
    w = net.decoding.window or (0, net.n_steps)
    if net.decoding.kind == "max-membrane":
        return volts[-1][w[0]:w[1]].max(axis=0)
    return spikes[-1][w[0]:w[1]].sum(axis=0)


@pytest.fixture(scope="module")
def randman_cuba(tmp_path_factory):
    """A small recurrent CUBA network trained on Randman by hwloop's trainer (what `hwloop train
    --model cuba --dataset randman --recurrent` runs), max-membrane readout, saved and exported with
    `hwloop export NET --format netx`."""
    import os

    from hwloop.cli import main as cli_main
    from hwloop.network import Network
    from hwloop.trains_training import TrainsConfig, load_trains_data, to_network, train

    tmp = tmp_path_factory.mktemp("randman")
    old = os.environ.get("HWLOOP_CACHE_DIR")
    os.environ["HWLOOP_CACHE_DIR"] = str(tmp)
    try:
        cfg = TrainsConfig(dataset="randman", hidden=(16,), recurrent=True, epochs=20, batch_size=30, lr=5e-3,
                           threads=1, dtype="float64",
                           data_options={"n_classes": 3, "samples_per_class": 150, "n_units": 20, "n_steps": 50,
                                         "seed": 3})
        res = train(cfg)
        test = load_trains_data(cfg).splits["test"]
    finally:
        if old is None:
            os.environ.pop("HWLOOP_CACHE_DIR", None)
        else:
            os.environ["HWLOOP_CACHE_DIR"] = old
    net_path = to_network(res).save(tmp / "randman.hwnet")
    out = tmp / "randman.net"
    assert cli_main(["export", str(net_path), str(out), "--format", "netx", "--json"]) == 0
    net = Network.load(net_path)
    return net, out, test.raster.numpy().astype(np.uint8), test.labels.numpy(), res.metrics["accuracy"]["test"]


def test_lava_dl_runs_a_trained_randman_cuba_network_spike_for_spike(randman_cuba):
    """Lava runs the exported file (recurrent hidden layer, non-spiking readout) identically to our
    bit-accurate model of the file's integers: every layer's spikes and membranes, N_LAVA samples
    (one Lava run each); the decision read from Lava's readout membrane is the model's."""
    from hwloop.backends.loihi.trains_mapping import compile_trains

    net, path, raster, labels, _ = randman_cuba
    file_layers, meta = read_netx_trains(path)
    assert meta["family"] == "trains" and meta["classes"] == list(net.decoding.classes)
    compiled, _ = compile_trains(net, weight_exp=0)
    for a, b in zip(compiled, file_layers):  # the file holds exactly the exponent-0 target's integers
        assert a.vth == b.vth and a.du == b.du and a.dv == b.dv and a.weight_exp == b.weight_exp == 0
        np.testing.assert_array_equal(a.weight, b.weight)
        assert (a.recurrent is None) == (b.recurrent is None)
        if a.recurrent is not None:
            np.testing.assert_array_equal(a.recurrent, b.recurrent)
    x = raster[:, :N_LAVA]
    tail = 4
    # the trained recurrent layer keeps firing after the input ends: one Lava run per sample
    lava, lava_v = run_netx_trains(path, x, tail=tail, probe=True, separate=True)
    ours, ours_v = simulate_trains(file_layers, padded(x, tail), probe=True)
    T = x.shape[0]
    p_lava = predict(readout_scores(net, [s[:T] for s in lava], [v[:T] for v in lava_v]))
    p_ours = predict(readout_scores(net, [s[:T] for s in ours], [v[:T] for v in ours_v]))
    with __import__("hwloop.backends", fromlist=["open_target"]).open_target("bitexact?weight_exp=0") as b:
        b.load(net)
        m_bitexact = b.run_raster(x, probe=True)
    p_bitexact = m_bitexact.predictions()
    # the must-show: what lava-dl runs from the file is, layer by layer, what the bitexact target measures
    # (the file is compiled as bitexact?weight_exp=0 compiles the network; the export says so)
    spiking = [bool(layer.neuron.spiking) for layer in net.layers]
    for k, (ev, s_lava) in enumerate(zip(m_bitexact.events, lava)):
        if spiking[k]:
            np.testing.assert_array_equal(ev.raster(), s_lava[:T], err_msg=f"layer {k}")
    figs = {"samples": N_LAVA, "steps": T, "spikes": [int(s.sum()) for s in ours],
            "spikes_identical": [bool(np.array_equal(a, b)) for a, b in zip(lava, ours)],
            "v_identical": [bool(np.array_equal(a, b)) for a, b in zip(lava_v, ours_v)],
            "class_lava_vs_file_integers": float((p_lava == p_ours).mean()),
            "class_lava_vs_bitexact": float((p_lava == p_bitexact).mean()),
            "acc_lava": float((p_lava == labels[:N_LAVA]).mean())}
    report("lava-dl", "trains", "randman", figs=figs)
    assert ours[0].sum() > 0
    for a, b in zip(lava, ours):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(lava_v, ours_v):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(p_lava, p_ours)
    np.testing.assert_array_equal(p_lava, p_bitexact)


def test_netx_rewrite_against_bitexact_on_the_whole_test_split(randman_cuba):
    """What compiling at exponent 0 (the export, netx's only exponent) costs against the default
    bitexact target's own integers (core model, no Lava, the whole test split): spike agreement per
    layer and decisions."""
    from hwloop.backends import open_target
    from hwloop.backends.loihi.trains_mapping import compile_trains

    net, path, raster, labels, acc_trained = randman_cuba
    file_layers, _ = read_netx_trains(path)
    compiled, _ = compile_trains(net)
    s_c, v_c = simulate_trains(compiled, raster, probe=True)
    s_f, v_f = simulate_trains(file_layers, raster, probe=True)
    with open_target("bitexact") as b:
        b.load(net)
        p_bitexact = b.run_raster(raster).predictions()
    p_file = predict(readout_scores(net, s_f, v_f))
    figs = {"n": int(raster.shape[1]), "spike_agreement": [float((a == b).mean()) for a, b in zip(s_c, s_f)],
            "samples_identical": [float((a == b).all(axis=(0, 2)).mean()) for a, b in zip(s_c, s_f)],
            "class_file_vs_bitexact": float((p_file == p_bitexact).mean()),
            "acc_file": float((p_file == labels).mean()), "acc_bitexact": float((p_bitexact == labels).mean()),
            "acc_trained_software": float(acc_trained)}
    report("lava-dl", "trains", "randman-integers", figs=figs)
    assert figs["acc_bitexact"] > 1 / 3 + 0.2  # a trained network, not chance
    # measured: 0.990 / 1.0 of spikes, 97.8 % of decisions (45 samples) on the CI machine; 0.974 / 1.0 and
    # 100 % on another x86 machine, where the float training kernel trains a slightly different network.
    # The figure belongs to the network, so the bound is loose; spike identity of the export is asserted above.
    assert min(figs["spike_agreement"]) >= 0.95
    assert figs["class_file_vs_bitexact"] >= 0.95
