"""The numba QIF kernel against the torch path (the reference implementation,
itself checked against solve_ivp and finite differences in test_qif_model.py)
and, once directly, against the ODE integration.

Both engines are called on the same inputs through `QIF`'s ``engine=``
argument; equality is to rounding: times to 1e-9 in float64 with identical
silent sets, gradients to 1e-7 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.errors import NetworkSpecError
from hwloop.models import network_forward
from hwloop.models.ttfs import qif_kernel
from hwloop.models.ttfs.qif import QIF, extended_times, pseudo_network_forward
from hwloop.network import Layer, NeuronParams

from ode_qif import layer_times

pytestmark = pytest.mark.skipif(not qif_kernel.available(), reason="numba not importable")

T = 1.0
P = NeuronParams(model="qif", tau_mem=1.0, tau_syn=1.0, options={"i0": 1.25, "v0": 0.5})
MODEL = QIF()


def _both_forward(t, w, params=P, t_max=T, extended=True, merge=None):
    a = MODEL._forward(t, w, params, t_max, extended=extended, merge=merge, engine="numba")
    b = MODEL._forward(t, w, params, t_max, extended=extended, merge=merge, engine="torch")
    return a, b


def _assert_times_equal(a, b, atol=1e-9):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "different silent sets"
    fin = torch.isfinite(b)
    np.testing.assert_allclose(a[fin].numpy(), b[fin].numpy(), rtol=0, atol=atol)


def _assert_grads_equal(ga, gb, rtol=1e-7):
    for a, b in zip(ga, gb):
        assert a.dtype == b.dtype and a.shape == b.shape
        scale = float(b.abs().max()) if b.numel() else 0.0
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=rtol * max(scale, 1e-12))


# ------------------------------------------------------------ random layers
@st.composite
def layers(draw):
    """A layer and a batch with what makes the event logic branch: ties
    (quantised times), identical times in every sample (bias spikes), inputs
    after T (pseudo inputs), silent inputs (inf, nan), inputs at 0 and at T."""
    B = draw(st.integers(1, 5))
    S = draw(st.integers(1, 12))
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 1.4 * T, (B, S))
    if draw(st.booleans()):  # quantised: many exact ties
        t = np.round(t * 4) / 4
    special = draw(st.lists(st.tuples(st.integers(0, B - 1), st.integers(0, S - 1),
                                      st.sampled_from([math.inf, math.nan, 0.0, T, 0.5 * T])), max_size=6))
    for b, i, v in special:
        t[b, i] = v
    n_bias = draw(st.integers(0, min(2, S)))
    for i in range(n_bias):
        t[:, S - 1 - i] = draw(st.sampled_from([0.0, 0.1, 0.3, 0.9]))
    scale = draw(st.sampled_from([0.3, 1.0, 2.5]))
    w = rng.normal(draw(st.sampled_from([-0.3, 0.0, 0.3])), scale, (S, n))
    return torch.tensor(t), torch.tensor(w)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(), st.sampled_from([None, True, False]))
def test_times_equal_torch_path(layer, merge):
    t, w = layer
    a, b = _both_forward(t, w, extended=False, merge=merge)
    _assert_times_equal(a, b)
    a, b = _both_forward(t, w, extended=True, merge=merge)
    _assert_times_equal(a, b)
    assert torch.all(torch.isfinite(a))  # every neuron has an extended time


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers(), st.sampled_from([True, False]), st.integers(0, 2**31 - 1))
def test_gradients_equal_torch_path(layer, merge, seed):
    """At the model's extended times (spikes and pseudospikes), at ordinary
    times (silent: zero gradient), and at perturbed 'measured' times that
    change the causal sets. ``merge`` is passed to both engines: at exact ties
    the input-time derivative is one-sided and depends on it."""
    t, w = layer
    gen = torch.Generator().manual_seed(seed)
    ext = MODEL._forward(t, w, P, T, extended=True, merge=merge, engine="torch")
    ordinary = MODEL._forward(t, w, P, T, extended=False, merge=merge, engine="torch")
    measured = ext + 0.2 * torch.rand(ext.shape, dtype=ext.dtype, generator=gen) - 0.1
    go = torch.randn(ext.shape, dtype=torch.float64, generator=gen)
    go[0, 0] = 0.0  # a neuron without upstream gradient
    for t_out in (ext, ordinary, measured):
        ga = MODEL.vjp(t, w, t_out, go, P, T, merge=merge, engine="numba")
        gb = MODEL.vjp(t, w, t_out, go, P, T, merge=merge, engine="torch")
        _assert_grads_equal(ga, gb)


def test_default_engine_is_the_kernel_and_merges_ties():
    """Without ``merge`` the kernel merges the ties of each sample: the torch
    path's merged layout, whatever layout torch would pick for the batch."""
    rng = np.random.default_rng(1)
    t = torch.tensor(np.round(rng.uniform(0, 1.2, (6, 40)) * 10) / 10)
    w = torch.tensor(rng.normal(0.1, 0.8, (40, 7)))
    ext = MODEL._forward(t, w, P, T, extended=True)
    go = torch.randn(ext.shape, dtype=torch.float64)
    _assert_times_equal(ext, MODEL._forward(t, w, P, T, extended=True, engine="torch"))
    _assert_grads_equal(MODEL.vjp(t, w, ext, go, P, T), MODEL.vjp(t, w, ext, go, P, T, merge=True, engine="torch"))


