"""Issue 12 finding 7: small `.hwnet` files must not demand large memory or time.

Every limit is checked before the memory it guards is allocated: the zip
directory (size, member count) from the end record, declared member sizes
against what the manifest's shapes need, the bytes actually decompressed while
reading, the manifest's size and nesting depth, array headers before any
array is allocated, and the total parameter count. Each test builds the
offending file for real and measures the loader's peak traced memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from hwloop import Network, NetworkFileError
from hwloop.network import LoadLimits

from test_network import make_net

#: peak traced memory the loader may use on the small crafted files below
BOUND = 16 * 2**20


def load_measured(path, **kw):
    """Network.load(path); returns (exception or network, peak traced bytes, seconds)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result = Network.load(path, **kw)
    except NetworkFileError as exc:
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak, time.perf_counter() - t0


def members_of(path):
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def write_members(path, members, compress=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in members:
            zf.writestr(name, data)


def refit_manifest(members, mutate):
    """Apply ``mutate(manifest)`` and re-serialise the manifest member."""
    out = []
    for name, data in members:
        if name == "manifest.json":
            m = json.loads(data)
            mutate(m)
            data = json.dumps(m).encode()
        out.append((name, data))
    return out


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


# ------------------------------------------------------------------ zip bombs
def test_zip_bomb_member_refused_from_its_declared_size(tmp_path):
    """64 MiB of zeros deflate to ~64 KiB; the directory declares 64 MiB for a
    member the manifest says is a 5x7 matrix. Refused without decompressing."""
    path = make_net().save(tmp_path / "n.hwnet")
    members = members_of(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members:
            if name != "layers/0/weight.npy":
                zf.writestr(name, data)
        with zf.open("layers/0/weight.npy", "w") as fh:
            chunk = b"\0" * 2**20
            for _ in range(64):
                fh.write(chunk)
    assert path.stat().st_size < 2**20
    result, peak, seconds = load_measured(path)
    assert isinstance(result, NetworkFileError), result
    assert "layers/0/weight.npy" in str(result) and "declares" in str(result)
    assert peak < BOUND, f"peak {peak / 2**20:.1f} MiB"
    assert seconds < 2.0


def _patch_directory_sizes(path, name, file_size=None, crc=None):
    """Rewrite a member's uncompressed size (and CRC) in both the central
    directory and the local header: the lie the archive tells about itself."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    # central directory entry: find it by signature and name
    needle = b"PK\x01\x02"
    pos = 0
    while True:
        pos = data.index(needle, pos)
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46:pos + 46 + n]) == name.encode():
            break
        pos += 4
    if crc is not None:
        struct.pack_into("<L", data, pos + 16, crc)
        struct.pack_into("<L", data, info.header_offset + 14, crc)
    if file_size is not None:
        struct.pack_into("<L", data, pos + 24, file_size)
        struct.pack_into("<L", data, info.header_offset + 22, file_size)
    path.write_bytes(bytes(data))


def test_stream_longer_than_declared_is_not_trusted(tmp_path):
    """The directory claims the member is as long as a 5x7 .npy (so it passes the
    size check); the deflate stream holds 32 MiB. The reader stops at the declared
    size and the CRC (of the real data) does not match: refused, bounded."""
    path = make_net().save(tmp_path / "n.hwnet")
    members = members_of(path)
    good = dict(members)["layers/0/weight.npy"]
    bomb = good + b"\0" * (32 * 2**20)
    write_members(path, [(n, bomb if n == "layers/0/weight.npy" else d) for n, d in members])
    _patch_directory_sizes(path, "layers/0/weight.npy", file_size=len(good))
    result, peak, seconds = load_measured(path)
    assert isinstance(result, NetworkFileError), result
    assert "layers/0/weight.npy" in str(result)
    assert peak < BOUND and seconds < 2.0


def test_stream_shorter_than_declared_refused(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    members = members_of(path)
    good = dict(members)["layers/0/weight.npy"]
    _patch_directory_sizes(path, "layers/0/weight.npy", file_size=len(good) + 64)
    result, peak, _ = load_measured(path)
    assert isinstance(result, NetworkFileError), result
    assert "layers/0/weight.npy" in str(result)
    assert peak < BOUND


# --------------------------------------------------------------- array headers
def test_npy_header_declaring_a_large_array_is_not_allocated(tmp_path):
    """A 150-byte .npy whose header says 4000x4000 float64 (128 MiB), with a
    manifest that agrees and a matching checksum: numpy would allocate the
    array before finding the data missing. Refused from the header alone."""
    path = make_net().save(tmp_path / "n.hwnet")
    members = members_of(path)
    small = npy_bytes(np.zeros((5, 7)))
    liar = small.replace(b"(5, 7)", b"(4000, 4000)")
    assert len(liar) == len(small) + 6

    def mut(m):
        m["layers"][0]["shape"] = [4000, 4000]
        m["layers"][0]["sha256"] = hashlib.sha256(liar).hexdigest()

    members = refit_manifest(members, mut)
    write_members(path, [(n, liar if n == "layers/0/weight.npy" else d) for n, d in members])
    result, peak, _ = load_measured(path)
    assert isinstance(result, NetworkFileError), result
    assert "layer 0" in str(result)
    assert peak < BOUND, f"peak {peak / 2**20:.1f} MiB"


def test_total_parameter_count_is_limited(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    # the default limit, from the manifest alone (no data needed to refuse)
    write_members(path, refit_manifest(members_of(path), lambda m: m["layers"][0].update(shape=[5000, 5000])))
    result, peak, _ = load_measured(path)
    assert isinstance(result, NetworkFileError) and "parameters" in str(result), result
    assert str(LoadLimits().max_parameters) in str(result)
    assert peak < BOUND
    # a caller's own limit: the valid 4-7-3 network has 5*7 + 8*3 = 59 weights
    ok = make_net().save(tmp_path / "ok.hwnet")
    Network.load(ok, limits=LoadLimits(max_parameters=59))
    with pytest.raises(NetworkFileError, match=r"59 parameters.*limit is 58"):
        Network.load(ok, limits=LoadLimits(max_parameters=58))


# ----------------------------------------------------------- archive structure
def test_member_count_is_limited(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    members = members_of(path) + [(f"junk/{i}", b"") for i in range(3000)]
    write_members(path, members)
    result, peak, seconds = load_measured(path)
    assert isinstance(result, NetworkFileError), result
    assert "members" in str(result) and str(LoadLimits().max_members) in str(result)
    assert peak < BOUND and seconds < 2.0


def test_central_directory_size_checked_before_it_is_parsed(tmp_path):
    """One member with a 60 KiB comment per entry: few members, a large directory."""
    path = make_net().save(tmp_path / "n.hwnet")
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members_of(make_net().save(tmp_path / "m.hwnet")):
            zf.writestr(name, data)
        for i in range(40):
            info = zipfile.ZipInfo(f"pad/{i}")
            info.comment = b"x" * 60000
            zf.writestr(info, b"")
    result, _, _ = load_measured(path)
    assert isinstance(result, NetworkFileError), result
    assert "directory" in str(result)


def test_unexpected_members_refused(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    write_members(path, members_of(path) + [("notes.txt", b"hello")])
    with pytest.raises(NetworkFileError, match=r"unexpected member 'notes.txt'"):
        Network.load(path)


def test_file_size_is_limited(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    size = path.stat().st_size
    Network.load(path, limits=LoadLimits(max_file_bytes=size))
    with pytest.raises(NetworkFileError, match=rf"{size} bytes.*limit is {size - 1}"):
        Network.load(path, limits=LoadLimits(max_file_bytes=size - 1))


# -------------------------------------------------------------------- manifest
def test_manifest_size_is_limited(tmp_path):
    """A 2 MiB manifest (a long list in provenance.extra) is refused before it is
    read; the limit is LoadLimits.max_manifest_bytes (1 MiB)."""
    path = make_net().save(tmp_path / "n.hwnet")
    write_members(path, refit_manifest(members_of(path),
                                       lambda m: m["provenance"]["extra"].update(pad=[0] * (2**20))))
    result, peak, _ = load_measured(path)
    assert isinstance(result, NetworkFileError), result
    assert "manifest.json" in str(result) and str(LoadLimits().max_manifest_bytes) in str(result)
    assert peak < BOUND


def test_manifest_nesting_depth_is_limited(tmp_path):
    path = make_net().save(tmp_path / "n.hwnet")
    deep = 33
    with zipfile.ZipFile(path) as zf:
        text = zf.read("manifest.json").decode()
    text = text.replace('"extra": {}', '"extra": {"deep": ' + "[" * deep + "]" * deep + "}", 1)
    write_members(path, [(n, text.encode() if n == "manifest.json" else d) for n, d in members_of(path)])
    with pytest.raises(NetworkFileError, match=r"nest.*depth"):
        Network.load(path)
    # the same file loads when the caller allows deeper nesting
    Network.load(path, limits=LoadLimits(max_json_depth=40))


def test_limits_themselves_are_checked():
    with pytest.raises(ValueError, match="max_parameters"):
        LoadLimits(max_parameters=0)
    with pytest.raises(ValueError, match="max_members"):
        LoadLimits(max_members=1.5)
