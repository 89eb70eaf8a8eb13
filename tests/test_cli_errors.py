"""Every bad command line is one line on stderr and exit status 2, and bad
input is refused rather than quietly used (issue 12, findings 8 and 9, the
CLI parts). Each test drives the real CLI."""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hwloop.cli import main
from hwloop.network import Network
from hwloop.pretrained import path as pretrained

LIF = str(pretrained("yinyang-lif.hwnet"))
QIF = str(pretrained("yinyang-qif.hwnet"))


def one_line_error(capsys, argv, *fragments):
    """Run the CLI; assert exit 2, one stderr line 'hwloop CMD: error: ...' holding every fragment, no traceback."""
    code = main(argv)
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert code == 2, (code, cap.err[-2000:])
    assert len(err) == 1 and err[0].startswith(f"hwloop {argv[0]}: error: "), err
    for f in fragments:
        assert f in err[0], (f, err[0])
    # with --json too: the same error as a JSON object on the last line of stdout
    code = main(argv + ["--json"])
    cap = capsys.readouterr()
    res = json.loads(cap.out.strip().splitlines()[-1])
    assert code == 2 and res["ok"] is False and all(f in res["error"] for f in fragments), res
    return err[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    x = np.random.default_rng(0).uniform(size=(6, 2))
    np.save(d / "x.npy", np.concatenate([x, 1 - x], axis=1))
    np.save(d / "empty.npy", np.zeros((0, 4)))
    return d


# ------------------------------------------------------------ numbers on the command line
@pytest.mark.parametrize("argv,fragments", [
    (["eval", LIF, "--limit", "0"], ["--limit", ">= 1", "0"]),  # IndexError traceback
    (["eval", LIF, "--limit", "-5"], ["--limit", ">= 1", "-5"]),  # evaluated 995 samples
    (["eval", LIF, "--batch-size", "0"], ["--batch-size", ">= 1"]),  # ValueError traceback
    (["eval", LIF, "--limit", "many"], ["--limit", "integer", "many"]),
    (["validate", LIF, "--target", "bitexact", "--limit", "-5"], ["--limit", ">= 1"]),
    (["validate", LIF, "--target", "bitexact", "--atol", "-1"], ["--atol", ">= 0"]),
    (["validate", LIF, "--target", "bitexact", "--atol", "nan"], ["--atol", "finite"]),
    (["train", "--out", "x.hwnet", "--batch-size", "0"], ["--batch-size", ">= 1"]),
    (["train", "--out", "x.hwnet", "--epochs", "-1"], ["--epochs", ">= 0"]),
    (["train", "--out", "x.hwnet", "--lr", "inf"], ["--lr", "finite"]),
    (["train", "--out", "x.hwnet", "--lr", "nan"], ["--lr", "finite"]),
    (["train", "--out", "x.hwnet", "--lr", "-0.1"], ["--lr", "> 0"]),
    (["train", "--out", "x.hwnet", "--threads", "-2"], ["--threads", ">= 0"]),
    (["train", "--out", "x.hwnet", "--seed", "-1"], ["--seed", ">= 0"]),
    (["train", "--out", "x.hwnet", "--hidden", "0"], ["--hidden", ">= 1"]),
    (["train", "--out", "x.hwnet", "--hidden", "a,b"], ["--hidden", "integers"]),
    (["demo", "--train-limit", "-5"], ["--train-limit", ">= 1"]),
    (["demo", "--epochs", "0"], ["--epochs", ">= 1"]),
    (["demo", "--target", "qif-emu?retries=-1"], ["retries", "0..1000"]),
    (["emulator", "--chip-id", "-1"], ["--chip-id", "0..2^64-1"]),  # emulator traceback
    (["emulator", "--mismatch", "nan"], ["--mismatch", "[0, 1]"]),
    (["emulator", "--baud", "-3"], ["--baud", "300..16000000"]),
    (["eval", LIF, "--split", "dev"], ["--split", "invalid choice"]),
    (["eval"], ["network"]),  # a missing argument: argparse's usage text used to follow
    (["nosuchcommand"], ["invalid choice"]),
])
def test_bad_numbers_are_one_line(capsys, tmp_path, monkeypatch, argv, fragments):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and if it were it would land here
    if argv[0] == "nosuchcommand":
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("hwloop: error: ") and fragments[0] in err[0]
        return
    one_line_error(capsys, argv, *fragments)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ inputs and data sets
def test_simulate_empty_input(capsys, tmp_path, inputs):
    """An empty (0, 4) array was an IndexError traceback."""
    one_line_error(capsys, ["simulate", LIF, "--inputs", str(inputs / "empty.npy"), "--out", str(tmp_path / "t.npz")],
                   "no samples", "(0, 4)")
    assert not (tmp_path / "t.npz").exists()


def test_simulate_negative_input_times_refused_on_software(capsys, tmp_path):
    t = np.full((3, 4), 0.5)
    t[1, 2] = -0.25
    np.save(tmp_path / "t.npy", t)
    one_line_error(capsys, ["simulate", LIF, "--times", "--inputs", str(tmp_path / "t.npy"),
                            "--out", str(tmp_path / "o.npz")], ">= 0", "sample 1 input 2")


def _wide_net(tmp_path, n_out):
    """A valid network with n_out outputs on Yin-Yang's 4 features."""
    import dataclasses

    from hwloop.network import Network, OutputDecoding

    net = Network.load(LIF)
    last = net.layers[-1]
    w = np.random.default_rng(0).normal(size=(last.weight.shape[0], n_out))
    layers = net.layers[:-1] + (dataclasses.replace(last, weight=w),)
    wide = dataclasses.replace(net, layers=layers, decoding=OutputDecoding(classes=tuple(map(str, range(n_out)))))
    return str(wide.save(tmp_path / f"wide{n_out}.hwnet"))


def test_network_with_more_outputs_than_classes_refused(capsys, tmp_path):
    """5000 outputs on the 3-class data set used to run and report ok: true."""
    wide = _wide_net(tmp_path, 5000)
    one_line_error(capsys, ["eval", wide, "--dataset", "yinyang", "--limit", "10"], "5000 outputs", "3")
    one_line_error(capsys, ["validate", wide, "--dataset", "yinyang", "--target", "bitexact", "--limit", "5"],
                   "5000 outputs")


def test_network_for_other_features_refused(capsys, tmp_path):
    """A 64-input (digits-shaped) network on the 4-feature Yin-Yang data."""
    import dataclasses

    net = Network.load(LIF)
    first = net.layers[0]
    w = np.random.default_rng(0).normal(size=(64 + len(first.bias_times), first.n_out))
    wide_in = dataclasses.replace(net, encoding=dataclasses.replace(net.encoding, n_features=64),
                                  layers=(dataclasses.replace(first, weight=w),) + net.layers[1:])
    path = str(wide_in.save(tmp_path / "in64.hwnet"))
    one_line_error(capsys, ["eval", path, "--dataset", "yinyang", "--limit", "5"], "64 input features", "4")


# ------------------------------------------------------------ files the user names
def test_out_onto_a_directory(capsys, tmp_path, inputs):
    (tmp_path / "d").mkdir()
    one_line_error(capsys, ["simulate", LIF, "--inputs", str(inputs / "x.npy"), "--out", str(tmp_path / "d")],
                   "is a directory")
    one_line_error(capsys, ["train", "--epochs", "0", "--hidden", "3", "--quiet", "--out", str(tmp_path / "d")],
                   "is a directory")
    one_line_error(capsys, ["train", "--epochs", "0", "--hidden", "3", "--quiet", "--out", str(tmp_path / "n.hwnet"),
                            "--history", str(tmp_path / "d")], "is a directory")
    assert not (tmp_path / "n.hwnet").exists()  # refused before training


def test_out_through_a_file(capsys, tmp_path, inputs):
    (tmp_path / "f").write_text("x")
    one_line_error(capsys, ["simulate", LIF, "--inputs", str(inputs / "x.npy"), "--out", str(tmp_path / "f" / "t.npz")],
                   "is a file, not a folder")


def test_out_into_a_missing_folder_is_created(capsys, tmp_path, inputs):
    """Was a FileNotFoundError traceback for simulate; train and export already created the folder."""
    out = tmp_path / "new" / "deeper" / "t.npz"
    assert main(["simulate", LIF, "--inputs", str(inputs / "x.npy"), "--out", str(out)]) == 0
    assert np.load(out)["layer_1"].shape == (6, 3)
    assert [p.name for p in out.parent.iterdir()] == ["t.npz"]  # no temporary file left


def test_missing_input_file(capsys, tmp_path):
    one_line_error(capsys, ["eval", str(tmp_path / "none.hwnet"), "--dataset", "yinyang"], "none.hwnet")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions (test_disk_full_says_what_survived "
                                               "covers the same write path)")
def test_permission_denied(capsys, tmp_path, inputs):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        one_line_error(capsys, ["simulate", LIF, "--inputs", str(inputs / "x.npy"), "--out", str(ro / "t.npz")],
                       "Permission denied", "nothing was written")
    finally:
        ro.chmod(stat.S_IRWXU)


def test_user_oserrors_are_told_from_programming_errors():
    from hwloop.fileio import is_user_oserror

    assert is_user_oserror(OSError(errno.ENOSPC, "No space left on device"))
    assert is_user_oserror(FileNotFoundError(errno.ENOENT, "No such file or directory", "x.npy"))
    assert is_user_oserror(IsADirectoryError(errno.EISDIR, "Is a directory", "out"))
    assert not is_user_oserror(FileNotFoundError(errno.ENOENT, "No such file or directory"))  # names no file
    assert not is_user_oserror(OSError(errno.EBADF, "Bad file descriptor", "x"))
    assert not is_user_oserror(OSError("no errno"))
    assert not is_user_oserror(ValueError("x"))


def test_programming_oserror_keeps_its_traceback(monkeypatch, capsys):
    """An OSError that no user causes (here EBADF from inside a command) is not turned into one line."""
    import hwloop.commands.devices as devices

    def broken(args):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(devices, "run", broken)
    with pytest.raises(OSError, match="Bad file descriptor"):
        main(["devices"])


# ------------------------------------------------------------ disk full, for real
ENOSPC_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys
    import numpy as np
    mnt, lif, src = sys.argv[1], sys.argv[2], sys.argv[3]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", mnt], check=True)
    inputs = os.path.join(src, "x.npy")
    out = os.path.join(mnt, "t.npz")
    with open(out, "wb") as fh:
        fh.write(b"previous result")
    from hwloop.cli import main
    import contextlib, io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["simulate", lif, "--inputs", inputs, "--out", out])
    print(json.dumps({"code": code, "err": err.getvalue(), "old": open(out, "rb").read().decode(),
                      "files": sorted(os.listdir(mnt))}))
