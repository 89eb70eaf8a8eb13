"""Fuzzing `.hwnet` loading (issue 12): a valid file mutated at every level —
manifest JSON values, raw manifest text, member names, ``.npy`` headers, the
zip's size/offset/CRC fields and raw bytes — may load or raise
`NetworkFileError`, nothing else, within a bounded time and memory.

Bounds asserted per example (the base file is 1.6 KB; mutated files stay
under 64 KiB): peak memory traced by `tracemalloc` (Python objects and numpy
arrays) below ``MEMORY_BOUND`` = 16 MiB, and ``TIME_BOUND`` = 2 s wall time
(typically a few milliseconds; the bound leaves room for a loaded 2-core CI
machine). The fast run is derandomised (the same 200 examples every time);
the ``slow`` run explores 2000 fresh ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop import InputEncoding, Layer, Network, NetworkFileError, NeuronParams, OutputDecoding, Provenance

MEMORY_BOUND = 16 * 2**20
TIME_BOUND = 2.0


def base_network() -> Network:
    rng = np.random.default_rng(3)
    qif = NeuronParams("qif", 1.0, 1.5, 1.0, {"i0": 1.25, "v0": 0.5})
    layers = (Layer(rng.normal(size=(4 + 1, 6)), qif, (0.9,)),
              Layer(rng.normal(size=(6 + 1, 3)), qif, (0.4,)))
    return Network(layers=layers, encoding=InputEncoding(4, t_at_min=0.1, t_at_max=2.0),
                   decoding=OutputDecoding(("a", "b", "c")), t_max=3.0, time_unit="ms",
                   provenance=Provenance(model="qif", dataset="unit", seed=1, accuracy={"test": 0.9},
                                         extra={"cfg": {"lr": 0.01, "hidden": [6]}}))


def base_network_v2() -> Network:
    """A version-2 (spike-train) network: recurrent CUBA hidden layer, readout decoding with a window."""
    rng = np.random.default_rng(4)
    hid = NeuronParams.cuba(dt=1.0, current_decay=0.2, voltage_decay=0.1, reset="subtract", refractory=2)
    out = NeuronParams.cuba(dt=1.0, current_decay=0.2, voltage_decay=0.05, spiking=False)
    layers = (Layer(rng.normal(size=(4, 6)), hid, recurrent=rng.normal(size=(6, 6))),
              Layer(rng.normal(size=(6, 3)), out))
    return Network(layers=layers, encoding=InputEncoding(4, t_at_min=0.0, t_at_max=20.0),
                   decoding=OutputDecoding(("a", "b", "c"), kind="max-membrane", window=(2, 30)), t_max=30.0,
                   time_unit="ms", provenance=Provenance(model="cuba", dataset="unit", seed=1))


class Workdir(tuple):
    """(folder, members of the base file); a short repr for hypothesis reports."""

    def __repr__(self):
        return f"Workdir({self[0]})"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    base_network().save(d / "base.hwnet")
    with zipfile.ZipFile(d / "base.hwnet") as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    return Workdir((d, members))


@pytest.fixture(scope="module")
def workdir_v2(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz2")
    base_network_v2().save(d / "base.hwnet")
    with zipfile.ZipFile(d / "base.hwnet") as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    return Workdir((d, members))


# ------------------------------------------------------------------ strategies
json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=12)

RAW_SNIPPETS = ["Infinity", "-Infinity", "NaN", "1e400", "-1e400", "9" * 5000, "[" * 2000, "]", "{", "}",
                '"', "\\", ",", ":", "\x00", "\ud800", "null", "true", "[]", "{}", '"t_max": 1,', "\xff"]

ZIP_FIELDS = {  # structure -> {field: (offset, struct format)}
    "central": {"method": (10, "<H"), "crc": (16, "<L"), "csize": (20, "<L"), "usize": (24, "<L"),
                "nlen": (28, "<H"), "xlen": (30, "<H"), "clen": (32, "<H"), "offset": (42, "<L"),
                "flags": (8, "<H")},
    "local": {"method": (8, "<H"), "crc": (14, "<L"), "csize": (18, "<L"), "usize": (22, "<L"),
              "nlen": (26, "<H"), "xlen": (28, "<H"), "flags": (6, "<H")},
    "end": {"n_disk": (8, "<H"), "n_total": (10, "<H"), "cd_size": (12, "<L"), "cd_offset": (16, "<L"),
            "clen": (20, "<H")},
}
zip_values = st.one_of(st.sampled_from([0, 1, 2, 0x7F, 0xFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 8, 12, 14, 99]),
                       st.integers(min_value=0, max_value=2**32 - 1))


@st.composite
def json_mutation(draw, manifest):
    """(path, action, value): replace, delete or add at a random place of the manifest."""
    node, path = manifest, []
    # walk down until a leaf or a random stop (hypothesis favours 0: walking on)
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 4)) != 4:
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    return path, action, draw(json_values), draw(st.text(max_size=8))


def apply_json(manifest, mutation):
    path, action, value, new_key = mutation
    if not path:
        return value if action == "replace" else manifest
    parent = manifest
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[new_key] = value
    else:
        parent.insert(last, value)
    return manifest


npy_header_edit = st.one_of(
    st.tuples(st.just("shape"), st.lists(st.integers(min_value=-2, max_value=2**40), max_size=4)),
    st.tuples(st.just("descr"), st.sampled_from(["<i8", "|O", "<f4", ">f8", "<c16", "|V8", "<f16", "|b1",
                                                 "[('a', '<f8')]", "('<f8', (100000,))", "xx"])),
    st.tuples(st.just("fortran"), st.sampled_from(["True", "1", "None"])),
    st.tuples(st.just("hlen"), st.integers(min_value=0, max_value=0xFFFF)),
    st.tuples(st.just("version"), st.sampled_from([b"\x02\x00", b"\x03\x00", b"\x09\x09", b"\x00\x00"])),
    st.tuples(st.just("truncate"), st.integers(min_value=0, max_value=400)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
)


def edit_npy(data: bytes, edit) -> bytes:
    kind, arg = edit
    if kind == "shape":
        return data.replace(b"(5, 6)", str(tuple(arg)).encode()).replace(b"(7, 3)", str(tuple(arg)).encode())
    if kind == "descr":
        return data.replace(b"'<f8'", arg.encode(), 1)
    if kind == "fortran":
        return data.replace(b"False", arg.encode(), 1)
    if kind == "hlen":
        return data[:8] + struct.pack("<H", arg) + data[10:]
    if kind == "version":
        return data[:6] + arg + data[8:]
    if kind == "truncate":
        return data[:arg]
    return data + arg


@st.composite
def mutated_file(draw, members):
    """Bytes of a mutated network file and a list saying what was done."""
    done = []
    members = [list(m) for m in members]
    manifest = json.loads(dict(members)["manifest.json"])

    # weight members: .npy header edits, optionally with the checksum (and shape) fixed up
    for m in members:
        if m[0] != "manifest.json" and draw(st.integers(0, 3)) == 0:
            edit = draw(npy_header_edit)
            m[1] = edit_npy(m[1], edit)
            done.append(("npy", m[0], edit))
            i = int(m[0].split("/")[1])
            if draw(st.booleans()):
                manifest["layers"][i]["sha256"] = hashlib.sha256(m[1]).hexdigest()
            if edit[0] == "shape" and draw(st.booleans()):
                manifest["layers"][i]["shape"] = list(edit[1])

    # manifest values
    for _ in range(draw(st.integers(0, 2))):
        mutation = draw(json_mutation(manifest))
        manifest = apply_json(manifest, mutation)
        done.append(("json", mutation[0], mutation[1]))
    text = json.dumps(manifest, indent=draw(st.sampled_from([None, 2])))  # NaN/Infinity written as such

    # raw manifest text
    if draw(st.integers(0, 3)) == 0:
        pos = draw(st.integers(0, len(text)))
        snippet = draw(st.sampled_from(RAW_SNIPPETS))
        cut = draw(st.integers(0, 3))
        text = text[:pos] + snippet + text[pos + cut:]
        done.append(("text", pos, snippet[:10]))
    for m in members:
        if m[0] == "manifest.json":
            m[1] = text.encode("utf-8", "surrogatepass")

    # member names and sets
    choice = draw(st.integers(0, 11)) - 8  # hypothesis favours 0: leave the members alone most often
    if choice == 0:
        k = draw(st.integers(0, len(members) - 1))
        members[k][0] = draw(st.sampled_from(["", "/", "../x", "manifest.json", "layers/0/weight.npy",
                                              "layers/0/", "MANIFEST.JSON", "a" * 300])) \
            if draw(st.booleans()) else draw(st.text(min_size=1, max_size=20))
        done.append(("rename", k, members[k][0][:20]))
    elif choice == 1:
        k = draw(st.integers(0, len(members) - 1))
        members.append(list(members[k]))
        done.append(("duplicate", members[k][0]))
    elif choice == 2:
        members.pop(draw(st.integers(0, len(members) - 1)))
        done.append(("drop",))
    elif choice == 3:
        members.append([draw(st.sampled_from(["extra", "layers/", "layers/9/weight.npy"])),
                        draw(st.binary(max_size=32))])
        done.append(("add", members[-1][0]))

    compression = draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(buf, "w", compression=compression) as zf:
            for name, data in members:
                try:
                    zf.writestr(name, data)
                except (ValueError, UnicodeEncodeError, IndexError):  # names zipfile cannot write
                    zf.writestr("bad-name", data)
    data = bytearray(buf.getvalue())

    # the zip's own size/offset/CRC fields (less often: they usually stop the
    # reader at the container, and the deeper checks need examples too)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        kind = draw(st.sampled_from(sorted(ZIP_FIELDS)))
        fname = draw(st.sampled_from(sorted(ZIP_FIELDS[kind])))
        offset, fmt = ZIP_FIELDS[kind][fname]
        value = draw(zip_values) & (0xFFFF if fmt == "<H" else 0xFFFFFFFF)
        sig = {"central": b"PK\x01\x02", "local": b"PK\x03\x04", "end": b"PK\x05\x06"}[kind]
        hits = [i for i in range(len(data) - 3) if data[i:i + 4] == sig]
        if hits:
            at = draw(st.sampled_from(hits)) + offset
            if at + struct.calcsize(fmt) <= len(data):
                struct.pack_into(fmt, data, at, value)
                done.append(("zip", kind, fname, value))

    # raw bytes
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        op = draw(st.sampled_from(["flip", "truncate", "insert"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        done.append(("bytes", op, pos))
    return bytes(data), done


# ------------------------------------------------------------------------ test
def check_one(workdir, data: bytes, done) -> None:
    d, _ = workdir
    path = d / "mutated.hwnet"
    path.write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        Network.load(path)
    except NetworkFileError as exc:
        msg = str(exc)
        assert msg.startswith(str(path)) and "\n" not in msg, (msg, done)
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, (peak, done)
    assert elapsed < TIME_BOUND, (elapsed, done)


def _fuzz(workdir, data):
    raw, done = data.draw(mutated_file(workdir[1]))
    check_one(workdir, raw, done)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_hwnet_fast(workdir, data):
    _fuzz(workdir, data)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_hwnet_deep(workdir, data):
    _fuzz(workdir, data)


def test_unmutated_base_loads(workdir):
    """The fuzzer's starting point is a valid file (else it would test nothing)."""
    d, members = workdir
    net = Network.load(d / "base.hwnet")
    assert net.sizes == (4, 6, 3) and len(members) == 3


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_hwnet_v2_fast(workdir_v2, data):
    """The same mutations of a version-2 file (recurrent member, cuba neurons, window)."""
    _fuzz(workdir_v2, data)


def test_unmutated_v2_base_loads(workdir_v2):
    d, members = workdir_v2
    net = Network.load(d / "base.hwnet")
    assert net.is_spike_train and net.layers[0].recurrent is not None and len(members) == 4
