"""The discrete-time QIF spike-train neuron ("qif-trains", docs/models-qif-trains.md):
its record in `Network` / `.hwnet` version 2."""

from __future__ import annotations

import itertools
import json
import math
import zipfile

import numpy as np
import pytest

from hwloop.errors import NetworkFileError, NetworkSpecError
from hwloop.models.trains.qif_trains import QifTrainsParams, rest_point, unstable_point
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding


def qif_net(recurrent: bool = True, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    hid = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=5.0, i0=0.1, v_peak=3.0, v_reset=-0.5,
                                  refractory=1)
    out = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=20.0, spiking=False)
    layers = (Layer(rng.normal(0, 1.0, (5, 8)), hid, recurrent=rng.normal(0, 0.3, (8, 8)) if recurrent else None),
              Layer(rng.normal(0, 0.5, (8, 3)), out))
    return Network(layers=layers, encoding=InputEncoding(n_features=5, t_at_min=0.0, t_at_max=20.0),
                   decoding=OutputDecoding(classes=("a", "b", "c"), kind="max-membrane"), t_max=40.0)


def rewrite(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "manifest.json":
                m = json.loads(data)
                edit(m)
                data = json.dumps(m).encode()
            zout.writestr(info.filename, data)
    return dst


# ------------------------------------------------------------ the record
def test_constructor_fields_are_attributes():
    n = NeuronParams.qif_trains(dt=0.5, current_decay=0.3, tau_mem=4.0, i0=0.2, v_peak=5.0, v_reset=-0.25,
                                refractory=2, spiking=True)
    assert (n.model, n.dt, n.current_decay, n.tau_mem, n.i0, n.threshold, n.v_reset, n.refractory, n.spiking) == \
        ("qif-trains", 0.5, 0.3, 4.0, 0.2, 5.0, -0.25, 2, True)
    assert n.v_peak == 5.0 and n.discrete
    d = NeuronParams.qif_trains(dt=1.0, current_decay=0.1, tau_mem=10.0)
    assert (d.i0, d.threshold, d.v_reset, d.refractory, d.spiking) == (0.0, 4.0, 0.0, 0, True)
    p = n.qif_trains_params()
    assert p == QifTrainsParams(dt=0.5, current_decay=0.3, tau_mem=4.0, i0=0.2, v_peak=5.0, v_reset=-0.25,
                                refractory=2)
    assert NeuronParams.from_qif_trains_params(p) == n
    assert n.trains_params() == p
    with pytest.raises(NetworkSpecError, match="not the cuba model"):
        n.cuba_params()
    assert QifTrainsParams.from_json(p.to_json()) == p


def test_fixed_points():
    for i0 in (0.0, 0.1, 0.2, 0.24):
        r, u = rest_point(i0), unstable_point(i0)
        assert r < u
        for v in (r, u):
            assert abs(v * (v - 1) + i0) < 1e-12
    assert rest_point(0.0) == 0.0 and unstable_point(0.0) == 1.0


@pytest.mark.parametrize("kw, field", [
    (dict(dt=0.0), "dt"),
    (dict(dt=-1.0), "dt"),
    (dict(tau_mem=0.0), "tau_mem"),
    (dict(dt=1.0, tau_mem=1.5), "tau_mem"),
    (dict(current_decay=1.5), "current_decay"),
    (dict(current_decay=-0.1), "current_decay"),
    (dict(v_peak=0.9), "v_peak"),  # below the unstable point 1 (i0 = 0)
    (dict(v_reset=4.0), "v_reset"),
    (dict(refractory=-1), "refractory"),
    (dict(refractory=1.5), "refractory"),
    (dict(i0=math.nan), "i0"),
])
def test_spec_errors_name_the_field(kw, field):
    args = dict(dt=1.0, current_decay=0.1, tau_mem=10.0) | kw
    with pytest.raises(NetworkSpecError, match=field):
        NeuronParams.qif_trains(**args).validate()
    with pytest.raises(NetworkSpecError, match=field):
        QifTrainsParams(**args)


def test_readout_does_not_need_a_threshold_above_the_unstable_point():
    NeuronParams.qif_trains(dt=1.0, current_decay=0.1, tau_mem=10.0, v_peak=0.0, spiking=False).validate()


# ------------------------------------------------------------ the file
def test_hwnet_round_trip(tmp_path):
    net = qif_net()
    p = net.save(tmp_path / "q.hwnet")
    m = json.loads(zipfile.ZipFile(p).read("manifest.json"))
    assert m["format_version"] == 2
    nd = m["layers"][0]["neuron"]
    assert nd["model"] == "qif-trains"
    assert {k: nd[k] for k in ("dt", "current_decay", "tau_mem", "i0", "v_peak", "v_reset", "refractory",
                               "spiking")} == dict(dt=1.0, current_decay=0.2, tau_mem=5.0, i0=0.1, v_peak=3.0,
                                                   v_reset=-0.5, refractory=1, spiking=True)
    back = Network.load(p)
    assert back == net and back.model == "qif-trains"
    assert back.is_spike_train and back.n_steps == 40
    assert np.array_equal(back.layers[0].recurrent, net.layers[0].recurrent)
    assert back.layers[1].neuron.spiking is False


def test_optional_fields_take_their_defaults(tmp_path):
    p = qif_net().save(tmp_path / "q.hwnet")

    def edit(m):
        for k in ("i0", "v_peak", "v_reset", "refractory", "spiking"):
            del m["layers"][0]["neuron"][k]
    back = Network.load(rewrite(p, tmp_path / "d.hwnet", edit))
    n = back.layers[0].neuron
    assert (n.i0, n.threshold, n.v_reset, n.refractory, n.spiking) == (0.0, 4.0, 0.0, 0, True)


def _set(key, value, layer=0):
    def edit(m):
        m["layers"][layer]["neuron"][key] = value
    return edit


@pytest.mark.parametrize("edit, expect", [
    (_set("dt", 0.0), r"layers\[0\].neuron.dt"),
    (_set("dt", -2.0), r"layers\[0\].neuron.dt"),
    (_set("v_reset", 3.0), r"layers\[0\].neuron.v_reset"),
    (_set("v_reset", 7.0), r"layers\[0\].neuron.v_reset"),
    (_set("tau_mem", 1.5), r"layers\[0\].neuron.tau_mem"),
    (_set("tau_mem", 0.0), r"layers\[0\].neuron.tau_mem"),
    (_set("v_peak", 0.5), r"layers\[0\].neuron.v_peak"),
    (_set("current_decay", 2.0), r"layers\[0\].neuron.current_decay"),
    (_set("refractory", 1.5), r"layers\[0\].neuron.refractory"),
    (_set("spiking", "yes"), r"layers\[0\].neuron.spiking"),
    (_set("i0", "0.1"), r"layers\[0\].neuron.i0"),
    (_set("voltage_decay", 0.1), r"layers\[0\].neuron.*unknown key 'voltage_decay'"),
    (_set("bogus", 1), r"layers\[0\].neuron.*unknown key 'bogus'"),
    (_set("dt", 2.0, layer=1), r"different time steps|tau_mem|whole number"),
])
def test_malformed_files_give_one_error_naming_the_field(tmp_path, edit, expect):
    p = qif_net().save(tmp_path / "q.hwnet")
    bad = rewrite(p, tmp_path / "bad.hwnet", edit)
    with pytest.raises(NetworkFileError, match=expect):
        Network.load(bad)


def test_missing_required_field(tmp_path):
    p = qif_net().save(tmp_path / "q.hwnet")

    def edit(m):
        del m["layers"][0]["neuron"]["tau_mem"]
    with pytest.raises(NetworkFileError, match=r"layers\[0\].neuron.tau_mem.*missing"):
        Network.load(rewrite(p, tmp_path / "bad.hwnet", edit))


def test_version_1_file_may_not_name_qif_trains(tmp_path):
    p = qif_net(recurrent=False).save(tmp_path / "q.hwnet")

    def edit(m):
        m["format_version"] = 1
        m["decoding"]["kind"] = "first-spike"
    with pytest.raises(NetworkFileError, match="format_version 2"):
        Network.load(rewrite(p, tmp_path / "bad.hwnet", edit))


def test_network_may_not_mix_cuba_and_first_spike_layers():
    hid = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=5.0)
    with pytest.raises(NetworkSpecError, match="mixes"):
        Network(layers=(Layer(np.ones((2, 3)), hid), Layer(np.ones((3, 2)), NeuronParams())),
                encoding=InputEncoding(2), decoding=OutputDecoding(("a", "b")), t_max=10.0)


