"""The checkpoint store: the state a resume needs, in a format of our own
that holds plain numbers and arrays only, with a checksum.

File layout (``checkpoint.ckpt``; all integers little-endian)::

    magic        8 bytes   b"HWLCKPT\\n"
    version      4 bytes   uint32, 1
    header_len   8 bytes   uint64
    header       JSON (UTF-8): {"state": TREE, "arrays": [{"dtype", "shape", "offset", "nbytes"}, ...]}
    blob         the arrays' bytes, one after the other (C order)
    sha256       32 bytes  of everything before it

TREE is JSON (objects, lists, strings, finite numbers, true/false/null) in
which ``{"__array__": i}`` stands for array ``i``. Nothing in the file is
ever executed or unpickled: the worst a crafted file can do is carry
numbers, and the session checks those against its own network and
configuration. The checksum catches damage (a flipped bit, a torn write);
it is no signature: whoever can write the directory can write a valid file,
as they could write ``init.hwnet``.

Two files are kept: ``checkpoint.ckpt`` (the latest) and
``checkpoint.prev.ckpt`` (the one before). Each is written whole to a
temporary file, fsynced and renamed, so a crash or a full disk leaves the
latest good checkpoint in place. A latest file that is damaged is renamed
``checkpoint.ckpt.damaged`` and the session resumes from the previous one;
with neither usable, resume refuses and says why.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import SessionError
from .files import SessionDir, write_file_atomic

MAGIC = b"HWLCKPT\n"
VERSION = 1
_PREFIX = struct.Struct("<8sIQ")
DIGEST = 32
#: the header is a few KiB (configuration, optimiser numbers); never more than this
MAX_HEADER = 1 << 20
MAX_DEPTH = 32
DTYPES = {"<f8": np.float64, "<f4": np.float32, "<i8": np.int64}


class CheckpointDamaged(SessionError):
    """A checkpoint file that cannot be used: not ours, truncated, checksum
    mismatch, or contents that do not fit the session."""


# ---- the format
def encode_checkpoint(state: dict) -> bytes:
    """``state``: a tree of dicts (str keys), lists, str, int, finite float,
    bool, None, numpy arrays and torch tensors."""
    arrays: list[dict] = []
    chunks: list[bytes] = []
    offset = 0

    def walk(v, depth):
        nonlocal offset
        if depth > MAX_DEPTH:
            raise ValueError("checkpoint state nested too deeply")
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            dtype = a.dtype.newbyteorder("<").str if a.dtype.byteorder != "|" else a.dtype.str
            if dtype not in DTYPES:
                raise ValueError(f"checkpoint arrays must be float64, float32 or int64, got {a.dtype}")
            data = a.astype(DTYPES[dtype], copy=False).tobytes()
            arrays.append({"dtype": dtype, "shape": list(a.shape), "offset": offset, "nbytes": len(data)})
            chunks.append(data)
            offset += len(data)
            return {"__array__": len(arrays) - 1}
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise ValueError("checkpoint state keys must be strings")
            return {k: walk(x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, depth + 1) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"checkpoint state holds a non-finite number {v}")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise ValueError(f"checkpoint state cannot hold a {type(v).__name__}")

    tree = walk(state, 0)
    header = json.dumps({"state": tree, "arrays": arrays}, allow_nan=False, separators=(",", ":")).encode()
    body = _PREFIX.pack(MAGIC, VERSION, len(header)) + header + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def _no_constants(name):
    raise ValueError(f"non-finite number {name}")


def decode_checkpoint(data: bytes) -> dict:
    """The state tree, arrays as torch tensors. Raises `CheckpointDamaged`
    naming the problem; allocates nothing beyond ``len(data)`` plus the arrays
    it holds (each checked against the file before it is read)."""
    if len(data) < _PREFIX.size + DIGEST:
        raise CheckpointDamaged(f"truncated ({len(data)} bytes)")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        if data[:2] == b"PK" or data[:1] == b"\x80":
            raise CheckpointDamaged("a pickled (torch.save) checkpoint of an older hwloop; resume no longer "
                                    "unpickles files, which can run code")
        raise CheckpointDamaged("not an hwloop checkpoint")
    if version != VERSION:
        raise CheckpointDamaged(f"checkpoint format version {version}, this hwloop reads {VERSION}")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointDamaged("checksum mismatch (the file was changed or damaged after it was written)")
    if hlen > MAX_HEADER or _PREFIX.size + hlen > len(body):
        raise CheckpointDamaged(f"header length {hlen} does not fit the file")
    try:
        header = json.loads(body[_PREFIX.size:_PREFIX.size + hlen].decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise CheckpointDamaged(f"unreadable header ({type(exc).__name__})") from None
    if not isinstance(header, dict) or set(header) != {"state", "arrays"} or not isinstance(header["arrays"], list):
        raise CheckpointDamaged("header is not {state, arrays}")
    blob = memoryview(body)[_PREFIX.size + hlen:]
    arrays = []
    end = 0
    for i, spec in enumerate(header["arrays"]):
        arrays.append(_read_array(i, spec, blob, end))
        end = spec["offset"] + spec["nbytes"]
    if end != len(blob):
        raise CheckpointDamaged(f"{len(blob) - end} bytes after the last array")

    def walk(v, depth):
        if depth > MAX_DEPTH:
            raise CheckpointDamaged("state nested too deeply")
        if isinstance(v, dict):
            if set(v) == {"__array__"}:
                i = v["__array__"]
                if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(arrays):
                    raise CheckpointDamaged(f"array reference {i!r} out of range")
                return arrays[i]
            return {k: walk(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        return v

    return walk(header["state"], 0)


def _read_array(i: int, spec, blob: memoryview, expected_offset: int) -> torch.Tensor:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "offset", "nbytes"}:
        raise CheckpointDamaged(f"array {i}: malformed description")
    dtype, shape, offset, nbytes = spec["dtype"], spec["shape"], spec["offset"], spec["nbytes"]
    if dtype not in DTYPES:
        raise CheckpointDamaged(f"array {i}: dtype {dtype!r} not allowed")
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape)):
        raise CheckpointDamaged(f"array {i}: bad shape")
    # numpy refuses a shape whose dimensions multiply past its address space even when one
    # of them is 0 (no data), so the product of the non-zero dimensions is bounded too
    if math.prod(max(n, 1) for n in shape) > 2 ** 48:
        raise CheckpointDamaged(f"array {i}: bad shape")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (offset, nbytes)):
        raise CheckpointDamaged(f"array {i}: bad offset or size")
    count = math.prod(shape)
    if offset != expected_offset or nbytes != count * np.dtype(DTYPES[dtype]).itemsize \
            or offset + nbytes > len(blob):
        raise CheckpointDamaged(f"array {i}: declared size does not fit the file")
    a = np.frombuffer(blob[offset:offset + nbytes], dtype=DTYPES[dtype]).reshape(shape).copy()
    return torch.from_numpy(a)


# ---- the store
def file_sha256(path: Path) -> str | None:
    """Hex digest of a file's bytes, None if there is no such file."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SessionError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return h.hexdigest()


