"""Non-leaky IF (Mostafa 2017): closed-form spike times vs numerical
integration of the two-variable ODE, gradients vs finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from hwloop.errors import NetworkSpecError
from hwloop.models import get_model
from hwloop.models.ttfs.nlif import NonLeakyIF
from hwloop.network import NeuronParams

T = 3.0
P = NeuronParams(model="nlif", tau_syn=1.0, tau_mem=1.0, threshold=1.0)
MODEL = NonLeakyIF()


def ode_layer(t_in, w, t_max, tau_s=1.0, theta=1.0):
    t_in, w = np.asarray(t_in), np.asarray(w)
    out = np.empty((t_in.shape[0], w.shape[1]))
    for b in range(t_in.shape[0]):
        for j in range(w.shape[1]):
            out[b, j] = _ode_one(t_in[b], w[:, j], t_max, tau_s, theta)
    return out


def _ode_one(t_in, w, t_max, tau_s, theta):
    """dV/dt = I, dI/dt = −I/τs, I jumps by w at each delivered input; the
    first upward crossing of V = ϑ (solve_ivp event, tolerances 1e-12)."""
    order = [i for i in np.argsort(t_in, kind="stable") if t_in[i] <= t_max]

    def rhs(_t, y):
        return [y[1], -y[1] / tau_s]

    def hit(_t, y):
        return y[0] - theta

    hit.terminal, hit.direction = True, 1.0
    y, t = np.array([0.0, 0.0]), 0.0
    for i in order + [None]:
        t_next = t_max if i is None else float(t_in[i])
        if t_next > t:
            sol = solve_ivp(rhs, (t, t_next), y, method="DOP853", rtol=1e-12, atol=1e-12, events=hit)
            if sol.t_events[0].size:
                return float(sol.t_events[0][0])
            y, t = sol.y[:, -1].copy(), t_next
        if i is not None:
            y[1] += w[i]
    return math.inf


def _layer(seed, B=4, S=10, n=6):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, T * 1.1, (B, S))
    t[0, 0] = np.inf
    w = rng.normal(0.25, 0.6, (S, n))
    return torch.tensor(t), torch.tensor(w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_times_match_ode_integration(seed):
    t, w = _layer(seed)
    got = MODEL.spike_times(t, w, P, T).numpy()
    ref = ode_layer(t.numpy(), w.numpy(), T)
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    assert 0 < np.isinf(got).sum() < got.size
    ok = np.isfinite(got)
    np.testing.assert_allclose(got[ok], ref[ok], atol=1e-6, rtol=0)


def test_other_time_constant_and_threshold():
    params = NeuronParams(model="nlif", tau_syn=0.6, tau_mem=0.6, threshold=0.4)
    t, w = _layer(3)
    got = MODEL.spike_times(t, w, params, T).numpy()
    ref = ode_layer(t.numpy(), w.numpy(), T, tau_s=0.6, theta=0.4)
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    np.testing.assert_allclose(got[np.isfinite(got)], ref[np.isfinite(ref)], atol=1e-6)


def test_inhibition_can_prevent_a_crossing_that_an_earlier_prefix_would_make():
    """Σw over all inputs exceeds the threshold term but a late inhibitory
    input arrives before the crossing: the causal-set search must not use a
    prefix whose root lies beyond the next input."""
    t = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    w = torch.tensor([[1.5], [-1.4]], dtype=torch.float64)
    # alone, the first input would cross at ln 3 ≈ 1.1 > 0.5; with the second, Σw < ϑ/τs
    assert math.isinf(_ode_one(t[0].numpy(), w[:, 0].numpy(), T, 1.0, 1.0))
    assert math.isinf(MODEL.spike_times(t, w, P, T).item())
    w2 = torch.tensor([[1.5], [-0.3]], dtype=torch.float64)  # weaker inhibition: a later spike
    ref = _ode_one(t[0].numpy(), w2[:, 0].numpy(), T, 1.0, 1.0)
    assert 0.5 < ref < T and abs(MODEL.spike_times(t, w2, P, T).item() - ref) < 1e-6


def test_float32_agrees():
    t, w = _layer(4, B=8, S=20, n=10)
    a = MODEL.spike_times(t, w, P, T)
    b = MODEL.spike_times(t.float(), w.float(), P, T)
    assert torch.equal(torch.isinf(a), torch.isinf(b))
    fin = torch.isfinite(a)
    np.testing.assert_allclose(b[fin].double().numpy(), a[fin].numpy(), atol=1e-4)


@pytest.mark.parametrize("seed", [5, 6])
def test_gradients_match_finite_differences(seed):
    t, w = _layer(seed, B=3, S=8, n=5)
    t_out = MODEL.spike_times(t, w, P, T)
    go = torch.randn(t_out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    g_in, g_w = MODEL.vjp(t, w, t_out, go, P, T)

    def f(tt, ww):
        o = MODEL.spike_times(tt, ww, P, T)
        return float(torch.where(torch.isfinite(o), o * go, torch.zeros_like(o)).sum())

    h = 1e-6
    checked = 0
    for x, g, fn in ((w, g_w, lambda v: f(t, v)), (t, g_in, lambda v: f(v, w))):
        flat = x.clone().view(-1)
        for i in range(flat.numel()):
            x0 = flat[i].item()
            if not math.isfinite(x0):
                continue
            xp, xm = flat.clone(), flat.clone()
            xp[i], xm[i] = x0 + h, x0 - h
            fp, fm = fn(xp.view(x.shape)), fn(xm.view(x.shape))
            f0 = fn(flat.view(x.shape))
            if abs((fp - f0) - (f0 - fm)) > 1e-2 * (abs(fp - f0) + abs(f0 - fm)) + 1e-9:
                continue  # a spike crosses an input or the trial end: not differentiable here
            fd = (fp - fm) / (2 * h)
            assert abs(g.reshape(-1)[i].item() - fd) <= 1e-3 * abs(fd) + 1e-6, (i, g.reshape(-1)[i].item(), fd)
            checked += 1
    assert checked > 0.9 * (w.numel() + torch.isfinite(t).sum().item())
    assert g_w.abs().sum() > 0 and g_in.abs().sum() > 0


def test_gradient_of_a_silent_neuron_is_zero_and_measured_time_is_used():
    t = torch.tensor([[0.1, 0.5]], dtype=torch.float64)
    w = torch.tensor([[1.5], [1.0]], dtype=torch.float64)
    t_model = MODEL.spike_times(t, w, P, T)
    go = torch.ones(1, 1, dtype=torch.float64)
    g_model = MODEL.vjp(t, w, t_model, go, P, T)
    g_meas = MODEL.vjp(t, w, t_model + 0.01, go, P, T)
    assert not torch.equal(g_model[1], g_meas[1])  # the closed form uses the measured time itself
    silent = MODEL.vjp(t, w, torch.full((1, 1), math.inf, dtype=torch.float64), go, P, T)
    assert all(torch.all(g == 0) for g in silent)


def test_registered_and_errors_named():
    assert isinstance(get_model("nlif"), NonLeakyIF)
    t, w = _layer(0)
    with pytest.raises(NetworkSpecError, match="threshold"):
        MODEL.spike_times(t, w, NeuronParams(model="nlif", threshold=-1.0), T)
    with pytest.raises(NetworkSpecError, match="n_src"):
        MODEL.spike_times(t, w[:3], P, T)
