"""Spike-train (CUBA) networks on the `bitexact` target, no Lava needed: the
mapping (`backends/loihi/trains_mapping.py`: registers, refusals, report), the
target's Measurement (events, probes only when asked, scores, time alignment
with the software target), and agreement with the software model within
quantisation. The Lava half (bitexact == lava-sim) is tests/test_loihi_trains_lava.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwloop.backends import open_target
from hwloop.backends.loihi.trains_mapping import compile_trains
from hwloop.errors import DesignRuleError, TargetError
from hwloop.firmware_models.loihi.trains import TrainLayer, simulate_trains
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding


def cuba(n_in=6, n_hid=16, n_out=3, recurrent=True, seed=0, decoding="max-membrane", readout_spiking=False,
         dt=1.0, steps=80, w_scale=0.9, **hid):
    rng = np.random.default_rng(seed)
    p = dict(dt=dt, current_decay=0.2, voltage_decay=0.1, threshold=1.0)
    p.update(hid)
    h = NeuronParams.cuba(**p)
    o = NeuronParams.cuba(dt=dt, current_decay=0.2, voltage_decay=0.02, threshold=1.0, spiking=readout_spiking)
    layers = (Layer(rng.normal(0.15, w_scale, (n_in, n_hid)), h,
                    recurrent=rng.normal(0, 0.3, (n_hid, n_hid)) if recurrent else None),
              Layer(rng.normal(0.1, 0.5, (n_hid, n_out)), o))
    return Network(layers=layers, encoding=InputEncoding(n_features=n_in, t_at_min=0.0, t_at_max=dt * steps / 2),
                   decoding=OutputDecoding(classes=tuple("abcdefgh"[:n_out]), kind=decoding), t_max=dt * steps)


def raster_for(net, batch=12, rate=0.15, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(net.n_steps, batch, net.encoding.n_features)) < rate).astype(np.uint8)


def effective_network(net, report):
    """The float network the integer registers stand for (dequantised weights and decays)."""
    layers = []
    for layer, (w, r), row in zip(net.layers, report.effective_weights, report.layers):
        n = dataclasses.replace(layer.neuron, current_decay=row["current_decay_q"], voltage_decay=row["voltage_decay_q"])
        layers.append(dataclasses.replace(layer, weight=w, recurrent=r, neuron=n))
    return dataclasses.replace(net, layers=tuple(layers))


def spike_jaccard(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max(1, (a | b).sum())


# ------------------------------------------------------------------ mapping
def test_registers_follow_the_mapping_rules():
    net = cuba()
    layers, rep = compile_trains(net)
    hid, out = layers
    assert isinstance(hid, TrainLayer) and hid.recurrent is not None and out.recurrent is None
    # decays: du + 1 = round(4096 * 0.2), dv = round(4096 * 0.1)
    assert (hid.du, hid.dv) == (round(4096 * 0.2) - 1, round(4096 * 0.1))
    # the largest weight of the layer fills the mantissa top; threshold near VTH_TRAINS = 2^11
    top = max(np.abs(hid.weight).max() * 2.0 ** hid.weight_exp, np.abs(hid.recurrent).max() * 2.0 ** hid.rec_exp)
    assert 2 ** 11 <= hid.vth <= 2 ** 12
    assert np.abs(hid.weight).max() >= 127 and np.abs(hid.recurrent).max() >= 127
    # W 2^e = vth w / threshold, to half a mantissa step
    w = net.layers[0].weight
    np.testing.assert_allclose(hid.weight * 2.0 ** hid.weight_exp, hid.vth * w, atol=2.0 ** hid.weight_exp + 1e-9)
    assert rep.layers[0]["scale"] == 64 * hid.vth / 1.0
    assert top <= 254 * 2.0 ** max(hid.weight_exp, hid.rec_exp)
    # the readout cannot fire in its range
    assert out.vth == 2 ** 17 - 1 and not rep.layers[1]["spiking"] and rep.layers[1]["v_range"] > 0
    text = rep.format()
    assert "layer 0: 6->16 spiking" in text and "readout" in text and "rec_exp" in text


def test_quantisation_error_is_within_half_a_mantissa_step():
    net = cuba(seed=3)
    _, rep = compile_trains(net)
    for layer, (w_eff, r_eff), row in zip(net.layers, rep.effective_weights, rep.layers):
        step = 2.0 * 2.0 ** row["weight_exp"] * 64 / row["scale"]  # one even-mantissa step, model units
        assert np.abs(w_eff - layer.weight).max() <= step / 2 + 1e-12
        assert row["weight_err_max"] == pytest.approx(np.abs(w_eff - layer.weight).max())
        if r_eff is not None:
            rstep = 2.0 * 2.0 ** row["rec_exp"] * 64 / row["scale"]
            assert np.abs(r_eff - layer.recurrent).max() <= rstep / 2 + 1e-12


@pytest.mark.parametrize("change, rule", [
    (dict(reset="subtract"), "reset-rule"),
    (dict(refractory=2), "refractory"),
    (dict(current_decay=0.0), "current-decay"),
    (dict(voltage_decay=0.0005), "decay-resolution"),
])
def test_what_lavas_standard_lif_cannot_do_is_refused(change, rule):
    net = cuba(**change)
    with pytest.raises(DesignRuleError) as exc:
        compile_trains(net)
    assert exc.value.rule == rule and exc.value.layer == 0
    # and the target refuses it the same way, before running anything
    with open_target("bitexact") as b, pytest.raises(DesignRuleError, match=rule):
        b.load(net)


def test_too_large_weights_are_refused_by_the_current_range_rule():
    net = cuba(n_in=200, w_scale=1e5, recurrent=False)
    with pytest.raises(DesignRuleError) as exc:
        compile_trains(net)
    assert exc.value.rule == "current-range" and exc.value.layer == 0


def test_steps_option_is_refused_for_a_spike_train_network():
    with open_target("bitexact?steps=50") as b, pytest.raises(TargetError, match="own 80 steps"):
        b.load(cuba())


def test_first_spike_time_network_is_not_a_trains_network():
    from pathlib import Path

    net = Network.load(sorted((Path(__file__).parent.parent / "hwloop" / "pretrained").glob("*lif*.hwnet"))[0])
    with pytest.raises(DesignRuleError, match="network-family"):
        compile_trains(net)


# ------------------------------------------------------------------ target
@pytest.mark.parametrize("recurrent", [False, True])
def test_bitexact_measurement_lines_up_with_software(recurrent):
    """Same steps, same shapes, same first-spike view; with the dequantised
    weights the software model and bitexact agree on almost every spike (what
    differs is integer rounding of the state), with the original weights less
    well (quantisation itself); the decision agrees on most samples."""
    net = cuba(recurrent=recurrent, seed=5)
    _, rep = compile_trains(net)
    x = raster_for(net, batch=24)
    bx = net.run("bitexact", raster=x, probe=True)
    sw = net.run("software", raster=x, probe=True)
    swq = effective_network(net, rep).run("software", raster=x, probe=True)
    assert bx.dt == sw.dt == 1.0 and len(bx.events) == 2
    for li in range(2):
        assert bx.events[li].shape == sw.events[li].shape == (net.n_steps, 24, net.layers[li].n_out)
        assert bx.probes[li].shape == sw.probes[li].shape
        first = bx.events[li].first_steps()
        np.testing.assert_array_equal(bx.times[li], np.where(first >= 0, first * net.dt, np.inf))
    n_spikes = len(sw.events[0])
    assert n_spikes > 200  # the hidden layer is active
    assert spike_jaccard(bx.raster(0), swq.raster(0)) > 0.97
    assert spike_jaccard(bx.raster(0), sw.raster(0)) > 0.8
    assert len(bx.events[1]) == 0 and "saturated_readout_spikes" not in bx.info
    # membranes in model units: until a sample's spike history differs (any neuron of the layer:
    # recurrence), and inside the 24-bit range (the software model has no clip), they match to
    # the register resolution
    same = np.cumsum((bx.raster(0) != swq.raster(0)).any(axis=2, keepdims=True), axis=0) == 0
    inside = np.cumsum(np.abs(swq.probes[0]) >= rep.layers[0]["v_range"], axis=0) == 0
    same, inside = np.broadcast_arrays(same, inside)
    d = np.abs(bx.probes[0] - swq.probes[0])[same & inside]
    assert d.size > 0.3 * same.size and d.max() < 0.02  # threshold 1: a few hundredths from truncation
    assert (bx.predictions() == sw.predictions()).mean() >= 0.75
    # the score is the readout's membrane maximum, read from the same membranes as the probes
    np.testing.assert_allclose(bx.scores, bx.probes[1].max(axis=0))


def test_no_probes_unless_asked_and_spike_count_decoding():
    net = cuba(decoding="spike-count", readout_spiking=True, seed=2)
    x = raster_for(net)
    m = net.run("bitexact", raster=x)
    assert m.probes is None and m.scores is not None
    np.testing.assert_array_equal(m.scores, m.counts(-1))
    # the normal run path (input spike times) goes through the same raster
    t = net.encoding.encode(np.random.default_rng(0).uniform(size=(5, 6)))
    m2 = net.run("bitexact", times=t, probe=True)
    assert len(m2.probes) == 2 and m2.probes[0].shape == (net.n_steps, 5, 16)


def test_bitexact_equals_the_integer_model_itself():
    net = cuba(seed=9)
    layers, rep = compile_trains(net)
    x = raster_for(net)
    m = net.run("bitexact", raster=x, probe=True)
    spikes, volts = simulate_trains(layers, x, probe=True)
    for li in range(2):
        np.testing.assert_array_equal(m.raster(li), spikes[li])
        # post-reset v equals the probe (pre-reset) wherever the neuron did not fire
        quiet = spikes[li] == 0
        np.testing.assert_array_equal(np.rint(m.probes[li][quiet] * rep.scales[li]), volts[li][quiet])
        # and where it fired, the pre-reset membrane was above threshold
        assert (m.probes[li][~quiet] > net.layers[li].neuron.threshold).all()


def test_bad_rasters_are_refused():
    net = cuba()
    with open_target("bitexact") as b:
        b.load(net)
        with pytest.raises(TargetError, match="expected an input raster"):
            b.run_raster(np.zeros((3, 2, 6)))
        with pytest.raises(TargetError, match="0 .no spike. and 1"):
            b.run_raster(np.full((net.n_steps, 2, 6), 2))


def test_cli_eval_and_simulate_on_bitexact(tmp_path, capsys):
    import json

    from hwloop.cli import main

    path = tmp_path / "xor.hwnet"
    assert main(["train", "--model", "cuba", "--dataset", "delayed-xor", "--epochs", "1", "--hidden", "12",
                 "--recurrent", "--out", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(path), "--target", "bitexact", "--json", "--limit", "100"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["target"] == "bitexact" and res["n"] == 100 and 0 <= res["accuracy"] <= 1
    x = np.random.default_rng(0).uniform(size=(4, 40))
    np.save(tmp_path / "x.npy", x)
    assert main(["simulate", str(path), "--target", "bitexact", "--inputs", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "o.npz"), "--probe", "--json"]) == 0
    z = np.load(tmp_path / "o.npz")
    assert z["layer_0_membrane"].shape[1:] == (4, 12)


# ------------------------------------------------------------------ engines
@pytest.mark.skipif(not __import__("hwloop.firmware_models.loihi", fromlist=["numba_available"]).numba_available(),
                    reason="numba not installed")
def test_numba_engine_equals_numpy_reference_on_random_networks():
    """The fast kernel against the step-by-step numpy model (itself held to Lava
    in test_loihi_trains_lava.py): spikes, v and u, random integer networks."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from test_loihi_trains_lava import random_trains

    @settings(max_examples=60, deadline=None)
    @given(case=random_trains(max_layers=3, steps=(20, 200), batch=(1, 6)))
    def check(case):
        layers, raster = case
        a = simulate_trains(layers, raster, probe=True, currents=True, engine="numpy")
        b = simulate_trains(layers, raster, probe=True, currents=True, engine="numba")
        for part_a, part_b in zip(a, b):
            for li, (p, q) in enumerate(zip(part_a, part_b)):
                np.testing.assert_array_equal(p, q, err_msg=f"layer {li}")
        only = simulate_trains(layers, raster, probe=[len(layers) - 1], engine="numba")
        for li in range(len(layers)):
            np.testing.assert_array_equal(only[0][li], a[0][li])
        assert only[1][-1] is not None and all(v is None for v in only[1][:-1])

    check()


