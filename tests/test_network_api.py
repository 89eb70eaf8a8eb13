"""Issue 13, the Network's part of the Python API: a compact repr, and
`Network.run(target, x)` that opens (or accepts) a target, loads the network
and returns the `Measurement`."""

from __future__ import annotations

import dataclasses
import inspect
from importlib import resources

import numpy as np
import pytest

from hwloop import Network, NetworkSpecError, TargetError
from hwloop.backends import Measurement, open_target

from test_network import make_net

PRETRAINED = resources.files("hwloop") / "pretrained" / "yinyang-lif.hwnet"


# ------------------------------------------------------------------------ repr
def test_repr_is_compact_and_says_what_and_where():
    """The shipped network's repr was 17 000 characters of weights."""
    net = Network.load(PRETRAINED)
    text = repr(net)
    assert len(text) < 250, text
    for part in ("lif", "4-120-3", "ms", "t_max=4", "yinyang-lif.hwnet", "yinyang", "seed 0"):
        assert part in text, (part, text)
    assert "array" not in text and "\n" not in text
    assert net.source == str(PRETRAINED)


def test_repr_of_a_network_built_in_code_and_of_its_parts():
    net = make_net()
    text = repr(net)
    assert len(text) < 250 and "4-7-3" in text and "from" not in text.split("(", 1)[1].split(",")[0]
    assert net.source is None
    layer = repr(net.layers[0])
    assert len(layer) < 150 and "5x7" in layer and "array" not in layer, layer
    # a changed copy no longer claims to be the file it was loaded from
    loaded = Network.load(PRETRAINED)
    changed = loaded.with_weights([w * 0.5 for w in loaded.weights()])
    assert changed.source is None and "yinyang-lif.hwnet" not in repr(changed)


# ------------------------------------------------------------------------- run
def reference(net, t_in):
    with open_target("software") as be:
        be.load(net)
        return be.run(t_in)


def test_run_values_on_a_target_url():
    net = Network.load(PRETRAINED)
    x = np.random.default_rng(0).uniform(0, 1, size=(16, 4))
    m = net.run("software", x)
    assert isinstance(m, Measurement) and m.target == "software"
    ref = reference(net, net.encoding.encode(x))
    assert len(m.times) == 2 and m.output.shape == (16, 3)
    for a, b in zip(m.times, ref.times):
        np.testing.assert_array_equal(a, b)


def test_run_spike_times_and_one_sample():
    net = Network.load(PRETRAINED)
    t = np.array([[0.3, 1.2, 0.7, 2.0], [0.15, 0.15, 2.0, 2.0]])
    m = net.run("software", times=t)
    np.testing.assert_array_equal(m.output, reference(net, t).output)
    one = net.run("software", [0.2, 0.8, 0.8, 0.2])  # a single sample of feature values
    assert one.output.shape == (1, 3)
    np.testing.assert_array_equal(one.output, reference(net, net.encoding.encode([[0.2, 0.8, 0.8, 0.2]])).output)


def test_run_on_an_open_backend_loads_once_and_leaves_it_open():
    net = Network.load(PRETRAINED)
    x = np.random.default_rng(1).uniform(0, 1, size=(8, 4))
    with open_target("bitexact") as be:
        first = net.run(be, x)
        compiled = be._deployed
        second = net.run(be, x)
        assert be._deployed is compiled  # the same network is not compiled again
        other = make_net()
        other.run(be, np.zeros((2, 4)))  # another network: loaded onto the same target
        assert be.network is other
        again = net.run(be, x)
    for a, b in zip(first.times, second.times):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.output, again.output)
    assert first.target.startswith("bitexact")


def test_run_on_the_emulated_chip_opens_and_closes_it(monkeypatch):
    """A URL that spawns a process (the QIF chip emulator on its pty): the
    result equals running the opened backend by hand, and the chip is stopped."""
    import hwloop.backends

    net = Network.load(PRETRAINED.parent / "yinyang-qif.hwnet")
    x = np.random.default_rng(2).uniform(0, 1, size=(12, 4))
    url = "qif-emu?chip_id=3&noise=0"
    opened = []
    real_open = hwloop.backends.open_target

    def spy(u):
        opened.append(real_open(u))
        return opened[-1]

    monkeypatch.setattr(hwloop.backends, "open_target", spy)
    m = net.run(url, x)
    assert len(opened) == 1 and opened[0].proc is None  # closed again: emulator stopped
    with real_open(url) as be:
        be.load(net)
        ref = be.run(net.encoding.encode(x))
    assert m.target == url
    for a, b in zip(m.times, ref.times):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=np.zeros((3, 5))), r"4 features"),
    (dict(x=np.zeros((2, 3, 4))), r"shape"),
    (dict(x=np.zeros((0, 4))), r"no samples"),
    (dict(x=[[0.1, "a", 0.2, 0.3]]), r"numbers"),
    (dict(x=np.full((1, 4), np.nan)), r"NaN"),
    (dict(x=np.zeros((1, 4)), times=np.zeros((1, 4))), r"not both"),
    (dict(), r"feature values .*or times"),
    (dict(times=np.full((1, 4), -1.0)), r">= 0"),
])
def test_run_refuses_bad_inputs_before_opening_the_target(kwargs, match, monkeypatch):
    import hwloop.backends

    opened = []
    monkeypatch.setattr(hwloop.backends, "open_target", lambda url: opened.append(url))
    with pytest.raises(NetworkSpecError, match=match):
        make_net().run("qif-emu", **kwargs)
    assert not opened


def test_run_bad_target_is_a_target_error():
    with pytest.raises(TargetError, match="unknown target"):
        make_net().run("nosuchtarget", np.zeros((1, 4)))
    with pytest.raises(TypeError, match="target URL or an open backend"):
        make_net().run(42, np.zeros((1, 4)))


# ------------------------------------------------------------------ docstrings
@pytest.mark.parametrize("module", ["hwloop.network", "hwloop.netfile"])
def test_every_public_name_has_a_docstring(module):
    """The API reference is generated from docstrings: none may be missing."""
    import importlib

    module = importlib.import_module(module)
    missing = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if callable(target) or isinstance(member, property):
                    if not (target.__doc__ or "").strip():
                        missing.append(f"{name}.{attr}")
    assert not missing, missing


# -------------------------------------------------------------------- equality
def test_networks_compare_by_value(tmp_path):
    """``a == b`` raised "truth value of an array is ambiguous" (dataclass
    equality on numpy weights); now a round trip compares equal."""
    net = make_net()
    back = Network.load(net.save(tmp_path / "n.hwnet"))
    assert back == net and net == make_net()
    assert net != make_net(seed=1)
    assert net != net.with_weights([np.nextafter(w, np.inf) for w in net.weights()])
    assert net.layers[0] != net.layers[1] and net.layers[0] == make_net().layers[0]
    assert net.layers[0] != "layer"
