"""Sessions started by an older hwloop resume (issue 19 regression).

Format 1 of the checkpoint state (`hwloop-session-1`, before the start
network became a selection candidate) had no ``selection`` entry, and its
config.json no ``final_test``. ``tests/data/session-v1`` is a real session
directory written by that code (commit 897c89d^): the tiny LIF network of
``init.hwnet`` on the software target, ``--lr 3e-4 --epochs 3 --batch-size 50
--train-limit 200 --eval-limit 100 --eval-every 2 --seed 4``, killed after
step 7 (checkpoint at step 6). Its validation accuracy went 0.79 (start),
0.81, 0.82, 0.81: the old rule saved the 0.82 network as best.hwnet, a rise
well within the noise of 100 samples.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwloop.network import Network
from hwloop.session import LoopConfig, SessionError, run_session
from hwloop.session.checkpoint import decode_checkpoint, encode_checkpoint
from hwloop.session.parts import accuracy_figure
from hwloop.session.runner import LEGACY_FORMAT, STATE_FORMAT

from session_compare import TIMING
from test_session_resume import cli_args

V1 = Path(__file__).parent / "data" / "session-v1"
NEW_LOG_KEYS = {"val_n", "val_ci", "val_vs_start"}  # what format-1 eval rows lacked
NEW_CONFIG_KEYS = ("final_test", "lr_schedule", "patience")  # and its config.json


def rows(d):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING | NEW_LOG_KEYS}
            for line in (Path(d) / "log.jsonl").read_text().splitlines()]


def weights(path):
    return Network.load(path).weights()


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(weights(a), weights(b)))


def v1_config() -> LoopConfig:
    """The fixture's configuration, as a session of this version would be started."""
    saved = json.loads((V1 / "config.json").read_text())
    return LoopConfig.from_json({**saved, "init": str(V1 / "init.hwnet")})


def test_the_fixture_is_the_old_format():
    state = decode_checkpoint((V1 / "checkpoint.ckpt").read_bytes())
    assert state["format"] == LEGACY_FORMAT != STATE_FORMAT
    assert "selection" not in state and not set(NEW_CONFIG_KEYS) & set(state["config"])
    assert not set(NEW_CONFIG_KEYS) & set(json.loads((V1 / "config.json").read_text()))
    assert state["step"] == 6 and state["best_acc"] == 0.82


def test_config_without_new_fields_reads_with_their_defaults():
    saved = json.loads((V1 / "config.json").read_text())
    old = LoopConfig.from_json(saved)
    assert old.final_test is True and old.lr_schedule == "epoch" and old.patience == 0  # as that session ran
    with pytest.raises(SessionError, match="unknown keys"):
        LoopConfig.from_json({**saved, "no_such_field": 1})


def test_an_old_session_resumes_and_the_start_stays_selected(tmp_path):
    d = tmp_path / "old"
    shutil.copytree(V1, d)
    res = run_session(d, resume=True, progress=False)
    assert res["steps"] == 12 and not res["interrupted"]
    assert any("older hwloop" in n for n in res["notices"])
    # the start accuracy came from the log's step-0 row; 0.82 on 100 samples is not above it beyond the noise
    assert res["start_val_accuracy"] == 0.79 and res["selected_step"] == 0 and res["selected"] == "start"
    assert same_weights(d / "best.hwnet", d / "init.hwnet")
    assert same_weights(d / "best.hwnet.v1", V1 / "best.hwnet")  # the old choice is kept, not lost
    assert not same_weights(V1 / "best.hwnet", V1 / "init.hwnet")
    assert res["test_start"] == res["test_selected"] and res["test_start"]["n"] == 100
    state = decode_checkpoint((d / "checkpoint.ckpt").read_bytes())
    assert state["format"] == STATE_FORMAT and state["selection"] == {"start_acc": 0.79, "best_step": 0}
    # the rows the old code wrote are kept as written, the rest continue
    assert rows(d)[: len(rows(V1)) - 1] == rows(V1)[:-1]  # (the old log's last row, step 7, is redone)
    assert [r["step"] for r in rows(d) if r["kind"] == "eval"] == [0, 2, 4, 6, 8, 10, 12]
    # and it ends where a session of this version with the same settings ends (same software target)
    fresh = tmp_path / "fresh"
    run_session(fresh, v1_config(), progress=False)
    for x, y in zip(weights(fresh / "network.hwnet"), weights(d / "network.hwnet")):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)


