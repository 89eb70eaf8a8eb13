"""Readout losses, activity bounds, the van Rossum distance, spike-train
encodings, the generated tasks, the fluctuation-driven initialisation and
the BPTT trainer of the spike-train family (on small problems)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwloop.data.spike_trains import LatencyTrains, PopulationTrains, RateTrains, default_train_encoding
from hwloop.data.tasks import DelayedXor, PatternTask, delayed_xor, pattern_task
from hwloop.errors import DatasetError, HwloopError
from hwloop.losses import (activity_regularizer, first_spike_times, max_over_time_ce, spike_count_ce, ttfs_loss,
                           first_spike_loss, van_rossum_distance)
from hwloop.models.trains import CubaParams, Surrogate, cuba_layer
from hwloop.trains_training import TrainsConfig, fluctuation_std, psp_energy, train

D = torch.float64


# ------------------------------------------------------------------ losses
def test_first_spike_times_of_a_binary_raster():
    s = torch.zeros(6, 2, 3, dtype=D)
    s[2, 0, 0] = s[4, 0, 0] = 1  # first at step 2
    s[0, 0, 1] = 1
    s[5, 1, 2] = 1
    t = first_spike_times(s, dt=0.5)
    assert t.tolist() == [[1.0, 0.0, 3.0], [3.0, 3.0, 2.5]]  # silent -> T * dt = 3.0
    assert first_spike_times(s, 0.5, t_max=10.0)[1, 0] == 10.0


def test_first_spike_loss_reuses_the_ttfs_loss_and_has_a_gradient():
    g = torch.Generator().manual_seed(0)
    s_in = (torch.rand(20, 4, 5, generator=g) < 0.3).to(D)
    w = (torch.randn(5, 3, generator=g, dtype=D) + 0.5).requires_grad_(True)
    s, _ = cuba_layer(s_in, w, CubaParams(current_decay=0.3, voltage_decay=0.2), Surrogate(beta=5.0))
    y = torch.tensor([0, 1, 2, 0])
    loss = first_spike_loss(s, y, dt=1.0, tau=2.0)
    t = first_spike_times(s.detach(), 1.0)
    assert float(loss.detach()) == pytest.approx(float(ttfs_loss(t, y, 20.0, 2.0, 0.2, 0.005, 2.6)))
    (gw,) = torch.autograd.grad(loss, w)
    assert float(gw.abs().max()) > 0


def test_readout_losses():
    v = torch.randn(7, 4, 3, dtype=D)
    y = torch.tensor([2, 0, 1, 1])
    ref = torch.nn.functional.cross_entropy(v.max(0).values, y)
    assert float(max_over_time_ce(v, y)) == pytest.approx(float(ref))
    s = (v > 0.5).to(D)
    assert float(spike_count_ce(s, y, 0.5)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(0.5 * s.sum(0), y)))


def test_activity_bounds_by_hand():
    s = torch.zeros(10, 2, 3, dtype=D)
    s[:6, 0, 0] = 1  # counts: sample 0: (6, 0, 0); sample 1: (0, 0, 0)
    # lower: per neuron, threshold 1: relu(1 - c)^2 = 0 for the 6-count neuron, 1 for the other five
    lo = activity_regularizer([s], lower=(2.0, 1.0))
    assert float(lo) == pytest.approx(2.0 * 5 / 6)
    # upper: population mean per sample, threshold 1: sample 0 mean 2 -> 1^2, sample 1 -> 0
    up = activity_regularizer([s], upper=(3.0, 1.0))
    assert float(up) == pytest.approx(3.0 * 0.5)
    assert float(activity_regularizer([s, s], lower=(2.0, 1.0), upper=(3.0, 1.0))) == pytest.approx(
        2 * (float(lo) + float(up)))


def test_van_rossum_distance():
    dt = 0.1
    a = torch.zeros(4000, 1)
    b = a.clone()
    b[100, 0] = 1.0
    assert float(van_rossum_distance(a, a, dt)) == 0.0
    # one unmatched spike: half the integral of the squared normalised kernel
    tr, td = 5.0, 10.0
    t_peak = tr * td / (td - tr) * math.log(td / tr)
    peak = math.exp(-t_peak / td) - math.exp(-t_peak / tr)
    exact = 0.5 * (td / 2 - 2 * tr * td / (tr + td) + tr / 2) / peak**2
    assert float(van_rossum_distance(a, b, dt)) == pytest.approx(exact, rel=2e-2)
    assert float(van_rossum_distance(b, a, dt)) == float(van_rossum_distance(a, b, dt))
    c = a.clone()
    c[130, 0] = 1.0  # a spike 3 ms off is closer than no spike at all
    assert 0 < float(van_rossum_distance(b, c, dt)) < float(van_rossum_distance(a, b, dt))


# ---------------------------------------------------------------- encodings
def test_latency_trains():
    enc = LatencyTrains(n_features=3, n_steps=20, first_step=2, last_step=12, bias_step=0)
    x = np.array([[0.0, 0.5, 1.0]])
    assert enc.steps(x).tolist() == [[2, 7, 12]]
    r = enc.raster(x)
    assert r.shape == (20, 1, 4) and r.sum() == 4
    assert r[0, 0, 3] == 1  # bias unit
    pix = LatencyTrains(n_features=2, n_steps=10, first_step=0, last_step=8, value_min=0, value_max=16,
                        early_is_max=True, silent_at_min=True)
    assert pix.steps(np.array([[16.0, 0.0]])).tolist() == [[0, -1]]
    assert pix.raster(np.array([[16.0, 0.0]])).sum() == 1
    with pytest.raises(DatasetError, match="first and last step"):
        LatencyTrains(n_features=1, n_steps=5, first_step=0, last_step=5)
    with pytest.raises(DatasetError, match="no spike-train encoding"):
        default_train_encoding("mnist")
    assert default_train_encoding("yinyang").n_inputs == 40 and default_train_encoding("digits").n_inputs == 64


def test_population_and_rate_trains():
    pop = PopulationTrains(n_features=2, per_feature=5, n_steps=30, first_step=2, last_step=22, sigma=0.1,
                           cutoff=0.2, bias_step=0)
    k = pop.steps(np.array([[0.5, 1.0]]))
    # feature 0 at 0.5: the middle unit (centre 0.5) fires first, its neighbours (0.25, 0.75) at r = e^-3.1 < 0.2 not
    assert k[0, :5].tolist() == [-1, -1, 2, -1, -1]
    assert k[0, 9] == 2 and k[0, 8] == -1  # 1.0: the last unit only
    r = pop.raster(np.array([[0.5, 1.0]]))
    assert r.shape == (30, 1, 11) and r.sum() == 3 and r[0, 0, 10] == 1
    near = pop.steps(np.array([[0.55, 0.0]]))[0, 2]
    assert 2 < near < 22  # off-centre: later
    rate = RateTrains(n_features=2, n_steps=12, window=10, max_spikes=4, value_min=0, value_max=16)
    assert rate.counts(np.array([[16.0, 8.0]])).tolist() == [[4, 2]]
    rr = rate.raster(np.array([[16.0, 8.0], [0.0, 2.0]]))
    assert rr[:, 0, 0].nonzero()[0].tolist() == [1, 3, 6, 8]  # floor((k + 1/2) * 10 / 4)
    assert rr[:, 0, 1].nonzero()[0].tolist() == [2, 7]
    assert rr[:, 1, 0].sum() == 0  # value 0: silent
    assert rr[:, 1, 1].sum() == 0  # 2/16 * 4 = 0.5 -> rounds to 0 (even)
    with pytest.raises(DatasetError, match="max_spikes"):
        RateTrains(n_features=1, n_steps=5, window=4, max_spikes=6)


def test_delayed_xor_task():
    task = DelayedXor(group=5, cue=4, delay=12, response=6, p_cue=0.5, p_noise=0.0)
    r, y, bits = delayed_xor(400, seed=1, task=task)
    assert r.shape == (task.n_steps, 400, 20)
    np.testing.assert_array_equal(y, bits[:, 0] ^ bits[:, 1])
    assert abs(y.mean() - 0.5) < 1e-9  # balanced
    for n in range(20):
        a, b = bits[n]
        on = r[:, n].sum(0)
        assert on[a * 5:(a + 1) * 5].sum() > 0 and on[(1 - a) * 5:(2 - a) * 5].sum() == 0
        assert on[10 + b * 5:10 + (b + 1) * 5].sum() > 0 and on[10 + (1 - b) * 5:10 + (2 - b) * 5].sum() == 0
    assert r[task.cue:task.cue + task.delay].sum() == 0  # the delay is silent without noise
    assert r[task.response_window[0]:].sum() == 0
    r2, y2, _ = delayed_xor(400, seed=1, task=task)
    assert np.array_equal(r, r2) and np.array_equal(y, y2)


def test_pattern_task():
    task = PatternTask(n_in=30, n_out=12, duration=500.0, spikes_per_output=3, min_isi=40.0, margin=30.0)
    x, y = pattern_task(task, seed=3)
    assert x.shape == (500, 30) and y.shape == (500, 12)
    assert (y.sum(0) == 3).all()
    for j in range(12):
        k = np.flatnonzero(y[:, j])
        assert k.min() >= 30 and k.max() < 470 and np.diff(k).min() >= 40
    assert 0.002 < x.mean() < 0.01  # 5 Hz
    x2, y2 = pattern_task(task, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


# ------------------------------------------------------------------ init
def test_fluctuation_driven_init_sets_the_membrane_std():
    p = CubaParams.from_time_constants(1.0, 5.0, 10.0, threshold=1e9)  # no spikes: the free membrane
    rate, n_in, T = 0.02, 200, 400
    std = fluctuation_std(n_in, rate, p, T, sigma_u=1.0)
    g = torch.Generator().manual_seed(0)
    s_in = (torch.rand(T, 64, n_in, generator=g) < rate).to(D)
    w = torch.randn(n_in, 32, generator=g, dtype=D) * std
    _, v = cuba_layer(s_in, w, p, Surrogate())
    # temporal fluctuations per neuron and sample, after the start-up transient
    measured = float(v[100:].var(dim=0).mean().sqrt())
    assert measured == pytest.approx(1.0, rel=0.15)
    assert psp_energy(p, T) > psp_energy(p, 3)


# ------------------------------------------------------------------ trainer
def _tiny(**kw):
    base = dict(dataset="randman", hidden=(64,), epochs=12, batch_size=50, lr=5e-3, threads=1,
                data_options={"n_classes": 3, "samples_per_class": 150, "n_units": 20, "seed": 2})
    base.update(kw)
    return TrainsConfig(**base)


@pytest.mark.slow
def test_trainer_learns_a_small_randman_and_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE_DIR", str(tmp_path))
    res = train(_tiny())
    acc = res.metrics["accuracy"]
    assert acc["train"] > 0.8 and acc["test"] > 0.7  # chance: 1/3
    assert res.metrics["val_accuracy_at_init"] < acc["val"]
    assert res.metrics["best_epoch"] >= 1
    again = train(_tiny())
    assert again.metrics["accuracy"] == acc
    assert all(torch.equal(a, b) for a, b in zip(res.network.weights, again.network.weights))


def test_trainer_other_readouts_and_recurrence_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE_DIR", str(tmp_path))
    for kw in (dict(readout="count"), dict(readout="first"), dict(recurrent=True, refractory=2)):
        res = train(_tiny(epochs=2, **kw))
        assert 0.0 <= res.metrics["accuracy"]["test"] <= 1.0
        if kw.get("recurrent"):
            assert res.network.recurrent[0] is not None and res.network.recurrent[0].shape == (64, 64)


@pytest.mark.parametrize("kw,match", [
    (dict(dataset="mnist"), "unknown data set"),
    (dict(readout="last"), "readout"),
    (dict(optimizer="sgd"), "optimizer"),
    (dict(reset="hold"), "reset"),
    (dict(surrogate="gauss"), "shape"),
    (dict(hidden=()), "hidden"),
])
def test_bad_training_options_are_named(kw, match):
    with pytest.raises(HwloopError, match=match):
        train(_tiny(**kw))
