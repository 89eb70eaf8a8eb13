"""bench/bench_calibration.py --loop: the reached-threshold rule (two evaluations in a
row) and --modes, which runs one start at a time and reads the other from --out."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench" / "bench_calibration.py"


def _bench():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_calibration", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_threshold_counts_at_the_second_of_two_evaluations_in_a_row():
    reached = _bench().reached
    pts = [(0, 0, 0.970), (25, 1250, 0.975), (50, 2500, 0.973), (75, 3750, 0.975), (100, 5000, 0.976)]
    assert reached(pts, 0.974) == 5000  # 1250 alone is one evaluation, not two
    assert reached(pts, 0.973) == 2500
    assert reached(pts, 0.970) == 1250  # the start and the first evaluation
    assert reached(pts, 0.977) is None
    assert reached(pts[:1], 0.9) is None


@pytest.mark.slow
def test_modes_reads_a_start_left_out_only_where_it_ran_to_the_end(tmp_path, capsys, monkeypatch):
    bench = _bench()
    monkeypatch.setenv("HWLOOP_CALIBRATION_DIR", str(tmp_path / "cal"))
    argv = ["--loop", "--chips", "6", "--epochs", "1", "--eval-every", "1", "--train-limit", "100",
            "--eval-limit", "50", "--out", str(tmp_path / "out")]
    assert bench.main(argv + ["--modes", "on"]) == 0
    out = capsys.readouterr().out
    assert "calib=off left out of --modes and not run to step 2 there: no ratio for chip 6" in out
    assert (tmp_path / "out" / "chip6-calib-on" / "summary.json").exists()
    assert not (tmp_path / "out" / "chip6-calib-off").exists()
    on_log = (tmp_path / "out" / "chip6-calib-on" / "log.jsonl").read_bytes()
    assert bench.main(argv + ["--modes", "off"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "uncalibrated" in out
    # the calibrated session was read, not run again
    assert (tmp_path / "out" / "chip6-calib-on" / "log.jsonl").read_bytes() == on_log
