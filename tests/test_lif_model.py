"""The LIF first-spike-time model against references that do not share its
closed form: scipy/mpmath Lambert W, numerical ODE integration
(tests/ode_lif.py), the PSP kernel sum on a fine grid, central finite
differences and an independent numpy implementation of the IFT gradient."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwloop.errors import NetworkSpecError
from hwloop.models import get_model, network_forward
from hwloop.models.ttfs import lif as lif_module
from hwloop.models.base import SpikeLayerFn
from hwloop.models.ttfs.lambertw import lambertw, lambertw_neg
from hwloop.models.ttfs.lif import LIF, VDOT_FLOOR, clear_workspace
from hwloop.network import Layer, NeuronParams

sys.path.insert(0, str(Path(__file__).parent))
from ode_lif import first_spike_times_ode  # noqa: E402

INV_E = math.exp(-1.0)
RATIOS = (1.0, 2.0)  # tau_mem / tau_syn


def params(ratio=1.0, tau_syn=1.0, threshold=1.0):
    return NeuronParams(model="lif", tau_syn=tau_syn, tau_mem=ratio * tau_syn, threshold=threshold)


def kernel(s, tau_syn, tau_mem):
    """PSP kernel eps(s) (0 for s <= 0), straight from the model definition."""
    s = np.asarray(s, dtype=np.float64)
    pos = s > 0
    sp = np.where(pos, s, 0.0)
    if abs(tau_mem - tau_syn) < 1e-12:
        v = sp / tau_mem * np.exp(-sp / tau_mem)
    else:
        v = tau_syn / (tau_mem - tau_syn) * (np.exp(-sp / tau_mem) - np.exp(-sp / tau_syn))
    return np.where(pos, v, 0.0)


def kernel_dot(s, tau_syn, tau_mem):
    s = np.asarray(s, dtype=np.float64)
    pos = s > 0
    sp = np.where(pos, s, 0.0)
    if abs(tau_mem - tau_syn) < 1e-12:
        v = (1.0 - sp / tau_mem) * np.exp(-sp / tau_mem) / tau_mem
    else:
        v = tau_syn / (tau_mem - tau_syn) * (np.exp(-sp / tau_syn) / tau_syn - np.exp(-sp / tau_mem) / tau_mem)
    return np.where(pos, v, 0.0)


def random_layer(seed, B=8, n=12, n_out=8, t_hi=3.0, silent=0.2, w_mean=0.6, w_std=1.0):
    """Mixed excitatory/inhibitory weights, some silent (inf) inputs."""
    rng = np.random.default_rng(seed)
    t_in = rng.uniform(0.0, t_hi, (B, n))
    t_in[rng.random((B, n)) < silent] = np.inf
    w = rng.normal(w_mean, w_std, (n, n_out))
    return t_in, w


def run(t_in, w, p, t_max, dtype=torch.float64):
    return LIF().spike_times(torch.tensor(t_in, dtype=dtype), torch.tensor(w, dtype=dtype), p, t_max)


# ------------------------------------------------------------------ Lambert W
class TestLambertW:
    def test_matches_scipy_over_domain(self):
        z = np.concatenate([
            np.linspace(-0.36, 5.0, 2001),
            -INV_E + np.logspace(-6, -0.5, 200),
            -np.logspace(-300, -0.5, 200),
            np.logspace(-300, 300, 301),
        ])
        ref = scipy.special.lambertw(z).real
        got = lambertw(torch.tensor(z)).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-300)

    def test_large_arguments(self):
        z = np.array([1e10, 1e50, 1e100, 1e200, 1e300, 1.7e308])
        got = lambertw(torch.tensor(z)).numpy()
        np.testing.assert_allclose(got, scipy.special.lambertw(z).real, rtol=1e-14)
        assert lambertw(torch.tensor([math.inf], dtype=torch.float64)).item() == math.inf

    def test_near_branch_point_against_mpmath(self):
        # scipy loses digits to the conditioning near -1/e; mpmath at 40 digits
        # gives W of the exact double we pass in
        z = -INV_E + np.logspace(-16, -2, 120)
        with mpmath.workdps(40):
            ref = np.array([float(mpmath.lambertw(mpmath.mpf(float(x)))) for x in z])
        got = lambertw(torch.tensor(z)).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)

    def test_at_and_below_branch_point(self):
        # float(-1/e) is 1.2e-17 above the true branch point: W = -1 + O(1e-8)
        at = lambertw(torch.tensor([-INV_E], dtype=torch.float64)).item()
        assert abs(at + 1.0) < 1e-7
        # a few ulps below (caller rounding): forgiven, W = -1 to rounding
        below = torch.tensor([-INV_E * (1 + 2e-16), np.nextafter(-INV_E, -1)], dtype=torch.float64)
        np.testing.assert_allclose(lambertw(below).numpy(), [-1.0, -1.0], rtol=0, atol=5e-16)
        for dtype in (torch.float64, torch.float32):
            # clearly outside the real domain: NaN, not a crash or a made-up value
            out = lambertw(torch.tensor([-0.37, -1.0, -math.inf], dtype=dtype))
            assert out.isnan().all()
            assert lambertw(torch.tensor([math.nan], dtype=dtype)).isnan().all()

    def test_zero_and_tiny(self):
        z = torch.tensor([0.0, -0.0, 1e-300, -1e-300, 1e-20], dtype=torch.float64)
        np.testing.assert_allclose(lambertw(z).numpy(), scipy.special.lambertw(z.numpy()).real, rtol=1e-15)

    def test_float32(self):
        z32 = np.concatenate([np.linspace(-0.36, 10, 500), -INV_E + np.logspace(-6, -1, 50),
                              np.logspace(-30, 30, 61)]).astype(np.float32)
        z32 = z32[z32.astype(np.float64) > -INV_E]
        got = lambertw(torch.tensor(z32))
        assert got.dtype == torch.float32
        ref = scipy.special.lambertw(z32.astype(np.float64)).real
        np.testing.assert_allclose(got.numpy(), ref, rtol=2e-6, atol=2e-6)
        # the float32 nearest -1/e lies just below it: forgiven, not NaN
        b = lambertw(torch.tensor([-INV_E], dtype=torch.float32))
        assert torch.isfinite(b).all() and abs(b.item() + 1.0) < 1e-3

    def test_lean_negative_branch_matches(self):
        """`lambertw_neg` (the model's path) agrees with scipy/mpmath on
        [-1/e, 0] in both dtypes, including 0 and the branch point."""
        z = np.concatenate([np.linspace(-INV_E, 0.0, 4001), -np.logspace(-300, -0.5, 300),
                            -INV_E + np.logspace(-12, -1, 100)])
        z = z[z >= -INV_E]
        got = lambertw_neg(torch.tensor(z)).numpy()
        ref = np.where(z == -INV_E, -1.0, scipy.special.lambertw(np.where(z == -INV_E, -0.3, z)).real)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=5e-9)  # atol: scipy's own error at p ~ 1e-8
        near = -INV_E + np.logspace(-16, -3, 60)
        with mpmath.workdps(40):
            ref_near = [float(mpmath.lambertw(mpmath.mpf(float(x)))) for x in near]
        np.testing.assert_allclose(lambertw_neg(torch.tensor(near)).numpy(), ref_near, atol=1e-13)
        tiny = lambertw_neg(torch.tensor([0.0, -1e-300], dtype=torch.float64)).numpy()
        assert tiny[0] == 0.0
        np.testing.assert_allclose(tiny[1], -1e-300, rtol=1e-15)
        z32 = z.astype(np.float32)
        z32 = z32[z32.astype(np.float64) >= -INV_E]
        got32 = lambertw_neg(torch.tensor(z32))
        assert got32.dtype == torch.float32 and torch.isfinite(got32).all()
        np.testing.assert_allclose(got32.numpy(), scipy.special.lambertw(z32.astype(np.float64)).real,
                                   atol=2e-6)

    def test_identity(self):
        w = lambertw(torch.linspace(-INV_E, 50.0, 4001, dtype=torch.float64))
        z = torch.linspace(-INV_E, 50.0, 4001, dtype=torch.float64)
        np.testing.assert_allclose((w * torch.exp(w)).numpy(), z.numpy(), rtol=1e-14, atol=1e-15)
        assert (w >= -1.0).all()


# ------------------------------------------------------- forward vs the ODE
class TestAgainstODE:
    @pytest.mark.parametrize("ratio", RATIOS)
    @pytest.mark.parametrize("seed", range(4))
    def test_random_layers(self, ratio, seed):
        tau_syn = (0.7, 1.0, 1.3, 2.0)[seed]
        theta = (1.0, 0.8, 1.2, 1.5)[seed]
        p = params(ratio, tau_syn, theta)
        # more inputs than neurons for even seeds, fewer for odd ones: the
        # model lays its expansion out differently in the two cases
        n, n_out, w_mean = (12, 8, 0.6) if seed % 2 == 0 else (6, 14, 1.2)
        t_in, w = random_layer(seed, n=n, n_out=n_out, t_hi=3.0 * tau_syn, w_mean=w_mean)
        t_in[0, :3] = t_in[0, 3]  # simultaneous inputs
        t_max = 5.0 * tau_syn
        ref = first_spike_times_ode(t_in, w, tau_syn, p.tau_mem, theta, t_max)
        got = run(t_in, w, p, t_max).numpy()
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        spiking = np.isfinite(ref)
        assert 0.3 < spiking.mean() < 1.0  # a mix of spiking and silent neurons
        np.testing.assert_allclose(got[spiking], ref[spiking], rtol=0, atol=1e-5)

    @pytest.mark.parametrize("ratio", RATIOS)
    def test_trial_end_cuts_off(self, ratio):
        t_in, w = random_layer(11, B=6, n=10, n_out=6, silent=0.1, w_mean=0.8)
        p = params(ratio)
        full = run(t_in, w, p, 50.0).numpy()
        spikes = np.sort(full[np.isfinite(full)])
        mid = len(spikes) // 2
        t_cut = 0.5 * (spikes[mid - 1] + spikes[mid])  # between two spikes, not on one
        got = run(t_in, w, p, t_cut).numpy()
        ref = first_spike_times_ode(t_in, w, 1.0, ratio, 1.0, t_cut)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        np.testing.assert_array_equal(np.isinf(got), ~(full <= t_cut))
        assert np.isfinite(got).any() and np.isinf(got).any()
        np.testing.assert_allclose(got[np.isfinite(got)], ref[np.isfinite(ref)], atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), ratio=st.sampled_from(RATIOS),
       theta=st.floats(0.3, 2.0), w_mean=st.floats(-0.5, 1.5))
def test_first_crossing_on_fine_grid(seed, ratio, theta, w_mean):
    """V(t*) = theta and V < theta before t* (kernel sum on a grid); silent
    neurons stay below threshold on the whole trial."""
    t_in, w = random_layer(seed, B=3, n=7, n_out=5, w_mean=w_mean)
    p = params(ratio, threshold=theta)
    t_max = 6.0
    got = run(t_in, w, p, t_max).numpy()
    grid = np.linspace(0.0, t_max, 6001)
    for b in range(t_in.shape[0]):
        V = kernel(grid[:, None] - t_in[b][None, :], 1.0, ratio) @ w  # (grid, n_out)
        for j in range(w.shape[1]):
            t_star = got[b, j]
            if np.isinf(t_star):
                assert V[:, j].max() < theta * (1 + 1e-6)
            else:
                V_star = kernel(t_star - t_in[b], 1.0, ratio) @ w[:, j]
                assert abs(V_star - theta) < 1e-9 * max(1.0, theta)
                before = grid < t_star - 1e-6
                assert (V[before, j] < theta * (1 + 1e-9)).all()


# --------------------------------------------------------------- gradients
def _included(t_in, w, t_out, p, t_max, margin=1e-3, vdot_min=0.05):
    """Outputs where the spike time is a smooth function of (t_in, w): it
    exists, is not within ``margin`` of an input time (causal-set boundary)
    or of the trial end, and V'(t*) is not near 0 (tangent case)."""
    inc = np.isfinite(t_out) & (t_out < t_max - margin)
    for b in range(t_out.shape[0]):
        for j in range(t_out.shape[1]):
            if not inc[b, j]:
                continue
            d = t_out[b, j] - t_in[b]
            vdot = kernel_dot(d, p.tau_syn, p.tau_mem) @ w[:, j]
            if np.nanmin(np.abs(d[np.isfinite(d)])) < margin or vdot < vdot_min * p.threshold / p.tau_mem:
                inc[b, j] = False
    return inc


def _central(plus, minus, h):
    with np.errstate(invalid="ignore"):  # inf - inf for silent outputs, masked by the caller
        return (plus - minus) / (2 * h)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("seed", range(3))
def test_gradients_vs_finite_differences(ratio, seed):
    p = params(ratio, tau_syn=(1.0, 0.8, 1.5)[seed], threshold=(1.0, 0.9, 1.3)[seed])
    t_in, w = random_layer(100 + seed, B=5, n=8, n_out=5, silent=0.15, w_mean=1.0, t_hi=2.5 * p.tau_syn)
    t_max = 8.0 * p.tau_syn
    model = LIF()
    t_out = run(t_in, w, p, t_max).numpy()
    inc = _included(t_in, w, t_out, p, t_max)
    assert inc.sum() >= 10  # enough smooth outputs for the test to mean something
    rng = np.random.default_rng(seed)
    g = np.where(inc, rng.normal(size=t_out.shape), 0.0)
    gt, gw = model.vjp(torch.tensor(t_in), torch.tensor(w), torch.tensor(t_out), torch.tensor(g), p, t_max)
    h = 1e-6
    n, n_out = w.shape
    # d/dw[i, j]: only neuron j moves, so all perturbed copies of column j are
    # extra output columns of one forward call (columns: j, i, sign)
    cols = np.repeat(w[:, :, None, None], n, 2).repeat(2, 3)  # (n, n_out, n, 2)
    idx = np.arange(n)
    cols[idx, :, idx, 0] += h
    cols[idx, :, idx, 1] -= h
    out_w = run(t_in, cols.reshape(n, -1), p, t_max).numpy().reshape(-1, n_out, n, 2)
    d_out = _central(out_w[..., 0], out_w[..., 1], h)  # (B, n_out, n)
    fd_w = np.einsum("bj,bji->ij", g, np.where(inc[:, :, None], d_out, 0.0))
    # d/dt_in[b, i]: every perturbed copy of sample b is one more sample
    B = t_in.shape[0]
    rows = np.repeat(t_in[:, None, None, :], n, 1).repeat(2, 2)  # (B, n, 2, n)
    rows[:, idx, 0, idx] += h
    rows[:, idx, 1, idx] -= h
    out_t = run(rows.reshape(-1, n), w, p, t_max).numpy().reshape(B, n, 2, n_out)
    d_out = _central(out_t[:, :, 0], out_t[:, :, 1], h)  # (B, n, n_out)
    fd_t = np.einsum("bj,bij->bi", g, np.where(inc[:, None, :], d_out, 0.0))
    fd_t[~np.isfinite(t_in)] = 0.0  # inf +- h: no perturbation at all
    scale_w, scale_t = np.abs(fd_w).max(), np.abs(fd_t).max()
    assert scale_w > 0.1 and scale_t > 0.1
    np.testing.assert_allclose(gw.numpy(), fd_w, rtol=1e-3, atol=1e-3 * scale_w)
    np.testing.assert_allclose(gt.numpy(), fd_t, rtol=1e-3, atol=1e-3 * scale_t)
    assert (gt.numpy()[~np.isfinite(t_in)] == 0).all()


def _ift_reference(t_in, w, t_out, g, p, floor=VDOT_FLOOR):
    """The implicit-function-theorem gradient, written out in numpy loops."""
    gt = np.zeros_like(t_in)
    gw = np.zeros_like(w)
    for b in range(t_in.shape[0]):
        for j in range(w.shape[1]):
            ts = t_out[b, j]
            if not np.isfinite(ts):
                continue
            d = ts - t_in[b]
            causal = np.isfinite(d) & (d > 0)
            eps = np.where(causal, kernel(np.where(causal, d, 0), p.tau_syn, p.tau_mem), 0)
            deps = np.where(causal, kernel_dot(np.where(causal, d, 0), p.tau_syn, p.tau_mem), 0)
            vdot = max(float(deps @ w[:, j]), floor * p.threshold / p.tau_mem)
            gw[:, j] += g[b, j] * (-eps / vdot)
            gt[b] += g[b, j] * w[:, j] * deps / vdot
    return gt, gw


@pytest.mark.parametrize("ratio", RATIOS)
def test_vjp_at_measured_times(ratio):
    """Hardware forward, software backward: the gradient is evaluated at the
    given (perturbed) times, finite everywhere, and equals the IFT formula
    at those times, including times before any input and silent ones."""
    p = params(ratio, tau_syn=1.2, threshold=0.9)
    t_in, w = random_layer(7, B=6, n=10, n_out=7, silent=0.2, w_mean=0.7)
    t_max = 8.0
    t_model = run(t_in, w, p, t_max).numpy()
    rng = np.random.default_rng(3)
    measured = np.where(np.isfinite(t_model), t_model + rng.normal(0, 0.1, t_model.shape), np.inf)
    measured[0, 0] = -0.5  # before every input: no causal set
    measured[1, 1] = np.inf  # the target saw no spike
    measured[2, 2] = 0.5 * (t_in[2][np.isfinite(t_in[2])].min() + 1e-3)  # almost no causal input
    g = rng.normal(size=measured.shape)
    gt, gw = LIF().vjp(torch.tensor(t_in), torch.tensor(w), torch.tensor(measured), torch.tensor(g), p, t_max)
    assert torch.isfinite(gt).all() and torch.isfinite(gw).all()
    rt, rw = _ift_reference(t_in, w, measured, g, p)
    np.testing.assert_allclose(gt.numpy(), rt, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw.numpy(), rw, rtol=1e-10, atol=1e-12)
    # and it really uses the given times: differs from the gradient at the model's
    gt0, gw0 = LIF().vjp(torch.tensor(t_in), torch.tensor(w), torch.tensor(t_model), torch.tensor(g), p, t_max)
    assert not torch.allclose(gw0, gw)


def test_spike_layer_fn_with_measured_times_uses_them():
    p = params(1.0)
    t_in, w = random_layer(5, B=4, n=6, n_out=3, silent=0.0, w_mean=1.0)
    ti = torch.tensor(t_in, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    meas = run(t_in, w, p, 10.0) + 0.05
    out = SpikeLayerFn.apply(ti, wt, LIF(), p, 10.0, meas)
    assert torch.equal(out.detach(), meas)
    g = torch.ones_like(out)
    out.backward(g)
    rt, rw = _ift_reference(t_in, w, meas.numpy(), g.numpy(), p)
    np.testing.assert_allclose(wt.grad.numpy(), rw, rtol=1e-10)
    np.testing.assert_allclose(ti.grad.numpy(), rt, rtol=1e-10)


@pytest.mark.parametrize("ratio", RATIOS)
def test_autograd_gradcheck_single_layer(ratio):
    p = params(ratio, tau_syn=0.7, threshold=0.8)
    rng = np.random.default_rng(1)
    t_in = torch.tensor(rng.uniform(0, 2, (4, 6)), requires_grad=True)
    w = torch.tensor(rng.normal(1.2, 0.6, (6, 5)), requires_grad=True)
    out = run(t_in.detach().numpy(), w.detach().numpy(), p, 8.0).numpy()
    # precondition for gradcheck: every output is in its smooth region
    assert _included(t_in.detach().numpy(), w.detach().numpy(), out, p, 8.0).all()
    assert torch.autograd.gradcheck(lambda t, ww: SpikeLayerFn.apply(t, ww, LIF(), p, 8.0), (t_in, w),
                                    eps=1e-6, atol=1e-6, rtol=1e-4)


def test_network_forward_end_to_end_autograd():
    """Two-layer network through `network_forward`: gradients reach both
    weight matrices and agree with finite differences of a loss over the
    outputs that are smooth functions of the weights."""
    neuron = params(1.0)
    rng = np.random.default_rng(4)
    layers = [Layer(weight=rng.normal(1.5, 0.8, (5, 20)), neuron=neuron, bias_times=(0.9,)),
              Layer(weight=rng.normal(0.5, 0.8, (21, 3)), neuron=neuron, bias_times=(0.9,))]
    x = torch.tensor(rng.uniform(0, 2, (12, 4)))
    ws = [torch.tensor(layer.weight, requires_grad=True) for layer in layers]
    t_max = 6.0
    assert get_model("lif").name == "lif"

    with torch.no_grad():
        hidden, out = network_forward(layers, ws, x, t_max)
    bias = torch.full((12, 1), 0.9, dtype=torch.float64)
    src0 = torch.cat([x, bias], 1).numpy()
    src1 = torch.cat([hidden, bias], 1).numpy()
    inc_out = torch.tensor(_included(src1, ws[1].detach().numpy(), out.numpy(), neuron, t_max))
    inc_hid = _included(src0, ws[0].detach().numpy(), hidden.numpy(), neuron, t_max)
    # hidden neurons whose times are smooth in every sample (and all spike)
    smooth_cols = [j for j in range(20) if inc_hid[:, j].all()]
    assert inc_out.sum() >= 20 and len(smooth_cols) >= 3

    def loss(weights):
        o = network_forward(layers, weights, x, t_max)[-1]
        return torch.where(inc_out, o, 0.0).sum()

    L = loss(ws)
    L.backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in ws)
    assert ws[0].grad.abs().sum() > 0 and ws[1].grad.abs().sum() > 0
    h = 1e-6
    probes = [(1, i, j) for (i, j) in [(0, 0), (5, 1), (20, 2), (13, 0)]]
    probes += [(0, i, j) for i, j in zip((0, 2, 4), smooth_cols[:3])]
    for (layer, i, j) in probes:
        wp = [w.detach().clone() for w in ws]
        wm = [w.detach().clone() for w in ws]
        wp[layer][i, j] += h
        wm[layer][i, j] -= h
        fd = (loss(wp) - loss(wm)).item() / (2 * h)
        assert abs(ws[layer].grad[i, j].item() - fd) <= 1e-4 * max(1.0, abs(fd)), (layer, i, j)
    assert any(abs(ws[0].grad[i, j].item()) > 1e-3 for (layer, i, j) in probes if layer == 0)


# ------------------------------------------------------ tangent and edges
# peak of the single-input PSP: tau (1/e at s = tau) for ratio 1; 1/4 at
# s = 2 tau_s ln 2 for ratio 2
TANGENT = {1.0: (math.e, 1.0), 2.0: (4.0, 2.0 * math.log(2.0))}


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tangent_case(ratio, dtype):
    """A single input whose PSP peak is exactly threshold: no NaN anywhere;
    just above it the spike is at the peak and the gradient is finite and
    set by the documented V' floor."""
    w_tan, s_peak = TANGENT[ratio]
    p = params(ratio)
    t0 = 0.3
    w = torch.tensor([[w_tan, w_tan * (1 + 1e-12), w_tan * (1 + 1e-6), w_tan * (1 - 1e-12)]], dtype=dtype)
    t_in = torch.tensor([[t0]], dtype=dtype)
    out = LIF().spike_times(t_in, w, p, 10.0)
    assert not torch.isnan(out).any()
    if dtype == torch.float64:
        assert torch.isfinite(out[0, 1:3]).all()
        np.testing.assert_allclose(out[0, 1].item(), t0 + s_peak, atol=1e-5)
        np.testing.assert_allclose(out[0, 2].item(), t0 + s_peak, atol=5e-3)
    t_star = torch.where(torch.isfinite(out), out, t0 + s_peak)  # also ask at the peak itself
    gt, gw = LIF().vjp(t_in, w, t_star, torch.ones_like(out), p, 10.0)
    assert torch.isfinite(gt).all() and torch.isfinite(gw).all()
    assert gt.dtype == dtype and gw.dtype == dtype
    # V'(t*) ~ 0 there, so dt/dw = -eps(s_peak) / (floor * theta / tau_m)
    eps_peak = w_tan ** -1  # the peak value of the kernel is 1 / w_tan
    expected = -eps_peak / (VDOT_FLOOR * p.threshold / p.tau_mem)
    np.testing.assert_allclose(gw[0, 1].item(), expected, rtol=1e-2)


@pytest.mark.parametrize("ratio", RATIOS)
def test_all_inputs_silent(ratio):
    p = params(ratio)
    t_in = torch.full((3, 4), math.inf, dtype=torch.float64)
    t_in[1, 2] = 20.0  # after the trial end: also silent
    w = torch.ones(4, 5, dtype=torch.float64) * 3.0
    out = LIF().spike_times(t_in, w, p, 10.0)
    assert torch.isinf(out).all() and (out > 0).all()
    gt, gw = LIF().vjp(t_in, w, out, torch.ones_like(out), p, 10.0)
    assert (gt == 0).all() and (gw == 0).all()


@pytest.mark.parametrize("ratio", RATIOS)
def test_all_inhibitory(ratio):
    p = params(ratio)
    t_in, w = random_layer(2, B=4, n=6, n_out=5, silent=0.0)
    out = run(t_in, -np.abs(w), p, 10.0)
    assert torch.isinf(out).all()


def test_inputs_at_or_after_trial_end_are_ignored():
    p = params(1.0)
    t_in = np.array([[0.0, 1.0, 2.0, 3.0]])
    w = np.array([[0.5], [0.5], [0.5], [50.0]])
    a = run(t_in, w, p, 3.0).numpy()  # the huge input arrives exactly at t_max
    b = run(t_in[:, :3], w[:3], p, 3.0).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ratio", RATIOS)
def test_float32_follows_float64(ratio):
    p = params(ratio, threshold=0.9)
    t_in, w = random_layer(21, B=16, n=12, n_out=10)
    t64 = run(t_in, w, p, 6.0)
    t32 = run(t_in, w, p, 6.0, dtype=torch.float32)
    assert t32.dtype == torch.float32
    inc = _included(t_in, w, t64.numpy(), p, 6.0, margin=1e-2, vdot_min=0.1)
    assert inc.sum() > 20
    np.testing.assert_allclose(t32.numpy()[inc], t64.numpy()[inc], atol=1e-4)
    # silence agrees where the decision is not marginal
    np.testing.assert_array_equal(np.isinf(t32.numpy())[inc], np.isinf(t64.numpy())[inc])
    g = torch.ones_like(t32)
    gt, gw = LIF().vjp(torch.tensor(t_in, dtype=torch.float32), torch.tensor(w, dtype=torch.float32),
                       t32, g, p, 6.0)
    assert gt.dtype == torch.float32 and gw.dtype == torch.float32
    assert torch.isfinite(gt).all() and torch.isfinite(gw).all()


def test_float32_large_time_span_is_computed_safely():
    """Input times spread over more tau_s than float32 exponentials allow:
    the model works in float64 internally and returns float32."""
    p = params(1.0, tau_syn=1.0)
    t_in = np.array([[0.0, 150.0, 151.0]])
    w = np.array([[3.0, 0.5], [3.0, 0.5], [3.0, 0.5]])
    t32 = run(t_in, w, p, 200.0, dtype=torch.float32)
    t64 = run(t_in, w, p, 200.0)
    assert t32.dtype == torch.float32
    np.testing.assert_allclose(t32.numpy(), t64.numpy(), rtol=1e-6)
    assert np.isfinite(t64.numpy()[0, 0]) and t64[0, 0] < 1.0


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("shape", [(10, 6), (4, 9)])
def test_chunked_equals_single_block(monkeypatch, ratio, shape):
    """Batch chunking (forward and vjp) changes nothing but memory use."""
    p = params(ratio)
    t_in, w = random_layer(9, B=40, n=shape[0], n_out=shape[1])
    g = np.random.default_rng(0).normal(size=(40, shape[1]))
    whole = run(t_in, w, p, 6.0)
    gt, gw = LIF().vjp(torch.tensor(t_in), torch.tensor(w), whole, torch.tensor(g), p, 6.0)
    monkeypatch.setattr(lif_module, "_CHUNK_ELEMENTS", 7 * shape[0] * shape[1])
    chunked = run(t_in, w, p, 6.0)
    assert torch.equal(whole, chunked)
    gt2, gw2 = LIF().vjp(torch.tensor(t_in), torch.tensor(w), whole, torch.tensor(g), p, 6.0)
    assert torch.equal(gt, gt2)
    torch.testing.assert_close(gw, gw2, rtol=1e-12, atol=1e-12)  # summed in a different order


def test_workspace_reuse_does_not_leak_between_calls():
    """Results never alias the scratch buffers, and switching shapes and
    dtypes between calls gives the same answers as a fresh workspace."""
    p = params(1.0)
    a_in, a_w = random_layer(31, B=9, n=7, n_out=5)
    b_in, b_w = random_layer(32, B=20, n=3, n_out=11)
    clear_workspace()
    a1 = run(a_in, a_w, p, 6.0)
    a1_copy = a1.clone()
    b1 = run(b_in, b_w, p, 6.0, dtype=torch.float32)
    run(b_in, b_w, p, 6.0)
    assert torch.equal(a1, a1_copy)
    clear_workspace()
    assert torch.equal(run(b_in, b_w, p, 6.0, dtype=torch.float32), b1)
    assert torch.equal(run(a_in, a_w, p, 6.0), a1)


def test_empty_batch():
    w = torch.ones(3, 2, dtype=torch.float64)
    out = LIF().spike_times(torch.empty(0, 3, dtype=torch.float64), w, params(), 5.0)
    assert out.shape == (0, 2)
    gt, gw = LIF().vjp(torch.empty(0, 3, dtype=torch.float64), w, out, torch.ones_like(out), params(), 5.0)
    assert gt.shape == (0, 3) and torch.equal(gw, torch.zeros_like(w))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("tau_mem", [1.5, 3.0, 0.5, 1.0 + 1e-6])
def test_other_time_constant_ratios_are_refused(tau_mem):
    p = NeuronParams(model="lif", tau_syn=1.0, tau_mem=tau_mem, threshold=1.0)
    with pytest.raises(NetworkSpecError, match="tau-ratio"):
        run(np.zeros((1, 2)), np.ones((2, 2)), p, 5.0)
    with pytest.raises(NetworkSpecError, match="tau-ratio"):
        LIF().vjp(torch.zeros(1, 2), torch.ones(2, 2), torch.zeros(1, 2), torch.zeros(1, 2), p, 5.0)


def test_ratio_within_tolerance_is_accepted():
    for tau_mem in (1.0 + 1e-12, 2.0 * (1 - 1e-12)):
        p = NeuronParams(model="lif", tau_syn=1.0, tau_mem=tau_mem, threshold=1.0)
        assert torch.isfinite(run(np.zeros((1, 2)), np.full((2, 1), 5.0), p, 5.0)).all()


@pytest.mark.parametrize("theta", [0.0, -1.0, math.nan])
def test_threshold_must_be_positive(theta):
    p = NeuronParams(model="lif", tau_syn=1.0, tau_mem=1.0, threshold=theta)
    with pytest.raises(NetworkSpecError, match="threshold"):
        run(np.zeros((1, 2)), np.ones((2, 2)), p, 5.0)


def test_bad_trial_length_and_floor_are_refused():
    with pytest.raises(NetworkSpecError, match="t_max"):
        run(np.zeros((1, 2)), np.ones((2, 2)), params(), 0.0)
    with pytest.raises(NetworkSpecError, match="vdot_floor"):
        LIF(vdot_floor=0.0)


def test_vdot_floor_is_configurable():
    """A larger floor bounds the tangent-case gradient proportionally lower."""
    w_tan, s_peak = TANGENT[1.0]
    t_in = torch.tensor([[0.0]], dtype=torch.float64)
    w = torch.tensor([[w_tan]], dtype=torch.float64)
    t_star = torch.tensor([[s_peak]], dtype=torch.float64)
    g = torch.ones(1, 1, dtype=torch.float64)
    _, gw_default = LIF().vjp(t_in, w, t_star, g, params(), 10.0)
    _, gw_big = LIF(vdot_floor=1e-1).vjp(t_in, w, t_star, g, params(), 10.0)
    np.testing.assert_allclose(gw_default.item() / gw_big.item(), 100.0, rtol=1e-6)


def test_shape_mismatch_is_named():
    with pytest.raises(NetworkSpecError, match="3 sources but w has 2 rows"):
        run(np.zeros((1, 3)), np.ones((2, 2)), params(), 5.0)