class CheckpointStore:
    """The latest and the previous checkpoint of one session."""

    def __init__(self, sd: SessionDir):
        self.sd = sd
        self._last: bytes | None = None  # what `latest` holds now (becomes `previous` on the next save)

    latest = property(lambda self: self.sd.path / "checkpoint.ckpt")
    previous = property(lambda self: self.sd.path / "checkpoint.prev.ckpt")
    damaged = property(lambda self: self.sd.path / "checkpoint.ckpt.damaged")
    legacy = property(lambda self: self.sd.path / "checkpoint.pt")

    def exists(self) -> bool:
        return self.latest.exists() or self.previous.exists()

    def save(self, state: dict) -> None:
        """Write ``state`` as the latest checkpoint; the one it replaces becomes
        the previous. Each file is replaced atomically, so at every instant
        ``latest`` holds a complete checkpoint (the old or the new one)."""
        data = encode_checkpoint(state)
        if self._last is not None:
            write_file_atomic(self.previous, self._last)
        write_file_atomic(self.latest, data)
        self._last = data

    def load(self, check: Callable[[dict], Any], max_bytes: int) -> tuple[Any, Path, list[str]] | None:
        """The newest usable checkpoint: ``(check(state), file, notices)``, or
        None when the session has none. ``check`` turns a state tree into
        what the session needs or raises `CheckpointDamaged`. A damaged latest
        file is set aside and the previous one used; with none usable,
        `SessionError` naming every file and what is wrong with it."""
        if not self.exists():
            if self.legacy.exists():
                raise SessionError(f"{self.legacy}: a pickled checkpoint of an older hwloop; resume no longer "
                                   "unpickles files, which can run code. Start a new session from "
                                   f"{self.sd.latest.name} (hwloop loop --init {self.sd.latest})")
            return None
        problems, notices = [], []
        for path in (self.latest, self.previous):
            if not path.exists():
                problems.append(f"{path.name}: missing")
                continue
            try:
                data = _read_limited(path, max_bytes)
                result = check(decode_checkpoint(data))
            except CheckpointDamaged as exc:
                problems.append(f"{path.name}: {exc}")
                continue
            if path == self.previous:
                if self.latest.exists():
                    try:
                        os.replace(self.latest, self.damaged)
                    except OSError as exc:
                        raise SessionError(f"{self.latest}: damaged ({problems[-1]}), and it cannot be set "
                                           f"aside: {exc.strerror or exc}") from None
                    notices.append(f"{self.latest}: {problems[-1].split(': ', 1)[1]}; kept as {self.damaged.name}, "
                                   f"resuming from {path.name}")
                else:
                    notices.append(f"{self.latest.name} missing; resuming from {path.name}")
            self._last = data
            return result, path, notices
        raise SessionError(f"{self.sd.path}: no usable checkpoint ({'; '.join(problems)}); "
                           f"start a new session from {self.sd.init_net.name} or {self.sd.latest.name}")


def _read_limited(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise CheckpointDamaged(f"{size} bytes, more than the {max_bytes} a checkpoint of this network "
                                        "can hold")
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise CheckpointDamaged(f"cannot read ({exc.strerror or exc})") from None
