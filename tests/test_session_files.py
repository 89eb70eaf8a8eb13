"""Session files that cannot silently corrupt or hijack a session: the log
reader keeps every valid row, checkpoints carry a checksum and plain data
only, the networks in the directory are verified, a full disk is reported
in one line with the last checkpoint intact."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hwloop.network import Network
from hwloop.session import LoopConfig, SessionError, run_session
from hwloop.training import default_config, train


@pytest.fixture(scope="module")
def init_net(tmp_path_factory):
    res = train(default_config("lif", "yinyang", epochs=2, hidden=(30,), seed=3), progress=False)
    path = tmp_path_factory.mktemp("init") / "init.hwnet"
    res.network.save(path)
    return path


def small(init, **kw):
    base = dict(target="software", dataset="yinyang", init=str(init), epochs=2, batch_size=50, train_limit=100,
                eval_limit=50, lr=0.002, seed=7)
    base.update(kw)
    return LoopConfig(**base)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, init_net):
    d = tmp_path_factory.mktemp("finished") / "s"
    run_session(d, small(init_net), progress=False)
    return d


def unfinished_copy(finished, tmp_path) -> Path:
    """A copy of the finished session without summary.json: as if it had
    crashed after its last checkpoint; resuming it only finishes it."""
    d = Path(shutil.copytree(finished, tmp_path / "s"))
    (d / "summary.json").unlink()
    return d


def weights(d, name="network.hwnet"):
    return Network.load(Path(d) / name).weights()


def assert_same_weights(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ---- log.jsonl (finding 5)
BAD_LINES = [b"garbage", b"\x00\xff\xfe\x80 binary", b"[1, 2]", b'"a string"', b"42", b'{"step": "x", "kind": "train"}',
             b'{"kind": "train"}', b'{"step": 1, "kind": "train", "loss": NaN}', b"{" * 5000, b'{"step": -3, "kind": "eval"}']


def test_resume_keeps_every_valid_log_row_and_sets_the_bad_ones_aside(finished, tmp_path, capsys):
    d = unfinished_copy(finished, tmp_path)
    good = (d / "log.jsonl").read_bytes().splitlines(keepends=True)
    mixed = good[:3] + [b + b"\n" for b in BAD_LINES] + good[3:]
    (d / "log.jsonl").write_bytes(b"".join(mixed))
    res = run_session(d, resume=True, progress=False)
    assert res["ok"]
    assert (d / "log.jsonl").read_bytes().splitlines(keepends=True) == good
    assert (d / "log.rejected").read_bytes().splitlines() == BAD_LINES
    err = capsys.readouterr().err
    assert f"{len(BAD_LINES)} unreadable line" in err and "log.rejected" in err


def test_a_torn_last_log_line_is_dropped_quietly(finished, tmp_path, capsys):
    d = unfinished_copy(finished, tmp_path)
    good = (d / "log.jsonl").read_bytes()
    (d / "log.jsonl").write_bytes(good + b'{"step": 9, "epoch": 3, "kind": "tr')
    run_session(d, resume=True, progress=False)
    assert (d / "log.jsonl").read_bytes() == good
    assert not (d / "log.rejected").exists()
    assert "log" not in capsys.readouterr().err


def test_log_reader_for_reports(finished, tmp_path):
    """`SessionDir.read_log` (what `hwloop report` reads) skips bad lines
    instead of stopping at the first one."""
    from hwloop.session import SessionDir

    d = Path(shutil.copytree(finished, tmp_path / "s"))
    good = (d / "log.jsonl").read_bytes().splitlines(keepends=True)
    (d / "log.jsonl").write_bytes(b"".join(good[:2] + [b"\xff\n"] + good[2:]))
    rows = SessionDir(d).read_log()
    assert rows == [json.loads(line) for line in good]


def test_a_last_row_without_its_newline_is_kept_and_the_next_row_starts_on_a_new_line(finished, tmp_path):
    d = unfinished_copy(finished, tmp_path)
    good = (d / "log.jsonl").read_bytes()
    (d / "log.jsonl").write_bytes(good[:-1])
    from hwloop.session import SessionDir

    SessionDir(d).truncate_log(10 ** 6)
    assert (d / "log.jsonl").read_bytes() == good
