"""Surrogate gradients in the loop (issue 15, item 4): the measured spikes and
membranes of a spike-train run replace the simulated ones in the surrogate
model's forward pass (`hwloop.session.trains_forward`), in sessions that
checkpoint and resume like every other."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hwloop.backends import open_target
from hwloop.models.trains import CubaParams, Surrogate, cuba_network_forward
from hwloop.network import Network
from hwloop.session import LoopConfig, SessionError, run_session
from hwloop.session.estimators import ModelGradient, SurrogateGradient, make_estimator
from hwloop.session.trains_forward import FORWARDS, straight_through, substituted_forward
from hwloop.session.trains_parts import TrainsLoss
from session_compare import assert_same_session

DATA = {"samples_per_class": 60, "n_classes": 4}


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    """A small Randman network trained briefly in software (4 classes, 24 hidden)."""
    from hwloop.trains_training import defaults_for, to_network, train

    cfg = defaults_for("randman", hidden=(24,), epochs=6, seed=0, threads=1, dtype="float64", batch_size=40,
                       data_options=dict(DATA))
    res = train(cfg)
    path = tmp_path_factory.mktemp("net") / "tiny.hwnet"
    to_network(res).save(path)
    return str(path)


def _batch(net: Network, n: int = 40):
    from hwloop.trains_training import config_from_network, load_trains_data

    tc = config_from_network(net)
    tc.dtype = "float64"
    split = load_trains_data(tc).splits["train"]
    return split.raster[:, :n].to(torch.float64), split.labels[:n]


def _weights(net: Network):
    return [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in net.weights()]


def _trainer_loss(net: Network, weights, xb, yb, engine):
    """The software trainer's loss for these weights (`trains_training._loss` on its own forward)."""
    from hwloop.trains_training import TrainsNetwork, _loss, config_from_network

    tc = config_from_network(net)
    params = [layer.neuron.cuba_params() for layer in net.layers]
    rec = [None if layer.recurrent is None else torch.tensor(layer.recurrent) for layer in net.layers]
    tn = TrainsNetwork(weights, rec, params, Surrogate(tc.surrogate, tc.beta), net.decoding.window, tc.readout, net.dt)
    out = tn.forward(xb, engine=engine, record="all")
    return _loss(tn, out, yb, tc)


@pytest.mark.parametrize("signal", ["spikes", "spikes+membranes"])
def test_measured_equal_to_simulated_gives_the_software_trainers_loss_and_gradient(tiny_net, signal):
    """On the software target the measurement is the simulation: the substituted
    forward is the reference loop (loss and gradient bit for bit with spikes; with
    the kernel's membranes substituted, to rounding), and the trainer's numba kernel
    agrees to rounding."""
    net = Network.load(tiny_net)
    xb, yb = _batch(net)
    cfg = LoopConfig(dataset="randman", init=tiny_net, signal=signal, surrogate="superspike", surrogate_beta=20.0,
                     model="cuba", gradient="surrogate")
    est = make_estimator(cfg, net, TrainsLoss(cfg, net))
    assert isinstance(est, SurrogateGradient)
    with open_target("software") as be:
        w = _weights(net)
        e = est.estimate(be, w, xb, yb, step=0)
    w_ref = _weights(net)
    ref = _trainer_loss(net, w_ref, xb, yb, engine="torch")
    g_ref = torch.autograd.grad(ref, w_ref)
    w_k = _weights(net)
    ker = _trainer_loss(net, w_k, xb, yb, engine="numba")
    g_k = torch.autograd.grad(ker, w_k)
    assert any(float(g.abs().max()) > 0 for g in g_ref)
    if signal == "spikes":
        assert e.loss == float(ref.detach())
        for g, gr in zip(e.grads, g_ref):
            assert torch.equal(g, gr)
    else:
        assert e.loss == pytest.approx(float(ref.detach()), rel=1e-12)
        for g, gr in zip(e.grads, g_ref):
            torch.testing.assert_close(g, gr, rtol=1e-9, atol=1e-12)
    assert e.loss == pytest.approx(float(ker.detach()), rel=1e-9)
    for g, gk in zip(e.grads, g_k):
        torch.testing.assert_close(g, gk, rtol=1e-6, atol=1e-9)