# ------------------------------------------------------------ the step
import torch  # noqa: E402

from hwloop.models.trains import Surrogate, trains_network_forward  # noqa: E402
from hwloop.models.trains import kernel  # noqa: E402
from hwloop.models.trains.qif_trains import QifState, qif_layer, qif_step  # noqa: E402

D = torch.float64


def scalar_qif(xs, rec_w, dt, current_decay, tau_mem, i0=0.0, v_peak=4.0, v_reset=0.0, refractory=0,
               spiking=True):
    """The equations of docs/models-qif-trains.md in plain python, one sample:
    ``xs[t][j]`` feed-forward input, ``rec_w[k][j]`` recurrent (or None).
    Returns spikes and membranes before reset, lists [t][j]."""
    n = len(xs[0])
    k = dt / tau_mem
    v_rest = (1 - math.sqrt(1 - 4 * i0)) / 2 if i0 < 0.25 else 0.5
    i = [0.0] * n
    v = [v_rest if spiking else 0.0] * n
    r = [0] * n
    s_prev = [0.0] * n
    S, V = [], []
    for t in range(len(xs)):
        s_now, v_now = [0.0] * n, [0.0] * n
        for j in range(n):
            x = xs[t][j] + (sum(s_prev[m] * rec_w[m][j] for m in range(n)) if rec_w is not None else 0.0)
            i[j] = (1 - current_decay) * i[j] + x
            if not spiking:
                v[j] = v[j] + k * (i[j] - v[j])
                v_now[j] = v[j]
                continue
            a = 1 if r[j] == 0 else 0
            vt = a * (v[j] + k * (v[j] * (v[j] - 1) + i0 + i[j])) + (1 - a) * v[j]
            vt = max(vt, -1.0)
            s = a * (1.0 if vt > v_peak else 0.0)
            v_now[j] = vt
            s_now[j] = s
            v[j] = vt - s * (vt - v_reset)
            r[j] = r[j] - (1 if r[j] > 0 else 0) + int(s) * refractory
        S.append(s_now)
        V.append(v_now)
        s_prev = s_now
    return S, V