@pytest.mark.parametrize("shape", [(0, 4, 3), (3, 0, 2), (2, 5, 0)])
def test_empty_shapes(shape):
    B, S, n = shape
    t = torch.rand(B, S, dtype=torch.float64)
    w = torch.randn(S, n, dtype=torch.float64)
    a, b = _both_forward(t, w)
    _assert_times_equal(a, b)
    go = torch.ones(B, n, dtype=torch.float64)
    _assert_grads_equal(MODEL.vjp(t, w, a, go, P, T, engine="numba"), MODEL.vjp(t, w, b, go, P, T, engine="torch"))


def test_other_parameters_and_long_gaps():
    """I0, v0, τ away from the defaults; a trial several periods long (gaps of
    more than Θ always hold a spike)."""
    params = NeuronParams(model="qif", tau_mem=0.7, tau_syn=0.7, options={"i0": 2.0, "v0": -1.3})
    rng = np.random.default_rng(2)
    t = torch.tensor(rng.uniform(0, 9.0, (8, 6)))
    w = torch.tensor(rng.normal(-1.0, 2.0, (6, 5)))
    for t_max in (1.0, 9.0):
        a, b = _both_forward(t, w, params, t_max)
        _assert_times_equal(a, b)
        go = torch.randn(a.shape, dtype=torch.float64)
        _assert_grads_equal(MODEL.vjp(t, w, a, go, params, t_max, engine="numba"),
                            MODEL.vjp(t, w, a, go, params, t_max, engine="torch"))


def test_many_strong_inputs_rescaling():
    """300 strong inputs spread over a trial of many free periods (a shear, a
    rotation, a shear, ...) stretch the unnormalised backward state far
    beyond the float range between rescalings: the power-of-two rescaling
    must keep the telescoped gradient exact."""
    t_max = 60.0
    rng = np.random.default_rng(3)
    t = torch.tensor(rng.uniform(0, t_max, (3, 300)))
    w = torch.tensor(rng.normal(0.0, 3.0, (300, 4)))
    t_out = torch.full((3, 4), t_max + 0.5, dtype=torch.float64)  # "pseudospikes": every input is causal
    go = torch.randn(3, 4, dtype=torch.float64)
    ga = MODEL.vjp(t, w, t_out, go, P, t_max, engine="numba")
    gb = MODEL.vjp(t, w, t_out, go, P, t_max, engine="torch")
    assert all(torch.all(torch.isfinite(g)) for g in ga)
    _assert_grads_equal(ga, gb, rtol=1e-6)
    # independent check that the chain spans far more than the float range
    # between rescalings: log |z|² along the sweep, renormalised every step
    om = 1.0  # ω for τ = 1, I0 = 5/4
    grow = 0.0
    for b in range(3):
        order = np.argsort(t[b].numpy())
        for j in range(4):
            z, log_n = np.array([math.cos(math.pi / 2), math.sin(math.pi / 2)]), 0.0
            for i in order:
                s = om * float(t[b, i])
                y = math.sin(s) * z[0] + math.cos(s) * z[1]
                z = z - float(w[i, j]) * y * np.array([math.cos(s), -math.sin(s)])
                log_n += 2 * math.log(np.hypot(*z))
                z /= np.hypot(*z)
                grow = max(grow, abs(log_n) / math.log(2))
    assert grow > 130  # |z|² beyond 2^130 (float32 range; many rescalings of 2^40) somewhere


