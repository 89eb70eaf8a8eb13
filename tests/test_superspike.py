"""SuperSpike: the online rule against an independent plain-numpy
implementation of its equations, its forward against the family's CUBA
network, its distance against the van Rossum distance of `hwloop.losses`,
the feedback variants, the RMS-max normaliser, and learning on a small
pattern task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwloop.data.tasks import PatternTask, pattern_task
from hwloop.errors import NetworkSpecError
from hwloop.losses import van_rossum_distance
from hwloop.models.trains import Surrogate, cuba_network_forward
from hwloop.models.trains import superspike as ss

pytestmark = pytest.mark.skipif(ss.nb is None, reason="numba not importable")

TASK = PatternTask(n_in=20, n_out=6, duration=300.0, spikes_per_output=2, min_isi=40.0, margin=30.0)


def _reference_trial(s_in, target, w1, w2, fb, cfg: ss.SuperSpikeConfig, learn_hidden: bool, v1, v2):
    """The rule written out from docs/superspike.md, loop by loop."""
    p = cfg.neuron()
    a_, b_, th, R = p.alpha, p.beta, p.threshold, p.refractory
    kr, kd = math.exp(-cfg.dt / cfg.tau_rise), math.exp(-cfg.dt / cfg.tau_decay)
    t_pk = cfg.tau_rise * cfg.tau_decay / (cfg.tau_decay - cfg.tau_rise) * math.log(cfg.tau_decay / cfg.tau_rise)
    peak = math.exp(-t_pk / cfg.tau_decay) - math.exp(-t_pk / cfg.tau_rise)
    gamma = math.exp(-cfg.update_every * cfg.dt / cfg.tau_rms)
    T, n_in = s_in.shape
    n_h, n_o = w2.shape

    def layer():
        return {"i": np.zeros(n), "v": np.zeros(n), "r": np.zeros(n)}

    n = n_h
    H = layer()
    n = n_o
    O = layer()

    def step(L, x):
        act = (L["r"] < 0.5).astype(float)
        L["i"] = a_ * L["i"] + x
        u = act * (b_ * L["v"] + L["i"]) + (1 - act) * L["v"]
        s = ((u > th) & (act > 0)).astype(float)
        L["v"] = u * (1 - s)
        L["r"] = L["r"] - (L["r"] > 0.5) + s * R
        return u, s, act

    q_in, p_in, q_h, p_h = np.zeros(n_in), np.zeros(n_in), np.zeros(n_h), np.zeros(n_h)
    e1r, e1d, m1 = np.zeros((n_in, n_h)), np.zeros((n_in, n_h)), np.zeros((n_in, n_h))
    e2r, e2d, m2 = np.zeros((n_h, n_o)), np.zeros((n_h, n_o)), np.zeros((n_h, n_o))
    er, ed = np.zeros(n_o), np.zeros(n_o)
    dist, since = 0.0, 0
    out_h, out_o = np.zeros((T, n_h)), np.zeros((T, n_o))
    for t in range(T):
        uh, sh, ah = step(H, s_in[t] @ w1)
        uo, so, ao = step(O, sh @ w2)
        out_h[t], out_o[t] = sh, so
        q_in = a_ * q_in + s_in[t]
        p_in = b_ * p_in + q_in
        q_h = a_ * q_h + sh
        p_h = b_ * p_h + q_h
        sg_h = ah / (cfg.beta * np.abs(uh - th) + 1) ** 2
        sg_o = ao / (cfg.beta * np.abs(uo - th) + 1) ** 2
        diff = target[t] - so
        er = kr * er + diff
        ed = kd * ed + diff
        e_o = (ed - er) / peak
        dist += 0.5 * float(e_o @ e_o)
        B = w2.T if cfg.feedback == "symmetric" else fb
        e_h = e_o @ B
        x2 = p_h[:, None] * sg_o[None, :]
        e2r, e2d = kr * e2r + x2, kd * e2d + x2
        m2 += e_o[None, :] * (e2d - e2r) / peak
        if learn_hidden:
            x1 = p_in[:, None] * sg_h[None, :]
            e1r, e1d = kr * e1r + x1, kd * e1d + x1
            m1 += e_h[None, :] * (e1d - e1r) / peak
        since += 1
        if since == cfg.update_every or t == T - 1:
            for w, m, v, on in ((w2, m2, v2, True), (w1, m1, v1, learn_hidden)):
                if not on:
                    continue
                g = m / since
                v[:] = np.maximum(gamma * v, g * g)
                w[:] = np.clip(w + cfg.r0 * g / (np.sqrt(v) + cfg.eps), cfg.w_min, cfg.w_max)
                m[:] = 0.0
            since = 0
    return dist * cfg.dt, out_h, out_o


@pytest.mark.parametrize("feedback", ["symmetric", "random", "uniform", "none"])
def test_rule_equals_the_plain_numpy_reference(feedback):
    x, y = pattern_task(TASK, seed=1)
    cfg = ss.SuperSpikeConfig(feedback=feedback, n_hidden=9, update_every=70, r0=0.2, sigma_u=12.0)
    net = ss.init_net(TASK.n_in, TASK.n_out, float(x.mean()), cfg, seed=2)
    w1, w2 = net.w1.copy(), net.w2.copy()
    v1, v2 = net.v1.copy(), net.v2.copy()
    for _ in range(3):  # three trials: the optimiser state carries over
        d, s_h, s_o = ss.run_trial(net, x, y, learn=True)
        d_ref, h_ref, o_ref = _reference_trial(x, y, w1, w2, net.feedback_fixed, cfg, feedback != "none", v1, v2)
        assert d == pytest.approx(d_ref, rel=1e-10)
        np.testing.assert_array_equal(s_h, h_ref)
        np.testing.assert_array_equal(s_o, o_ref)
    assert s_h.sum() > 0 and s_o.sum() > 0  # the case exercises spikes
    np.testing.assert_allclose(net.w1, w1, rtol=0, atol=1e-10)
    np.testing.assert_allclose(net.w2, w2, rtol=0, atol=1e-10)
    moved = np.abs(net.w1 - ss.init_net(TASK.n_in, TASK.n_out, float(x.mean()), cfg, seed=2).w1).max()
    assert (moved == 0) == (feedback == "none")


def test_forward_is_the_cuba_network_and_distance_is_van_rossum():
    x, y = pattern_task(TASK, seed=4)
    cfg = ss.SuperSpikeConfig(n_hidden=12, sigma_u=12.0)
    net = ss.init_net(TASK.n_in, TASK.n_out, float(x.mean()), cfg, seed=0)
    d, s_h, s_o = ss.run_trial(net, x, y, learn=False)
    p = cfg.neuron()
    out = cuba_network_forward(torch.from_numpy(x)[:, None, :], [torch.from_numpy(net.w1), torch.from_numpy(net.w2)],
                               [p, p], Surrogate(beta=cfg.beta), engine="numba")
    np.testing.assert_array_equal(out.spikes[0][:, 0].numpy(), s_h)
    np.testing.assert_array_equal(out.spikes[1][:, 0].numpy(), s_o)
    ref = float(van_rossum_distance(torch.from_numpy(s_o), torch.from_numpy(y), cfg.dt, cfg.tau_rise, cfg.tau_decay))
    assert d == pytest.approx(ref, rel=1e-9)


def test_rms_max_normaliser_bounds_each_step_and_weights_are_clipped():
    x, y = pattern_task(TASK, seed=5)
    cfg = ss.SuperSpikeConfig(n_hidden=10, r0=0.5, update_every=50, w_min=-0.6, w_max=0.6, sigma_u=12.0)
    net = ss.init_net(TASK.n_in, TASK.n_out, float(x.mean()), cfg, seed=1)
    assert net.w1.min() >= -0.6 and net.w1.max() <= 0.6
    w_before = net.w2.copy()
    cfg1 = ss.SuperSpikeConfig(n_hidden=10, r0=0.5, update_every=10**6, w_min=-0.6, w_max=0.6, sigma_u=12.0)
    net.cfg = cfg1  # one update at the trial's end
    ss.run_trial(net, x, y)
    assert np.abs(net.w2 - w_before).max() <= 0.5 + 1e-12  # |g| / sqrt(max(gamma v, g^2)) <= 1
    assert net.w2.min() >= -0.6 and net.w2.max() <= 0.6


def test_learns_a_small_pattern():
    task = PatternTask(n_in=60, n_out=10, duration=500.0, spikes_per_output=3, min_isi=40.0, margin=30.0)
    x, y = pattern_task(task, seed=0)
    res = ss.train_pattern(x, y, ss.SuperSpikeConfig(n_hidden=32, sigma_u=5.0, r0=0.1), trials=150, seed=0)
    assert res["final_distance"] < res["start_distance"] / 4
    assert len(res["distances"]) == 150


def test_bad_configs_are_named():
    with pytest.raises(NetworkSpecError, match="feedback"):
        ss.SuperSpikeConfig(feedback="transpose")
    with pytest.raises(NetworkSpecError, match="tau_decay"):
        ss.SuperSpikeConfig(tau_rise=10.0, tau_decay=5.0)
    with pytest.raises(NetworkSpecError, match="r0"):
        ss.SuperSpikeConfig(r0=0.0)