def test_weight_exponent_zero_option_for_netx_integers():
    """``weight_exp=0`` (what a netx file stores): every matrix at exponent 0, the
    threshold register following from the largest weight; the target option
    compiles the same registers, and the network still works (close to auto)."""
    net = cuba(seed=4)
    auto, _ = compile_trains(net)
    zero, rep = compile_trains(net, weight_exp=0)
    assert all(l.weight_exp == 0 and (l.recurrent is None or l.rec_exp == 0) for l in zero)
    top = max(np.abs(net.layers[0].weight).max(), np.abs(net.layers[0].recurrent).max())
    assert zero[0].vth == int(np.floor(254 / top)) and np.abs(zero[0].weight).max() >= 252
    assert rep.layers[1]["scale"] == pytest.approx(64 * 254 / np.abs(net.layers[1].weight).max())
    x = raster_for(net, batch=16)
    m0 = net.run("bitexact?weight_exp=0", raster=x)
    ref, _ = simulate_trains(zero, x)
    np.testing.assert_array_equal(m0.raster(0), ref[0])
    ma = net.run("bitexact", raster=x)
    assert spike_jaccard(m0.raster(0), ma.raster(0)) > 0.8
    with pytest.raises(DesignRuleError, match="weight-exponent"):
        compile_trains(net, weight_exp=9)
    with pytest.raises(TargetError, match="weight_exp"):
        open_target("bitexact?weight_exp=2")


