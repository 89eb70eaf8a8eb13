"""Fuzzing the session files (hypothesis): whatever config.json,
checkpoint.ckpt / checkpoint.prev.ckpt and log.jsonl hold, resume raises
only `SessionError` (or falls back to the previous checkpoint and finishes
exactly), in bounded time and memory.

Bounds asserted here: every resume of a fuzzed session finishes within
``DEADLINE``, and the peak of the Python heap during it (tracemalloc: file
contents, JSON, numpy arrays; torch's allocations are not traced) stays
under ``HEAP_BOUND``. The readers bound themselves by file size
before allocating: config.json at most 1 MiB, a checkpoint at most
4 x 8 bytes x the network's weights + 1 MiB of header (checked against the
file size before it is read), log.jsonl one line of at most 1 MiB at a time.
"""

import hashlib
import json
import os
import shutil
import struct
import tracemalloc
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.network import Network
from hwloop.session import LoopConfig, SessionError, run_session
from hwloop.session.checkpoint import (MAGIC, CheckpointDamaged, decode_checkpoint, encode_checkpoint)
from hwloop.session.files import scan_log_lines

DEADLINE = timedelta(seconds=30)
HEAP_BOUND = 16 << 20

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                              st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                          max_leaves=20)


# ---- the readers alone: many examples, fast
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_checkpoint_decoder_on_random_bytes(data):
    with pytest.raises(CheckpointDamaged):
        decode_checkpoint(data)
    with pytest.raises(CheckpointDamaged):
        decode_checkpoint(MAGIC + data)


def _with_digest(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


@settings(max_examples=300, deadline=None)
@given(json_value, st.binary(max_size=200), st.integers(0, 3))
def test_checkpoint_decoder_on_crafted_headers(header, blob, version_delta):
    """A file with a valid checksum whose header says anything: only
    CheckpointDamaged (or a tree of plain values), never a large allocation."""
    text = json.dumps(header).encode()
    data = _with_digest(struct.pack("<8sIQ", MAGIC, 1 + version_delta, len(text)) + text + blob)
    tracemalloc.start()
    try:
        decode_checkpoint(data)
    except CheckpointDamaged:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 100 * len(data) + (1 << 20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["<f8", "<f4", "<i8", "|u1", "<c16"]),
                          st.lists(st.integers(-3, 2 ** 40), max_size=4), st.integers(-5, 2 ** 40),
                          st.integers(-5, 2 ** 40)), max_size=4), st.binary(max_size=256))
def test_checkpoint_decoder_on_declared_array_sizes(specs, blob):
    header = {"state": {"a": [{"__array__": i} for i in range(len(specs))]},
              "arrays": [{"dtype": d, "shape": s, "offset": o, "nbytes": n} for d, s, o, n in specs]}
    text = json.dumps(header).encode()
    data = _with_digest(struct.pack("<8sIQ", MAGIC, 1, len(text)) + text + blob)
    tracemalloc.start()
    try:
        decode_checkpoint(data)
    except CheckpointDamaged:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 100 * len(data) + (1 << 20)  # a declared size is checked against the file, never allocated


@settings(max_examples=200, deadline=None)
@given(json_value, st.lists(st.one_of(st.binary(max_size=60), json_value.map(lambda v: json.dumps(v).encode())),
                            max_size=8))
def test_log_scanner_on_anything(value, lines):
    import io

    data = b"\n".join(lines + [json.dumps(value).encode()])
    scan = scan_log_lines(io.BytesIO(data))
    assert len(scan.rows) + len(scan.bad) + int(scan.torn) <= data.count(b"\n") + 1
    for row in scan.rows:
        assert isinstance(row, dict) and isinstance(row["step"], int) and row["kind"] in ("train", "eval")


# ---- whole resumes of a fuzzed session directory
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from hwloop.pretrained import path as pretrained

    d = tmp_path_factory.mktemp("fuzzbase") / "s"
    run_session(d, LoopConfig(target="software", dataset="yinyang", init=str(pretrained("yinyang-lif.hwnet")),
                              epochs=1, batch_size=50, train_limit=100, eval_limit=50, lr=0.002, seed=5),
                progress=False)
    (d / "summary.json").unlink()
    return d


def _resume(base, tmp_path_factory, mutate) -> tuple[str, Path]:
    """Copy the base session, let ``mutate`` change its files, resume.
    Returns ("ok" | "refused", directory); anything but SessionError fails."""
    d = Path(shutil.copytree(base, tmp_path_factory.mktemp("fuzz") / "s"))
    mutate(d)
    tracemalloc.start()
    try:
        run_session(d, resume=True, progress=False)
        outcome = "ok"
    except SessionError:
        outcome = "refused"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < HEAP_BOUND, peak
    return outcome, d


def _same_result(d, base):
    for a, b in zip(Network.load(d / "network.hwnet").weights(), Network.load(base / "network.hwnet").weights()):
        np.testing.assert_array_equal(a, b)


