"""The pool file, the grid, the health check and rebinding, without Ray."""

import json

import pytest

from hwloop.pool import (PoolConfig, PoolConfigError, RebindError, SweepError, bindings, check_board, expand_grid,
                         rebind_session)
from hwloop.pool.config import RESOURCE_PREFIX


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_toml_and_json_pool_files_give_the_same_boards(tmp_path):
    toml = write(tmp_path, "pool.toml", """
[[board]]
name = "chip3"
url = "qif-emu?chip_id=3"
host = "lab-pc"
chip_id = 3

[[board]]
name = "chip4"
url = "qif-emu?chip_id=4"
kind = "qif-v1"
""")
    js = write(tmp_path, "pool.json", json.dumps({"board": [
        {"name": "chip3", "url": "qif-emu?chip_id=3", "host": "lab-pc", "chip_id": 3},
        {"name": "chip4", "url": "qif-emu?chip_id=4", "kind": "qif-v1"}]}))
    a, b = PoolConfig.load(toml), PoolConfig.load(js)
    assert a.boards == b.boards
    assert a.names == ["chip3", "chip4"]
    assert a.boards[0].kind == "qif-emu" and a.boards[0].host == "lab-pc" and a.boards[0].chip_id == 3
    assert a.boards[1].kind == "qif-v1" and a.boards[1].host == "local"
    assert a.resources() == {RESOURCE_PREFIX + "chip3": 1.0, RESOURCE_PREFIX + "chip4": 1.0}


@pytest.mark.parametrize("boards, words", [
    ([], "no boards"),
    ([{"name": "a", "url": "qif-emu"}, {"name": "a", "url": "qif-emu"}], "declared twice"),
    ([{"name": "a", "url": "qif-emu", "colour": "red"}], "unknown fields"),
    ([{"name": "a b", "url": "qif-emu"}], "name must be"),
    ([{"name": "a", "url": "warp-drive"}], "unknown target"),
    ([{"name": "a", "url": "qif-emu?chip_id=-1"}], "chip_id"),
    ([{"name": "a", "url": "qif:///dev/ttyUSB0"}, {"name": "b", "url": "qif:///dev/ttyUSB0"}], "one actor owns"),
    ([{"name": "a", "url": "qif-emu", "chip_id": "three"}], "chip_id must be"),
    ([{"name": "a", "url": "qif-emu", "kind": "k"}, {"name": "b", "url": "bitexact", "kind": "k"}], "a kind is one"),
])
def test_bad_pool_files_are_refused_naming_the_board_and_field(boards, words):
    with pytest.raises(PoolConfigError, match=words):
        PoolConfig.from_boards(boards)


def test_unreadable_pool_files(tmp_path):
    with pytest.raises(PoolConfigError, match="cannot read"):
        PoolConfig.load(tmp_path / "missing.toml")
    with pytest.raises(PoolConfigError, match="not valid TOML"):
        PoolConfig.load(write(tmp_path, "bad.toml", "[[board]\nname="))
    with pytest.raises(PoolConfigError, match="only \\[\\[board\\]\\]"):
        PoolConfig.load(write(tmp_path, "x.json", json.dumps({"boards": []})))


def test_grid_order_and_checks():
    g = expand_grid([0, 1], ["a", "b"], {"lr": [0.1, 0.2]})
    assert len(g) == 8
    assert [(x["settings"]["lr"], x["board"], x["seed"]) for x in g[:4]] == [
        (0.1, "a", 0), (0.1, "a", 1), (0.1, "b", 0), (0.1, "b", 1)]
    assert all(x["board"] is None for x in expand_grid([0], None, {}))
    with pytest.raises(SweepError, match="set by the pool"):
        expand_grid([0], None, {"target": ["bitexact"]})
    with pytest.raises(SweepError, match="not a session setting"):
        expand_grid([0], None, {"learning_rate": [0.1]})
    with pytest.raises(SweepError, match="at least one seed"):
        expand_grid([], None, {})


def test_health_check_refuses_a_chip_that_is_not_the_declared_one_and_an_absent_port():
    ok = check_board("qif-emu?chip_id=3&baud=0&mismatch=0&noise=0")
    assert ok["healthy"] and ok["chip_id"] == 3 and ok["pattern_accuracy"] >= 0.9
    swapped = check_board("qif-emu?chip_id=3&baud=0&mismatch=0&noise=0", expect_chip_id=4)
    assert not swapped["healthy"] and "different chip" in swapped["reason"]
    gone = check_board("qif:///dev/hwloop-no-such-port?baud=0")
    assert not gone["healthy"] and gone["reason"].startswith("handshake failed")


