"""The discrete-time CUBA LIF model: the step's semantics, the fused numba
kernel against the plain-autograd reference loop (to 1e-6), the gradient of
the smooth stand-in against central finite differences, and the records'
validation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hwloop.errors import NetworkSpecError
from hwloop.models.trains import CubaParams, Surrogate, cuba_layer, cuba_network_forward
from hwloop.models.trains import functional as F
from hwloop.models.trains import kernel

pytestmark = pytest.mark.skipif(not kernel.available(), reason="numba not importable")

D = torch.float64


def _case(seed, T=25, B=5, n_in=6, n=8, rec=False, density=0.3, w_mean=0.4):
    g = torch.Generator().manual_seed(seed)
    s_in = (torch.rand(T, B, n_in, generator=g) < density).to(D)
    w_in = torch.randn(n_in, n, generator=g, dtype=D) * 0.9 + w_mean
    w_rec = torch.randn(n, n, generator=g, dtype=D) * 0.5 if rec else None
    g_s = torch.randn(T, B, n, generator=g, dtype=D)
    g_v = torch.randn(T, B, n, generator=g, dtype=D)
    return s_in, w_in, w_rec, g_s, g_v


def _run(engine, s_in, w_in, w_rec, g_s, g_v, p, sg):
    s_in = s_in.clone().requires_grad_(True)
    w_in = w_in.clone().requires_grad_(True)
    w_rec = None if w_rec is None else w_rec.clone().requires_grad_(True)
    s, v = cuba_layer(s_in, w_in, p, sg, w_rec, engine=engine)
    loss = (s * g_s).sum() + (v * g_v).sum()
    wrt = [s_in, w_in] + ([w_rec] if w_rec is not None else [])
    return s.detach(), v.detach(), torch.autograd.grad(loss, wrt)


CONFIGS = [
    dict(reset=reset, refractory=ref, through_reset=tr, rec=rec, shape=shape)
    for reset, ref, tr, rec in itertools.product(("zero", "subtract"), (0, 3), (False, True), (False, True))
    for shape in ("superspike",)
] + [dict(reset="zero", refractory=0, through_reset=False, rec=True, shape=s)
     for s in ("sigmoid", "linear", "exponential")]


@pytest.mark.parametrize("k,cfg", list(enumerate(CONFIGS)),
                         ids=["-".join(f"{k}={v}" for k, v in c.items()) for c in CONFIGS])
def test_kernel_equals_autograd_reference(k, cfg):
    p = CubaParams(dt=1.0, current_decay=0.3, voltage_decay=0.15, threshold=1.0, reset=cfg["reset"],
                   refractory=cfg["refractory"])
    sg = Surrogate(cfg["shape"], 4.0, through_reset=cfg["through_reset"])
    case = _case(k, rec=cfg["rec"], w_mean=0.2)
    s0, v0, g0 = _run("torch", *case, p, sg)
    s1, v1, g1 = _run("numba", *case, p, sg)
    assert 0.05 < float(s0.mean()) < 0.8  # the case exercises spikes and resets
    assert torch.equal(s0, s1)
    torch.testing.assert_close(v1, v0, rtol=0, atol=1e-6)
    for a, b in zip(g1, g0):
        assert float(b.abs().max()) > 1e-3
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_readout_layer_equals_reference():
    p = CubaParams(dt=1.0, current_decay=0.2, voltage_decay=0.05, spiking=False)
    sg = Surrogate()
    case = _case(7, n=4)
    s0, v0, g0 = _run("torch", *case, p, sg)
    s1, v1, g1 = _run("numba", *case, p, sg)
    assert not s1.any() and not s0.any()
    torch.testing.assert_close(v1, v0, rtol=0, atol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_two_layer_network_equals_reference():
    """Gradients through a hidden layer's spikes into the layer before."""
    g = torch.Generator().manual_seed(3)
    T, B = 30, 6
    raster = (torch.rand(T, B, 7, generator=g) < 0.25).to(D)
    ws = [torch.randn(7, 10, generator=g, dtype=D) * 0.8 + 0.3, torch.randn(10, 3, generator=g, dtype=D)]
    wr = [torch.randn(10, 10, generator=g, dtype=D) * 0.3, None]
    ps = [CubaParams(current_decay=0.25, voltage_decay=0.1, refractory=1),
          CubaParams(current_decay=0.25, voltage_decay=0.02, spiking=False)]
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    grads = []
    for engine in ("torch", "numba"):
        params = [w.clone().requires_grad_(True) for w in ws] + [wr[0].clone().requires_grad_(True)]
        out = cuba_network_forward(raster, params[:2], ps, Surrogate("superspike", 5.0), [params[2], None],
                                   engine=engine)
        loss = torch.nn.functional.cross_entropy(out.membranes[-1].max(0).values, y) + out.spikes[0].mean()
        grads.append(torch.autograd.grad(loss, params))
    for a, b in zip(*grads):
        assert float(b.abs().max()) > 1e-4
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_output_only_recording_gives_the_same_gradients():
    """record="output" (what training uses: hidden layers give only their
    counts) computes the same loss and weight gradients as recording all,
    and as the reference loop; the counts carry the gradient of the
    activity bounds."""
    g = torch.Generator().manual_seed(8)
    T, B = 37, 9  # T not a multiple of the kernel's checkpoint segment
    raster = (torch.rand(T, B, 6, generator=g) < 0.3).to(D)
    ws = [torch.randn(6, 12, generator=g, dtype=D) * 0.8 + 0.3, torch.randn(12, 8, generator=g, dtype=D) * 0.6,
          torch.randn(8, 3, generator=g, dtype=D)]
    rec = [None, torch.randn(8, 8, generator=g, dtype=D) * 0.3, None]
    ps = [CubaParams(current_decay=0.3, voltage_decay=0.1, reset="subtract"),
          CubaParams(current_decay=0.2, voltage_decay=0.1, refractory=2),
          CubaParams(current_decay=0.25, voltage_decay=0.02, spiking=False)]
    y = torch.arange(B) % 3
    results = []
    for engine, record in (("torch", "all"), ("numba", "all"), ("numba", "output")):
        params = [w.clone().requires_grad_(True) for w in ws] + [rec[1].clone().requires_grad_(True)]
        out = cuba_network_forward(raster, params[:3], ps, Surrogate("superspike", 4.0), [None, params[3], None],
                                   engine=engine, record=record)
        assert (out.spikes[0] is None) == (record == "output")
        loss = (torch.nn.functional.cross_entropy(out.membranes[-1].max(0).values, y)
                + (out.counts[0] - 2.0).relu().square().mean() + 0.1 * (1.0 - out.counts[1]).relu().mean())
        grads = torch.autograd.grad(loss, params)
        results.append((float(loss.detach()), grads, [c.detach() for c in out.counts]))
    (l0, g0, c0), *rest = results
    for l1, g1, c1 in rest:
        assert l1 == pytest.approx(l0, abs=1e-12)
        assert all(torch.equal(a, b) for a, b in zip(c0, c1))
        for a, b in zip(g1, g0):
            assert float(b.abs().max()) > 1e-4
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reset,rec", [("zero", False), ("subtract", False), ("zero", True), ("subtract", True)])
def test_smooth_stand_in_gradient_matches_finite_differences(reset, rec):
    """With the logistic in place of the spike (forward and backward) and the
    gradient taken through the reset, the network is differentiable: the
    kernel's backward must equal the numerical derivative."""
    p = CubaParams(current_decay=0.3, voltage_decay=0.2, reset=reset)
    sg = Surrogate("sigmoid", 3.0, through_reset=True, smooth=True)
    s_in, w_in, w_rec, g_s, g_v = _case(11, T=15, B=3, n_in=4, n=5, rec=rec)
    w2 = torch.randn(5, 2, generator=torch.Generator().manual_seed(5), dtype=D)
    p2 = CubaParams(current_decay=0.3, voltage_decay=0.05, spiking=False)

    def loss_of(w_in_, w_rec_, w2_):
        s, v = cuba_layer(s_in, w_in_, p, sg, w_rec_, engine="numba")
        _, v2 = cuba_layer(s, w2_, p2, sg, engine="numba")
        return (s * g_s).sum() + 0.3 * (v * g_v).sum() + v2.square().sum()

    params = [w_in.clone().requires_grad_(True), None if w_rec is None else w_rec.clone().requires_grad_(True),
              w2.clone().requires_grad_(True)]
    grads = torch.autograd.grad(loss_of(*params), [q for q in params if q is not None])
    h = 1e-6
    live = [q for q in params if q is not None]
    for q, g in zip(live, grads):
        num = torch.zeros_like(q)
        flat = q.detach().view(-1)
        for k in range(flat.numel()):
            plus = [x.detach().clone() if x is not None else None for x in params]
            minus = [x.detach().clone() if x is not None else None for x in params]
            idx = [i for i, x in enumerate(params) if x is q][0]
            plus[idx].view(-1)[k] += h
            minus[idx].view(-1)[k] -= h
            with torch.no_grad():
                num.view(-1)[k] = (loss_of(*plus) - loss_of(*minus)) / (2 * h)
        assert float(num.abs().max()) > 1e-2
        torch.testing.assert_close(g, num, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- semantics
def _one_neuron(current, T, **kw):
    """Spikes and membranes of one neuron fed the constant input ``current``."""
    p = CubaParams(**kw)
    s_in = torch.ones(T, 1, 1, dtype=D)
    s, v = cuba_layer(s_in, torch.tensor([[current]], dtype=D), p, Surrogate(), engine="numba")
    return s[:, 0, 0], v[:, 0, 0], p


def test_step_by_hand():
    """i' = (1-du) i + x; v~ = (1-dv) v + i'; spike when v~ > threshold."""
    s, v, p = _one_neuron(0.3, 6, current_decay=0.5, voltage_decay=0.25, threshold=1.0)
    i = vv = 0.0
    expect_v, expect_s = [], []
    for _ in range(6):
        i = 0.5 * i + 0.3
        vv = 0.75 * vv + i
        spk = vv > 1.0
        expect_v.append(vv)
        expect_s.append(float(spk))
        vv = 0.0 if spk else vv
    torch.testing.assert_close(v, torch.tensor(expect_v, dtype=D), rtol=0, atol=1e-12)
    assert s.tolist() == expect_s and sum(expect_s) >= 1


def test_threshold_must_be_exceeded():
    """As on Loihi (v > vth): a membrane exactly at threshold does not fire."""
    s, v, _ = _one_neuron(0.5, 2, current_decay=1.0, voltage_decay=1.0, threshold=0.5)
    assert v[0] == 0.5 and s[0] == 0.0
    s, v, _ = _one_neuron(0.5, 2, current_decay=1.0, voltage_decay=1.0, threshold=0.4999)
    assert s[0] == 1.0


def test_reset_rules_and_refractory():
    # non-leaky, constant current 0.75, threshold 1: zero reset fires every 2nd step
    sz, _, _ = _one_neuron(0.75, 12, current_decay=1.0, voltage_decay=0.0, reset="zero")
    assert sz.tolist() == [0, 1] * 6
    # subtract keeps the remainder: 0.75, 1.5->0.5, 1.25->0.25, 1.0 (not above), 1.75->0.75, 1.5->0.5, ...
    ss, _, _ = _one_neuron(0.75, 8, current_decay=1.0, voltage_decay=0.0, reset="subtract")
    assert ss.tolist() == [0, 1, 1, 0, 1, 1, 1, 0]
    # 3 refractory steps: no integration, no spike, then two steps to threshold again
    sr, vr, _ = _one_neuron(0.75, 12, current_decay=1.0, voltage_decay=0.0, refractory=3)
    assert sr.tolist() == [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert vr[2:5].tolist() == [0.0, 0.0, 0.0]


def test_recurrent_spikes_arrive_one_step_later():
    p = CubaParams(current_decay=1.0, voltage_decay=1.0, threshold=0.9)
    s_in = torch.zeros(4, 1, 2, dtype=D)
    s_in[0, 0, 0] = 1.0
    w_in = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=D)
    w_rec = torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=D)
    for engine in ("torch", "numba"):
        s, v = cuba_layer(s_in, w_in, p, Surrogate(), w_rec, engine=engine)
        assert s[:, 0, 0].tolist() == [1, 0, 0, 0]
        assert s[:, 0, 1].tolist() == [0, 1, 0, 0]


