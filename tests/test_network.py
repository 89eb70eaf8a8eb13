"""The Network artifact and its file format: round trips and every kind of bad file."""

import io
import json
import zipfile

import numpy as np
import pytest

from hwloop import (InputEncoding, Layer, Network, NetworkFileError, NetworkSpecError, NeuronParams,
                    OutputDecoding, Provenance)


def make_net(seed=0, sizes=(4, 7, 3), model="lif"):
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(sizes) - 1):
        w = rng.normal(size=(sizes[i] + 1, sizes[i + 1]))
        layers.append(Layer(w, NeuronParams(model, 1.0, 2.0, 1.0, {"note": "x"}), bias_times=(0.9,)))
    return Network(
        layers=tuple(layers),
        encoding=InputEncoding(sizes[0], t_at_min=0.15, t_at_max=2.0),
        decoding=OutputDecoding(tuple(f"c{i}" for i in range(sizes[-1]))),
        t_max=4.0,
        time_unit="ms",
        provenance=Provenance(model=model, dataset="unit", seed=seed, accuracy={"test": 0.5}),
    )


def test_round_trip_identical(tmp_path):
    net = make_net()
    path = net.save(tmp_path / "n.hwnet")
    back = Network.load(path)
    assert back.sizes == net.sizes
    for a, b in zip(net.layers, back.layers):
        np.testing.assert_array_equal(a.weight, b.weight)
        assert a.neuron == b.neuron
        assert a.bias_times == b.bias_times
    assert back.encoding == net.encoding
    assert back.decoding == net.decoding
    assert back.t_max == net.t_max and back.time_unit == net.time_unit
    assert back.provenance == net.provenance


def test_file_is_readable_without_hwloop(tmp_path):
    """The documented layout: a zip with manifest.json and .npy weights."""
    path = make_net().save(tmp_path / "n.hwnet")
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["format"] == "hwloop-network" and manifest["format_version"] == 1
        w0 = np.load(io.BytesIO(zf.read(manifest["layers"][0]["weight"])))
    assert list(w0.shape) == manifest["layers"][0]["shape"]


def test_weights_are_immutable():
    net = make_net()
    with pytest.raises(ValueError):
        net.layers[0].weight[0, 0] = 1.0


