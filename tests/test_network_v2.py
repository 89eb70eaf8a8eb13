"""Network format version 2: discrete-time (CUBA) layers, recurrent weights,
spike-train decodings; version-1 files unchanged."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hwloop.errors import NetworkFileError, NetworkSpecError
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

PRETRAINED = sorted((Path(__file__).parent.parent / "hwloop" / "pretrained").glob("*.hwnet"))


def cuba_net(recurrent: bool = True, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    hid = NeuronParams.cuba(dt=2.0, current_decay=0.18, voltage_decay=0.095, threshold=1.0, reset="subtract",
                            refractory=1)
    out = NeuronParams.cuba(dt=2.0, current_decay=0.18, voltage_decay=0.01, spiking=False)
    layers = (Layer(rng.normal(0, 0.6, (5, 8)), hid, recurrent=rng.normal(0, 0.2, (8, 8)) if recurrent else None),
              Layer(rng.normal(0, 0.5, (8, 3)), out))
    return Network(layers=layers, encoding=InputEncoding(n_features=5, t_at_min=0.0, t_at_max=40.0),
                   decoding=OutputDecoding(classes=("a", "b", "c"), kind="max-membrane", window=(5, 25)),
                   t_max=60.0)


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a .hwnet with its manifest edited by ``edit(manifest)`` (checksums untouched)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "manifest.json":
                m = json.loads(data)
                edit(m)
                data = json.dumps(m).encode()
            zout.writestr(info.filename, data)
    return dst


def test_cuba_network_round_trips_as_version_2(tmp_path):
    net = cuba_net()
    p = net.save(tmp_path / "c.hwnet")
    m = json.loads(zipfile.ZipFile(p).read("manifest.json"))
    assert m["format_version"] == 2
    assert m["layers"][0]["recurrent"]["shape"] == [8, 8]
    assert m["layers"][0]["neuron"]["reset"] == "subtract"
    back = Network.load(p)
    assert back.layers == net.layers and back.decoding == net.decoding
    assert back.is_spike_train and back.dt == 2.0 and back.n_steps == 30
    assert np.array_equal(back.layers[0].recurrent, net.layers[0].recurrent)
    assert back.layers[1].recurrent is None


@pytest.mark.parametrize("path", PRETRAINED, ids=lambda p: p.name)
def test_version_1_files_load_save_and_run_unchanged(path, tmp_path):
    net = Network.load(path)
    assert not net.is_spike_train and net.format_version == 1
    again = net.save(tmp_path / "again.hwnet")
    with zipfile.ZipFile(path) as a, zipfile.ZipFile(again) as b:
        assert a.read("manifest.json") == b.read("manifest.json")  # still written as version 1, byte for byte
        for name in a.namelist():
            assert a.read(name) == b.read(name)
    x = np.random.default_rng(1).uniform(0, 1, (64, net.encoding.n_features))
    m1 = net.run("software", x)
    m2 = Network.load(again).run("software", x)
    for t1, t2 in zip(m1.times, m2.times):
        assert t1.tobytes() == t2.tobytes()
    assert m1.events is None and m1.probes is None


def _first_layer(m, key, value):
    m["layers"][0]["neuron"][key] = value


@pytest.mark.parametrize("edit, expect", [
    (lambda m: m["layers"][0]["recurrent"].__setitem__("shape", [8, 7]), "layers[0].recurrent.shape"),
    (lambda m: m["layers"][0]["neuron"].pop("dt"), "layers[0].neuron.dt' is missing"),
    (lambda m: _first_layer(m, "dt", 0), "layers[0].neuron.dt' must be > 0"),
    (lambda m: _first_layer(m, "dt", -2.0), "layers[0].neuron.dt' must be > 0"),
    (lambda m: _first_layer(m, "reset", "bounce"), "layers[0].neuron.reset' must be one of zero, subtract"),
    (lambda m: _first_layer(m, "current_decay", 1.5), "layers[0].neuron.current_decay' must be <= 1"),
    (lambda m: _first_layer(m, "refractory", -1), "layers[0].neuron.refractory"),
    (lambda m: (m.__setitem__("format_version", 1), m["decoding"].pop("window"),
                m["decoding"].__setitem__("kind", "first-spike")), "unknown key 'recurrent'"),
    (lambda m: (m.__setitem__("format_version", 1), m["decoding"].pop("window"), m["layers"][0].pop("recurrent"),
                m["decoding"].__setitem__("kind", "first-spike")), "needs format_version 2"),
    (lambda m: m["layers"][1]["neuron"].__setitem__("dt", 1.0), "different time steps"),
    (lambda m: m["decoding"].__setitem__("window", [5, 99]), "reaches past"),
    (lambda m: m["decoding"].__setitem__("kind", "loudest"), "decoding.kind"),
    (lambda m: m.__setitem__("format_version", 3), "unsupported format_version 3"),
])
def test_malformed_version_2_files_give_one_error_naming_the_problem(tmp_path, edit, expect):
    good = cuba_net().save(tmp_path / "good.hwnet")
    bad = rewrite(good, tmp_path / "bad.hwnet", edit)
    with pytest.raises(NetworkFileError) as err:
        Network.load(bad)
    assert expect in str(err.value) and str(bad) in str(err.value)


def test_recurrent_shape_wrong_in_the_npy_itself(tmp_path):
    good = cuba_net().save(tmp_path / "good.hwnet")

    def edit(m):  # manifest says 8x8 but the member holds the 5x8 input weight (checksum matches it)
        m["layers"][0]["recurrent"] = {**m["layers"][0]["recurrent"], "weight": "layers/0/weight.npy"}

    with pytest.raises(NetworkFileError, match="must name a member of its own"):
        Network.load(rewrite(good, tmp_path / "bad.hwnet", edit))


def test_version_1_file_may_not_carry_version_2_parts(tmp_path):
    v1 = PRETRAINED[0]

    def edit(m):
        m["decoding"]["kind"] = "max-membrane"

    with pytest.raises(NetworkFileError, match="decoding.kind"):
        Network.load(rewrite(v1, tmp_path / "b.hwnet", edit))

    def edit2(m):
        m["layers"][0]["recurrent"] = {"weight": "x.npy", "shape": [1, 1], "sha256": "0" * 64}

    with pytest.raises(NetworkFileError, match="unknown key 'recurrent'"):
        Network.load(rewrite(v1, tmp_path / "c.hwnet", edit2))


def test_spec_errors_in_code():
    hid = NeuronParams.cuba(dt=1.0, current_decay=0.1, voltage_decay=0.1)
    with pytest.raises(NetworkSpecError, match="recurrent weight must be \\(4, 4\\)"):
        Layer(np.ones((3, 4)), hid, recurrent=np.ones((4, 3))).validate("layer 0")
    with pytest.raises(NetworkSpecError, match="unknown reset rule"):
        NeuronParams.cuba(dt=1.0, current_decay=0.1, voltage_decay=0.1, reset="bounce").validate()
    with pytest.raises(NetworkSpecError, match="needs dt"):
        NeuronParams(model="cuba").validate()
    with pytest.raises(NetworkSpecError, match="recurrent weights need a discrete-time"):
        Layer(np.ones((3, 4)), NeuronParams(), recurrent=np.ones((4, 4))).validate("layer 0")