STEP_CASES = [dict(), dict(i0=0.1, v_reset=-0.5), dict(refractory=2), dict(i0=0.3), dict(v_reset=-2.0, refractory=1),
              dict(spiking=False)]


@pytest.mark.parametrize("engine", ["torch", "numba"] if kernel.available() else ["torch"])
@pytest.mark.parametrize("rec", [False, True])
@pytest.mark.parametrize("kw", STEP_CASES, ids=[str(c) for c in STEP_CASES])
def test_step_equals_plain_python_equations(kw, rec, engine):
    g = torch.Generator().manual_seed(3)
    T, B, n = 40, 3, 5
    x = torch.randn(T, B, n, generator=g, dtype=D) * 0.6 + 0.25
    wr = torch.randn(n, n, generator=g, dtype=D) * 0.8 if rec else None
    p = QifTrainsParams(dt=1.0, current_decay=0.25, tau_mem=4.0, **kw)
    s, v = qif_layer(x, p, Surrogate(), wr, engine=engine)
    total = 0.0
    for b in range(B):
        S, V = scalar_qif(x[:, b].tolist(), None if wr is None else wr.tolist(), 1.0, 0.25, 4.0, **kw)
        assert s[:, b].tolist() == S
        torch.testing.assert_close(v[:, b], torch.tensor(V, dtype=D), rtol=1e-12, atol=1e-12)
        total += sum(map(sum, S))
    if kw.get("spiking", True):
        assert total > 5  # the case exercises spikes and resets
    if kw.get("v_reset", 0.0) < -1.0:
        assert float(v.min()) == -1.0  # the floor is reached and holds


