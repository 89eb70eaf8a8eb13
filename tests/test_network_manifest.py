"""Issue 12 findings 8 and 9: every manifest field type-checked at load, one
`NetworkFileError` naming the field; duplicate zip members and duplicate JSON
keys refused (the last one used to win silently)."""

from __future__ import annotations

import json
import zipfile

import pytest

from hwloop import Network, NetworkFileError
from hwloop.cli import main

from test_network import make_net


def rewrite_text(path, edit):
    """Replace the manifest by ``edit(text)`` (raw text, so non-JSON constants
    such as Infinity can be written)."""
    with zipfile.ZipFile(path) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            if name == "manifest.json":
                data = edit(data.decode()).encode()
            zf.writestr(name, data)


def set_field(path, dotted, value):
    """Set a manifest field given as ``a.b.0.c`` to a JSON value."""
    def edit(text):
        m = json.loads(text)
        *head, last = dotted.split(".")
        node = m
        for k in head:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is DELETE:
            del node[last]
        else:
            node[last] = value
        return json.dumps(m)
    rewrite_text(path, edit)


DELETE = object()


# ------------------------------------------------- values that are not JSON numbers
@pytest.mark.parametrize("field, old", [
    ("t_max", '"t_max": 4.0'),
    ("provenance.seed", '"seed": 0'),
    ("layers[0].neuron.tau_syn", '"tau_syn": 1.0'),
    ("encoding.t_at_max", '"t_at_max": 2.0'),
])
@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_non_finite_constants(tmp_path, field, old, constant):
    """``Infinity`` in the seed raised OverflowError; every field and constant now
    gives one NetworkFileError naming the field."""
    path = make_net(model="qif" if "neuron" in field else "lif").save(tmp_path / "n.hwnet")
    key = old.split(":")[0]
    rewrite_text(path, lambda t: t.replace(old, f"{key}: {constant}", 1))
    with pytest.raises(NetworkFileError) as info:
        Network.load(path)
    msg = str(info.value)
    assert "n.hwnet" in msg and "\n" not in msg
    assert f"'{field}'" in msg and "finite" in msg and constant in msg