#: resumes per fuzzed file kind; HWLOOP_FUZZ_EXAMPLES=500 for a longer hunt
FUZZ = settings(max_examples=int(os.environ.get("HWLOOP_FUZZ_EXAMPLES", 25)), deadline=DEADLINE, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_resume_with_a_fuzzed_config(base, tmp_path_factory, data):
    cfg = json.loads((base / "config.json").read_text())
    how = data.draw(st.sampled_from(["value", "key", "bytes", "flip"]))
    if how == "value":
        cfg[data.draw(st.sampled_from(sorted(cfg)))] = data.draw(json_value)
        text = json.dumps(cfg).encode()
    elif how == "key":
        cfg[data.draw(st.text(max_size=10))] = data.draw(json_value)
        text = json.dumps(cfg).encode()
    elif how == "bytes":
        text = data.draw(st.binary(max_size=500))
    else:
        raw = bytearray((base / "config.json").read_bytes())
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        text = bytes(raw)
    outcome, d = _resume(base, tmp_path_factory, lambda d: (d / "config.json").write_bytes(text))
    if outcome == "ok":  # only a config that means what the original means gets through
        now = json.loads((d / "config.json").read_text())
        if now["epochs"] != cfg_epochs(base):
            # a different number of epochs is the one field a resume accepts (a session may be
            # extended): the session ran to that many epochs, with everything else as it was
            summary = json.loads((d / "summary.json").read_text())
            assert now["epochs"] > cfg_epochs(base) and summary["steps"] == now["epochs"] * 2
            assert {k: v for k, v in now.items() if k != "epochs"} == {
                k: v for k, v in json.loads((base / "config.json").read_text()).items() if k != "epochs"}
        else:
            _same_result(d, base)


def cfg_epochs(base) -> int:
    return json.loads((base / "config.json").read_text())["epochs"]


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_resume_with_fuzzed_checkpoints(base, tmp_path_factory, data):
    which = data.draw(st.sampled_from(["checkpoint.ckpt", "checkpoint.prev.ckpt", "both"]))
    how = data.draw(st.sampled_from(["flip", "truncate", "insert", "bytes", "tree"]))
    names = ["checkpoint.ckpt", "checkpoint.prev.ckpt"] if which == "both" else [which]
    edits = {}
    for name in names:
        raw = bytearray((base / name).read_bytes())
        if how == "flip":
            # distinct bits: flipping the same bit twice gives the file back unchanged (which
            # hypothesis found, and which resumes fine, as it should)
            for at, bit in data.draw(st.sets(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 7)),
                                             min_size=1, max_size=4)):
                raw[at] ^= 1 << bit
        elif how == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        elif how == "insert":
            at = data.draw(st.integers(0, len(raw)))
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=64))
        elif how == "bytes":
            raw = bytearray(data.draw(st.binary(max_size=4000)))
        else:  # a valid checksum over changed contents: a subtree replaced by anything
            state = decode_checkpoint(bytes(raw))
            key = data.draw(st.sampled_from(sorted(state)))
            state[key] = data.draw(st.one_of(json_value, st.builds(lambda n: np.zeros(n), st.integers(0, 50))))
            try:
                raw = bytearray(encode_checkpoint(state))
            except ValueError:  # a value our own writer refuses (e.g. NaN): write it raw
                raw = bytearray(b"not encodable")
        edits[name] = bytes(raw)
    outcome, d = _resume(base, tmp_path_factory, lambda d: [(d / n).write_bytes(b) for n, b in edits.items()])
    if how != "tree" and outcome == "ok":  # damage is caught by the checksum: the good file was used
        _same_result(d, base)
    if how != "tree" and which == "both" and how != "insert":
        assert outcome == "refused"


@pytest.mark.slow
@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=80), json_value.map(lambda v: json.dumps(v).encode())), max_size=6),
       st.integers(0, 20))
def test_resume_with_a_fuzzed_log(base, tmp_path_factory, lines, at):
    good = (base / "log.jsonl").read_bytes().splitlines(keepends=True)
    at = min(at, len(good))
    mixed = good[:at] + [line.replace(b"\n", b" ") + b"\n" for line in lines] + good[at:]
    outcome, d = _resume(base, tmp_path_factory, lambda d: (d / "log.jsonl").write_bytes(b"".join(mixed)))
    assert outcome == "ok"
    kept = (d / "log.jsonl").read_bytes().splitlines(keepends=True)
    assert [line for line in kept if line in good] == good  # every valid row kept, in order
    _same_result(d, base)


def test_empty_array_with_huge_dimensions_is_a_typed_error():
    """Found by the fuzz test above: shape [0, 2**30, 2**30] holds no data, but numpy
    refuses to reshape to it (ValueError), which escaped as a traceback."""
    header = {"state": {"a": {"__array__": 0}},
              "arrays": [{"dtype": "<f8", "shape": [0, 2 ** 30, 2 ** 30], "offset": 0, "nbytes": 0}]}
    text = json.dumps(header).encode()
    store_bytes = _with_digest(struct.pack("<8sIQ", MAGIC, 1, len(text)) + text)
    with pytest.raises(CheckpointDamaged, match="bad shape"):
        decode_checkpoint(store_bytes)
