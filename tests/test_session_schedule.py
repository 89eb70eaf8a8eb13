"""The schedule and early stopping read the validation (selection) split only:
``lr_schedule="plateau"`` decays the step after an evaluation that did not
raise the best validation accuracy, ``patience`` stops the session after so
many of them in a row; the test split is measured once at the end
(``final_test``), or not at all (``--no-final-test``)."""

import json
import subprocess
from pathlib import Path

import pytest

import hwloop.data
from hwloop.pretrained import path as pretrained
from hwloop.session import LoopConfig, SessionError, run_session

from test_session_resume import assert_same_session, cli_args


def cfg(**kw) -> LoopConfig:
    base = dict(target="software", dataset="yinyang", init=str(pretrained("yinyang-lif.hwnet")), epochs=3,
                batch_size=50, train_limit=200, eval_limit=100, eval_every=1, lr=0.004, lr_gamma=0.5, seed=1)
    base.update(kw)
    return LoopConfig(**base)


def log(d):
    return [json.loads(line) for line in (Path(d) / "log.jsonl").read_text().splitlines()]


def test_plateau_decays_after_every_evaluation_without_a_new_best(tmp_path):
    c = cfg(lr_schedule="plateau")
    run_session(tmp_path / "s", c, progress=False)
    rows = log(tmp_path / "s")
    best, lr, stalls = -1.0, c.lr, 0
    for r in rows:  # replay the rule from the log: the lr of each step follows the evaluations before it
        if r["kind"] == "train":
            assert r["lr"] == pytest.approx(lr, rel=1e-12), r["step"]
        elif r["val_accuracy"] > best:
            best = r["val_accuracy"]
        else:
            lr *= c.lr_gamma
            stalls += 1
    assert stalls >= 2  # the rule was exercised (the lr did change), not only the no-decay path
    # "epoch" keeps its meaning: lr x gamma after every epoch whatever validation did
    run_session(tmp_path / "e", cfg(lr_schedule="epoch"), progress=False)
    # (a train row logs the rate after its step: the last step of an epoch shows the next epoch's)
    assert sorted({r["lr"] for r in log(tmp_path / "e") if r["kind"] == "train"}) == [0.0005, 0.001, 0.002, 0.004]


def test_patience_stops_the_session_on_the_validation_trend(tmp_path):
    c = cfg(patience=2, lr=0.01)
    res = run_session(tmp_path / "s", c, progress=False)
    evals = [r for r in log(tmp_path / "s") if r["kind"] == "eval"]
    total = 3 * 4
    assert res["stopped_early"] and res["steps"] < total
    accs = [r["val_accuracy"] for r in evals]
    # the last two evaluations did not beat the best before them, and no earlier pair in a row did
    assert max(accs[-2:]) <= max(accs[:-2])
    for i in range(1, len(accs) - 2):
        assert not max(accs[i:i + 2]) <= max(accs[:i]), i
    assert res["steps"] == evals[-1]["step"]
    with pytest.raises(SessionError, match="already complete"):
        run_session(tmp_path / "s", resume=True, progress=False)


def test_schedule_and_stopping_never_read_the_test_split(tmp_path, monkeypatch):
    real = hwloop.data.load_dataset

    def no_test(name, split, **kw):
        if split == "test":
            raise AssertionError("the test split was read")
        return real(name, split, **kw)

    monkeypatch.setattr(hwloop.data, "load_dataset", no_test)
    res = run_session(tmp_path / "a", cfg(lr_schedule="plateau", patience=3, final_test=False), progress=False)
    assert "test_start" not in res and res["steps"] > 0
    with pytest.raises(AssertionError, match="test split was read"):  # the only reader: the final test
        run_session(tmp_path / "b", cfg(lr_schedule="plateau", patience=3), progress=False)


def test_no_final_test_flag_and_resume_exact_with_plateau_and_patience(tmp_path):
    c = cfg(lr_schedule="plateau", patience=4, final_test=False, epochs=2, eval_every=0, batch_size=25)
    ref = run_session(tmp_path / "ref", c, progress=False)
    args = cli_args(tmp_path / "crash", c) + ["--lr-gamma", "0.5", "--lr-schedule", "plateau", "--patience", "4",
                                              "--no-final-test", "--crash-after-step", "11"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    saved = json.loads((tmp_path / "crash" / "config.json").read_text())
    assert saved["final_test"] is False and saved["lr_schedule"] == "plateau" and saved["patience"] == 4
    res = run_session(tmp_path / "crash", resume=True, progress=False)
    assert_same_session(tmp_path / "ref", tmp_path / "crash")
    assert "test_selected" not in res and res["steps"] == ref["steps"]


def test_bad_schedule_settings_are_refused():
    with pytest.raises(SessionError, match="lr_schedule must be one of 'epoch', 'plateau'"):
        cfg(lr_schedule="cosine").validate()
    with pytest.raises(SessionError, match="patience must be an integer >= 0"):
        cfg(patience=-1).validate()


def test_a_session_on_the_full_validation_split_resumes(tmp_path):
    """The start's per-sample figures (1000 validation samples) fit the
    checkpoint's size bound: the session can be extended."""
    c = cfg(epochs=1, eval_limit=None, train_limit=50, eval_every=0)
    run_session(tmp_path / "s", c, progress=False)
    from hwloop.session.checkpoint import decode_checkpoint

    st = decode_checkpoint((tmp_path / "s" / "checkpoint.ckpt").read_bytes())
    assert len(st["selection"]["start_correct"]) == 1000
    res = run_session(tmp_path / "s", resume=True, epochs=2, progress=False)
    assert res["steps"] == 2 and not any("damaged" in n for n in res.get("notices", []))
    # the report shows every evaluation against the start on the same samples, as logged
    from hwloop.report import write_report

    write_report(str(tmp_path / "s"), run_target=False)
    text = (tmp_path / "s" / "report" / "report.md").read_text()
    for r in (x for x in log(tmp_path / "s") if x["kind"] == "eval" and x["step"] > 0):
        g, lost = r["val_vs_start"]
        assert any(line.startswith(f"| {r['step']} |") and f"| {g} / {lost} |" in line for line in text.splitlines())