def test_qif_step_state_and_pieces():
    p = QifTrainsParams(dt=0.5, current_decay=0.5, tau_mem=2.0, i0=0.09, v_peak=2.0, v_reset=-0.3, refractory=1)
    st = QifState.initial(1, 1, p)
    assert float(st.v) == pytest.approx(0.1)  # rest (1 - sqrt(1 - 0.36)) / 2
    st, vt = qif_step(st, torch.tensor([[8.0]], dtype=D), p, Surrogate())
    # i = 8, v~ = 0.1 + 0.25 (0.1 * -0.9 + 0.09 + 8) = 2.1 > 2: spike, reset to -0.3, refractory 1
    assert float(st.i) == 8.0 and float(vt) == pytest.approx(2.1) and float(st.s) == 1.0
    assert float(st.v) == pytest.approx(-0.3) and float(st.r) == 1.0
    st, vt = qif_step(st, torch.tensor([[0.0]], dtype=D), p, Surrogate())
    assert float(vt) == pytest.approx(-0.3) and float(st.s) == 0.0 and float(st.r) == 0.0  # refractory: held


def _drive(pulse, T=300, i0=0.0, current_decay=1.0, tau_mem=10.0, **kw):
    """One neuron, a single input pulse of weight ``pulse`` at step 5 (current_decay 1: the
    current lasts that step only)."""
    p = QifTrainsParams(dt=1.0, current_decay=current_decay, tau_mem=tau_mem, i0=i0, **kw)
    x = torch.zeros(T, 1, 1, dtype=D)
    x[5] = pulse
    s, v = qif_layer(x, p, Surrogate())
    return s[:, 0, 0], v[:, 0, 0], p


@pytest.mark.parametrize("i0", [0.0, 0.1, 0.2])
def test_excitable_neuron_at_rest_stays_there(i0):
    s, v, p = _drive(0.0, T=2000, i0=i0)
    assert float(s.sum()) == 0
    torch.testing.assert_close(v, torch.full_like(v, p.v_rest), rtol=0, atol=1e-12)


@pytest.mark.parametrize("i0", [0.0, 0.1])
def test_pulse_above_the_unstable_point_fires_and_resets(i0):
    p0 = QifTrainsParams(dt=1.0, current_decay=1.0, tau_mem=10.0, i0=i0)
    gap = p0.v_unstable - p0.v_rest
    # a pulse x moves v by k x (k = 0.1) in one step: 1.5 times the gap
    s, v, p = _drive(15.0 * gap, i0=i0, v_reset=-0.2)
    assert float(s.sum()) == 1  # excitable: one spike, then back to rest
    t = int(torch.nonzero(s)[0])
    assert t > 5 and float(v[t]) > p.v_peak
    assert float(v[t + 1]) < 0.0  # from v_reset -0.2
    assert abs(float(v[-1]) - p.v_rest) < 1e-6


@pytest.mark.parametrize("i0", [0.0, 0.1])
def test_pulse_below_the_unstable_point_returns_to_rest(i0):
    p0 = QifTrainsParams(dt=1.0, current_decay=1.0, tau_mem=10.0, i0=i0)
    gap = p0.v_unstable - p0.v_rest
    s, v, p = _drive(9.0 * gap, i0=i0)  # to 0.9 of the way to the unstable point
    assert float(s.sum()) == 0
    assert float(v[5]) == pytest.approx(p.v_rest + 0.9 * gap, rel=1e-9)  # the pulse's step
    assert float(v[5:].max()) <= float(v[5]) + 1e-12  # it only falls back
    assert abs(float(v[-1]) - p.v_rest) < 1e-6