def test_non_finite_inside_extra_names_its_place(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    rewrite_text(path, lambda t: t.replace('"extra": {}', '"extra": {"lr": Infinity}', 1))
    with pytest.raises(NetworkFileError, match=r"'provenance\.extra\.lr'.*finite.*Infinity"):
        Network.load(path)


def test_deep_nesting_is_one_error_not_recursion(tmp_path):
    """100 000-deep nesting raised RecursionError."""
    path = make_net().save(tmp_path / "n.hwnet")
    n = 100_000
    rewrite_text(path, lambda t: t.replace('"extra": {}', '"extra": {"deep": ' + "[" * n + "]" * n + "}", 1))
    with pytest.raises(NetworkFileError, match=r"nest.*depth"):
        Network.load(path)


# ----------------------------------------------------------------- field types
QIF_CASES = [
    ("layers.0.neuron.options.i0", "abc", r"layers\[0\]\.neuron\.options\.i0"),
    ("layers.0.neuron.options.i0", None, r"layers\[0\]\.neuron\.options\.i0"),
    ("layers.0.neuron.options.i0", True, r"layers\[0\]\.neuron\.options\.i0"),
    ("layers.1.neuron.options.i0", [1.25], r"layers\[1\]\.neuron\.options\.i0"),
    ("layers.0.neuron.options.i0", 0.2, r"layers\[0\]\.neuron\.options\.i0.*0\.25"),
    ("layers.0.neuron.options.v0", "0.5", r"layers\[0\]\.neuron\.options\.v0"),
]

LIF_CASES = [
    ("t_max", "4.0", r"'t_max'"),
    ("t_max", True, r"'t_max'"),
    ("t_max", -1.0, r"'t_max'.*> 0"),
    ("time_unit", 3, r"'time_unit'"),
    ("time_unit", "fortnight", r"'time_unit'.*ms"),
    ("format_version", True, r"format_version"),
    ("format_version", 1.0, r"format_version"),
    ("encoding", [], r"'encoding'.*object"),
    ("encoding.n_features", 4.5, r"'encoding\.n_features'.*integer"),
    ("encoding.n_features", "4", r"'encoding\.n_features'"),
    ("encoding.n_features", 0, r"'encoding\.n_features'"),
    ("encoding.kind", None, r"'encoding\.kind'"),
    ("encoding.value_min", DELETE, r"'encoding\.value_min'.*missing"),
    ("encoding.silent_at_min", 0, r"'encoding\.silent_at_min'.*true or false"),
    ("decoding.classes", "abc", r"'decoding\.classes'.*list"),
    ("decoding.classes", ["a", 1, "c"], r"'decoding\.classes\[1\]'.*string"),
    ("decoding.kind", "last-spike", r"'decoding\.kind'"),
    ("layers", {}, r"'layers'.*list"),
    ("layers", [], r"'layers'"),
    ("layers.0", "x", r"'layers\[0\]'.*object"),
    ("layers.0.weight", 7, r"'layers\[0\]\.weight'.*string"),
    ("layers.0.shape", [5.0, 7], r"'layers\[0\]\.shape\[0\]'.*integer"),
    ("layers.0.shape", [5, 7, 1], r"'layers\[0\]\.shape'.*2"),
    ("layers.0.shape", [5, -7], r"'layers\[0\]\.shape\[1\]'"),
    ("layers.0.sha256", "xyz", r"'layers\[0\]\.sha256'.*hex"),
    ("layers.0.bias_times", "0.9", r"'layers\[0\]\.bias_times'.*list"),
    ("layers.0.bias_times", ["0.9"], r"'layers\[0\]\.bias_times\[0\]'.*number"),
    ("layers.0.bias_times", [-1.0], r"'layers\[0\]\.bias_times\[0\]'.*>= 0"),
    ("layers.0.neuron", None, r"'layers\[0\]\.neuron'.*object"),
    ("layers.0.neuron.model", "hh", r"'layers\[0\]\.neuron\.model'.*lif"),
    ("layers.0.neuron.threshold", "1", r"'layers\[0\]\.neuron\.threshold'"),
    ("layers.0.neuron.options", [], r"'layers\[0\]\.neuron\.options'.*object"),
    ("layers.0.neuron.options", {"note": {"a": 1}}, r"'layers\[0\]\.neuron\.options\.note'"),
    ("provenance", "x", r"'provenance'.*object"),
    ("provenance.seed", "0", r"'provenance\.seed'.*integer"),
    ("provenance.seed", 1.5, r"'provenance\.seed'.*integer"),
    ("provenance.accuracy", {"test": "high"}, r"'provenance\.accuracy\.test'.*number"),
    ("provenance.dataset", 5, r"'provenance\.dataset'.*string"),
    ("provenance.extra", [1], r"'provenance\.extra'.*object"),
]


@pytest.mark.parametrize("dotted, value, match", QIF_CASES, ids=[f"{c[0]}={c[1]!r}" for c in QIF_CASES])
def test_qif_options_typed_at_load(tmp_path, dotted, value, match):
    """``options.i0`` a string or null used to load and fail later, in eval."""
    path = make_net(model="qif").save(tmp_path / "n.hwnet")
    set_field(path, "layers.0.neuron.options", {"i0": 1.25, "v0": 0.5})
    set_field(path, "layers.1.neuron.options", {"i0": 1.25, "v0": 0.5})
    Network.load(path)  # valid as written
    set_field(path, dotted, value)
    with pytest.raises(NetworkFileError, match=match) as info:
        Network.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("dotted, value, match", LIF_CASES, ids=[f"{c[0]}={c[1]!r}" for c in LIF_CASES])
def test_field_types_at_load(tmp_path, dotted, value, match):
    path = make_net().save(tmp_path / "n.hwnet")
    set_field(path, dotted, value)
    with pytest.raises(NetworkFileError, match=match) as info:
        Network.load(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_unknown_keys_refused(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    set_field(path, "layers.0.neuron.tau_sin", 1.0)
    with pytest.raises(NetworkFileError, match=r"'layers\[0\]\.neuron'.*unknown key 'tau_sin'"):
        Network.load(path)
    path = make_net().save(tmp_path / "m.hwnet")
    set_field(path, "weights", [])
    with pytest.raises(NetworkFileError, match=r"unknown key 'weights'"):
        Network.load(path)


def test_in_code_construction_checks_option_types():
    """The same rule for a Network built in Python (before anything runs)."""
    from hwloop import NetworkSpecError, NeuronParams

    with pytest.raises(NetworkSpecError, match="i0"):
        NeuronParams("qif", options={"i0": "abc"}).validate("layer 0")
    with pytest.raises(NetworkSpecError, match="i0"):
        NeuronParams("qif", options={"i0": None}).validate("layer 0")
    with pytest.raises(NetworkSpecError, match="tau_mem"):
        NeuronParams("lif", tau_mem=True).validate("layer 0")


def test_cli_prints_one_line_for_a_bad_manifest(tmp_path, capsys):
    """The README's promise: a bad file is one line on stderr and exit 2."""
    path = make_net().save(tmp_path / "n.hwnet")
    rewrite_text(path, lambda t: t.replace('"seed": 0', '"seed": Infinity', 1))
    x = tmp_path / "x.npy"
    import numpy as np

    np.save(x, np.zeros((2, 4)))
    code = main(["simulate", str(path), "--inputs", str(x), "--out", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "seed" in err


# ----------------------------------------------------------- finding 9: duplicates
def _append_member(path, name, data):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name"
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(name, data)


def test_duplicate_manifest_member_refused(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    with zipfile.ZipFile(path) as zf:
        text = zf.read("manifest.json")
    _append_member(path, "manifest.json", text.replace(b'"seed": 0', b'"seed": 7'))
    with pytest.raises(NetworkFileError, match=r"duplicate member 'manifest\.json'"):
        Network.load(path)


def test_duplicate_weight_member_refused(tmp_path):
    """A second layers/0/weight.npy (even one with the same bytes) is refused."""
    path = make_net().save(tmp_path / "n.hwnet")
    with zipfile.ZipFile(path) as zf:
        data = zf.read("layers/0/weight.npy")
    _append_member(path, "layers/0/weight.npy", data)
    with pytest.raises(NetworkFileError, match=r"duplicate member 'layers/0/weight\.npy'"):
        Network.load(path)


def test_duplicate_json_keys_refused(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    rewrite_text(path, lambda t: t.replace('"t_max": 4.0', '"t_max": 4.0, "t_max": 8.0', 1))
    with pytest.raises(NetworkFileError, match=r"duplicate key 't_max'"):
        Network.load(path)