def test_float32_close_to_float64_and_torch():
    rng = np.random.default_rng(4)
    t = torch.tensor(rng.uniform(0, 1.3, (50, 60)))
    w = torch.tensor(rng.normal(0.1, 0.5, (60, 20)))
    a32, b32 = _both_forward(t.float(), w.float())
    assert a32.dtype == torch.float32
    ref = MODEL._forward(t, w, P, T, extended=True, engine="torch")
    np.testing.assert_allclose(a32.double().numpy(), ref.numpy(), atol=2e-4)
    np.testing.assert_allclose(a32.numpy(), b32.numpy(), atol=2e-4)
    go = torch.randn(ref.shape)
    g32 = MODEL.vjp(t.float(), w.float(), a32, go, P, T, engine="numba")
    g64 = MODEL.vjp(t, w, a32.double(), go.double(), P, T, engine="torch")
    for a, b in zip(g32, g64):
        assert a.dtype == torch.float32
        np.testing.assert_allclose(a.double().numpy(), b.numpy(), rtol=1e-3, atol=1e-3 * float(b.abs().max()))


def test_kernel_matches_ode_integration():
    """Kernel times straight against solve_ivp (tests/ode_qif.py)."""
    rng = np.random.default_rng(5)
    t = rng.uniform(0.0, 1.4, (4, 10))
    t[0, 1] = np.inf
    t[1, :3] = 0.25  # a tie
    w = rng.normal(0.3, 1.0, (10, 6))
    t, w = torch.tensor(t), torch.tensor(w)
    ordinary = MODEL._forward(t, w, P, T, extended=False, engine="numba").numpy()
    extended = MODEL._forward(t, w, P, T, extended=True, engine="numba").numpy()
    ref_o, ref_e = layer_times(t.numpy(), w.numpy(), T)
    assert np.array_equal(np.isinf(ordinary), np.isinf(ref_o))
    assert 0 < np.isinf(ordinary).sum() < ordinary.size
    spk = np.isfinite(ordinary)
    np.testing.assert_allclose(ordinary[spk], ref_o[spk], atol=1e-6, rtol=0)
    np.testing.assert_allclose(extended, ref_e, atol=1e-6, rtol=0)


def test_pseudospikes_for_measured_equal_torch_path():
    rng = np.random.default_rng(6)
    t = torch.tensor(rng.uniform(0, 1.4, (6, 12)))
    w = torch.tensor(rng.normal(0.2, 1.0, (12, 9)))
    ordinary = MODEL._forward(t, w, P, T, extended=False, engine="torch")
    meas = ordinary.clone()
    meas[torch.isfinite(meas) & (torch.arange(9) % 2 == 0)] = math.inf  # target silent where the model spikes
    assert torch.isfinite(meas).any() and (torch.isinf(meas) & torch.isfinite(ordinary)).any()
    a = MODEL.pseudospikes_for_measured(t, w, meas, P, T, engine="numba")
    b = MODEL.pseudospikes_for_measured(t, w, meas, P, T, engine="torch")
    _assert_times_equal(a, b)
    silent = torch.isinf(meas)
    assert torch.all(a[silent] > T) and torch.equal(a[~silent], meas[~silent])


def _net(seed, sizes=(6, 8, 8, 3)):
    rng = np.random.default_rng(seed)
    layers_, weights = [], []
    for a, b in zip(sizes[:-1], sizes[1:]):
        wt = rng.normal(0.1, 0.9, (a + 1, b))
        layers_.append(Layer(weight=wt, neuron=P, bias_times=(0.3,)))
        weights.append(torch.tensor(wt, requires_grad=True))
    x = torch.tensor(rng.uniform(0, 0.9, (7, sizes[0])))
    return layers_, weights, x