""")


@pytest.mark.slow
def test_disk_full_says_what_survived(tmp_path):
    """ENOSPC on a real (tiny tmpfs) file system: one line, naming the file and saying the old one survived."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.decode().strip()}")
    mnt = tmp_path / "small"
    mnt.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    x = np.random.default_rng(0).uniform(size=(400, 2))
    np.save(src / "x.npy", np.concatenate([x, 1 - x], axis=1))  # ~400 kB of output > 96 kB of disk
    (tmp_path / "enospc.py").write_text(ENOSPC_SCRIPT)
    proc = subprocess.run(["unshare", "-rm", sys.executable, str(tmp_path / "enospc.py"), str(mnt), LIF, str(src)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    err = res["err"].strip().splitlines()
    assert res["code"] == 2 and len(err) == 1, res
    assert "No space left on device" in err[0] and "t.npz is left as it was" in err[0], err
    assert res["old"] == "previous result" and res["files"] == ["t.npz"]  # old file intact, no temporary left


def test_multi_line_message_stays_one_line(monkeypatch, capsys):
    """A message with details (e.g. a Lava worker's traceback) is one line on stderr; the details go to JSON."""
    import hwloop.commands.devices as devices
    from hwloop.errors import TargetError

    def failing(args):
        raise TargetError("lava-sim: Lava failed: boom\nTraceback (most recent call last):\n  File x\nValueError")

    monkeypatch.setattr(devices, "run", failing)
    assert main(["devices"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hwloop devices: error: lava-sim: Lava failed: boom (3 more line(s) of detail: set "
                   "HWLOOP_TRACEBACK=1)"]
    assert main(["devices", "--json"]) == 2
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["detail"].endswith("ValueError") and "\n" not in res["error"]