def test_results_do_not_depend_on_thread_count():
    s_in, w_in, w_rec, g_s, g_v = _case(21, T=20, B=37, rec=True)
    p = CubaParams(current_decay=0.2, voltage_decay=0.1)
    out = []
    before = torch.get_num_threads()
    try:
        for k in (1, 2):
            torch.set_num_threads(k)
            out.append(_run("numba", s_in.float(), w_in.float(), w_rec.float(), g_s.float(), g_v.float(), p,
                            Surrogate()))
    finally:
        torch.set_num_threads(before)
    (s1, v1, g1), (s2, v2, g2) = out
    assert torch.equal(s1, s2) and torch.equal(v1, v2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_float32_kernel_close_to_float64():
    s_in, w_in, w_rec, g_s, g_v = _case(4, rec=True)
    p = CubaParams(current_decay=0.2, voltage_decay=0.1)
    s64, v64, g64 = _run("numba", s_in, w_in, w_rec, g_s, g_v, p, Surrogate())
    s32, v32, g32 = _run("numba", s_in.float(), w_in.float(), w_rec.float(), g_s.float(), g_v.float(), p, Surrogate())
    assert v32.dtype == torch.float32
    agree = (s32.double() == s64).double().mean()
    assert agree > 0.99


# ---------------------------------------------------------------- surrogates
@pytest.mark.parametrize("shape", F.SHAPES)
def test_surrogate_shapes(shape):
    sg = Surrogate(shape, 5.0)
    x = torch.linspace(-2, 2, 401, dtype=D)
    d = sg.derivative(x)
    assert float(d[200]) == pytest.approx(1.0)  # peak 1 at threshold
    torch.testing.assert_close(d, d.flip(0))  # symmetric
    assert float(d.max()) == pytest.approx(1.0)
    wide = Surrogate(shape, 0.5).derivative(x)
    assert float(d[100]) < 0.05 and float(wide[100]) > 0.4  # beta sets the width (x = -1)
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.spike(xx, sg).sum(), xx)
    torch.testing.assert_close(g, d)
    assert F.spike(x, sg).tolist() == (x > 0).to(D).tolist()


