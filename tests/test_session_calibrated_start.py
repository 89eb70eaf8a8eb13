"""A new session on a calibratable chip starts from the calibrated deployment
where the chip has a stored calibration (`hwloop calibrate`), says so in one
line, and deploys as is otherwise (with a line saying how to calibrate);
``calib=`` in the target URL decides where the user gave it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwloop.calibration import Calibration, store_path, truth_of
from hwloop.cli import main
from hwloop.errors import TargetError
from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH
from hwloop.session import LoopConfig, run_session
from hwloop.session.runner import calibrated_start

QIF = "hwloop/pretrained/yinyang-qif.hwnet"
LIF = "hwloop/pretrained/yinyang-lif.hwnet"
CHIP = "qif-emu?baud=0&chip_id=6"


def _store_truth(chip_id: int) -> Calibration:
    """A calibration file of the chip's true parameters (fast; the fit itself is tests/test_calibration.py's)."""
    tr = truth_of(chip_id, DEFAULT_MISMATCH, 512)
    cal = Calibration(chip_id=chip_id, fw_version="1.1", g=tr["g"], D=tr["D"], u0=np.zeros(512), col=tr["col"],
                      row0=tr["row0"], row1=tr["row1"])
    cal.save(store_path(chip_id, "1.1"))
    return cal


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CALIBRATION_DIR", str(tmp_path / "cal"))
    return tmp_path / "cal"


def test_without_a_stored_calibration_the_session_deploys_as_is_and_says_how_to_calibrate(store):
    cfg = LoopConfig(target=CHIP, init=QIF)
    out, notice = calibrated_start(cfg)
    assert out.target == CHIP
    assert "no calibration" in notice and f'hwloop calibrate "{CHIP}"' in notice


def test_with_a_stored_calibration_the_session_starts_calibrated_and_says_so(store):
    _store_truth(6)
    out, notice = calibrated_start(LoopConfig(target=CHIP, init=QIF))
    assert out.target == CHIP + "&calib=on"
    assert "calibrated deployment of chip 0x6" in notice and "calib=off" in notice
    # the bare name too
    assert calibrated_start(LoopConfig(target="qif-emu?chip_id=6", init=QIF))[0].target == "qif-emu?chip_id=6&calib=on"


@pytest.mark.parametrize("target, init", [(CHIP + "&calib=off", QIF), (CHIP + "&calib=on", QIF), (CHIP, LIF),
                                          ("software", QIF), ("bitexact", LIF)])
def test_the_rule_leaves_other_starts_alone(store, target, init):
    _store_truth(6)
    cfg = LoopConfig(target=target, init=init)
    out, notice = calibrated_start(cfg)
    assert out == cfg and notice is None


def test_a_damaged_stored_calibration_is_refused_and_nothing_is_created(store, tmp_path):
    _store_truth(6)
    path = store_path(6, "1.1")
    path.write_text(path.read_text()[:100])  # truncated
    with pytest.raises(TargetError, match="corrupt or truncated.*calib=off"):
        run_session(tmp_path / "s", LoopConfig(target=CHIP, init=QIF, epochs=1))
    assert not (tmp_path / "s").exists()


def test_hwloop_loop_records_the_calibrated_target_and_prints_the_line(store, tmp_path, capsys):
    _store_truth(6)
    d = tmp_path / "s"
    assert main(["loop", "--target", CHIP, "--init", QIF, "--dir", str(d), "--epochs", "1", "--batch-size", "50",
                 "--train-limit", "50", "--eval-limit", "100", "--no-final-test", "--quiet", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads((d / "config.json").read_text())["target"] == CHIP + "&calib=on"
    assert "starting from the calibrated deployment of chip 0x6" in cap.err
    res = json.loads(cap.out.strip().splitlines()[-1])
    assert any("calibrated deployment" in n for n in res["notices"])
    # the calibrated start is the better one on this chip: the start's validation accuracy, both ways
    d2 = tmp_path / "asis"
    assert main(["loop", "--target", CHIP + "&calib=off", "--init", QIF, "--dir", str(d2), "--epochs", "1",
                 "--batch-size", "50", "--train-limit", "50", "--eval-limit", "100", "--no-final-test", "--quiet",
                 "--json"]) == 0
    capsys.readouterr()
    val = [next(json.loads(x) for x in (p / "log.jsonl").read_text().splitlines()
                if json.loads(x).get("kind") == "eval")["val_accuracy"] for p in (d, d2)]
    assert val[0] > val[1]


def test_the_outcome_line_names_the_calibrated_target(store, tmp_path, capsys):
    _store_truth(6)
    assert main(["loop", "--target", CHIP, "--init", QIF, "--dir", str(tmp_path / "s"), "--epochs", "1",
                 "--batch-size", "50", "--train-limit", "50", "--eval-limit", "100", "--no-final-test",
                 "--quiet"]) == 0
    assert f"validation accuracy on {CHIP}&calib=on" in capsys.readouterr().out


@pytest.mark.slow
def test_the_demo_measures_the_trained_network_where_the_session_trained_it(store, tmp_path, capsys):
    """With a stored calibration the demo's session trains for the calibrated deployment;
    the 'after' figure must be measured on that deployment, not on the uncalibrated one."""
    _store_truth(6)
    assert main(["demo", "--target", CHIP, "--epochs", "1", "--train-limit", "50", "--dir", str(tmp_path / "d"),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["target"] == CHIP + "&calib=on"
    assert json.loads((tmp_path / "d" / "config.json").read_text())["target"] == res["target"]
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    # the selected network on the session's own target, measured again on the same test split
    assert abs(res["after"] - summary["test_selected"]["accuracy"]) <= 0.02