def test_oscillatory_regime_fires_without_input():
    s, _, _ = _drive(0.0, T=400, i0=0.3)
    assert float(s.sum()) >= 3
    gaps = torch.diff(torch.nonzero(s).flatten())
    assert int(gaps.max() - gaps.min()) <= 1  # periodic


def test_strong_inhibition_is_floored():
    s, v, _ = _drive(-200.0)
    assert float(v.min()) == -1.0 and float(s.sum()) == 0


def test_recurrent_spikes_arrive_one_step_later():
    p = QifTrainsParams(dt=1.0, current_decay=1.0, tau_mem=2.0, v_peak=2.0)
    x = torch.zeros(10, 1, 2, dtype=D)
    x[2, 0, 0] = 20.0  # neuron 0: v~ = 0 + 0.5 * 20 = 10 > 2 at step 2
    wr = torch.tensor([[0.0, 0.5], [0.0, 0.0]], dtype=D)
    s, v = qif_layer(x, p, Surrogate(), wr)
    assert s[:, 0, 0].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert float(v[2, 0, 1]) == 0.0 and float(v[3, 0, 1]) == pytest.approx(0.25)


# ------------------------------------------------------------ gradients
def _grad_case(seed, rec, T=30, B=3, n_in=4, n=5, w_std=2.0, w_mean=1.0):
    g = torch.Generator().manual_seed(seed)
    s_in = (torch.rand(T, B, n_in, generator=g) < 0.3).to(D)
    w_in = torch.randn(n_in, n, generator=g, dtype=D) * w_std + w_mean
    w_rec = torch.randn(n, n, generator=g, dtype=D) * 0.5 if rec else None
    w2 = torch.randn(n, 2, generator=g, dtype=D)
    return s_in, w_in, w_rec, w2


