"""bench/bench_link.py reports what it measured (its JSON field "die" used to
say "ideal" whatever the die: the ``with open_target(...) as chip`` line
overwrote the argument it reported)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_link.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_link", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("die,name", [("", "default mismatch and noise"), ("&mismatch=0&noise=0", "ideal")])
def test_a_row_names_the_die_it_ran_on(bench, die, name):
    row = bench.measure(921600, 16, 8, die, None)
    assert row["die"] == name and row["ok"] and row["line"] == "direct"
    assert row["samples"] == 16 and 0 < row["ratio"] and row["bytes_per_sample_1_2"] == 2 * 4 + 2 * (8 + 3)
    # protocol 1.3: the bound is that of the compact reply, what the host received per sample
    assert row["protocol"] == "1.5" and 2 * 4 < row["bytes_per_sample"] < row["bytes_per_sample_1_2"]


def test_a_noisy_row_checks_its_results_against_the_clean_run(bench):
    row = bench.measure(921600, 24, 8, "&mismatch=0&noise=0", 1e-4)
    assert row["ok"] and row["line"] == "proxy, BER 0.0001" and row["first_noisy_run"]["ok"]
