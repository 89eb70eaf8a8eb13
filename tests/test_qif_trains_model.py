"""The discrete-time QIF spike-train neuron ("qif-trains", docs/models-qif-trains.md):
its record in `Network` / `.hwnet` version 2."""

from __future__ import annotations

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