# ---------------------------------------------------------------- records
@pytest.mark.parametrize("kw,match", [
    (dict(reset="hold"), "reset"),
    (dict(dt=0.0), "dt"),
    (dict(dt=-1.0), "dt"),
    (dict(dt=math.nan), "dt"),
    (dict(current_decay=1.5), "current_decay"),
    (dict(voltage_decay=-0.1), "voltage_decay"),
    (dict(threshold=0.0), "threshold"),
    (dict(refractory=-1), "refractory"),
    (dict(refractory=1.5), "refractory"),
    (dict(spiking="yes"), "spiking"),
])
def test_bad_parameters_are_named(kw, match):
    with pytest.raises(NetworkSpecError, match=match):
        CubaParams(**kw)


def test_params_json_round_trip_and_missing_dt():
    p = CubaParams.from_time_constants(0.5, 5.0, 10.0, reset="subtract", refractory=2)
    assert CubaParams.from_json(p.to_json()) == p
    assert p.current_decay == pytest.approx(1 - math.exp(-0.1))
    d = p.to_json()
    del d["dt"]
    with pytest.raises(NetworkSpecError, match="dt is missing"):
        CubaParams.from_json(d)
    with pytest.raises(NetworkSpecError, match="unknown field"):
        CubaParams.from_json({**p.to_json(), "tau": 1.0})