def test_an_old_session_resumed_twice_before_a_checkpoint_keeps_the_old_best(tmp_path):
    """A resume that dies before its first checkpoint leaves the format-1
    checkpoint; the next resume upgrades again and must not overwrite the
    kept copy of the old best.hwnet with the start network."""
    d = tmp_path / "old"
    shutil.copytree(V1, d)
    proc = subprocess.run([sys.executable, "-m", "hwloop", "loop", "--resume", str(d), "--quiet",
                           "--crash-after-step", "7"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert decode_checkpoint((d / "checkpoint.ckpt").read_bytes())["format"] == LEGACY_FORMAT
    run_session(d, resume=True, progress=False)
    assert same_weights(d / "best.hwnet.v1", V1 / "best.hwnet")
    assert same_weights(d / "best.hwnet", d / "init.hwnet")


def test_an_old_session_without_the_start_row_measures_the_start_again(tmp_path):
    d = tmp_path / "old"
    shutil.copytree(V1, d)
    lines = (d / "log.jsonl").read_text().splitlines(keepends=True)
    (d / "log.jsonl").write_text("".join(lines[1:]))  # the step-0 evaluation lost
    res = run_session(d, resume=True, progress=False)
    assert any("measured it again" in n for n in res["notices"])
    assert res["start_val_accuracy"] == 0.79 and res["selected"] == "start"  # deterministic target


def test_a_damaged_old_checkpoint_is_still_refused(tmp_path):
    d = tmp_path / "old"
    shutil.copytree(V1, d)
    for name in ("checkpoint.ckpt", "checkpoint.prev.ckpt"):
        st = decode_checkpoint((d / name).read_bytes())
        st["surprise"] = 1
        (d / name).write_bytes(encode_checkpoint(st))
    with pytest.raises(SessionError, match="no usable checkpoint"):
        run_session(d, resume=True, progress=False)


def downgrade(d: Path) -> None:
    """Rewrite a session of this version as format 1 wrote it: no selection
    in the state, best_acc the highest validation accuracy logged up to the
    checkpoint, no final_test in either configuration, no val_n / val_ci in
    the log."""
    evals = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
    for name in ("checkpoint.ckpt", "checkpoint.prev.ckpt"):
        st = decode_checkpoint((d / name).read_bytes())
        del st["selection"], st["trend"]
        st["format"] = LEGACY_FORMAT
        st["best_acc"] = max(float(r["val_accuracy"]) for r in evals if r["kind"] == "eval" and r["step"] <= st["step"])
        for key in NEW_CONFIG_KEYS:
            del st["config"][key]
        (d / name).write_bytes(encode_checkpoint(st))
    cfg = json.loads((d / "config.json").read_text())
    for key in NEW_CONFIG_KEYS:
        del cfg[key]
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    (d / "log.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k not in NEW_LOG_KEYS}) + "\n"
                                         for r in evals))


def test_a_downgraded_crashed_session_ends_as_the_uninterrupted_one(tmp_path):
    cfg = LoopConfig(target="software", dataset="yinyang", init=str(V1 / "init.hwnet"), epochs=3, batch_size=50,
                     train_limit=200, eval_limit=100, lr=0.003, seed=2)
    ref = run_session(tmp_path / "ref", cfg, progress=False)
    proc = subprocess.run(cli_args(tmp_path / "crash", cfg) + ["--crash-after-step", "6"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    downgrade(tmp_path / "crash")
    res = run_session(tmp_path / "crash", resume=True, progress=False)
    assert same_weights(tmp_path / "ref" / "network.hwnet", tmp_path / "crash" / "network.hwnet")
    assert rows(tmp_path / "ref") == rows(tmp_path / "crash")
    # the old form has no per-sample figures of the start: the selection is the unpaired (Wilson) rule's
    # over the same evaluations
    from hwloop.session.parts import Selection

    sel = Selection()
    for r in (x for x in rows(tmp_path / "ref") if x["kind"] == "eval"):
        sel.offer({**r, "val_ci": accuracy_figure(r["val_accuracy"], 100)["ci"]}, r["step"])
    assert res["selected_step"] == sel.best_step and res["start_val_accuracy"] == ref["start_val_accuracy"]
    assert res["test_start"] == ref["test_start"]
    if sel.best_step == ref["selected_step"]:
        assert same_weights(tmp_path / "ref" / "best.hwnet", tmp_path / "crash" / "best.hwnet")
        assert res["test_selected"] == ref["test_selected"]


def test_report_on_an_old_session_shows_intervals_from_its_sample_count(tmp_path):
    from hwloop.report import write_report
    from hwloop.session.parts import wilson_interval

    d = tmp_path / "old"
    shutil.copytree(V1, d)
    write_report(str(d), run_target=False)
    text = (d / "report" / "report.md").read_text()
    lo, hi = wilson_interval(79, 100)  # the start row: 0.79 on the session's 100 validation samples
    assert f"{lo:.4f}" in text and f"{hi:.4f}" in text
    start_row = next(line for line in text.splitlines() if line.startswith("| 0 |"))
    assert "**selected**" in start_row and "| 100 |" in start_row


def test_report_shows_the_interval_of_the_software_validation_figure_too(tmp_path):
    """Every validation figure of the report has its interval: the same weights on
    the software model as well (same samples, so the same n)."""
    from hwloop.report import write_report
    from hwloop.session.parts import wilson_interval

    d = tmp_path / "old"
    shutil.copytree(V1, d)
    log = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
    row2 = next(r for r in log if r.get("kind") == "eval" and r["step"] == 2)
    write_report(str(d), run_target=False)
    text = (d / "report" / "report.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| 2 |"))
    lo, hi = wilson_interval(round(row2["software_val_accuracy"] * 100), 100)
    assert f"| {row2['software_val_accuracy']:.4f} [{lo:.4f}, {hi:.4f}] |" in line