def _random_layers(recurrent: bool, reset: str = "zero", refractory: int = 0):
    from hwloop.network import Layer, NeuronParams

    g = torch.Generator().manual_seed(3)
    hid = CubaParams(dt=1.0, current_decay=0.2, voltage_decay=0.1, threshold=1.0, reset=reset, refractory=refractory)
    out = CubaParams(dt=1.0, current_decay=0.2, voltage_decay=0.05, spiking=False)
    w1 = torch.randn(6, 9, generator=g, dtype=torch.float64) * 0.8
    w2 = torch.randn(9, 3, generator=g, dtype=torch.float64) * 0.5
    r1 = torch.randn(9, 9, generator=g, dtype=torch.float64) * 0.3 if recurrent else None
    layers = [Layer(weight=w1.numpy(), neuron=NeuronParams.from_cuba_params(hid),
                    recurrent=None if r1 is None else r1.numpy()),
              Layer(weight=w2.numpy(), neuron=NeuronParams.from_cuba_params(out))]
    raster = (torch.rand(30, 5, 6, generator=g) < 0.2).to(torch.float64)
    return layers, [hid, out], [w1, w2], [r1, None], raster


@pytest.mark.parametrize("variant", [dict(recurrent=False), dict(recurrent=True),
                                     dict(recurrent=True, reset="subtract", refractory=2)])
def test_substituted_forward_with_simulated_measurements_is_the_reference_loop(variant):
    layers, params, ws, rec, raster = _random_layers(**variant)
    _check_simulated_substitution(cuba_network_forward, layers, params, ws, rec, raster,
                                  Surrogate("superspike", 10.0), exact=True)


def _check_simulated_substitution(reference, layers, params, ws, rec, raster, sg, exact: bool):
    """Measurements equal to the model's own (spikes and membranes) give the
    ``reference`` forward's loss and gradient: bit for bit (``exact``) or to rounding.
    Returns the reference's spikes."""
    w_a = [w.clone().requires_grad_(True) for w in ws]
    ref = reference(raster, w_a, params, sg, rec, engine="torch", record="all")
    spikes = [s.detach() for s in ref.spikes]
    assert float(spikes[0].sum()) > 0
    la = sum((v ** 2).mean() for v in ref.membranes) + ref.counts[0].sum() * 0.01
    ga_all = torch.autograd.grad(la, w_a)
    # spikes and membranes measured (a fully measured CUBA layer takes the adjoint
    # fast path, `_MeasuredCubaLayer`: to rounding), and spikes only (the step loop)
    for v_meas, bitwise in (([v.detach() for v in ref.membranes], False), (None, exact)):
        w_b = [w.clone().requires_grad_(True) for w in ws]
        sub = substituted_forward(layers, w_b, rec, raster, sg, spikes, v_meas)
        lb = sum((v ** 2).mean() for v in sub.membranes) + sub.counts[0].sum() * 0.01
        for ga, gb in zip(ga_all, torch.autograd.grad(lb, w_b)):
            assert float(ga.abs().max()) > 0
            if bitwise:
                assert torch.equal(ga, gb)
            else:
                torch.testing.assert_close(gb, ga, rtol=1e-9, atol=1e-12)
        if bitwise:
            assert float(la.detach()) == float(lb.detach())
        else:
            assert float(lb.detach()) == pytest.approx(float(la.detach()), rel=1e-12)
    return spikes


def test_a_perturbed_measurement_is_the_forward_value_and_the_gradient_stays_the_models():
    layers, params, ws, rec, raster = _random_layers(recurrent=True)
    sg = Surrogate("superspike", 10.0)
    with torch.no_grad():
        ref = cuba_network_forward(raster, ws, params, sg, rec, engine="torch", record="all")
    g = torch.Generator().manual_seed(7)
    flip = torch.rand(ref.spikes[0].shape, generator=g) < 0.1
    s_meas = torch.where(flip, 1.0 - ref.spikes[0], ref.spikes[0])
    v_meas = [v + 0.3 * torch.randn(v.shape, generator=g, dtype=v.dtype) for v in ref.membranes]
    w = [x.clone().requires_grad_(True) for x in ws]
    sub = substituted_forward(layers, w, rec, raster, sg, [s_meas, None], v_meas)
    assert torch.equal(sub.spikes[0], s_meas)
    for v, vm in zip(sub.membranes, v_meas):
        assert torch.equal(v, vm)
    # spikes only: the readout is the model's, driven by the measured hidden spikes
    w2 = [x.clone().requires_grad_(True) for x in ws]
    only = substituted_forward(layers, w2, rec, raster, sg, [s_meas, None])
    assert torch.equal(only.spikes[0], s_meas)
    with torch.no_grad():
        drive = cuba_network_forward(s_meas, [ws[1]], [params[1]], sg, [None], engine="torch").membranes[0]
    torch.testing.assert_close(only.membranes[1], drive, rtol=0, atol=1e-12)
    # the gradient is the model's (nonzero, finite), not the measurement's (which has none)
    loss = sub.membranes[1].max(0).values.sum() + sub.counts[0].sum()
    grads = torch.autograd.grad(loss, w)
    assert all(bool(torch.isfinite(x).all()) for x in grads) and float(grads[0].abs().max()) > 0
    assert torch.equal(straight_through(torch.ones(2), None), torch.ones(2))


