"""Session configuration: every field validated (on a new session and on
resume), the per-target defaults part of the session itself, and the
`hwloop loop` papercuts (bad numbers refused up front, a fresh default
directory, extending a finished session)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hwloop.cli import main
from hwloop.network import Network
from hwloop.session import GRID_SETTINGS, LoopConfig, SessionError, run_session
from hwloop.training import default_config, train


@pytest.fixture(scope="module")
def init_net(tmp_path_factory):
    res = train(default_config("lif", "yinyang", epochs=2, hidden=(30,), seed=3), progress=False)
    path = tmp_path_factory.mktemp("init") / "init.hwnet"
    res.network.save(path)
    return path


def small(init, **kw):
    base = dict(target="software", dataset="yinyang", init=str(init), epochs=1, batch_size=50, train_limit=100,
                eval_limit=50, lr=0.002, seed=7)
    base.update(kw)
    return LoopConfig(**base)


BAD = [
    ("lr", math.inf), ("lr", math.nan), ("lr", -1.0), ("lr", 0.0), ("lr", "0.1"), ("lr", True),
    ("lr_gamma", math.nan), ("lr_gamma", -1.0), ("lr_gamma", 0.0), ("lr_gamma", math.inf),
    ("spsa_pairs", 0), ("spsa_pairs", -2), ("spsa_pairs", 1.5), ("spsa_sigma", 0.0), ("spsa_sigma", math.nan),
    ("epochs", 0), ("epochs", -1), ("epochs", 2.0), ("epochs", True), ("batch_size", 0), ("batch_size", None),
    ("train_limit", -5), ("train_limit", 0), ("eval_limit", -1), ("eval_limit", 0), ("eval_every", -1),
    ("checkpoint_every", 0), ("max_grad_norm", -1.0), ("max_grad_norm", math.inf), ("bump", -0.1),
    ("bump", math.nan), ("ema", 1.0), ("ema", 2.0), ("ema", -0.1), ("ema", math.nan), ("input_jitter", -0.1),
    ("input_jitter", math.inf), ("seed", -1), ("seed", 0.5), ("seed", 2 ** 64), ("xi", 0.0), ("xi", math.nan),
    ("alpha", -1.0), ("beta", 0.0), ("beta", math.inf), ("end_logit", 1), ("compare_software", "yes"),
    ("max_missing", ()), ("max_missing", (0.3, 1.5)), ("max_missing", (math.nan,)), ("max_missing", "0.3"),
    ("gradient", "adjoint"), ("grad_at", "best"), ("loss_times", "best"), ("loss_times", 3), ("dataset", 3), ("data_root", 5),
    ("target", ""), ("target", None), ("init", 7),
]


@pytest.mark.parametrize("field, value", BAD)
def test_every_field_is_validated_before_anything_is_written(tmp_path, init_net, field, value):
    cfg = small(init_net)
    setattr(cfg, field, value)
    with pytest.raises(SessionError, match=field):
        run_session(tmp_path / "s", cfg, progress=False)
    assert not (tmp_path / "s").exists()


def test_the_defaults_and_the_documented_settings_validate(init_net):
    small(init_net).validate()
    small(init_net, target="bitexact?steps=50", ema=0.98, lr_gamma=0.85, input_jitter=0.05, xi=0.2, alpha=0.0,
          beta=2.6, end_logit=True, max_missing=(0.3, 1.0), train_limit=None, eval_limit=None).validate()


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory, init_net):
    """A two-epoch session that has run to its end but has no summary.json
    (as if it had crashed before finishing); tests resume a copy."""
    d = tmp_path_factory.mktemp("unfinished") / "s"
    run_session(d, small(init_net, epochs=2), progress=False)
    (d / "summary.json").unlink()
    return d


def _copy(src, tmp_path):
    import shutil

    return Path(shutil.copytree(src, tmp_path / "s"))


@pytest.mark.parametrize("edit", [{"epochs": 0}, {"ema": 2}, {"lr": -1}, {"batch_size": 0}, {"lr": "fast"},
                                  {"lr_gamma": None}, {"bogus": 1}])
def test_resume_validates_config_json(tmp_path, unfinished, edit):
    """config.json is read again on resume: a bad value is refused before the
    session runs (it used to run the whole session, or end in a traceback,
    or -- epochs 0 -- mark the session complete with the wrong weights)."""
    d = _copy(unfinished, tmp_path)
    log_before = (d / "log.jsonl").read_bytes()
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(edit)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SessionError, match=next(iter(edit))):
        run_session(d, resume=True, progress=False)
    assert not (d / "summary.json").exists()
    assert (d / "log.jsonl").read_bytes() == log_before


@pytest.mark.parametrize("text", ["", "[]", "{", '{"lr": NaN}', '{"epochs": 1e400}', "[" * 100000, "\xff\xfe"])
def test_resume_refuses_unreadable_config_json(tmp_path, unfinished, text):
    d = _copy(unfinished, tmp_path)
    (d / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(SessionError, match="config.json"):
        run_session(d, resume=True, progress=False)


def test_python_sessions_get_the_target_defaults(tmp_path, init_net):
    """Fields left unset mean the target's default, resolved by the session
    itself and recorded in config.json: LoopConfig + run_session on a Loihi
    target gets the grid settings `hwloop loop` gets (issue 13)."""
    assert LoopConfig().grad_at is None and LoopConfig().loss_times is None and LoopConfig().max_missing is None
    run_session(tmp_path / "bx", small(init_net, target="bitexact?steps=40"), progress=False)
    cfg = json.loads((tmp_path / "bx" / "config.json").read_text())
    assert (cfg["grad_at"], cfg["loss_times"], tuple(cfg["max_missing"])) == (
        GRID_SETTINGS["grad_at"], GRID_SETTINGS["loss_times"], GRID_SETTINGS["max_missing"])
    run_session(tmp_path / "sw", small(init_net), progress=False)
    cfg = json.loads((tmp_path / "sw" / "config.json").read_text())
    assert (cfg["grad_at"], cfg["loss_times"], cfg["max_missing"]) == ("measured", "measured", [0.3, 0.0])
    run_session(tmp_path / "given", small(init_net, target="bitexact?steps=40", grad_at="measured"), progress=False)
    cfg = json.loads((tmp_path / "given" / "config.json").read_text())
    assert (cfg["grad_at"], cfg["loss_times"]) == ("measured", "worst")


def test_python_and_cli_sessions_are_the_same(tmp_path, init_net):
    """The same session through the CLI and through LoopConfig: same config.json, same weights."""
    run_session(tmp_path / "py", small(init_net, target="bitexact?steps=40"), progress=False)
    rc = main(["loop", "--target", "bitexact?steps=40", "--dataset", "yinyang", "--init", str(init_net), "--dir",
               str(tmp_path / "cli"), "--epochs", "1", "--batch-size", "50", "--train-limit", "100",
               "--eval-limit", "50", "--lr", "0.002", "--seed", "7", "--quiet", "--json"])
    assert rc == 0
    assert (json.loads((tmp_path / "py" / "config.json").read_text())
            == json.loads((tmp_path / "cli" / "config.json").read_text()))
    for a, b in zip(Network.load(tmp_path / "py" / "network.hwnet").weights(),
                    Network.load(tmp_path / "cli" / "network.hwnet").weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--lr", "nan"), ("--lr-gamma", "nan"),
                                         ("--lr-gamma", "-1"), ("--spsa-pairs", "0"), ("--train-limit", "-5"),
                                         ("--eval-limit", "0"), ("--batch-size", "0"), ("--ema", "1")])
def test_loop_refuses_bad_numbers_up_front(tmp_path, init_net, capsys, flag, value):
    d = tmp_path / "s"
    rc = main(["loop", "--target", "software", "--init", str(init_net), "--dir", str(d), "--quiet", flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("hwloop loop: error:"), err
    assert not d.exists()


def _cli_loop(init_net, *extra):
    return main(["loop", "--target", "software", "--dataset", "yinyang", "--init", str(init_net), "--batch-size",
                 "50", "--train-limit", "100", "--eval-limit", "50", "--lr", "0.002", "--seed", "7", "--lr-gamma",
                 "0.8", "--quiet", "--json", *extra])


def _rows(d):
    skip = {"seconds", "target_seconds", "host_seconds", "io_seconds", "deploy_seconds"}
    return [{k: v for k, v in json.loads(line).items() if k not in skip}
            for line in (Path(d) / "log.jsonl").read_text().splitlines()]


def test_a_finished_session_can_be_extended(tmp_path, init_net, capsys):
    """`loop --resume DIR --epochs N` continues a finished session to N epochs,
    and ends exactly where a session asked for N epochs from the start ends
    (the schedule, lr x gamma per epoch, does not depend on the total)."""
    assert _cli_loop(init_net, "--dir", str(tmp_path / "two"), "--epochs", "2") == 0
    assert _cli_loop(init_net, "--dir", str(tmp_path / "one"), "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["loop", "--resume", str(tmp_path / "one"), "--epochs", "2", "--quiet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] and out["steps"] == 4
    assert json.loads((tmp_path / "one" / "config.json").read_text())["epochs"] == 2
    for a, b in zip(Network.load(tmp_path / "one" / "network.hwnet").weights(),
                    Network.load(tmp_path / "two" / "network.hwnet").weights()):
        np.testing.assert_array_equal(a, b)
    assert _rows(tmp_path / "one") == _rows(tmp_path / "two")
    # the Python API does the same
    run_session(tmp_path / "one", resume=True, epochs=3, progress=False)
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["steps"] == 6


def test_resume_refuses_fewer_epochs_than_done_and_other_options(tmp_path, init_net, capsys):
    d = tmp_path / "s"
    assert _cli_loop(init_net, "--dir", str(d), "--epochs", "2") == 0
    capsys.readouterr()
    with pytest.raises(SessionError, match="already complete"):
        run_session(d, resume=True, epochs=1, progress=False)
    with pytest.raises(SessionError, match="already complete"):
        run_session(d, resume=True, epochs=2, progress=False)
    for flag, value in (("--lr", "0.1"), ("--batch-size", "10"), ("--train-limit", "20"), ("--lr-gamma", "0.5"),
                        ("--eval-limit", "10"), ("--spsa-pairs", "2"), ("--dir", "x")):
        rc = main(["loop", "--resume", str(d), flag, value, "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "takes its configuration from the session" in err[0], (flag, err)
    with pytest.raises(SessionError, match="epochs"):
        run_session(d, resume=True, epochs=0, progress=False)
    assert json.loads((d / "config.json").read_text())["epochs"] == 2


def test_an_unfinished_session_cannot_be_cut_below_its_checkpoint(tmp_path, init_net):
    d = tmp_path / "s"
    run_session(d, small(init_net, epochs=2), progress=False)
    (d / "summary.json").unlink()
    with pytest.raises(SessionError, match="past the end"):
        run_session(d, resume=True, epochs=1, progress=False)
    assert json.loads((d / "config.json").read_text())["epochs"] == 2


def test_loop_picks_a_fresh_default_directory_each_time(tmp_path, init_net, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dirs = []
    for _ in range(2):
        assert _cli_loop(init_net, "--epochs", "1") == 0
        cap = capsys.readouterr()
        session = json.loads(cap.out.strip().splitlines()[-1])["session"]
        assert session in cap.err  # printed as it starts
        dirs.append(session)
    assert dirs == ["runs/loop-software-1", "runs/loop-software-2"]
    assert all((tmp_path / d / "summary.json").exists() for d in dirs)


def test_an_unknown_target_leaves_no_default_directory(tmp_path, init_net, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["loop", "--target", "nope", "--init", str(init_net), "--quiet"]) == 2
    assert "unknown target" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