def test_trains_kernel_starts_no_numba_pool_and_ignores_the_thread_count():
    """As the first-spike-time kernel (tests/test_perf_threads.py): plain threads, no
    OpenMP pool, and the same result on 1, 2 or 5 threads."""
    import subprocess
    import sys
    import textwrap

    from hwloop.firmware_models.loihi import _numba_trains as K

    net = cuba(seed=8)
    layers, _ = compile_trains(net)
    x = raster_for(net, batch=70)
    ref = simulate_trains(layers, x, engine="numpy")[0]
    for k in (1, 2, 5):
        outs = [np.zeros_like(s) for s in ref]
        cur = x
        for layer, o in zip(layers, outs):
            r = layer.recurrent if layer.recurrent is not None else np.zeros((1, 1), np.int32)
            K.trains_layer(np.ascontiguousarray(cur), layer.weight.astype(np.int64), layer.weight_exp,
                           r.astype(np.int64), layer.rec_exp, layer.recurrent is not None, 4096 - (layer.du + 1),
                           4096 - layer.dv, layer.vth << 6, o, np.zeros((0, 0, 0), np.int32),
                           np.zeros((0, 0, 0), np.int32), False, threads=k)
            cur = o
        for a, b in zip(ref, outs):
            np.testing.assert_array_equal(a, b, err_msg=f"{k} threads")
    code = textwrap.dedent("""
        import torch
        torch.set_num_threads(2)
        import numpy as np, numba
        from test_loihi_trains import cuba, raster_for
        net = cuba(seed=8)
        net.run("bitexact", raster=raster_for(net, batch=64))
        try:
            print(numba.threading_layer())
        except ValueError:
            print("none")
    """)
    import os

    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "none"
