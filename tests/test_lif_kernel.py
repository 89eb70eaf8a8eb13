"""The numba LIF kernel against the torch path (the reference implementation,
itself checked against solve_ivp, finite differences and an independent IFT
gradient in test_lif_model.py) and, on both engines, against the ODE.

Both engines are called on the same inputs through `LIF`'s ``engine=``
argument; equality is to rounding: times to 1e-9 in float64 with identical
silent sets, gradients to 1e-7 relative (to the largest entry).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.errors import NetworkSpecError
from hwloop.models import network_forward
from hwloop.models.ttfs import lif_kernel
from hwloop.models.ttfs.lif import LIF
from hwloop.network import Layer, NeuronParams

sys.path.insert(0, str(Path(__file__).parent))
from ode_lif import first_spike_times_ode  # noqa: E402

pytestmark = pytest.mark.skipif(not lif_kernel.available(), reason="numba not importable")

MODEL = LIF()
ENGINES = ("numba", "torch")


def params(ratio=1.0, tau_syn=1.0, threshold=1.0):
    return NeuronParams(model="lif", tau_syn=tau_syn, tau_mem=ratio * tau_syn, threshold=threshold)


def _assert_times_equal(a, b, atol=1e-9):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "different silent sets"
    assert not torch.isnan(a).any()
    fin = torch.isfinite(b)
    np.testing.assert_allclose(a[fin].numpy(), b[fin].numpy(), rtol=0, atol=atol)


def _assert_grads_equal(ga, gb, rtol=1e-7):
    for a, b in zip(ga, gb):
        assert a.dtype == b.dtype and a.shape == b.shape
        scale = float(b.abs().max()) if b.numel() else 0.0
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=rtol * max(scale, 1e-12))


@st.composite
def layers(draw):
    """A layer and a batch with what makes the closed form branch: ties
    (quantised times), bias spikes (same time in every sample), silent inputs
    (inf, nan, at or after t_max), mixed-sign weights, wide and narrow layers
    (the insertion sort and the argsort path: more than 32 inputs)."""
    B = draw(st.integers(1, 6))
    S = draw(st.sampled_from([1, 2, 5, 12, 40]))
    n = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    t_max = draw(st.sampled_from([2.0, 4.0, 6.0]))
    t = rng.uniform(0.0, 3.0, (B, S))
    if draw(st.booleans()):
        t = np.round(t * 4) / 4
    special = draw(st.lists(st.tuples(st.integers(0, B - 1), st.integers(0, S - 1),
                                      st.sampled_from([math.inf, math.nan, 0.0, t_max, 0.5])), max_size=6))
    for b, i, v in special:
        t[b, i] = v
    if draw(st.booleans()):
        t[:, S - 1] = 0.9  # bias spike
    mean = draw(st.sampled_from([-0.3, 0.5, 1.5]))
    scale = draw(st.sampled_from([0.3, 1.0, 2.5]))
    w = rng.normal(mean, scale, (S, n)) * (3.0 / max(1.0, S ** 0.5))
    return torch.tensor(t), torch.tensor(w), t_max


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer=layers(), ratio=st.sampled_from([1.0, 2.0]), tau_syn=st.sampled_from([0.5, 1.0, 1.7]),
       theta=st.sampled_from([0.6, 1.0, 1.4]))
def test_kernel_equals_torch_path(layer, ratio, tau_syn, theta):
    t, w, t_max = layer
    p = params(ratio, tau_syn, theta)
    a = MODEL.spike_times(t, w, p, t_max, engine="numba")
    b = MODEL.spike_times(t, w, p, t_max, engine="torch")
    _assert_times_equal(a, b)
    g = torch.tensor(np.random.default_rng(1).normal(size=b.shape))
    _assert_grads_equal(MODEL.vjp(t, w, b, g, p, t_max, engine="numba"),
                        MODEL.vjp(t, w, b, g, p, t_max, engine="torch"))


@settings(max_examples=40, deadline=None)
@given(layer=layers(), ratio=st.sampled_from([1.0, 2.0]), shift=st.sampled_from([-0.7, 0.0, 0.3, 5.0]))
def test_vjp_at_measured_times_equals_torch_path(layer, ratio, shift):
    """At times that are not the model's (measured on a target): before any
    input, between inputs, long after; silent, NaN and -inf ones."""
    t, w, t_max = layer
    p = params(ratio)
    rng = np.random.default_rng(2)
    to = torch.tensor(rng.uniform(0.0, 4.0, (t.shape[0], w.shape[1])) + shift)
    to[0, 0] = math.inf
    if to.numel() > 2:
        to.view(-1)[1] = -math.inf
        to.view(-1)[2] = math.nan
    g = torch.tensor(rng.normal(size=to.shape))
    _assert_grads_equal(MODEL.vjp(t, w, to, g, p, t_max, engine="numba"),
                        MODEL.vjp(t, w, to, g, p, t_max, engine="torch"))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ratio", [1.0, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_against_ode_on_both_engines(engine, ratio, seed):
    tau_syn = (0.7, 1.0, 1.3)[seed]
    theta = (1.0, 0.8, 1.2)[seed]
    p = params(ratio, tau_syn, theta)
    rng = np.random.default_rng(seed)
    n, n_out, w_mean = (12, 8, 0.6) if seed % 2 == 0 else (6, 14, 1.2)
    t_in = rng.uniform(0.0, 3.0 * tau_syn, (6, n))
    t_in[rng.random(t_in.shape) < 0.2] = np.inf
    t_in[0, :3] = t_in[0, 3]  # simultaneous inputs
    w = rng.normal(w_mean, 1.0, (n, n_out))
    t_max = 5.0 * tau_syn
    ref = first_spike_times_ode(t_in, w, tau_syn, p.tau_mem, theta, t_max)
    got = MODEL.spike_times(torch.tensor(t_in), torch.tensor(w), p, t_max, engine=engine).numpy()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    spiking = np.isfinite(ref)
    assert 0.3 < spiking.mean() < 1.0
    np.testing.assert_allclose(got[spiking], ref[spiking], rtol=0, atol=1e-5)


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_float32_in_float32_out(ratio):
    """float32 in, float32 out; the kernel computes in float64, so it is the
    torch path's float64 answer rounded to float32."""
    rng = np.random.default_rng(5)
    t = torch.tensor(rng.uniform(0, 3, (20, 10)), dtype=torch.float32)
    w = torch.tensor(rng.normal(0.8, 1.0, (10, 7)), dtype=torch.float32)
    p = params(ratio)
    a = MODEL.spike_times(t, w, p, 5.0, engine="numba")
    ref = MODEL.spike_times(t.double(), w.double(), p, 5.0, engine="torch")
    assert a.dtype == torch.float32
    _assert_times_equal(a, ref.float(), atol=1e-6)
    gt, gw = MODEL.vjp(t, w, a, torch.ones_like(a), p, 5.0, engine="numba")
    assert gt.dtype == torch.float32 and gw.dtype == torch.float32


