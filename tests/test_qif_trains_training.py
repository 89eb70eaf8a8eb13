"""Training qif-trains networks (docs/models-qif-trains.md): the trainer on a
small Randman, the artifact it writes, and the CLI (train, eval, simulate
--probe)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwloop.cli import main
from hwloop.models.trains import QifTrainsParams
from hwloop.network import Network
from hwloop.trains_training import (QIF_TRAINS_DEFAULTS, TrainsConfig, defaults_for, lr_scale, psp_energy,
                                    to_network, train)

SMALL = {"n_classes": 3, "samples_per_class": 150, "n_units": 20, "seed": 2}


def _tiny(**kw):
    base = dict(dataset="randman", model="qif-trains", hidden=(64,), epochs=8, batch_size=50, lr=5e-3, threads=1,
                data_options=dict(SMALL), **QIF_TRAINS_DEFAULTS)
    base.update(kw)
    return TrainsConfig(**base)


def test_config_gives_qif_records():
    cfg = _tiny(i0=0.1, v_peak=3.0, v_reset=-0.5, refractory=1)
    ph, po = cfg.hidden_params(), cfg.output_params()
    assert isinstance(ph, QifTrainsParams) and ph.spiking and ph.i0 == 0.1 and ph.v_peak == 3.0
    assert ph.v_reset == -0.5 and ph.refractory == 1 and ph.k == cfg.dt / cfg.tau_mem
    assert isinstance(po, QifTrainsParams) and not po.spiking and po.tau_mem == cfg.tau_readout
    assert lr_scale(ph) == pytest.approx(cfg.tau_mem / cfg.dt) and lr_scale(po) == pytest.approx(cfg.tau_readout / cfg.dt)
    d = defaults_for("randman", model="qif-trains")
    assert d.model == "qif-trains" and d.beta == QIF_TRAINS_DEFAULTS["beta"] and d.i0 == QIF_TRAINS_DEFAULTS["i0"]
    assert d.hidden_params().excitable
    assert defaults_for("randman").model == "cuba" and defaults_for("randman").beta == 20.0


def test_psp_energy_of_the_linearised_qif():
    # readout: v_t = (1 - k) v + k i with i a decaying current; closed form check by direct sum
    p = QifTrainsParams(dt=1.0, current_decay=0.5, tau_mem=4.0, spiking=False)
    i = v = total = 0.0
    for t in range(50):
        i = 0.5 * i + (1.0 if t == 0 else 0.0)
        v = 0.75 * v + 0.25 * i
        total += v * v
    assert psp_energy(p, 50) == pytest.approx(total, rel=1e-12)
    # a spiking QIF at i0 = 0.16: leak sqrt(1 - 0.64) = 0.6 per unit of k
    q = QifTrainsParams(dt=1.0, current_decay=0.5, tau_mem=4.0, i0=0.16)
    i = v = total = 0.0
    for t in range(50):
        i = 0.5 * i + (1.0 if t == 0 else 0.0)
        v = (1 - 0.25 * 0.6) * v + 0.25 * i
        total += v * v
    assert psp_energy(q, 50) == pytest.approx(total, rel=1e-12)


def test_trainer_learns_a_small_randman(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE_DIR", str(tmp_path))
    res = train(_tiny())
    acc = res.metrics["accuracy"]
    assert acc["train"] > 0.8 and acc["test"] > 0.7, acc  # chance: 1/3
    assert res.metrics["val_accuracy_at_init"] < acc["val"]
    assert 0.0 < res.metrics["hidden_spikes_per_neuron"][0] < 20
    net = to_network(res)
    assert net.model == "qif-trains" and net.provenance.model == "qif-trains"
    assert [layer.neuron.trains_params() for layer in net.layers] == res.network.params
    # the software target decides like the trainer
    back = Network.load(net.save(tmp_path / "q.hwnet"))
    from hwloop.trains_training import load_trains_data

    test = load_trains_data(_tiny(dtype="float64")).splits["test"]
    m = back.run("software", raster=test.raster.numpy())
    agree = float((np.argmax(m.scores, axis=1) == test.labels.numpy()).mean())
    assert agree == pytest.approx(acc["test"], abs=0.02)


def test_trainer_recurrent_and_other_readouts_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE_DIR", str(tmp_path))
    for kw in (dict(readout="count"), dict(recurrent=True, refractory=2, i0=0.1)):
        res = train(_tiny(epochs=1, **kw))
        assert 0.0 <= res.metrics["accuracy"]["test"] <= 1.0
        assert torch.isfinite(res.network.weights[0]).all()
        if kw.get("recurrent"):
            assert res.network.recurrent[0] is not None and res.network.recurrent[0].shape == (64, 64)
            assert to_network(res).layers[0].recurrent is not None


def test_bad_model_is_named():
    from hwloop.errors import HwloopError

    with pytest.raises(HwloopError, match="neuron model"):
        train(_tiny(model="hh"))


# ------------------------------------------------------------------ CLI
def run_json(capsys, argv):
    code = main(argv + ["--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    return json.loads(out[-1])


def test_cli_train_eval_simulate(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE_DIR", str(tmp_path))
    path = tmp_path / "xor.hwnet"
    code = main(["train", "--model", "qif-trains", "--dataset", "delayed-xor", "--epochs", "1", "--hidden", "12",
                 "--recurrent", "--out", str(path), "--quiet"])
    assert code == 0
    capsys.readouterr()
    net = Network.load(path)
    assert net.model == "qif-trains" and net.layers[0].recurrent is not None
    assert json.loads(json.dumps(net.provenance.extra))["trains_config"]["model"] == "qif-trains"
    res = run_json(capsys, ["eval", str(path), "--limit", "100"])
    assert res["dataset"] == "delayed-xor" and res["n"] == 100
    x = np.random.default_rng(0).uniform(size=(4, net.encoding.n_features))
    np.save(tmp_path / "x.npy", x)
    res = run_json(capsys, ["simulate", str(path), "--inputs", str(tmp_path / "x.npy"),
                            "--out", str(tmp_path / "o.npz"), "--probe"])
    assert res["n"] == 4 and res["probe"]
    z = np.load(tmp_path / "o.npz")
    assert z["layer_0_membrane"].shape == (net.n_steps, 4, 12)
    v = z["layer_0_membrane"]
    assert v.min() >= -1.0  # the floor
