"""The CLI papercuts a new user hits (issue 13), each through the real CLI."""

import json
import os
import re
import stat

import numpy as np
import pytest

from hwloop.cli import main
from hwloop.network import Network
from hwloop.pretrained import path as pretrained

LIF = str(pretrained("yinyang-lif.hwnet"))


def run_json(capsys, argv):
    code = main(argv + ["--json"])
    cap = capsys.readouterr()
    return code, json.loads(cap.out.strip().splitlines()[-1]), cap.err


def help_text(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv + ["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def option_help(text: str, option: str) -> str:
    """The help of one option in the options list, its wrapped lines joined."""
    lines = text.split("\noptions:\n", 1)[1].splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s+" + re.escape(option) + r"\b", line):
            out = [line]
            for more in lines[i + 1:]:
                if re.match(r"\s+-", more):
                    break
                out.append(more)
            return " ".join(" ".join(out).split())
    raise AssertionError(f"{option} not in the help")


def test_train_help_shows_defaults(capsys):
    from hwloop.training import default_config

    text = help_text(capsys, ["train"])
    lif, qif = default_config("lif", "yinyang"), default_config("qif", "yinyang")
    digits = default_config("lif", "digits")
    epochs = option_help(text, "--epochs")
    assert "default" in epochs and f"{lif.epochs}/{digits.epochs}" in epochs and f"qif {qif.epochs}" in epochs
    assert "default" in option_help(text, "--lr") and f"{lif.lr:g}" in option_help(text, "--lr")
    assert f"lif {lif.hidden[0]}/{digits.hidden[0]}" in option_help(text, "--hidden")
    assert f"{lif.batch_size}/{digits.batch_size}" in option_help(text, "--batch-size")
    assert "(default: 0)" in option_help(text, "--seed")


@pytest.mark.parametrize("command", [["eval", "x"], ["validate", "x", "--target", "t"]])
def test_split_and_batch_defaults_shown(capsys, command):
    text = help_text(capsys, command[:1])
    assert "(default: test)" in option_help(text, "--split")
    if command[0] == "eval":
        assert "(default: 1000)" in option_help(text, "--batch-size")
        assert "(default: software)" in option_help(text, "--target")


def test_eval_takes_the_dataset_from_the_file(capsys):
    """`eval` required --dataset although the file records it."""
    code, res, err = run_json(capsys, ["eval", LIF, "--limit", "20"])
    assert code == 0 and res["dataset"] == "yinyang" and res["dataset_from"] == "network file" and res["n"] == 20
    assert main(["eval", LIF, "--limit", "20", "--quiet"]) == 0
    assert "data set from the network file (--dataset overrides)" in capsys.readouterr().out  # says so
    code, res, _ = run_json(capsys, ["eval", LIF, "--limit", "20", "--dataset", "yinyang"])
    assert code == 0 and res["dataset_from"] == "option"


def test_eval_without_recorded_dataset_asks_for_one(capsys, tmp_path):
    import dataclasses

    from hwloop.network import Provenance

    net = Network.load(LIF)
    bare = dataclasses.replace(net, provenance=Provenance()).save(tmp_path / "bare.hwnet")
    code = main(["eval", str(bare)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "give one with hwloop eval --dataset" in err[0]


def test_validate_against_software_uses_one_time_step(capsys):
    """At the default --atol 0 the grid target could never agree with the float model, and no tolerance was
    suggested. Now the default is one step of the target's grid, and a failure says what a step accepts."""
    code, res, err = run_json(capsys, ["validate", LIF, "--target", "bitexact", "--reference", "software",
                                       "--limit", "100"])
    dt = Network.load(LIF).t_max / 100  # bitexact's default 100 steps
    assert res["grid_step"] == {"reference": None, "target": pytest.approx(dt)}
    assert res["atol"] == pytest.approx(dt) and "one time step of bitexact's grid" in res["atol_from"]
    if code == 1:  # the Loihi quantisation moves some spikes by more than a step: say how far
        assert "--atol" in res["hint"] and "steps of" in res["hint"]
    # the same grid on both sides keeps the exact comparison
    code, res, _ = run_json(capsys, ["validate", LIF, "--target", "bitexact", "--limit", "50"])
    assert code == 0 and res["atol"] == 0 and "same time grid" in res["atol_from"]
    # an explicit --atol wins
    code, res, _ = run_json(capsys, ["validate", LIF, "--target", "bitexact", "--reference", "software",
                                     "--limit", "50", "--atol", "0"])
    assert res["atol"] == 0 and res["atol_from"] == "--atol" and code == 1
    assert "at one step, --atol 0.04" in res["hint"]


def test_eval_speed_is_the_same_figure_as_the_progress_bar(capsys):
    """The bar said 3 810 samples/s while the summary said 503: the summary divided by the time including
    spawning the emulator. Both now measure the running; setup is reported apart."""
    net = str(pretrained("yinyang-qif.hwnet"))
    code = main(["eval", net, "--target", "qif-emu", "--limit", "300", "--batch-size", "100"])
    cap = capsys.readouterr()
    assert code == 0
    summary = float(re.search(r"\n(\d+) samples/s running", cap.out).group(1))
    rates = re.findall(r"([\d.]+)(k?)sample/s", cap.err)
    bar = float(rates[-1][0]) * (1000 if rates[-1][1] else 1)
    assert bar == pytest.approx(summary, rel=0.25), (bar, summary, cap.err[-300:])
    setup = float(re.search(r"([\d.]+) s to open, compile, deploy and close", cap.out).group(1))
    assert setup > 0
    code, res, _ = run_json(capsys, ["eval", net, "--target", "qif-emu", "--limit", "100"])
    assert res["samples_per_second"] == pytest.approx(res["n"] / res["run_seconds"])
    assert res["seconds"] == pytest.approx(res["setup_seconds"] + res["run_seconds"])


def test_lif_net_on_the_qif_chip_says_train_with_model_qif(capsys):
    code = main(["eval", LIF, "--target", "qif-emu", "--limit", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "neuron-model" in err[0] and "hwloop train --model qif" in err[0], err


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_get_the_umask_mode(capsys, tmp_path):
    """Exported files were created mode 0600 (mkstemp)."""
    old = os.umask(0o022)
    try:
        assert main(["export", LIF, str(tmp_path / "n.nir"), "--format", "nir"]) == 0
        assert main(["export", LIF, str(tmp_path / "n.net"), "--format", "netx"]) == 0
        assert main(["train", "--epochs", "0", "--hidden", "3", "--quiet", "--out", str(tmp_path / "t.hwnet"),
                     "--history", str(tmp_path / "h.jsonl")]) == 0
        x = np.full((2, 4), 0.5)
        np.save(tmp_path / "x.npy", x)
        assert main(["simulate", LIF, "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "s.npz")]) == 0
        for name in ("n.nir", "n.net", "t.hwnet", "h.jsonl", "s.npz"):
            assert _mode(tmp_path / name) == 0o644, (name, oct(_mode(tmp_path / name)))
        os.umask(0o077)
        assert main(["export", LIF, str(tmp_path / "private.nir"), "--format", "nir"]) == 0
        assert _mode(tmp_path / "private.nir") == 0o600
        # a file that is replaced keeps its mode
        os.chmod(tmp_path / "n.nir", 0o640)
        os.umask(0o022)
        assert main(["export", LIF, str(tmp_path / "n.nir"), "--format", "nir"]) == 0
        assert _mode(tmp_path / "n.nir") == 0o640
    finally:
        os.umask(old)
    capsys.readouterr()


def test_train_no_bias(capsys, tmp_path):
    """A network without bias spikes could only be trained from Python."""
    code, res, _ = run_json(capsys, ["train", "--no-bias", "--epochs", "1", "--hidden", "10", "--quiet",
                                     "--out", str(tmp_path / "nb.hwnet")])
    assert code == 0
    net = Network.load(tmp_path / "nb.hwnet")
    assert all(layer.bias_times == () for layer in net.layers)
    assert [layer.weight.shape for layer in net.layers] == [(4, 10), (10, 3)]
    code, res, _ = run_json(capsys, ["train", "--epochs", "0", "--hidden", "10", "--quiet",
                                     "--out", str(tmp_path / "b.hwnet")])
    assert all(len(layer.bias_times) == 1 for layer in Network.load(tmp_path / "b.hwnet").layers)
