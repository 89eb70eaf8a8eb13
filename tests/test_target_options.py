"""Target URL options: one schema per target, checked before anything is opened
or spawned (issue 12 finding 1), and one input rule for every target."""

from pathlib import Path

import numpy as np
import pytest

import hwloop.backends.qif.backend as qif_backend
from hwloop.backends import open_target
from hwloop.cli import main
from hwloop.errors import TargetError
from hwloop.network import Network
from hwloop.pretrained import path as pretrained

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def no_spawn(monkeypatch):
    """Fail the test if a qif-emu emulator process is started or a port opened."""

    def refuse(*args, **kwargs):
        raise AssertionError("an emulator was spawned for a URL that should have been refused")

    monkeypatch.setattr(qif_backend, "spawn_emulator", refuse)
    monkeypatch.setattr(qif_backend.QifSerialBackend, "_open_port",
                        lambda self, path: refuse())


# (url, option named in the message, fragment of the allowed range)
BAD = [
    ("qif-emu?timeout=nan", "timeout", "[0.1, 3600]"),  # hung the host forever
    ("qif-emu?timeout=inf", "timeout", "[0.1, 3600]"),
    ("qif-emu?timeout=0", "timeout", "[0.1, 3600]"),  # ended 13 s later in a "write timeout"
    ("qif-emu?ack_timeout=-1", "ack_timeout", "[0.001, 60]"),
    ("qif-emu?ack_timeout=nan", "ack_timeout", "[0.001, 60]"),
    ("qif-emu?retries=-1", "retries", "0..1000"),
    ("qif-emu?recoveries=-1", "recoveries", "0..1000"),
    ("qif-emu?seed=1e20", "seed", "0..2^32-1"),
    ("qif-emu?seed=100000000000000000000", "seed", "0..2^32-1"),
    ("qif-emu?chip_id=-1", "chip_id", "0..2^64-1"),  # printed an emulator traceback
    ("qif-emu?mismatch=nan", "mismatch", "[0, 1]"),
    ("qif-emu?noise=2", "noise", "[0, 1]"),
    ("qif-emu?frame=0", "frame", "16..4096"),
    ("qif-emu?connect_timeout=-5", "connect_timeout", "[0.1, 3600]"),
    ("qif-emu?scale=0", "scale", "(0, "),
    ("qif-emu?scale=nan", "scale", "(0, "),
    ("qif-emu?baud=7", "baud", "300..16000000"),
    ("qif-emu?dac=max", "dac", "mse, cover"),
    ("qif:///dev/null?retries=x", "retries", "0..1000"),
    ("qif:///dev/null?timeout=nan", "timeout", "[0.1, 3600]"),
    ("bitexact?steps=0", "steps", "1..65536"),
    ("bitexact?steps=1.5", "steps", "1..65536"),
    ("bitexact?engine=fortran", "engine", "auto, numba, numpy"),
    ("lava-sim?batch=0", "batch", "1..1048576"),
    ("lava-sim?precision=double", "precision", "fixed, float"),
    ("lava-hw?timeout=-1", "timeout", "0..1048576"),
]


@pytest.mark.parametrize("url,option,allowed", BAD)
def test_bad_option_refused_before_anything_opens(no_spawn, url, option, allowed):
    with pytest.raises(TargetError) as info:
        open_target(url)
    msg = str(info.value)
    value = url.split(f"{option}=")[1].split("&")[0]
    assert f"option {option}=" in msg and value in msg and allowed in msg, msg


@pytest.mark.parametrize("url", ["software?x=1", "bitexact?stesp=10", "qif-emu?chipid=3", "lava-hw?precision=float",
                                 "qif:///dev/null?chip_id=1"])
def test_unknown_option_refused(no_spawn, url):
    with pytest.raises(TargetError, match=r"unknown option\(s\) " + url.split("?")[1].split("=")[0]):
        open_target(url)