def test_rebind_rewrites_config_and_checkpoints_and_refuses_another_scheme(tmp_path):
    """After a rebind the session resumes on the new URL: resume's check that
    config.json is the configuration its checkpoint was written with passes."""
    from hwloop.pretrained import path as pretrained
    from hwloop.session import LoopConfig, run_session
    from hwloop.session.checkpoint import decode_checkpoint

    a, b = ("qif-emu?chip_id=%d&baud=0&mismatch=0&noise=0" % c for c in (3, 4))
    cfg = LoopConfig(target=a, dataset="yinyang", init=str(pretrained("yinyang-qif.hwnet")), epochs=1,
                     batch_size=25, train_limit=50, eval_limit=30, final_test=False)
    d = tmp_path / "s"
    run_session(d, cfg, progress=False)
    with pytest.raises(RebindError, match="own scheme"):
        rebind_session(d, "bitexact")
    assert rebind_session(d, a) is None  # already bound there
    rec = rebind_session(d, b, reason="test")
    assert (rec["from"], rec["to"], rec["step"], rec["reason"]) == (a, b, 2, "test")
    assert json.loads((d / "config.json").read_text())["target"] == b
    for name in ("checkpoint.ckpt", "checkpoint.prev.ckpt"):
        assert decode_checkpoint((d / name).read_bytes())["config"]["target"] == b
    res = run_session(d, resume=True, epochs=2, progress=False)  # runs on chip 4 now
    assert res["ok"] and res["steps"] == 4
    assert [r["to"] for r in bindings(d)] == [b]


def test_sweep_command_parses_seeds_and_settings():
    from hwloop.commands.sweep import parse_seeds, parse_settings

    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    for bad in ("a", "3-1", "1,1", "-1"):
        with pytest.raises(SweepError, match="--seeds"):
            parse_seeds(bad)
    single, grid = parse_settings(["epochs=2", "lr=0.001,0.002", "ema=0.9", "max_missing=0.3+0", "final_test=no"])
    assert single == {"epochs": 2, "ema": 0.9, "max_missing": (0.3, 0.0), "final_test": False}
    assert grid == {"lr": [0.001, 0.002]}
    for bad, words in ((["colour=red"], "KEY=VALUE"), (["epochs=two"], "not a int"), (["lr=1", "lr=2"], "twice")):
        with pytest.raises(SweepError, match=words):
            parse_settings(bad)


def test_a_sweep_checks_every_trial_and_refuses_a_directory_of_another_grid(tmp_path):
    """No Ray needed: a pool that is not started knows its boards."""
    from hwloop.pool import BoardPool, Sweep
    from hwloop.pretrained import path as pretrained
    from hwloop.session import LoopConfig

    pool = BoardPool(PoolConfig.from_boards([{"name": "a", "url": "qif-emu?chip_id=1"},
                                             {"name": "b", "url": "qif-emu?chip_id=2"}]))
    base = LoopConfig(init=str(pretrained("yinyang-qif.hwnet")), epochs=1)
    with pytest.raises(SweepError, match="lr must be"):
        Sweep(pool, base, tmp_path / "s", seeds=[0], settings={"lr": [0.1, -1.0]})
    with pytest.raises(PoolConfigError, match="no board named"):
        Sweep(pool, base, tmp_path / "s", seeds=[0], boards=["c"])
    mixed = BoardPool(PoolConfig.from_boards([{"name": "a", "url": "qif-emu"},
                                              {"name": "b", "url": "bitexact"}]))
    with pytest.raises(SweepError, match="several kinds"):
        Sweep(mixed, base, tmp_path / "s", seeds=[0], boards=None)
    first = Sweep(pool, base, tmp_path / "s", seeds=[0, 1], boards=["a", "b"])
    assert [(t.id, t.seed, t.board) for t in first.trials] == [("t000", 0, "a"), ("t001", 1, "a"),
                                                               ("t002", 0, "b"), ("t003", 1, "b")]
    first._prepare_dir()
    Sweep(pool, base, tmp_path / "s", seeds=[0, 1], boards=["a", "b"])._prepare_dir()  # the same grid: continues
    with pytest.raises(SweepError, match="another grid .*seeds"):
        Sweep(pool, base, tmp_path / "s", seeds=[0, 1, 2], boards=["a", "b"])._prepare_dir()