def test_bad_surrogates_and_shapes_are_named():
    with pytest.raises(NetworkSpecError, match="shape"):
        Surrogate("gauss")
    with pytest.raises(NetworkSpecError, match="beta"):
        Surrogate(beta=0.0)
    with pytest.raises(NetworkSpecError, match="logistic"):
        Surrogate("superspike", smooth=True)
    s_in, w_in, _, _, _ = _case(0)
    with pytest.raises(NetworkSpecError, match=r"recurrent weights must be \(8, 8\)"):
        cuba_layer(s_in, w_in, CubaParams(), Surrogate(), torch.zeros(8, 7, dtype=D))
    with pytest.raises(NetworkSpecError, match="input weights"):
        cuba_layer(s_in, w_in[:3], CubaParams(), Surrogate())
    with pytest.raises(NetworkSpecError, match="refractory"):
        cuba_layer(s_in, w_in, CubaParams(refractory=1), Surrogate("sigmoid", smooth=True))


def test_engine_choice(monkeypatch):
    s_in, w_in, _, _, _ = _case(1)
    monkeypatch.setenv(kernel.ENV_VAR, "torch")

    def boom(*a, **k):
        raise AssertionError("kernel called")

    monkeypatch.setattr(kernel, "network_forward", boom)
    cuba_layer(s_in, w_in, CubaParams(), Surrogate())  # the reference loop, not the kernel
    monkeypatch.setenv(kernel.ENV_VAR, "gpu")
    with pytest.raises(NetworkSpecError, match=kernel.ENV_VAR):
        cuba_layer(s_in, w_in, CubaParams(), Surrogate())