@pytest.mark.parametrize("url", ["software:///tmp/x", "bitexact://a", "qif-emu:///dev/ttyS0"])
def test_path_refused_where_none_is_taken(no_spawn, url):
    with pytest.raises(TargetError, match="takes no path"):
        open_target(url)


def test_option_given_twice_refused(no_spawn):
    with pytest.raises(TargetError, match="steps given twice"):
        open_target("bitexact?steps=10&steps=20")


def test_options_are_typed_with_defaults():
    from hwloop.backends import target_options

    with open_target("bitexact?steps=150") as be:
        assert be.opts == {"steps": 150, "engine": "auto", "weight_exp": "auto", "weight_bits": 8} and be.steps == 150
    with open_target("software") as be:
        assert be.opts == {}
    schema = {o.name: o for o in target_options()["qif-emu"]}
    assert schema["chip_id"].parse("0x1f", "qif-emu") == 31
    assert schema["baud"].parse("0", "qif-emu") == 0  # 0 = unpaced is allowed outside 300..
    assert schema["timeout"].parse(" 2.5 ", "qif-emu") == 2.5
    assert schema["baud"].default == 921600 and {o.name: o for o in target_options()["qif"]}["baud"].default == 115200


def test_cli_bad_option_is_one_line_exit_2(capsys, no_spawn):
    net = str(pretrained("yinyang-qif.hwnet"))
    code = main(["eval", net, "--dataset", "yinyang", "--limit", "5", "--target", "qif-emu?timeout=nan"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "timeout='nan'" in err[0] and "[0.1, 3600]" in err[0], err


def test_devices_prints_every_targets_options(capsys):
    import json

    assert main(["devices", "--options", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(res["options"]) == {"software", "bitexact", "lava-sim", "lava-hw", "qif-emu", "qif"}
    assert res["options"]["software"] == []
    timeout = {o["name"]: o for o in res["options"]["qif-emu"]}["timeout"]
    assert timeout["default"] == 5.0 and timeout["allowed"] == "a number in [0.1, 3600]"
    assert main(["devices", "--options"]) == 0
    out = capsys.readouterr().out
    assert "qif-emu" in out and "ack_timeout" in out and "0..2^64-1" in out


def test_docs_list_the_options_as_the_schema_declares_them():
    """docs/targets.md holds the generated tables verbatim, so it cannot drift."""
    from hwloop.backends import target_options_markdown

    text = (DOCS / "targets.md").read_text()
    assert target_options_markdown() in text, (
        "docs/targets.md is out of date; regenerate the tables with "
        "python -c 'from hwloop.backends import target_options_markdown as m; print(m())'")


# ------------------------------------------------------------ input rule
def _first_inputs(net, n=4):
    from hwloop.data import load_dataset

    return net.encoding.encode(load_dataset("yinyang", "test").x[:n])


@pytest.mark.parametrize("url", ["software", "bitexact"])
def test_negative_input_times_refused_on_every_target(url):
    """They were accepted on `software` and refused on `qif-emu`: one rule now, in Backend.run."""
    net = Network.load(pretrained("yinyang-lif.hwnet"))
    x = _first_inputs(net)
    x[2, 1] = -0.5
    with open_target(url) as be:
        be.load(net)
        with pytest.raises(TargetError, match=r"must be >= 0 \(or inf: no spike\); sample 2 input 1 is -0.5"):
            be.run(x)
        x[2, 1] = np.inf  # a silent input is fine
        assert be.run(x).output.shape == (4, 3)
        with pytest.raises(TargetError, match="no samples"):
            be.run(x[:0])


def test_negative_input_times_same_message_on_qif_emu():
    net = Network.load(pretrained("yinyang-qif.hwnet"))
    x = _first_inputs(net)
    x[0, 3] = -1.0
    with open_target("qif-emu") as be:
        be.load(net)
        with pytest.raises(TargetError, match=r"must be >= 0 \(or inf: no spike\); sample 0 input 3 is -1.0"):
            be.run(x)