def test_the_registry_takes_a_model_with_one_function():
    assert "cuba" in FORWARDS and "qif-trains" in FORWARDS


def _qif_layers(recurrent: bool, refractory: int = 0):
    from hwloop.models.trains.qif_trains import QifTrainsParams
    from hwloop.network import Layer, NeuronParams

    g = torch.Generator().manual_seed(5)
    hid = QifTrainsParams(dt=1.0, current_decay=0.2, tau_mem=5.0, i0=0.2, refractory=refractory)
    out = QifTrainsParams(dt=1.0, current_decay=0.2, tau_mem=10.0, spiking=False)
    w1 = torch.randn(6, 9, generator=g, dtype=torch.float64) * 4.0
    w2 = torch.randn(9, 3, generator=g, dtype=torch.float64) * 2.0
    r1 = torch.randn(9, 9, generator=g, dtype=torch.float64) * 1.0 if recurrent else None
    layers = [Layer(weight=w1.numpy(), neuron=NeuronParams.from_qif_trains_params(hid),
                    recurrent=None if r1 is None else r1.numpy()),
              Layer(weight=w2.numpy(), neuron=NeuronParams.from_qif_trains_params(out))]
    raster = (torch.rand(40, 5, 6, generator=g) < 0.25).to(torch.float64)
    return layers, [hid, out], [w1, w2], [r1, None], raster


@pytest.mark.parametrize("variant", [dict(recurrent=False), dict(recurrent=True, refractory=2)])
def test_qif_trains_substituted_forward_with_simulated_measurements_is_the_models(variant):
    """The qif-trains entry: measurements equal to the model's own give the
    plain-autograd forward of `hwloop.models.trains.qif_trains` (loss and
    gradient to rounding); a flipped spike is the forward value."""
    from hwloop.models.trains.qif_trains import trains_network_forward

    layers, params, ws, rec, raster = _qif_layers(**variant)
    sg = Surrogate("superspike", 1.0)
    spikes = _check_simulated_substitution(trains_network_forward, layers, params, ws, rec, raster, sg, exact=False)
    flip = torch.zeros_like(spikes[0], dtype=torch.bool)
    flip[5, 0, 0] = True
    s_meas = torch.where(flip, 1.0 - spikes[0], spikes[0])
    w_c = [w.clone().requires_grad_(True) for w in ws]
    per = substituted_forward(layers, w_c, rec, raster, sg, [s_meas, None])
    assert torch.equal(per.spikes[0], s_meas)


def test_a_qif_trains_session_uses_the_trainers_per_layer_learning_rate():
    """Adam steps a qif-trains layer with lr / k (k = dt / tau_mem), as the
    software trainer does (`trains_training.lr_scale`); TTFS and CUBA: one group."""
    from types import SimpleNamespace

    from hwloop.session.parts import MasterWeights
    from hwloop.trains_training import lr_scale

    layers, params, _, _, _ = _qif_layers(recurrent=False)
    net = SimpleNamespace(layers=layers, is_spike_train=True, weights=lambda: [la.weight for la in layers])
    cfg = LoopConfig(dataset="randman", init="x.hwnet", lr=1e-3)
    m = MasterWeights(cfg, net)
    assert [g["lr"] for g in m.opt.param_groups] == pytest.approx([1e-3 * lr_scale(p) for p in params])
    assert lr_scale(params[0]) == pytest.approx(5.0) and m.lr == pytest.approx(1e-3)
    st = m.state()
    m.decay()
    m.restore(st)
    assert [g["lr"] for g in m.opt.param_groups] == pytest.approx([1e-3 * lr_scale(p) for p in params])


def _session_cfg(init, **kw) -> LoopConfig:
    base = dict(target="bitexact?weight_bits=3", dataset="randman", init=init, epochs=2, batch_size=40,
                lr=3e-3, seed=1, eval_every=3, eval_limit=60, compare_software=False)
    base.update(kw)
    return LoopConfig(**base)


