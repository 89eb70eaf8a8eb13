"""QIF (theta) model: spike times vs numerical ODE integration, gradients vs
finite differences, pseudospike continuity, and the paper's single-neuron
spike addition / removal task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwloop.errors import NetworkSpecError
from hwloop.models import get_model, network_forward
from hwloop.models.ttfs.qif import QIF, extended_times, pseudo_network_forward
from hwloop.network import Layer, NeuronParams

from ode_qif import layer_times


@pytest.fixture(autouse=True, params=["numba", "torch"])
def engine(request, monkeypatch):
    """Every test here runs on both engines: the numba kernel (the default)
    and the torch reference path, each against the ODE and finite differences."""
    monkeypatch.setenv("HWLOOP_QIF_ENGINE", request.param)
    return request.param

T = 1.0
P = NeuronParams(model="qif", tau_mem=1.0, tau_syn=1.0, options={"i0": 1.25, "v0": 0.5})
MODEL = QIF()


def _layer(seed, B=4, S=10, n=6, tie=False, late=True):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 1.4 if late else T, (B, S))  # some inputs after T (pseudo inputs)
    t[0, 1] = np.inf
    if tie:  # quantised times: many exactly coincident inputs
        t = np.round(t * 3) / 3
    w = rng.normal(0.3, 1.0, (S, n))
    return torch.tensor(t), torch.tensor(w)


def _fwd(t, w, extended=True, merge=None, params=P):
    return MODEL._forward(t, w, params, T, extended=extended, merge=merge)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("merge", [False, True])
def test_times_match_ode_integration(seed, merge):
    t, w = _layer(seed, tie=merge)
    ordinary = _fwd(t, w, extended=False, merge=merge).numpy()
    extended = _fwd(t, w, extended=True, merge=merge).numpy()
    ref_o, ref_e = layer_times(t.numpy(), w.numpy(), T)
    assert np.array_equal(np.isinf(ordinary), np.isinf(ref_o))
    assert 0 < np.isinf(ordinary).sum() < ordinary.size  # both kinds present
    spk = np.isfinite(ordinary)
    np.testing.assert_allclose(ordinary[spk], ref_o[spk], atol=1e-5, rtol=0)
    np.testing.assert_allclose(extended, ref_e, atol=1e-5, rtol=0)
    assert np.all(extended[~spk] > T) and np.all(extended[spk] <= T)


def test_other_parameters_match_ode():
    params = NeuronParams(model="qif", tau_mem=0.7, tau_syn=0.7, options={"i0": 2.0, "v0": -1.3})
    t, w = _layer(5, S=7, n=5)
    got = MODEL._forward(t, w, params, T, extended=True)
    _, ref = layer_times(t.numpy(), w.numpy(), T, tau=0.7, i0=2.0, v0=-1.3)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5, rtol=0)


def test_long_trial_gaps_longer_than_period():
    """A gap of at least one free period always contains a spike."""
    t_max = 9.0  # Θ = π
    t = torch.tensor([[0.2, 6.0, 8.5]], dtype=torch.float64)
    w = torch.tensor([[-3.0, 0.5], [-2.0, -4.0], [0.3, 0.2]], dtype=torch.float64)
    got = MODEL._forward(t, w, P, t_max, extended=True)
    _, ref = layer_times(t.numpy(), w.numpy(), t_max)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)


def test_float32_agrees_with_float64():
    t, w = _layer(3, B=8, S=30, n=12)
    t64 = _fwd(t, w)
    t32 = _fwd(t.float(), w.float())
    assert t32.dtype == torch.float32
    np.testing.assert_allclose(t32.double().numpy(), t64.numpy(), atol=2e-4)


def test_merged_and_gathered_sweeps_agree():
    t, w = _layer(4, B=6, S=40, n=8, tie=True)
    a, b = _fwd(t, w, merge=True), _fwd(t, w, merge=False)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12)
    go = torch.randn(a.shape, dtype=torch.float64)
    ga = MODEL.vjp(t, w, a, go, P, T, merge=True)
    gb = MODEL.vjp(t, w, b, go, P, T, merge=False)
    np.testing.assert_allclose(ga[1].numpy(), gb[1].numpy(), atol=1e-10)  # weights: order-free


def _fd_check(f, x, analytic, h=1e-6, tol=1e-3):
    """Central differences of scalar f at every entry of x vs analytic.
    Entries at a kink (one-sided differences disagree) are skipped; they must be rare."""
    x = x.clone()
    flat, ana = x.view(-1), analytic.reshape(-1)
    skipped = 0
    for i in range(flat.numel()):
        x0 = flat[i].item()
        if not math.isfinite(x0):
            assert ana[i] == 0
            continue
        flat[i] = x0 + h
        fp = f(x)
        flat[i] = x0 - h
        fm = f(x)
        flat[i] = x0
        f0 = f(x)
        right, left = (fp - f0) / h, (f0 - fm) / h
        if abs(right - left) > 1e-2 * (abs(right) + abs(left)) + 1e-4:
            skipped += 1
            continue
        fd = (fp - fm) / (2 * h)
        assert abs(ana[i].item() - fd) <= tol * abs(fd) + 1e-6, (i, ana[i].item(), fd)
    assert skipped <= max(1, flat.numel() // 20)


@pytest.mark.parametrize("seed", [10, 11])
def test_gradients_match_finite_differences_incl_pseudospikes(seed):
    t, w = _layer(seed, B=3, S=8, n=5)
    t_out = _fwd(t, w)
    assert (t_out > T).any() and (t_out <= T).any()
    go = torch.randn(t_out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    g_in, g_w = MODEL.vjp(t, w, t_out, go, P, T)
    _fd_check(lambda ww: float((_fwd(t, ww) * go).sum()), w, g_w)
    _fd_check(lambda tt: float((_fwd(tt, w) * go).sum()), t, g_in)
    # inputs after T (pseudo inputs) really carry gradient
    late = torch.isfinite(t) & (t > T)
    assert (g_in[late] != 0).any()


def test_merged_gradients_match_finite_differences():
    """Binary-pixel style input: every active input at the same time; weight
    gradients through the merged sweep, and the time gradient of a lone input."""
    rng = np.random.default_rng(7)
    t = np.where(rng.random((3, 12)) < 0.6, 0.25, np.inf)
    t[:, -1] = 0.6  # a lone (bias-like) input
    t, w = torch.tensor(t), torch.tensor(rng.normal(0.2, 0.6, (12, 5)))
    t_out = _fwd(t, w, merge=True)
    go = torch.randn(t_out.shape, dtype=torch.float64)
    g_in, g_w = MODEL.vjp(t, w, t_out, go, P, T, merge=True)
    _fd_check(lambda ww: float((_fwd(t, ww, merge=True) * go).sum()), w, g_w)
    lone = t[:, -1:].clone()

    def f(x):
        tt = t.clone()
        tt[:, -1:] = x
        return float((_fwd(tt, w, merge=True) * go).sum())

    _fd_check(f, lone, g_in[:, -1:])


def test_gradient_at_measured_times_depends_only_on_causal_set():
    t = torch.tensor([[0.1, 0.4, 0.7]], dtype=torch.float64)
    w = torch.tensor([[1.5], [1.5], [0.5]], dtype=torch.float64)
    t_model = _fwd(t, w)
    assert 0.4 < t_model.item() < 0.7
    go = torch.ones(1, 1, dtype=torch.float64)
    g_model = MODEL.vjp(t, w, t_model, go, P, T)
    g_meas = MODEL.vjp(t, w, t_model + 0.05, go, P, T)  # "measured" a bit late, same causal set
    for a, b in zip(g_model, g_meas):
        assert torch.equal(a, b)
    g_late = MODEL.vjp(t, w, torch.tensor([[0.75]], dtype=torch.float64), go, P, T)  # input 3 now causal
    assert g_late[1][2, 0] != 0 and g_model[1][2, 0] == 0
    g_silent = MODEL.vjp(t, w, torch.full((1, 1), math.inf, dtype=torch.float64), go, P, T)
    assert all(torch.all(g == 0) for g in g_silent)


def test_spike_leaves_trial_continuously_as_pseudospike():
    """Sweep an inhibitory weight: the spike moves to T and continues after it."""
    t = torch.tensor([[0.2, 0.5]], dtype=torch.float64)
    ws = np.linspace(-1.5, 0.5, 2001)
    ext, ordinary = [], []
    for a in ws:
        w = torch.tensor([[1.0], [a]], dtype=torch.float64)
        ext.append(_fwd(t, w).item())
        ordinary.append(_fwd(t, w, extended=False).item())
    ext, ordinary = np.array(ext), np.array(ordinary)
    assert np.isinf(ordinary).any() and np.isfinite(ordinary).any()
    assert (ext > T).any() and (ext <= T).any()
    assert np.max(np.abs(np.diff(ext))) < 5e-3  # no jump anywhere, across T included
    assert np.all(np.diff(ext) <= 0)  # more excitation, earlier spike: monotone


def test_pseudospikes_never_enter_the_trial_downstream():
    t, w = _layer(8, B=5, S=10, n=8, late=False)
    ext = _fwd(t, w)
    ordi = _fwd(t, w, extended=False)
    assert (ext > T).any()
    w2 = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) - 0.5
    a = _fwd(ordi, w2, extended=False)
    b = _fwd(ext, w2, extended=False)
    assert torch.equal(a, b)  # in-trial dynamics see only in-trial spikes
    # ... while the downstream pseudospikes do depend on the upstream ones
    assert torch.isinf(a).any() and not torch.equal(_fwd(ordi, w2), _fwd(ext, w2))


def test_pseudospikes_for_measured():
    t, w = _layer(9, B=5, S=10, n=8)
    ordinary, ext = _fwd(t, w, extended=False), _fwd(t, w)
    filled = MODEL.pseudospikes_for_measured(t, w, ordinary, P, T)
    np.testing.assert_allclose(filled.numpy(), ext.numpy(), atol=1e-12)
    # the target is silent where the model spikes: pseudospike right after T
    spk = torch.isfinite(ordinary)
    meas = ordinary.clone()
    meas[spk] = math.inf
    filled = MODEL.pseudospikes_for_measured(t, w, meas, P, T)
    assert torch.all(filled[spk] > T) and torch.all(filled[spk] < T + 1e-9)
    assert torch.equal(filled[~spk], ext[~spk])


def _net(seed, sizes=(4, 6, 3)):
    rng = np.random.default_rng(seed)
    layers, weights = [], []
    for a, b in zip(sizes[:-1], sizes[1:]):
        wt = rng.normal(0.1, 0.8, (a + 1, b))
        layers.append(Layer(weight=wt, neuron=P, bias_times=(0.3,)))
        weights.append(torch.tensor(wt, requires_grad=True))
    x = torch.tensor(rng.uniform(0, 0.8, (5, sizes[0])))
    return layers, weights, x


def test_network_gradients_chain_through_silent_layers():
    layers, weights, x = _net(12)
    out = pseudo_network_forward(layers, weights, x, T)
    assert all(torch.all(torch.isfinite(o)) for o in out)
    go = torch.randn(out[-1].shape, dtype=torch.float64)
    (out[-1] * go).sum().backward()

    def f(ws):
        return float((extended_times(layers, ws, x, T)[-1] * go).sum())

    for li in range(len(weights)):
        base = [w.detach().clone() for w in weights]

        def fl(wl, li=li):
            ws = list(base)
            ws[li] = wl
            return f(ws)

        _fd_check(fl, base[li], weights[li].grad)


def test_silent_network_gets_gradients():
    """All neurons of both layers silent: pseudospikes still carry gradient to every layer."""
    layers, weights, x = _net(13)
    with torch.no_grad():
        for w in weights:
            w.mul_(0.0).add_(-0.3)
    out = pseudo_network_forward(layers, weights, x, T)
    assert all(torch.all(o > T) for o in out)
    ordinary = network_forward(layers, weights, x, T)
    assert all(torch.all(torch.isinf(o)) for o in ordinary)
    out[-1].sum().backward()
    assert all(w.grad.abs().sum() > 0 for w in weights)


def test_measured_path_reproduces_simulation():
    layers, weights, x = _net(14)
    ordinary = [o.detach() for o in network_forward(layers, weights, x, T)]  # what a perfect target measures
    sim = extended_times(layers, weights, x, T)
    meas = extended_times(layers, weights, x, T, measured=ordinary)
    for a, b in zip(sim, meas):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12)


def _train_single(t_in, w0, target, steps, lr):
    """Gradient descent on the weights of one neuron towards a target (extended)
    time; updates clipped elementwise (as in the paper) so the trajectory is
    sampled finely enough to see whether it jumps."""
    w = w0.clone()
    traj = []
    for _ in range(steps):
        t_out = _fwd(t_in, w)
        traj.append(t_out.item())
        g = 2 * (t_out - target)
        _, gw = MODEL.vjp(t_in, w, t_out, g, P, T)
        w -= torch.clamp(lr * gw, -0.01, 0.01)
    traj.append(_fwd(t_in, w).item())
    return np.array(traj)


def test_single_neuron_gradient_descent_adds_a_spike():
    rng = np.random.default_rng(3)
    t_in = torch.tensor(rng.uniform(0, T, (1, 10)))
    w0 = torch.full((10, 1), -0.4, dtype=torch.float64)
    traj = _train_single(t_in, w0, target=0.5, steps=800, lr=0.05)
    assert traj[0] > T  # starts silent: a pseudospike
    assert abs(traj[-1] - 0.5) < 1e-3  # ends as an ordinary spike at the target
    cross = np.argmax(traj <= T)
    assert cross > 0 and traj[cross - 1] > T
    assert np.max(np.abs(np.diff(traj))) < 0.15  # small weight steps, small time steps: no jump
    assert np.max(np.abs(np.diff(traj[cross - 3:cross + 3]))) < 0.05  # in particular across T


def test_single_neuron_gradient_descent_removes_a_spike():
    rng = np.random.default_rng(4)
    t_in = torch.tensor(rng.uniform(0, T, (1, 10)))
    w0 = torch.full((10, 1), 0.5, dtype=torch.float64)
    target = T + 0.6  # a pseudospike time: no spike in the trial
    traj = _train_single(t_in, w0, target=target, steps=300, lr=0.05)
    assert traj[0] <= T
    assert abs(traj[-1] - target) < 1e-3
    cross = np.argmax(traj > T)
    assert cross > 0 and np.all(traj[cross:] > T)  # left the trial, and stayed out
    assert np.max(np.abs(np.diff(traj))) < 0.05


def test_registered_and_autograd_through_network_forward():
    assert isinstance(get_model("qif"), QIF)
    layers, weights, x = _net(15)
    out = network_forward(layers, weights, x, T)
    assert torch.isinf(out[0]).any() or torch.isfinite(out[0]).all()
    loss = torch.where(torch.isfinite(out[-1]), out[-1], torch.zeros_like(out[-1])).sum()
    loss.backward()
    assert all(torch.all(torch.isfinite(w.grad)) for w in weights)


@pytest.mark.parametrize(
    "options, match",
    [({"i0": 0.2}, "i0 must be > 1/4"), ({"i0": 1.25, "vo": 0.5}, "unknown option"), ({"v0": math.nan}, "v0")],
)
def test_bad_parameters_are_named(options, match):
    t, w = _layer(0)
    with pytest.raises(NetworkSpecError, match=match):
        MODEL.spike_times(t, w, NeuronParams(model="qif", options=options), T)


def test_bad_shapes_are_named():
    with pytest.raises(NetworkSpecError, match="n_src"):
        MODEL.spike_times(torch.zeros(2, 3), torch.zeros(4, 2), P, T)
