"""Spike-train sessions on the QIF chip (`qif-emu`): where a step's time goes.

The target part of a step is the chip's own (analog) run time, the one the
firmware reports in RUN_DONE: ``samples x n_steps x step_ticks x TDC lsb``, as
for first-spike-time runs (``samples x trial_ticks x lsb``). It is tiny against
the link (100 steps of 1 tick = 0.1 us each: 10 us per sample), which is why a
bench table at one decimal of a percent shows 0.0 %; it is logged, not lost."""

import json

import pytest

from hwloop.backends import open_target
from hwloop.network import Network
from hwloop.session import LoopConfig, run_session

DATA = {"samples_per_class": 30, "n_classes": 4}


@pytest.fixture(scope="module")
def tiny_qif(tmp_path_factory):
    """A small qif-trains Randman network after one software epoch (4 classes, 16 hidden)."""
    from hwloop.trains_training import defaults_for, to_network, train

    cfg = defaults_for("randman", model="qif-trains", hidden=(16,), epochs=1, seed=0, threads=1,
                       batch_size=40, data_options=dict(DATA))
    path = tmp_path_factory.mktemp("net") / "tiny-qif.hwnet"
    to_network(train(cfg)).save(path)
    return str(path)


def test_the_chips_run_time_is_the_logged_target_time(tiny_qif, tmp_path):
    net = Network.load(tiny_qif)
    batch = 20
    cfg = LoopConfig(target="qif-emu", dataset="randman", init=tiny_qif, epochs=1, batch_size=batch, lr=1e-3,
                     train_limit=2 * batch, eval_limit=20, compare_software=False, final_test=False)
    run_session(tmp_path / "s", cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert len(train_rows) == 2
    with open_target("qif-emu") as be:
        be.load(net)
        prog = be._deployed
        lsb = be.client.info.tdc_lsb_us
    chip_s = batch * prog.config.n_steps * prog.config.step_ticks * lsb * 1e-6
    assert chip_s > 0
    for r in train_rows:
        assert r["target_seconds"] == pytest.approx(chip_s, rel=1e-5)
        # the link and the emulator's integration are I/O, not target time
        assert r["io_seconds"] > r["target_seconds"]