def test_a_short_session_on_bitexact_lowers_the_loss(tiny_net, tmp_path):
    res = run_session(tmp_path / "s", _session_cfg(tiny_net, epochs=4, lr=5e-3, eval_every=0), progress=False)
    assert res["ok"] and not res["interrupted"]
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["model"] == "cuba" and saved["signal"] == "spikes+membranes" and saved["gradient"] == "surrogate"
    assert saved["surrogate"] == "superspike" and saved["surrogate_beta"] == 20.0
    start, end = Network.load(tmp_path / "s" / "init.hwnet"), Network.load(tmp_path / "s" / "network.hwnet")
    cfg = LoopConfig(**{**saved, "max_missing": tuple(saved["max_missing"])})
    est = make_estimator(cfg, start, TrainsLoss(cfg, start))
    xb, yb = _batch(start, n=200)
    with open_target(cfg.target) as be:
        losses = [est.estimate(be, _weights(n), xb, yb, 0).loss for n in (start, end)]
    assert losses[1] < 0.9 * losses[0], losses
    rows = [json.loads(x) for x in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows if r["kind"] == "train")
    from hwloop.report import write_report

    text = open(write_report(str(tmp_path / "s"), run_target=False)["report"]).read()
    assert "signal `spikes+membranes`" in text and "surrogate `superspike`, beta 20" in text