def _rewrite(path, mutate_manifest=None, replace=None):
    """Rebuild the archive with a changed manifest or member."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members["manifest.json"])
    if mutate_manifest:
        mutate_manifest(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    if replace:
        members.update(replace)
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)


def test_truncated_file(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        path.write_bytes(data[:cut])
        with pytest.raises(NetworkFileError, match="n.hwnet"):
            Network.load(path)


def test_corrupt_bytes_detected(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("layers/0/weight.npy")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 5
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NetworkFileError, match="corrupt|checksum|valid"):
        Network.load(path)


def test_checksum_mismatch(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    buf = io.BytesIO()
    np.save(buf, np.zeros((5, 7)))
    _rewrite(path, replace={"layers/0/weight.npy": buf.getvalue()})
    with pytest.raises(NetworkFileError, match="checksum"):
        Network.load(path)


def test_wrong_version(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    _rewrite(path, lambda m: m.update(format_version=99))
    with pytest.raises(NetworkFileError, match="format_version 99"):
        Network.load(path)


def test_not_a_network(tmp_path):
    p = tmp_path / "x.hwnet"
    p.write_text("hello")
    with pytest.raises(NetworkFileError, match="not an hwloop network"):
        Network.load(p)
    with pytest.raises(NetworkFileError, match="no such file"):
        Network.load(tmp_path / "missing.hwnet")
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "other"}))
    with pytest.raises(NetworkFileError, match="format"):
        Network.load(p)


def _weight_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _with_weight(path, arr, shape=None):
    import hashlib

    data = _weight_bytes(arr)

    def mut(m):
        m["layers"][0]["sha256"] = hashlib.sha256(data).hexdigest()
        m["layers"][0]["shape"] = list(shape if shape is not None else arr.shape)

    _rewrite(path, mut, {"layers/0/weight.npy": data})


def test_wrong_shape(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    # array disagrees with the manifest
    _with_weight(path, np.zeros((5, 7)), shape=(5, 8))
    with pytest.raises(NetworkFileError, match="shape"):
        Network.load(path)
    # array and manifest agree but the layer chain does not fit
    path = make_net().save(tmp_path / "m.hwnet")
    _with_weight(path, np.zeros((5, 6)))
    with pytest.raises(NetworkFileError, match="inconsistent network"):
        Network.load(path)


def test_non_finite(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    w = np.zeros((5, 7))
    w[2, 3] = np.nan
    _with_weight(path, w)
    with pytest.raises(NetworkFileError, match="non-finite"):
        Network.load(path)
    path = make_net().save(tmp_path / "m.hwnet")
    _rewrite(path, lambda m: m.update(t_max="inf"))
    with pytest.raises(NetworkFileError, match="t_max"):
        Network.load(path)


def test_malformed_manifest(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    _rewrite(path, lambda m: m["layers"][0].pop("neuron"))
    with pytest.raises(NetworkFileError, match=r"manifest field 'layers\[0\]\.neuron' is missing"):
        Network.load(path)
    path = make_net().save(tmp_path / "m.hwnet")
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["manifest.json"] = b"{not json"
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    with pytest.raises(NetworkFileError, match="not valid JSON"):
        Network.load(path)


def test_save_is_atomic(tmp_path):
    """A failing save leaves the previous file intact and no temporary behind."""
    good = make_net(seed=1)
    path = good.save(tmp_path / "n.hwnet")
    before = path.read_bytes()
    bad = make_net(seed=2)
    object.__setattr__(bad.layers[0].neuron, "options", {"x": float("nan")})
    with pytest.raises(NetworkSpecError):
        bad.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.hwnet"]


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(t_max=0.0), "t_max"),
        (dict(time_unit="fortnight"), "time_unit"),
        (dict(decoding=OutputDecoding(("a", "b"))), "classes"),
    ],
)
def test_spec_errors(change, match):
    net = make_net()
    import dataclasses

    with pytest.raises(NetworkSpecError, match=match):
        dataclasses.replace(net, **change)


def test_layer_errors():
    with pytest.raises(NetworkSpecError, match="non-finite"):
        Layer(np.array([[np.inf]]), NeuronParams()).validate("layer 0")
    with pytest.raises(NetworkSpecError, match="unknown neuron model"):
        NeuronParams(model="hh").validate("layer 0")
    with pytest.raises(NetworkSpecError, match="tau_syn"):
        NeuronParams(tau_syn=-1).validate("layer 0")


def test_with_weights_and_encoding():
    net = make_net()
    new = net.with_weights([w * 2 for w in net.weights()])
    np.testing.assert_allclose(new.layers[1].weight, 2 * net.layers[1].weight)
    with pytest.raises(NetworkSpecError):
        net.with_weights([np.zeros((2, 2)), np.zeros((8, 3))])
    t = net.encoding.encode(np.array([[0.0, 1.0, 0.5, 2.0]]))
    np.testing.assert_allclose(t, [[0.15, 2.0, 1.075, 2.0]])
    enc = InputEncoding(2, value_min=0, value_max=16, t_at_min=2.0, t_at_max=0.15, silent_at_min=True)
    t = enc.encode(np.array([[0.0, 16.0]]))
    assert np.isinf(t[0, 0]) and t[0, 1] == pytest.approx(0.15)


# ------------------------------------------------------------- version-1 files
def _documented_read(path):
    """The reader docs/network-format.md shows: zip + json + np.load, no hwloop."""
    with zipfile.ZipFile(path) as zf:
        m = json.loads(zf.read("manifest.json"))
        weights = [np.load(io.BytesIO(zf.read(layer["weight"])), allow_pickle=False) for layer in m["layers"]]
    return m, weights


@pytest.mark.parametrize("name", ["yinyang-lif.hwnet", "yinyang-qif.hwnet"])
def test_shipped_version_1_files_load_bit_identically(name, tmp_path):
    """The hardened loader reads the shipped files to the same bits as the plain
    documented reader, and saving them again gives the same manifest and members."""
    from importlib import resources

    path = resources.files("hwloop") / "pretrained" / name
    manifest, weights = _documented_read(path)
    net = Network.load(path)
    for layer, w, ld in zip(net.layers, weights, manifest["layers"]):
        assert layer.weight.dtype == np.float64 and w.dtype == np.dtype("<f8")
        assert layer.weight.tobytes() == w.tobytes()
        assert layer.bias_times == tuple(ld["bias_times"])
        assert layer.neuron.to_json() == ld["neuron"]
    again = net.save(tmp_path / name)
    m2, w2 = _documented_read(again)
    assert m2 == manifest
    assert all(a.tobytes() == b.tobytes() for a, b in zip(weights, w2))
    with zipfile.ZipFile(path) as a, zipfile.ZipFile(again) as b:
        for info in a.infolist():
            if info.filename != "manifest.json":
                assert a.read(info) == b.read(info.filename)


def test_files_written_by_other_zip_tools_load(tmp_path):
    """Stored (uncompressed) members and folder entries, as `zip -r` writes them."""
    path = make_net().save(tmp_path / "n.hwnet")
    with zipfile.ZipFile(path) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("layers/", b"")
        zf.writestr("layers/0/", b"")
        for name, data in members:
            zf.writestr(name, data)
        zf.writestr("layers/1/", b"")
    back = Network.load(path)
    np.testing.assert_array_equal(back.layers[0].weight, make_net().layers[0].weight)
