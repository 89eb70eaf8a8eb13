"""bench/inloop_robustness.py on a one-cell grid: the table's figures are the
session's own test measurements and the software network's test accuracy."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench" / "inloop_robustness.py"


@pytest.mark.slow
def test_one_cell_table_matches_the_session_files(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("inloop_robustness", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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