def _batch(seed, B, n, n_out, w_mean):
    """A layer's batch with a silent input, a sample with no input at all and
    one whose inputs all come at the trial end (nothing causal)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2, (B, n))
    t[3, 1] = math.inf
    t[5, :] = math.inf
    t[7, :] = 4.0
    w = rng.normal(w_mean, 0.8, (n, n_out)) * (3.0 / max(1.0, n ** 0.5))
    return torch.tensor(t), torch.tensor(w)


def _runs(t, w, p, modes, monkeypatch):
    """(times, input gradient, weight gradient) per mode: ``(threads, how)``,
    how = "team" (torch's OpenMP team forced), "thread" (the calling thread
    forced) or "plain" (plain Python threads, as where torch is not OpenMP)."""
    monkeypatch.setattr(lif_kernel, "_MIN_PARALLEL_TERMS", 0)
    old = torch.get_num_threads()
    res = []
    try:
        for threads, how in modes:
            torch.set_num_threads(threads)
            with monkeypatch.context() as m:
                m.setattr(lif_kernel._CHOOSER, "force", how == "team")
                if how == "plain":
                    m.setattr(lif_kernel, "_gomp", False)
                o = MODEL.spike_times(t, w, p, 4.0, engine="numba")
                g = torch.linspace(-1.0, 1.0, o.numel(), dtype=o.dtype).view(o.shape)
                res.append((o, *MODEL.vjp(t, w, o, g, p, 4.0, engine="numba")))
    finally:
        torch.set_num_threads(old)
    return res


@pytest.mark.parametrize("ratio", [1.0, 2.0])
@pytest.mark.parametrize("shape", [(300, 5, 40, 1.5), (150, 121, 3, 0.5), (97, 30, 11, 0.8)])
def test_results_do_not_depend_on_threads_or_runner(shape, ratio, monkeypatch):
    """Chunks are fixed and summed in order: the calling thread alone, torch's
    OpenMP team of 2 (the atomic chunk counter) and plain threads give
    identical bits, wide and narrow layers (the backward's two loop orders);
    and they match the torch path."""
    B, n, n_out, w_mean = shape
    t, w = _batch(B + n, B, n, n_out, w_mean)
    p = params(ratio, 1.0, 1.2)
    modes = [(1, "thread"), (2, "thread"), (2, "plain")]
    if lif_kernel._team() is not None:  # torch's intra-op pool is OpenMP (the CPU wheels)
        modes.append((2, "team"))
    res = _runs(t, w, p, modes, monkeypatch)
    for other in res[1:]:
        for x, y in zip(res[0], other):
            assert torch.equal(x, y)
    ref = MODEL.spike_times(t, w, p, 4.0, engine="torch")
    _assert_times_equal(res[0][0], ref)
    g = torch.linspace(-1.0, 1.0, ref.numel(), dtype=ref.dtype).view(ref.shape)
    _assert_grads_equal(res[0][1:], MODEL.vjp(t, w, ref, g, p, 4.0, engine="torch"))


def test_chooser_follows_the_faster_runner():
    """The calling thread is timed first, then the team (each one's first call
    not counted); afterwards the faster of the two, the other tried every
    EXPLORE calls; one outlier (a call preempted by another process) does not
    flip the choice, a run of them does, and a faster call is followed at once."""
    ch = lif_kernel._Chooser()
    key = ("f", 5, 120, True)
    for slow in (1e-3, 2e-6):  # the first call loads the compiled code: not counted
        assert ch.pick(key) is False
        ch.record(key, False, slow)
    assert ch.stats[key][0] == 2e-6
    for slow in (1e-3, 1e-6):
        assert ch.pick(key) is True
        ch.record(key, True, slow)
    picks = []
    for _ in range(2 * ch.EXPLORE):
        use = ch.pick(key)
        picks.append(use)
        ch.record(key, use, 1e-6 if use else 2e-6)
    assert picks.count(False) == 2 and picks.count(True) == 2 * ch.EXPLORE - 2
    ch.record(key, True, 1.0)  # one call 10^6 times slower: clipped
    assert ch.stats[key][1] < 2e-6 and ch.pick(key) is True
    for _ in range(12):  # the team became slow (cores taken): the calling thread wins
        ch.record(key, True, 1e-5)
    assert ch.pick(key) is False
    ch.record(key, True, 1e-6)  # and fast again: half way back in one call
    assert ch.stats[key][1] < 6e-6
    ch.force = True
    assert ch.pick(key) is True


def test_network_training_step_same_on_both_engines(monkeypatch):
    """A Yin-Yang-shaped two-layer step through autograd: same loss and same
    weight gradients on both engines (the engine chosen by the environment)."""
    rng = np.random.default_rng(0)
    neuron = params()
    layers_ = [Layer(weight=rng.normal(1.5, 0.8, (5, 30)), neuron=neuron, bias_times=(0.9,)),
               Layer(weight=rng.normal(0.5, 0.8, (31, 3)), neuron=neuron, bias_times=(0.9,))]
    t_in = torch.tensor(rng.uniform(0, 2, (40, 4)))
    grads = []
    for engine in ENGINES:
        monkeypatch.setenv(lif_kernel.ENV_VAR, engine)
        ws = [torch.tensor(lay.weight, requires_grad=True) for lay in layers_]
        out = network_forward(layers_, ws, t_in, 4.0)[-1]
        loss = torch.where(torch.isfinite(out), out, 4.0).sum()
        loss.backward()
        grads.append((out.detach(), [x.grad for x in ws]))
    _assert_times_equal(grads[0][0], grads[1][0])
    _assert_grads_equal(grads[0][1], grads[1][1])


def test_engine_switch():
    t = torch.rand(3, 4, dtype=torch.float64)
    w = torch.rand(4, 2, dtype=torch.float64)
    assert lif_kernel.use_kernel(None, t, w)  # auto: the kernel on the CPU
    assert lif_kernel.use_kernel("numba", t, w)
    assert not lif_kernel.use_kernel("torch", t, w)
    with pytest.raises(NetworkSpecError, match="engine argument"):
        MODEL.spike_times(t, w, params(), 4.0, engine="fast")


def test_engine_from_environment(monkeypatch):
    t = torch.rand(3, 4, dtype=torch.float64)
    w = torch.rand(4, 2, dtype=torch.float64)
    monkeypatch.setenv(lif_kernel.ENV_VAR, "torch")
    assert not lif_kernel.use_kernel(None, t, w)
    monkeypatch.setenv(lif_kernel.ENV_VAR, "bogus")
    with pytest.raises(NetworkSpecError, match=lif_kernel.ENV_VAR):
        lif_kernel.use_kernel(None, t, w)


def test_kernel_refuses_huge_time_span_like_torch_path():
    t = torch.tensor([[0.0, 800.0]], dtype=torch.float64)
    w = torch.ones(2, 1, dtype=torch.float64)
    for engine in ENGINES:
        with pytest.raises(NetworkSpecError, match="spread over"):
            MODEL.spike_times(t, w, params(), 1000.0, engine=engine)


def test_vjp_far_from_inputs_uses_direct_exponentials():
    """An output time hundreds of tau after the first input (where the
    factorised exponentials would leave the safe range): same as torch."""
    t = torch.tensor([[0.0, 0.5, 350.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 2.0], [1.0, 0.5], [3.0, 3.0]], dtype=torch.float64)
    to = torch.tensor([[351.0, 350.4]], dtype=torch.float64)
    g = torch.ones_like(to)
    a = MODEL.vjp(t, w, to, g, params(), 400.0, engine="numba")
    b = MODEL.vjp(t, w, to, g, params(), 400.0, engine="torch")
    assert a[0][0, 2] != 0 and a[1][2, 0] != 0
    _assert_grads_equal(a, b)


def test_vectorisable_exp_log_and_lambertw_against_libm():
    """The kernel's own exp and log (which LLVM can vectorise) stay within 2 ulp
    of libm on the ranges the kernel uses them on, W0 on them within rounding
    of the scalar W0, and they keep the special values."""
    import numba

    @numba.njit(error_model="numpy")  # as the kernel: 0/0 is NaN, not an exception
    def run(x, y, z):
        e = np.empty_like(x)
        lg = np.empty_like(y)
        w = np.empty_like(z)
        ws = np.empty_like(z)
        for i in range(x.size):
            e[i] = lif_kernel._exp_v(x[i])
        for i in range(y.size):
            lg[i] = lif_kernel._log_v(y[i])
        for i in range(z.size):
            w[i] = lif_kernel._lambertw_neg_v(z[i])
            ws[i] = lif_kernel._lambertw_neg(z[i])
        return e, lg, w, ws

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-708, 709, 20000), rng.uniform(-1, 1, 20000), [0.0, -0.0, 1e-300]])
    y = np.concatenate([np.exp(rng.uniform(-700, 700, 20000)), rng.uniform(0.5, 2.0, 20000), [1.0, 2.0, 0.5]])
    z = np.concatenate([rng.uniform(-math.exp(-1.0), 0.0, 20000), -np.exp(-rng.uniform(0, 700, 2000)),
                        [-math.exp(-1.0), 0.0, -1e-300]])
    e, lg, w, ws = run(x, y, z)
    np.testing.assert_allclose(e, np.exp(x), rtol=4.5e-16, atol=0)
    np.testing.assert_allclose(lg, np.log(y), rtol=4.5e-16, atol=1e-300)
    # near the branch point the Fritsch step divides by w + 1 ~ 0, which
    # amplifies the log's last bit: 1e-14 there, rounding level elsewhere
    np.testing.assert_allclose(w, ws, rtol=1e-14, atol=1e-300)
    far = z > -0.3
    np.testing.assert_allclose(w[far], ws[far], rtol=1e-15, atol=1e-300)
    sp, _, _, _ = run(np.array([math.nan, math.inf, -math.inf, 720.0, -720.0]), y[:1], z[:1])
    assert math.isnan(sp[0]) and sp[1] == math.inf and sp[2] == 0.0 and sp[3] == math.inf and sp[4] == 0.0
    _, sl, _, _ = run(x[:1], np.array([math.nan, math.inf, 0.0, -1.0]), z[:1])
    assert math.isnan(sl[0]) and sl[1] == math.inf and math.isnan(sl[2]) and math.isnan(sl[3])
