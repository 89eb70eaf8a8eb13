"""bench/inloop_robustness.py on a one-cell grid: the table's figures are the
session's own test measurements and the software network's test accuracy."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench" / "inloop_robustness.py"


@pytest.mark.slow
def test_one_cell_table_matches_the_session_files(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "r"
    argv = ["--targets", "bitexact?steps=100", "--software-seeds", "10", "--software-epochs", "2",
            "--loihi-epochs", "1", "--train-limit", "100", "--setting", "patience=3", "--out", str(out), "--json"]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    res = json.loads(printed.strip().splitlines()[-1])
    (row,) = res["rows"]
    (session,) = (out / "sessions").iterdir()
    summary = json.loads((session / "summary.json").read_text())
    config = json.loads((session / "config.json").read_text())
    meta = json.loads(next((out / "software").glob("*.json")).read_text())
    assert row["deployed"] == summary["test_start"]["accuracy"] and row["after"] == summary["test_selected"]["accuracy"]
    assert row["software"] == meta["test"] and summary["test_selected"]["n"] == 1000
    assert config["patience"] == 3 and config["lr"] == 1e-3 and config["ema"] == 0.98  # recipe + --setting
    assert "| `bitexact?steps=100` | 10 | 0 |" in printed
    # a rerun reuses the session (nothing trained or run again) and prints the same table
    assert bench.main(argv) == 0
    assert capsys.readouterr().out.split("every cell")[0] == printed.split("every cell")[0]


def _bench():
    spec = importlib.util.spec_from_file_location("inloop_robustness", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_calibrated_target_url_adds_calib_on():
    bench = _bench()
    assert bench.with_calibration("qif-emu") == "qif-emu?calib=on"
    assert bench.with_calibration("qif-emu?chip_id=2") == "qif-emu?chip_id=2&calib=on"
    # without --calibrate the session deploys as is, said explicitly (a stored calibration would be the default)
    assert bench.with_calibration("qif-emu?chip_id=2", on=False) == "qif-emu?chip_id=2&calib=off"
    assert bench.with_calibration("qif-emu?calib=off") == "qif-emu?calib=off"


@pytest.mark.slow
def test_calibrate_grid_calibrates_once_starts_calibrated_and_extends_sessions(tmp_path, capsys, monkeypatch):
    """--calibrate: the chip is calibrated once into OUT/calibration, the session's target is the
    calibrated deployment, the table adds the uncalibrated deployed-as-is figure, and a rerun with more
    epochs extends the finished session instead of starting again."""
    # the bench points the variable at OUT/calibration; monkeypatch restores it afterwards
    monkeypatch.setenv("HWLOOP_CALIBRATION_DIR", str(tmp_path / "elsewhere"))
    bench = _bench()
    out = tmp_path / "r"
    argv = ["--targets", "qif-emu?baud=0&chip_id=4", "--software-seeds", "10", "--software-epochs", "2",
            "--qif-epochs", "1", "--train-limit", "100", "--multi-seed-cell", "none", "--calibrate",
            "--ideal-chip", "--setting", "eval_limit=200", "--out", str(out), "--json"]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    res = json.loads(printed.strip().splitlines()[-1])
    (row,) = res["rows"]
    (session,) = (out / "sessions").iterdir()
    summary = json.loads((session / "summary.json").read_text())
    config = json.loads((session / "config.json").read_text())
    assert config["target"] == "qif-emu?baud=0&chip_id=4&calib=on" and config["epochs"] == 1
    assert len(list((out / "calibration").glob("qif-0x4-fw*.json"))) == 1 and not (tmp_path / "elsewhere").exists()
    uncal = json.loads(next((out / "deployed").glob(f"*--{bench.slug('qif-emu?baud=0&chip_id=4')}.json")).read_text())
    assert row["calibrated"] and row["uncalibrated"] == uncal["accuracy"] and uncal["n"] == 1000
    assert row["deployed"] == summary["test_start"]["accuracy"] and row["after"] == summary["test_selected"]["accuracy"]
    assert "| uncalibrated |" in printed and "| ideal chip |" in printed
    ideal = next((out / "deployed").glob(f"*--{bench.slug(bench.IDEAL_CHIP)}.json"))
    assert row["ideal_chip"] == json.loads(ideal.read_text())["accuracy"]
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "calibration").iterdir()}
    # two epochs now: the same session goes on (twice the steps), the chip is not calibrated again
    argv[argv.index("--qif-epochs") + 1] = "2"
    assert bench.main(argv) == 0
    res2 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((session / "config.json").read_text())["epochs"] == 2
    assert res2["rows"][0]["steps"] == 2 * row["steps"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "calibration").iterdir()} == stamp