ENGINES = ["torch", "numba"] if kernel.available() else ["torch"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("rec", [False, True])
def test_smooth_stand_in_gradient_matches_finite_differences(rec, engine):
    """With the logistic in place of the spike, the network is differentiable
    (away from the floor, which this case does not reach): the backward must
    equal central finite differences."""
    p = QifTrainsParams(dt=1.0, current_decay=0.3, tau_mem=5.0, i0=0.05, v_peak=3.0, v_reset=0.0)
    p2 = QifTrainsParams(dt=1.0, current_decay=0.3, tau_mem=10.0, spiking=False)
    sg = Surrogate("sigmoid", 2.0, through_reset=True, smooth=True)
    s_in, w_in, w_rec, w2 = _grad_case(11, rec, w_std=0.7, w_mean=1.2)
    gv = torch.randn(30, 3, 5, generator=torch.Generator().manual_seed(2), dtype=D)

    def loss_of(w_in_, w_rec_, w2_):
        out = trains_network_forward(s_in, [w_in_, w2_], [p, p2], sg, [w_rec_, None], engine=engine)
        assert float(out.membranes[0].detach().min()) > -1.0
        return (0.1 * out.membranes[0] * gv).sum() + out.counts[0].square().sum() * 0.01 \
            + out.membranes[1].max(0).values.square().sum()

    params = [w_in.clone().requires_grad_(True), None if w_rec is None else w_rec.clone().requires_grad_(True),
              w2.clone().requires_grad_(True)]
    live = [q for q in params if q is not None]
    grads = torch.autograd.grad(loss_of(*params), live)
    h = 1e-6
    for q, g in zip(live, grads):
        idx = [i for i, x in enumerate(params) if x is q][0]
        num = torch.zeros_like(q)
        for k in range(q.numel()):
            plus = [x.detach().clone() if x is not None else None for x in params]
            minus = [x.detach().clone() if x is not None else None for x in params]
            plus[idx].view(-1)[k] += h
            minus[idx].view(-1)[k] -= h
            with torch.no_grad():
                num.view(-1)[k] = (loss_of(*plus) - loss_of(*minus)) / (2 * h)
        assert float(num.abs().max()) > 1e-2
        torch.testing.assert_close(g, num, rtol=1e-5, atol=1e-6)


KCASES = [dict(refractory=r, through_reset=tr, rec=rec, shape=sh, i0=i0)
          for r, tr, rec in itertools.product((0, 2), (False, True), (False, True))
          for sh, i0 in (("superspike", 0.0),)] + \
         [dict(refractory=0, through_reset=False, rec=True, shape=sh, i0=0.1) for sh in ("sigmoid", "linear",
                                                                                        "exponential")]


@pytest.mark.skipif(not kernel.available(), reason="numba not importable")
@pytest.mark.parametrize("cfg", KCASES, ids=["-".join(f"{k}={v}" for k, v in c.items()) for c in KCASES])
def test_kernel_equals_autograd_reference(cfg):
    p = QifTrainsParams(dt=1.0, current_decay=0.3, tau_mem=4.0, i0=cfg["i0"], v_peak=3.0, v_reset=-1.3,
                        refractory=cfg["refractory"])
    p2 = QifTrainsParams(dt=1.0, current_decay=0.2, tau_mem=8.0, spiking=False)
    sg = Surrogate(cfg["shape"], 3.0, through_reset=cfg["through_reset"])
    s_in, w_in, w_rec, w2 = _grad_case(5, cfg["rec"], T=45, B=4, n_in=6, n=7)
    g = torch.Generator().manual_seed(9)
    gs = torch.randn(45, 4, 7, generator=g, dtype=D)
    res = []
    for engine in ("torch", "numba"):
        ps = [w_in.clone().requires_grad_(True), None if w_rec is None else w_rec.clone().requires_grad_(True),
              w2.clone().requires_grad_(True)]
        x = s_in.clone().requires_grad_(True)
        out = trains_network_forward(x, [ps[0], ps[2]], [p, p2], sg, [ps[1], None], engine=engine)
        loss = (out.spikes[0] * gs).sum() + out.membranes[0].sin().sum() + out.membranes[1].max(0).values.sum() \
            + out.counts[0].square().sum() * 0.1
        live = [x] + [q for q in ps if q is not None]
        res.append((out, torch.autograd.grad(loss, live)))
    (o0, g0), (o1, g1) = res
    assert torch.equal(o0.spikes[0], o1.spikes[0]) and float(o0.spikes[0].detach().sum()) > 10
    for a, b in zip(o0.membranes, o1.membranes):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for a, b in zip(g0, g1):
        assert float(a.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------ the software target
def test_software_backend_runs_qif_trains_like_the_model(tmp_path):
    net = Network.load(qif_net().save(tmp_path / "q.hwnet"))
    g = np.random.default_rng(1)
    raster = (g.random((net.n_steps, 6, 5)) < 0.2).astype(np.float64)
    m = net.run("software", raster=raster, probe=True)
    out = trains_network_forward(torch.as_tensor(raster), None, net, Surrogate(), engine="torch")
    for layer, ev in enumerate(m.events):
        assert np.array_equal(ev.raster(), out.spikes[layer].numpy().astype(np.uint8))
    assert float(out.spikes[0].sum()) > 0
    np.testing.assert_allclose(m.probes[0], out.membranes[0].numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.probes[1], out.membranes[1].numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.scores, out.membranes[1].max(0).values.numpy(), rtol=1e-9, atol=1e-12)
    first = (out.spikes[0].numpy() > 0).argmax(0)
    fired = (out.spikes[0].numpy() > 0).any(0)
    np.testing.assert_array_equal(m.times[0], np.where(fired, first * net.dt, np.inf))