def test_resume_after_a_crash_is_exact(tiny_net, tmp_path):
    """`hwloop loop --model cuba` killed after step 4 (before that step's checkpoint) and
    resumed ends exactly as the same configuration run without interruption."""
    cfg = _session_cfg(tiny_net, epochs=1, signal="spikes")
    cmd = [sys.executable, "-m", "hwloop", "loop", "--dir", str(tmp_path / "crash"), "--target", cfg.target,
           "--model", "cuba", "--signal", "spikes", "--init", tiny_net, "--epochs", "1", "--batch-size", "40",
           "--lr", repr(cfg.lr), "--seed", "1", "--eval-limit", "60", "--quiet", "--crash-after-step", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    # --dataset left out: the network's own (randman)
    saved = json.loads((tmp_path / "crash" / "config.json").read_text())
    assert saved["dataset"] == "randman" and saved["model"] == "cuba"
    run_session(tmp_path / "crash", resume=True, progress=False)
    ref2 = LoopConfig(**{**saved, "max_missing": tuple(saved["max_missing"])})
    run_session(tmp_path / "ref2", ref2, progress=False)
    assert_same_session(tmp_path / "ref2", tmp_path / "crash")


def test_membranes_on_a_target_without_probes_are_refused(tiny_net, tmp_path, capsys):
    # lava-hw (a Loihi chip through lava-loihi) has no membrane probes in hwloop
    with pytest.raises(SessionError, match="records no membranes"):
        run_session(tmp_path / "s", _session_cfg(tiny_net, target="lava-hw", signal="spikes+membranes"),
                    progress=False)
    assert not (tmp_path / "s").exists()
    from hwloop.cli import main

    rc = main(["loop", "--dir", str(tmp_path / "c"), "--target", "lava-hw", "--init", tiny_net,
               "--signal", "spikes+readout", "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0 and "records no membranes" in err and "use --signal spikes" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_a_target_that_returns_no_probes_is_named(tiny_net):
    from hwloop.errors import TargetError

    net = Network.load(tiny_net)
    xb, yb = _batch(net, n=5)
    cfg = LoopConfig(dataset="randman", init=tiny_net, signal="spikes+membranes", model="cuba",
                     surrogate="superspike", surrogate_beta=20.0)
    est = make_estimator(cfg, net, TrainsLoss(cfg, net))
    with open_target("software") as be:
        real = be.run_raster
        be.run_raster = lambda r, probe=False: (lambda m: (setattr(m, "probes", None), m)[1])(real(r, probe))
        with pytest.raises(TargetError, match="needs membrane probes"):
            est.estimate(be, _weights(net), xb, yb, 0)


def test_spike_train_options_are_refused_for_a_first_spike_time_network(tmp_path):
    from hwloop.pretrained import path as pretrained

    cfg = LoopConfig(target="software", init=str(pretrained("yinyang-lif.hwnet")), signal="spikes")
    with pytest.raises(SessionError, match="first-spike-time"):
        run_session(tmp_path / "s", cfg, progress=False)


def test_ttfs_sessions_are_unchanged(tmp_path):
    """A config.json written before these fields loads with them unset, and a
    first-spike-time session still gets the model gradient and writes them unset."""
    from pathlib import Path

    from hwloop.pretrained import path as pretrained

    old = json.loads((Path(__file__).parent / "data" / "session-v1" / "config.json").read_text())
    assert "signal" not in old
    cfg = LoopConfig.from_json(old)
    assert cfg.model is None and cfg.signal is None and cfg.surrogate is None and cfg.surrogate_beta is None
    net = Network.load(str(pretrained("yinyang-lif.hwnet")))
    assert isinstance(make_estimator(cfg, net, None), ModelGradient)
    new = LoopConfig(target="software", init=str(pretrained("yinyang-lif.hwnet")), epochs=1, batch_size=50,
                     train_limit=50, eval_limit=20, final_test=False, compare_software=False)
    run_session(tmp_path / "t", new, progress=False)
    saved = json.loads((tmp_path / "t" / "config.json").read_text())
    assert saved["model"] is None and saved["signal"] is None and saved["gradient"] == "model"


def test_weight_bits_coarsens_only_the_stored_weights(tiny_net):
    """``bitexact?weight_bits=N`` (the coarse step of the results): every stored
    mantissa a multiple of 2^(9 - N), the registers those of 8 bits, and 8 the default."""
    from hwloop.backends.loihi.trains_mapping import compile_trains

    net = Network.load(tiny_net)
    base, rep = compile_trains(net)
    same, _ = compile_trains(net, weight_bits=8)
    coarse, rep4 = compile_trains(net, weight_bits=4)
    for a, b, c in zip(base, same, coarse):
        assert np.array_equal(a.weight, b.weight)
        assert (a.vth, a.weight_exp, a.du, a.dv) == (c.vth, c.weight_exp, c.du, c.dv)
        assert np.all(c.weight % 32 == 0) and c.weight.min() >= -256 and c.weight.max() <= 224
        assert not np.array_equal(a.weight, c.weight)
    assert all(r4["weight_err_rms"] > r["weight_err_rms"] for r, r4 in zip(rep.layers, rep4.layers))
    with open_target("bitexact?weight_bits=4") as be:
        assert be.opts["weight_bits"] == 4
        be.load(net)
        assert np.array_equal(be._compiled.layers[0].weight, coarse[0].weight)


@pytest.mark.parametrize("variant", [dict(recurrent=True), dict(recurrent=True, reset="subtract", refractory=2)])
def test_recurrent_weights_get_the_reference_gradient_from_the_substituted_forward(variant):
    """A recurrent layer's ``w_rec``: the measured spikes of step t - 1 drive the
    recurrent input at t with their straight-through gradient, so with measurements
    equal to the model's own the gradient on ``w_rec`` is the reference loop's, to
    rounding (the session trains them: tests/test_loop_trains_recurrent.py)."""
    layers, params, ws, rec, raster = _random_layers(**variant)
    sg = Surrogate("superspike", 10.0)
    r_a = [None if r is None else r.clone().requires_grad_(True) for r in rec]
    ref = cuba_network_forward(raster, ws, params, sg, r_a, engine="torch", record="all")
    r_b = [None if r is None else r.clone().requires_grad_(True) for r in rec]
    sub = substituted_forward(layers, ws, r_b, raster, sg, [s.detach() for s in ref.spikes],
                              [v.detach() for v in ref.membranes])
    la = ref.membranes[1].max(0).values.sum() + ref.counts[0].sum() * 0.01
    lb = sub.membranes[1].max(0).values.sum() + sub.counts[0].sum() * 0.01
    ga, = torch.autograd.grad(la, [r_a[0]])
    gb, = torch.autograd.grad(lb, [r_b[0]])
    assert float(ga.abs().max()) > 0
    torch.testing.assert_close(gb, ga, rtol=1e-10, atol=1e-12)  # (the fully measured layer's adjoint)
    if variant.get("refractory"):
        return
    # a measured spike at step 0 that the model did not fire is the recurrent input of
    # step 1: v~(1) = beta v(0) + alpha i(0) + x(1), x(1) = (s_in(1) @ w + s(0) @ w_rec),
    # so d sum_k v~(1)[b, k] / d w_rec[j, k] = s_j(0) = 1 on its row, 0 on rows that did not fire
    s_meas = ref.spikes[0].detach().clone()
    b = 0
    j = int(torch.nonzero(s_meas[0, b] == 0)[0])
    s_meas[0, b, j] = 1.0
    r_c = rec[0].clone().requires_grad_(True)
    per = substituted_forward(layers, ws, [r_c, None], raster, sg, [s_meas, None])
    g, = torch.autograd.grad(per.membranes[0][1, b].sum(), [r_c])
    fired = s_meas[0, b] > 0
    assert torch.equal(g[j], torch.ones_like(g[j]))
    assert torch.equal(g[fired], torch.ones_like(g[fired])) and torch.equal(g[~fired], torch.zeros_like(g[~fired]))
