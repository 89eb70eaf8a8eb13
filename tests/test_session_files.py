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


# ---- checkpoints (finding 2)
def checkpoint_files(d):
    return [p for p in (Path(d) / "checkpoint.ckpt", Path(d) / "checkpoint.prev.ckpt", Path(d) / "checkpoint.pt")
            if p.exists()]


def train_steps(d):
    return [json.loads(line)["step"] for line in (Path(d) / "log.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "train"]


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_a_crafted_pickle_checkpoint_is_never_unpickled(finished, tmp_path):
    import torch

    d = unfinished_copy(finished, tmp_path)
    marker = tmp_path / "pwned"
    for name in ("checkpoint.pt", "checkpoint.ckpt"):
        torch.save({"step": Evil(marker), "weights": []}, d / name)
    try:
        run_session(d, resume=True, progress=False)
    except SessionError:
        pass
    assert not marker.exists()
    assert (d / "checkpoint.ckpt.damaged").exists()  # set aside; resumed from the previous checkpoint
    assert_same_weights(weights(d), weights(finished))


def test_only_a_legacy_pickle_checkpoint_is_refused_clearly(finished, tmp_path):
    import torch

    d = unfinished_copy(finished, tmp_path)
    for p in checkpoint_files(d):
        p.unlink()
    marker = tmp_path / "pwned"
    torch.save({"step": Evil(marker)}, d / "checkpoint.pt")
    with pytest.raises(SessionError, match="older hwloop"):
        run_session(d, resume=True, progress=False)
    assert not marker.exists()


def _flip_a_weight_bit(path, w):
    data = bytearray(path.read_bytes())
    needle = np.ascontiguousarray(w, dtype="<f8").tobytes()
    at = data.find(needle)
    assert at >= 0, "the weights are stored as plain float64 bytes"
    data[at + 7] ^= 0x01  # lowest exponent bit of the first weight: halves or doubles it
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_caught_and_the_previous_checkpoint_used(finished, tmp_path, capsys):
    d = unfinished_copy(finished, tmp_path)
    latest = checkpoint_files(d)[0]
    _flip_a_weight_bit(latest, weights(finished)[0])
    res = run_session(d, resume=True, progress=False)
    assert res["ok"]
    assert "checksum" in capsys.readouterr().err
    assert_same_weights(weights(d), weights(finished))  # the lost step was redone exactly
    assert train_steps(d) == train_steps(finished)


DAMAGE = {
    "empty": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 2],
    "one byte short": lambda b: b[:-1],
    "zeros": lambda b: bytes(len(b)),
    "garbage": lambda b: np.random.default_rng(0).bytes(len(b)),
    "appended": lambda b: b + b"\x00",
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_latest_checkpoint_falls_back(finished, tmp_path, damage):
    d = unfinished_copy(finished, tmp_path)
    latest = d / "checkpoint.ckpt"
    latest.write_bytes(DAMAGE[damage](latest.read_bytes()))
    run_session(d, resume=True, progress=False)
    assert_same_weights(weights(d), weights(finished))


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_with_no_usable_checkpoint_resume_refuses_and_names_the_files(finished, tmp_path, damage):
    d = unfinished_copy(finished, tmp_path)
    for p in (d / "checkpoint.ckpt", d / "checkpoint.prev.ckpt"):
        p.write_bytes(DAMAGE[damage](p.read_bytes()))
    log = (d / "log.jsonl").read_bytes()
    with pytest.raises(SessionError, match="no usable checkpoint.*checkpoint.ckpt.*checkpoint.prev.ckpt"):
        run_session(d, resume=True, progress=False)
    assert (d / "log.jsonl").read_bytes() == log


def _rewrite_both(d, change):
    """Both checkpoints replaced by a valid file (right checksum) with changed contents."""
    from hwloop.session.checkpoint import decode_checkpoint, encode_checkpoint

    for p in (d / "checkpoint.ckpt", d / "checkpoint.prev.ckpt"):
        st = decode_checkpoint(p.read_bytes())
        change(st)
        p.write_bytes(encode_checkpoint(st))


@pytest.mark.parametrize("change, why", [
    (lambda st: st["weights"].__setitem__(0, st["weights"][0][:-1]), "weights"),
    (lambda st: st["adam"][1].__setitem__("exp_avg", st["adam"][1]["exp_avg"].T.contiguous()), "exp_avg"),
    (lambda st: st["weights"][0].__setitem__((0, 0), float("nan")), "finite"),
    (lambda st: st.__setitem__("lr", -1.0), "lr"),
    (lambda st: st.__setitem__("step", "3"), "step"),
    (lambda st: st.__setitem__("extra", 1), "contents"),
    (lambda st: st.pop("adam"), "contents"),
])
def test_a_checkpoint_that_does_not_fit_the_network_is_refused(finished, tmp_path, change, why):
    d = unfinished_copy(finished, tmp_path)
    _rewrite_both(d, change)
    with pytest.raises(SessionError, match=why):
        run_session(d, resume=True, progress=False)


def test_a_checkpoint_step_past_the_end_is_refused(finished, tmp_path):
    d = unfinished_copy(finished, tmp_path)
    _rewrite_both(d, lambda st: st.__setitem__("step", 10 ** 6))
    with pytest.raises(SessionError, match="past the end"):
        run_session(d, resume=True, progress=False)
    assert not (d / "summary.json").exists()


def test_a_swapped_init_network_is_noticed(finished, tmp_path, init_net):
    d = unfinished_copy(finished, tmp_path)
    net = Network.load(d / "init.hwnet")
    net.with_weights([w * 1.01 for w in net.weights()]).save(d / "init.hwnet")
    with pytest.raises(SessionError, match="init.hwnet: not the network this session started from"):
        run_session(d, resume=True, progress=False)


def test_a_swapped_latest_network_is_noticed_and_rewritten_once_moved_away(finished, tmp_path):
    d = unfinished_copy(finished, tmp_path)
    shutil.copyfile(d / "init.hwnet", d / "network.hwnet")
    with pytest.raises(SessionError, match="network.hwnet: changed outside the session"):
        run_session(d, resume=True, progress=False)
    (d / "network.hwnet").unlink()
    run_session(d, resume=True, progress=False)
    assert_same_weights(weights(d), weights(finished))


def test_an_edited_config_is_noticed(finished, tmp_path):
    d = unfinished_copy(finished, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["lr"] = 0.003  # valid, but not what the checkpoint was trained with
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SessionError, match="lr: 0.002 in the checkpoint, 0.003 now"):
        run_session(d, resume=True, progress=False)


# ---- a full disk
def _full_disk_after(monkeypatch, module, name_prefix, good_writes):
    """From the ``good_writes``-th on, a write to a file whose name starts with
    ``name_prefix`` (opened by ``module``) stores half its bytes and then fails
    with ENOSPC, as a full disk does."""
    import builtins
    import errno

    calls = {"n": 0}
    real_open = builtins.open

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, key):
            return getattr(self.fh, key)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fake_open(path, mode="r", *args, **kw):
        fh = real_open(path, mode, *args, **kw)
        if Path(path).name.startswith(name_prefix) and ("w" in mode or "a" in mode):
            calls["n"] += 1
            if calls["n"] > good_writes:
                return HalfWriter(fh)
        return fh

    monkeypatch.setattr(module, "open", fake_open, raising=False)


@pytest.mark.parametrize("where, module, prefix, good", [
    ("checkpoint", "hwloop.fileio", ".checkpoint.ckpt.", 2),
    ("log", "hwloop.session.files", "log.jsonl", 3),
])
def test_a_full_disk_is_one_clear_error_and_the_last_checkpoint_survives(finished, tmp_path, monkeypatch, capsys,
                                                                         init_net, where, module, prefix, good):
    import importlib

    from hwloop.cli import main
    from hwloop.session.checkpoint import decode_checkpoint

    _full_disk_after(monkeypatch, importlib.import_module(module), prefix, good)
    d = tmp_path / "s"
    rc = main(["loop", "--target", "software", "--dataset", "yinyang", "--init", str(init_net), "--dir", str(d),
               "--epochs", "2", "--batch-size", "50", "--train-limit", "100", "--eval-limit", "50", "--lr", "0.002",
               "--seed", "7", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    step = decode_checkpoint((d / "checkpoint.ckpt").read_bytes())["step"]
    assert "No space left on device" in err[0] and f"the last checkpoint (step {step}) is intact" in err[0], err
    assert not list(d.glob(".*.tmp"))  # no temporary file left behind
    monkeypatch.undo()
    run_session(d, resume=True, progress=False)
    assert_same_weights(weights(d), weights(finished))
    assert train_steps(d) == train_steps(finished)