def _net_grads(layers_, weights, x, go):
    for w in weights:
        w.grad = None
    out = pseudo_network_forward(layers_, weights, x, T)
    (out[-1] * go).sum().backward()
    return [o.detach() for o in out], [w.grad.clone() for w in weights]


def test_network_training_step_equal_torch_path(monkeypatch):
    """A whole extended forward + backward through autograd, engine chosen by
    the environment variable, as the trainer runs it."""
    layers_, weights, x = _net(7)
    go = torch.randn(7, 3, dtype=torch.float64)
    monkeypatch.setenv(qif_kernel.ENV_VAR, "torch")
    out_t, g_t = _net_grads(layers_, weights, x, go)
    monkeypatch.setenv(qif_kernel.ENV_VAR, "numba")
    out_n, g_n = _net_grads(layers_, weights, x, go)
    for a, b in zip(out_n, out_t):
        _assert_times_equal(a, b)
    assert any(bool((o > T).any()) for o in out_n)  # pseudospikes took part
    _assert_grads_equal(g_n, g_t)
    ordinary = [o.detach() for o in network_forward(layers_, weights, x, T)]
    meas = extended_times(layers_, weights, x, T, measured=ordinary)
    monkeypatch.setenv(qif_kernel.ENV_VAR, "torch")
    meas_t = extended_times(layers_, weights, x, T, measured=ordinary)
    for a, b in zip(meas, meas_t):
        _assert_times_equal(a, b)


def test_environment_forces_torch_path(monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("kernel called")

    t, w = torch.rand(3, 4, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    monkeypatch.setattr(qif_kernel, "layer_forward", boom)
    monkeypatch.setattr(qif_kernel, "layer_vjp", boom)
    monkeypatch.setenv(qif_kernel.ENV_VAR, "torch")
    out = MODEL.pseudo_spike_times(t, w, P, T)
    MODEL.vjp(t, w, out, torch.ones_like(out), P, T)
    monkeypatch.setenv(qif_kernel.ENV_VAR, "auto")
    with pytest.raises(AssertionError, match="kernel called"):
        MODEL.pseudo_spike_times(t, w, P, T)


def test_bad_engine_choices_are_named(monkeypatch):
    t, w = torch.rand(2, 3), torch.randn(3, 2)
    monkeypatch.setenv(qif_kernel.ENV_VAR, "cuda")
    with pytest.raises(NetworkSpecError, match=qif_kernel.ENV_VAR):
        MODEL.spike_times(t, w, P, T)
    monkeypatch.delenv(qif_kernel.ENV_VAR)
    with pytest.raises(NetworkSpecError, match="engine argument"):
        MODEL._forward(t, w, P, T, extended=False, engine="jax")
    with pytest.raises(NetworkSpecError, match="float32/float64"):
        MODEL._forward(t.half(), w.half(), P, T, extended=False, engine="numba")
    # auto falls back to torch where the kernel does not apply
    assert not qif_kernel.use_kernel(None, t.bfloat16(), w.bfloat16())


def test_results_do_not_depend_on_thread_count(monkeypatch):
    """Fixed chunks summed in a fixed order: one thread and two threads give
    bit-identical times and gradients."""
    import os

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    rng = np.random.default_rng(8)
    t = torch.tensor(rng.uniform(0, 1.2, (40, 30)))
    w = torch.tensor(rng.normal(0.1, 0.6, (30, 10)))
    go = torch.randn(40, 10, dtype=torch.float64)
    before = torch.get_num_threads()
    monkeypatch.setattr(qif_kernel, "_pool", None)
    try:
        res = []
        for k in (1, 2):
            torch.set_num_threads(k)  # the kernel follows torch's thread count
            ext = MODEL.pseudo_spike_times(t, w, P, T)
            res.append((ext, *MODEL.vjp(t, w, ext, go, P, T, engine="numba")))
            assert (qif_kernel._pool is not None) == (k == 2)  # 1 thread: no pool at all
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*res):
        assert torch.equal(a, b)
