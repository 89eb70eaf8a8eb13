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
    lava = run_netx_trains(path, raster)
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
    lava = run_netx_trains(path, x, tail=tail)
    ours, _ = simulate_trains(layers, padded(x, tail))
    figs = {"samples": 4, "steps": 60 + tail, "spikes": [int(s.sum()) for s in ours],
            "identical": [bool(np.array_equal(a, b)) for a, b in zip(lava, ours)]}
    report("lava-dl", "trains", "batch-reset", figs=figs)
    assert all(s.sum() > 0 for s in ours)  # not a comparison of silences
    for a, b in zip(lava, ours):
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
    lava = run_netx_trains(path, x)
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
