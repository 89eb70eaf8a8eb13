"""The board pool and sweeps on a real local Ray (issue 17's must-shows).

One Ray instance for the module, started here on 127.0.0.1 with every test
board's custom resource, stopped at the end. Boards are emulated QIF chips:
``qif-emu`` URLs (each open spawns an emulator of that chip id) and, for the
board that goes bad, ``qif://`` serial boards on emulators this test starts
and then stops, as a board that loses power would.
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray  # a main dependency (pyproject.toml): never skipped for being missing

from hwloop.backends.qif.backend import spawn_emulator, stop_emulator
from hwloop.pool import BoardPool, PoolConfig, Sweep
from hwloop.pool.config import RESOURCE_PREFIX
from hwloop.pretrained import path as pretrained
from hwloop.session import LoopConfig, run_session
from session_compare import assert_same_session as assert_same_log_and_weights
from session_compare import rows

pytestmark = pytest.mark.slow

CHIPS = [{"name": f"chip{c}", "url": f"qif-emu?chip_id={c}&baud=0"} for c in (1, 2, 3, 4)]
# chips without mismatch or noise measure alike whatever their id: a deterministic target
IDEAL = [{"name": f"ideal{c}", "url": f"qif-emu?chip_id={c}&baud=0&mismatch=0&noise=0", "kind": "ideal"}
         for c in (11, 12)]
SERIAL_NAMES = ["serial21", "serial22"]


def assert_same_session(a, b):
    """Same weights and log (session_compare), and the same selection and test figures."""
    assert_same_log_and_weights(a, b)
    sa, sb = (json.loads((Path(d) / "summary.json").read_text()) for d in (a, b))
    for key in ("best_val_accuracy", "start_val_accuracy", "selected_step", "test_start", "test_selected"):
        assert sa.get(key) == sb.get(key), key


@pytest.fixture(scope="module")
def local_ray():
    names = [b["name"] for b in CHIPS + IDEAL] + SERIAL_NAMES
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1", resources={RESOURCE_PREFIX + n: 1 for n in names})
    try:
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        yield
    finally:
        ray.shutdown()


def tiny(**kw) -> LoopConfig:
    base = dict(dataset="yinyang", init=str(pretrained("yinyang-qif.hwnet")), epochs=1, batch_size=25,
                train_limit=50, eval_limit=30, lr=0.002)
    base.update(kw)
    return LoopConfig(**base)


def test_sweep_of_3_seeds_x_4_chips_equals_each_session_run_alone(local_ray, tmp_path):
    config = PoolConfig.from_boards(CHIPS)
    base = tiny()
    with BoardPool(config) as pool:
        assert all(b["state"] == "free" and b["chip_id_seen"] is not None for b in pool.check_all())
        res = Sweep(pool, base, tmp_path / "sweep", seeds=[0, 1, 2], boards=config.names, progress=False).run()
    why = json.dumps({"events": [e for e in res["events"] if e["status"] != "done"], "evicted": res["evicted"]})
    assert res["ok"] and res["done"] == 12 and not res["evicted"], why
    trials = res["trials"]
    assert sorted((t["board"], t["seed"]) for t in trials) == sorted((b, s) for b in config.names for s in (0, 1, 2))
    for t in trials:  # tagged with the board and the chip id that answered on it
        assert t["chip_id"] == int(t["board"].removeprefix("chip")) and t["boards_run_on"] == t["board"], why
        assert not t["moved"] and t["attempts"] == 1 and t["test_n"] == 30, why
    # every board once and every seed at least once rerun alone (rerunning all 12 doubled the time, no new path)
    order = sorted(config.names)
    rerun = [t for t in trials if t["seed"] == order.index(t["board"]) % 3]
    assert len(rerun) == len(order)
    for t in rerun:
        alone = tmp_path / "alone" / t["trial"]
        run_session(alone, tiny(seed=t["seed"], target=config.by_name(t["board"]).url), progress=False)
        assert_same_session(t["session"], alone)
    # the table, its aggregates and the plot
    lines = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
    assert len(lines) == 13 and lines[0].startswith("trial,seed,board,chip_id")
    assert set(res["by_board"]) == set(config.names) and all(g["trials"] == 3 for g in res["by_board"].values())
    assert (tmp_path / "sweep" / "summary.png").stat().st_size > 1000
    # a trial directory is an ordinary session: hwloop report reads it
    from hwloop.cli import main

    assert main(["report", trials[0]["session"], "--json"]) == 0, "hwloop report failed on a trial directory"


def test_a_worker_killed_mid_session_resumes_on_another_board_with_identical_weights(local_ray, tmp_path):
    """The trial's worker process dies after step 3's update (before its
    checkpoint); the trial resumes from the step-2 checkpoint on the other
    board, rebound to its URL, and ends with the weights, log and selection of
    an uninterrupted run (the two boards are deterministic and alike)."""
    config = PoolConfig.from_boards(IDEAL)
    base = tiny(train_limit=100)
    with BoardPool(config) as pool:
        res = Sweep(pool, base, tmp_path / "sweep", seeds=[5], boards=["ideal11"], progress=False,
                    faults={"t000": 3}).run()
        deaths = {b["name"]: b["worker_deaths"] for b in res["pool"]}
        assert [b["state"] for b in res["pool"]] == ["free", "free"]  # the restarted worker is back in the pool
    assert res["ok"], res["trials"]
    t = res["trials"][0]
    assert t["attempts"] == 2 and t["boards_run_on"] == "ideal11+ideal12" and t["chip_id"] == 12 and t["moved"]
    assert deaths == {"ideal11": 1, "ideal12": 0}
    assert [e["status"] for e in res["events"]] == ["worker died", "done"]
    rebind = res["events"][1]["rebound"]
    assert rebind["from"] == IDEAL[0]["url"] and rebind["to"] == IDEAL[1]["url"] and rebind["step"] == 2
    alone = tmp_path / "alone"
    run_session(alone, tiny(train_limit=100, seed=5, target=IDEAL[0]["url"]), progress=False)
    assert_same_session(t["session"], alone)


def test_a_board_made_unhealthy_is_evicted_and_reported(local_ray, tmp_path):
    """Two serial boards; one loses its chip (the emulator behind its port is
    stopped) after the pool checked it: its next lease's health check fails,
    it is evicted, and every trial completes on the other board."""
    from hwloop.cli import main

    procs = {}
    try:
        boards = []
        for name, chip in zip(SERIAL_NAMES, (21, 22)):
            proc, err, port = spawn_emulator(["--chip-id", str(chip), "--baud", "0", "--parent-pid",
                                              str(os.getpid())])
            procs[name] = (proc, err)
            boards.append({"name": name, "url": f"qif://{port}?baud=0", "kind": "serial", "chip_id": chip})
        pool_file = tmp_path / "pool.json"
        pool_file.write_text(json.dumps({"board": boards}))
        shown = _devices(main, pool_file)
        assert [(b["name"], b["state"]) for b in shown] == [("serial21", "free"), ("serial22", "free")]
        config = PoolConfig.load(pool_file)
        with BoardPool(config) as pool:
            assert all(b["state"] == "free" for b in pool.check_all())
            proc, err = procs.pop("serial21")
            stop_emulator(proc)
            err.close()
            res = Sweep(pool, tiny(), tmp_path / "sweep", seeds=[0, 1], boards=None, progress=False).run()
        assert res["ok"] and res["done"] == 2
        assert all(t["boards_run_on"] == "serial22" for t in res["trials"])
        (ev,) = res["evicted"]
        # the stopped emulator's pseudo-terminal is gone: the handshake fails, or, where another process on
        # the machine has been given the same /dev/pts number meanwhile, a different chip answers on it
        assert ev["name"] == "serial21", ev
        assert ev["reason"].startswith("handshake failed") or "a different chip on this board's port" in ev["reason"], ev
        shown = {b["name"]: b for b in _devices(main, pool_file, code=1)}  # a board out: exit status 1
        assert shown["serial21"]["state"] == "evicted" and shown["serial22"]["state"] == "free"
    finally:
        for proc, err in procs.values():
            stop_emulator(proc)
            err.close()


def _devices(main, pool_file, code=0):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["devices", "--pool", str(pool_file), "--json"]) == code
    return json.loads(buf.getvalue().strip().splitlines()[-1])["pool"]


def test_ctrl_c_stops_every_trial_checkpointed_and_the_same_sweep_continues(local_ray, tmp_path):
    config = PoolConfig.from_boards(IDEAL)
    # long enough (40 steps) that the stop reaches the sessions before they end on a quiet machine
    # (with 4 steps, CI's clean run finished both trials before Ctrl-C arrived)
    base = tiny(train_limit=1000)
    out = tmp_path / "sweep"

    def press_ctrl_c_once_training_runs():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            logs = list(out.glob("trials/*/log.jsonl"))
            if any('"kind": "train"' in p.read_text() for p in logs):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    with BoardPool(config) as pool:
        presser = threading.Thread(target=press_ctrl_c_once_training_runs, daemon=True)
        presser.start()
        first = Sweep(pool, base, out, seeds=[0, 1], boards=None, progress=False).run()
        presser.join()
        assert not first["ok"] and first["interrupted"] >= 1
        stopped = [t for t in first["trials"] if t["status"] == "interrupted"]
        assert stopped
        for t in stopped:  # checkpointed at the step it stopped after: nothing to redo
            from hwloop.session.checkpoint import decode_checkpoint

            d = Path(t["session"])
            trained = sum(r["kind"] == "train" for r in rows(d))
            assert decode_checkpoint((d / "checkpoint.ckpt").read_bytes())["step"] == trained
        second = Sweep(pool, base, out, seeds=[0, 1], boards=None, progress=False).run()
    assert second["ok"] and second["done"] == 2
    t = next(t for t in second["trials"] if t["trial"] == stopped[0]["trial"])
    alone = tmp_path / "alone"
    run_session(alone, tiny(train_limit=1000, seed=t["seed"], target=IDEAL[0]["url"]), progress=False)
    assert_same_session(t["session"], alone)


def test_the_sweep_command_prints_the_table_and_writes_the_summary(local_ray, tmp_path, capsys):
    """`hwloop sweep` in-process (it reuses the running Ray), relative paths
    included: the trials run in the actors' processes."""
    from hwloop.cli import main

    pool_file = tmp_path / "pool.toml"
    pool_file.write_text("".join(f'[[board]]\nname = "{b["name"]}"\nurl = "{b["url"]}"\nkind = "ideal"\n\n'
                                 for b in IDEAL))
    init = os.path.relpath(pretrained("yinyang-qif.hwnet"))
    code = main(["sweep", "--pool", str(pool_file), "--out", str(tmp_path / "out"), "--init", init, "--seeds", "0",
                 "--boards", "ideal11", "--set", "epochs=1", "--set", "batch_size=25", "--set", "train_limit=50",
                 "--set", "eval_limit=30", "--set", "lr=0.002,0.004", "--crash", "t000:1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 done, 0 stopped, 0 failed" in out and "ran on ideal11+ideal12" in out, out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted((t["lr"], t["seed"], t["boards_run_on"]) for t in summary["trials"]) == [
        (0.002, 0, "ideal11+ideal12"), (0.004, 0, "ideal11")], out
    assert json.loads((tmp_path / "out" / "trials" / "t000" / "config.json").read_text())["lr"] == 0.002
