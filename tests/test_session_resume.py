"""Resume is exact: after a crash or a SIGKILL at any moment, on the
default noisy `qif-emu` chip too, the resumed session ends with the weights,
the log and the best network of the uninterrupted one (issue 12, finding 4:
the chip's noise-seed counter is part of the checkpoint)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hwloop.pretrained import path as pretrained
from hwloop.session import LoopConfig, run_session
from session_compare import assert_same_session, rows





def cli_args(directory, cfg: LoopConfig) -> list[str]:
    args = ["--dir", str(directory), "--target", cfg.target, "--dataset", cfg.dataset, "--init", cfg.init,
            "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size), "--train-limit", str(cfg.train_limit),
            "--eval-limit", str(cfg.eval_limit), "--lr", repr(cfg.lr), "--seed", str(cfg.seed), "--quiet"]
    if cfg.ema:
        args += ["--ema", repr(cfg.ema)]
    return [sys.executable, "-m", "hwloop", "loop", *args]


def chip_cfg(**kw) -> LoopConfig:
    base = dict(target="qif-emu", dataset="yinyang", init=str(pretrained("yinyang-qif.hwnet")), epochs=2,
                batch_size=25, train_limit=150, eval_limit=50, lr=0.002, seed=3, ema=0.9)
    base.update(kw)
    return LoopConfig(**base)


def test_every_row_appears_once_after_a_crash_right_after_the_start(tmp_path):
    """A crash after step 1, whose last checkpoint is the one taken after
    the start evaluation: resume must not evaluate the start again."""
    cfg = LoopConfig(target="software", dataset="yinyang", init=str(pretrained("yinyang-lif.hwnet")), epochs=1,
                     batch_size=50, train_limit=100, eval_limit=50, lr=0.002, seed=1)
    run_session(tmp_path / "ref", cfg, progress=False)
    proc = subprocess.run(cli_args(tmp_path / "crash", cfg) + ["--crash-after-step", "1"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    run_session(tmp_path / "crash", resume=True, progress=False)
    assert_same_session(tmp_path / "ref", tmp_path / "crash")


@pytest.mark.slow
def test_crash_and_resume_on_the_noisy_chip_is_exact(tmp_path):
    cfg = chip_cfg(epochs=1)
    run_session(tmp_path / "ref", cfg, progress=False)
    proc = subprocess.run(cli_args(tmp_path / "crash", cfg) + ["--crash-after-step", "4"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    run_session(tmp_path / "crash", resume=True, progress=False)
    assert_same_session(tmp_path / "ref", tmp_path / "crash")


def _checkpoint_step(d: Path) -> int | None:
    from hwloop.session.checkpoint import CheckpointDamaged, decode_checkpoint

    for name in ("checkpoint.ckpt", "checkpoint.prev.ckpt"):
        try:
            return decode_checkpoint((d / name).read_bytes())["step"]
        except (OSError, CheckpointDamaged):
            continue
    return None


@pytest.mark.slow
def test_sigkill_at_random_moments_on_the_noisy_chip_resumes_exactly(tmp_path):
    """`hwloop loop` on the default qif-emu (mismatch and temporal noise on),
    killed with SIGKILL (host and emulator together) at random moments,
    resumed each time; the result is the uninterrupted session's.

    Three kills per run of the test: the first at a random step of training
    plus a random fraction of a step (so it can land in a step, an
    evaluation, a checkpoint write, a log append), the others likewise or,
    one time in four, at any moment from the process start (imports,
    emulator start-up, creating the session directory). Should a loaded
    machine make every kill miss the training (the session finishes
    first), the experiment starts again."""
    cfg = chip_cfg()
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    done = subprocess.run(cli_args(ref, cfg), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    wall = time.monotonic() - t0
    summary = json.loads((ref / "summary.json").read_text())
    total, per_step = summary["steps"], summary["seconds"] / summary["steps"]

    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    d = tmp_path / "killed"
    kills = []  # (how, checkpoint step found after the kill)

    def mid_training(kills):
        return any(s is not None and 0 < s < total for _, s in kills)

    for attempt in range(16):
        if (d / "summary.json").exists():  # a kill after it had finished
            if mid_training(kills):
                break
            shutil.rmtree(d)  # (a slow machine overshot every kill) start the experiment again
            kills = []
        cmd = cli_args(d, cfg) if not (d / "config.json").exists() else [
            sys.executable, "-m", "hwloop", "loop", "--resume", str(d), "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            if len(kills) >= 3:  # enough kills: let it finish
                _, err = proc.communicate(timeout=600)
                assert proc.returncode == 0, err.decode()
                break
            if kills and rng.uniform() < 0.25:
                how = "anytime"
                time.sleep(rng.uniform(0.0, wall))
            else:
                start = _checkpoint_step(d) or 0
                target = int(rng.integers(min(start + 1, total - 2), total - 1))  # a step still to come
                how = f"step {target}"
                deadline = time.monotonic() + 300
                while proc.poll() is None and (_checkpoint_step(d) or 0) < target and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, per_step))
            if proc.poll() is not None:  # finished before the kill
                assert proc.returncode == 0, proc.stderr.read().decode()
                continue
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            kills.append((how, _checkpoint_step(d)))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
            proc.stderr.close()
    note = f"kills {kills}, rng seed {seed}"
    assert (d / "summary.json").exists(), f"did not finish ({note})"
    assert mid_training(kills), note
    try:
        assert_same_session(ref, d)
    except AssertionError as exc:
        raise AssertionError(f"{note}: {exc}") from None


def test_a_directory_left_by_an_interrupted_creation_can_be_started_again(tmp_path):
    """Killed while creating the directory (init.hwnet copied, config.json
    not yet written): the same command starts the session again."""
    cfg = LoopConfig(target="software", dataset="yinyang", init=str(pretrained("yinyang-lif.hwnet")), epochs=1,
                     batch_size=50, train_limit=50, eval_limit=50, seed=1)
    d = tmp_path / "s"
    d.mkdir()
    (d / "init.hwnet").write_bytes(b"half a copy")
    (d / ".config.json.abc123.tmp").write_bytes(b"{")
    assert run_session(d, cfg, progress=False)["ok"]
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "notes.txt").write_text("mine")
    from hwloop.session import SessionError

    with pytest.raises(SessionError, match="not empty"):
        run_session(tmp_path / "t", cfg, progress=False)


def test_killed_before_the_first_checkpoint_starts_again_with_an_empty_log(tmp_path):
    """Killed after the start evaluation was logged but before the first
    checkpoint: resume starts from the beginning and logs that evaluation
    once, not twice."""
    cfg = LoopConfig(target="software", dataset="yinyang", init=str(pretrained("yinyang-lif.hwnet")), epochs=1,
                     batch_size=50, train_limit=100, eval_limit=50, lr=0.002, seed=1)
    run_session(tmp_path / "ref", cfg, progress=False)
    d = tmp_path / "s"
    run_session(d, cfg, progress=False)
    for name in ("checkpoint.ckpt", "checkpoint.prev.ckpt", "summary.json", "network.hwnet"):
        (d / name).unlink()
    lines = (d / "log.jsonl").read_text().splitlines(keepends=True)
    (d / "log.jsonl").write_text(lines[0])  # only the start evaluation had been logged
    run_session(d, resume=True, progress=False)
    assert_same_session(tmp_path / "ref", d)


@pytest.mark.slow
def test_extending_a_finished_session_on_the_noisy_chip_is_exact(tmp_path):
    """One epoch, then `--epochs 2` on resume: the same as two epochs from the
    start, noise and all (the chip's seed counter continues from the checkpoint)."""
    run_session(tmp_path / "two", chip_cfg(epochs=2), progress=False)
    run_session(tmp_path / "one", chip_cfg(epochs=1), progress=False)
    run_session(tmp_path / "one", resume=True, epochs=2, progress=False)
    assert_same_session(tmp_path / "two", tmp_path / "one")
