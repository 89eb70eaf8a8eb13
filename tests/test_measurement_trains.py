"""Measurement of spike-train networks on the software target: sparse events,
probes on request, the first-spike view; other targets refuse the family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwloop.backends import SpikeEvents, times_to_raster
from hwloop.errors import NetworkSpecError, TargetError
from hwloop.models.trains import Surrogate, cuba_network_forward
from test_network_v2 import cuba_net


def reference(net, raster):
    """The network run directly through the plain-torch model (engine torch)."""
    w = [torch.tensor(layer.weight) for layer in net.layers]
    r = [None if layer.recurrent is None else torch.tensor(layer.recurrent) for layer in net.layers]
    p = [layer.neuron.cuba_params() for layer in net.layers]
    with torch.no_grad():
        return cuba_network_forward(torch.as_tensor(raster, dtype=torch.float64), w, p, Surrogate(), r,
                                    engine="torch", record="all")


def test_software_runs_a_cuba_network_events_probes_first_spike_view(tmp_path):
    net = cuba_net()
    net.layers  # a hidden spiking recurrent layer and a non-spiking readout
    rng = np.random.default_rng(3)
    raster = (rng.uniform(size=(net.n_steps, 16, 5)) < 0.2).astype(np.float32)
    m = net.run("software", raster=raster, probe=True)
    ref = reference(net, raster)
    assert len(m.events) == 2 and m.dt == 2.0
    for li in range(2):
        dense = ref.spikes[li].numpy()
        assert np.array_equal(m.events[li].raster(), dense.astype(np.uint8))
        assert np.allclose(m.probes[li], ref.membranes[li].numpy(), atol=1e-9)
        assert np.array_equal(m.counts(li), dense.sum(0).astype(np.int64))
        # first-spike view: first spike at step k is at time k * dt, silent = inf
        any_ = dense.any(0)
        first = np.where(any_, dense.argmax(0) * net.dt, np.inf)
        assert np.array_equal(m.times[li], first)
    assert len(m.events[0]) == int(ref.spikes[0].sum()) > 0
    assert len(m.events[1]) == 0  # the readout does not spike
    win = net.decoding.window
    assert np.allclose(m.scores, ref.membranes[1].numpy()[win[0]:win[1]].max(0))
    assert np.array_equal(m.predictions(), m.scores.argmax(1))


def test_no_probes_unless_asked_and_times_input_matches_its_raster():
    net = cuba_net(recurrent=False)
    x = np.random.default_rng(0).uniform(size=(8, 5))
    m = net.run("software", x)
    assert m.probes is None and m.events is not None
    t = net.encoding.encode(x)
    m2 = net.run("software", raster=times_to_raster(t, net.dt, net.n_steps))
    for a, b in zip(m.events, m2.events):
        assert np.array_equal(a.raster(), b.raster())


def test_events_round_trip_and_bad_inputs():
    r = (np.random.default_rng(1).uniform(size=(7, 3, 4)) < 0.3)
    ev = SpikeEvents.from_raster(r)
    assert np.array_equal(ev.raster().astype(bool), r)
    assert np.array_equal(ev.first_steps(), np.where(r.any(0), r.argmax(0), -1))
    net = cuba_net()
    with pytest.raises(NetworkSpecError, match="raster must have shape"):
        net.run("software", raster=np.zeros((3, 2, 5)))
    with pytest.raises(TargetError, match="0 .no spike. and 1"):
        net.run("software", raster=np.full((net.n_steps, 2, 5), 2.0))


def test_other_targets_refuse_a_spike_train_network():
    net = cuba_net()
    with pytest.raises(TargetError, match="first-spike-time networks only.*run it on 'software'"):
        net.run("qif-emu", np.zeros((1, 5)))


def test_probe_on_a_first_spike_time_network_is_refused():
    from pathlib import Path

    from hwloop.network import Network

    net = Network.load(sorted((Path(__file__).parent.parent / "hwloop" / "pretrained").glob("*.hwnet"))[0])
    with pytest.raises(TargetError, match="probes are recorded for spike-train networks only"):
        net.run("software", np.zeros((1, net.encoding.n_features)), probe=True)
