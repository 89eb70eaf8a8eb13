"""Bounded, typed reading of `.hwnet` archives (the container under `Network.load`).

A network file comes from anywhere, so nothing in it is trusted before it is
checked, and every check that guards memory happens *before* the memory is
allocated:

* the file: a regular file no larger than ``LoadLimits.max_file_bytes``;
* the zip directory: its size and entry count are read from the end record
  and checked before `zipfile` parses the directory; then every member name
  must be unique (a second ``manifest.json`` used to win silently);
* members: stored or deflated, not encrypted, the declared (uncompressed) size
  checked against what the member may hold, and the bytes counted again while
  they are decompressed (a stream that is longer or shorter than its directory
  entry says is refused; the CRC is checked at the end);
* the manifest: at most ``max_manifest_bytes``, nesting at most
  ``max_json_depth`` (scanned before parsing), no duplicate keys, no
  ``NaN``/``Infinity`` and no number that overflows to infinity; non-finite
  values become `NonFinite` markers so that the field check can name the field;
* weight arrays: the ``.npy`` header is parsed on its own, and its dtype and
  shape are checked against the manifest before an array exists.

Every problem is a `FormatProblem` (container) or a `FieldError` (a manifest
field); `hwloop.Network.load` turns both into one `NetworkFileError` line that
names the file. The limits are documented in ``docs/network-format.md``.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, fields
from typing import Any, Iterable

import numpy as np

MiB = 2**20


@dataclass(frozen=True)
class LoadLimits:
    """Resource limits `hwloop.Network.load` enforces before it allocates.

    The defaults admit any network up to 16 777 216 weights (128 MiB of
    float64) in up to 256 layers; pass your own to `Network.load` to read
    larger files or to be stricter. Every field must be an integer >= 1
    (``ValueError`` otherwise).
    """

    #: size of the archive on disk
    max_file_bytes: int = 256 * MiB
    #: entries in the zip directory (members and folder entries)
    max_members: int = 1024
    #: size of the zip central directory, read before it is parsed
    max_directory_bytes: int = 1 * MiB
    #: uncompressed size of manifest.json
    max_manifest_bytes: int = 1 * MiB
    #: nesting depth of manifest.json (objects and lists)
    max_json_depth: int = 32
    #: number of layers
    max_layers: int = 256
    #: weights of all layers together
    max_parameters: int = 2**24

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LoadLimits.{f.name} must be an integer >= 1, got {value!r}")


class FormatProblem(Exception):
    """The archive, a member or the manifest's syntax is unacceptable (message says why)."""


class FieldError(ValueError):
    """A manifest field has the wrong type or value; ``field`` is its path,
    e.g. ``layers[0].neuron.options.i0``."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"field '{field}' {problem}" if field else f"top level {problem}")


class NonFinite:
    """Stands in for a JSON ``NaN``/``Infinity``/``-Infinity`` or a number that
    overflows a float (``1e400``), so the field check can name the field."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


# ---------------------------------------------------------------- manifest JSON
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def json_depth(text: str) -> int:
    """Deepest nesting of objects and lists in JSON text, without parsing it
    (strings are removed first, so brackets inside them do not count)."""
    bare = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    if not bare:
        return 0
    b = np.frombuffer(bare, dtype=np.uint8)
    step = np.zeros(len(b), dtype=np.int8)  # +1 at [ {, -1 at ] }; small dtypes keep this ~6 bytes/char
    step[(b == 0x5B) | (b == 0x7B)] = 1
    step[(b == 0x5D) | (b == 0x7D)] = -1
    return int(max(0, np.cumsum(step, dtype=np.int32).max()))


def _float_or_marker(text: str):
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text)


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise FormatProblem(f"manifest.json has a duplicate key {key!r}")
        out[key] = value
    return out


def parse_manifest(data: bytes, limits: LoadLimits) -> Any:
    """UTF-8 JSON text -> Python values; `FormatProblem` on bad syntax, too deep
    nesting or duplicate keys. Non-finite numbers come back as `NonFinite`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatProblem(f"manifest.json is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    depth = json_depth(text)
    if depth > limits.max_json_depth:
        raise FormatProblem(f"manifest.json nests {depth} levels deep; the limit is depth {limits.max_json_depth}")
    try:
        return json.loads(text, parse_constant=NonFinite, parse_float=_float_or_marker,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise FormatProblem(f"manifest.json is not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise FormatProblem(f"manifest.json is not valid JSON ({exc})") from None


# --------------------------------------------------------- typed field access
def describe(value: Any) -> str:
    """A short, safe rendering of a JSON value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, NonFinite):
        return value.text
    if isinstance(value, float) and not math.isfinite(value):
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, str):
        text = repr(value if len(value) <= 40 else value[:37] + "...")
        return f"the string {text}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def obj(value: Any, path: str, required: Iterable[str] = (), optional: Iterable[str] = ()) -> dict:
    """``value`` as a JSON object with these keys; unknown keys refused."""
    if not isinstance(value, dict):
        raise FieldError(path, f"must be an object, got {describe(value)}")
    required, optional = tuple(required), tuple(optional)
    for key in required:
        if key not in value:
            raise FieldError(join(path, key), "is missing")
    unknown = [k for k in value if k not in required and k not in optional]
    if unknown:
        raise FieldError(path, f"has an unknown key {unknown[0]!r} (known: {', '.join(required + optional)})")
    return value


def mapping(value: Any, path: str) -> dict:
    """``value`` as a JSON object with any keys (options, accuracy, extra)."""
    if not isinstance(value, dict):
        raise FieldError(path, f"must be an object, got {describe(value)}")
    return value


def join(path: str, key: str | int) -> str:
    """Field path of ``key`` inside ``path``: ``a.b``, ``a[3]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def number(value: Any, path: str, *, gt: float | None = None, ge: float | None = None) -> float:
    """A finite JSON number (not a boolean) as a float, optionally > gt or >= ge."""
    if isinstance(value, NonFinite):
        raise FieldError(path, f"must be a finite number, got {value.text}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(path, f"must be a number, got {describe(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise FieldError(path, f"must be a finite number, got {describe(value)}") from None
    if not math.isfinite(out):
        raise FieldError(path, f"must be a finite number, got {describe(value)}")
    if gt is not None and not out > gt:
        raise FieldError(path, f"must be > {gt:g}, got {describe(value)}")
    if ge is not None and not out >= ge:
        raise FieldError(path, f"must be >= {ge:g}, got {describe(value)}")
    return out


def integer(value: Any, path: str, *, ge: int | None = None, le: int | None = None) -> int:
    """A JSON integer (not a boolean, not 4.0) within [ge, le]."""
    if isinstance(value, NonFinite):
        raise FieldError(path, f"must be a finite integer, got {value.text}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(path, f"must be an integer, got {describe(value)}")
    if ge is not None and value < ge:
        raise FieldError(path, f"must be >= {ge}, got {describe(value)}")
    if le is not None and value > le:
        raise FieldError(path, f"must be <= {le}, got {describe(value)}")
    return value


def string(value: Any, path: str, choices: Iterable[str] | None = None) -> str:
    """A JSON string, optionally one of ``choices``."""
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, got {describe(value)}")
    if choices is not None:
        choices = tuple(choices)
        if value not in choices:
            raise FieldError(path, f"must be one of {', '.join(choices)}; got {describe(value)}")
    return value


def boolean(value: Any, path: str) -> bool:
    """JSON true or false."""
    if not isinstance(value, bool):
        raise FieldError(path, f"must be true or false, got {describe(value)}")
    return value


def array(value: Any, path: str, *, min_len: int = 0, max_len: int | None = None) -> list:
    """A JSON list with a length in [min_len, max_len]."""
    if not isinstance(value, list):
        raise FieldError(path, f"must be a list, got {describe(value)}")
    if len(value) < min_len:
        raise FieldError(path, f"must have at least {min_len} entries, got {len(value)}")
    if max_len is not None and len(value) > max_len:
        raise FieldError(path, f"must have at most {max_len} entries, got {len(value)}")
    return value


def plain_json(value: Any, path: str) -> Any:
    """Any JSON value with every number finite (free-form fields such as
    ``provenance.extra``); names the first non-finite one. Depth is bounded by
    `parse_manifest`, so the recursion is too."""
    keys = _first_non_finite(value)
    if keys is None:
        return value
    where = path
    for k in keys:
        where = join(where, k)
    bad = _at(value, keys)
    if isinstance(bad, (NonFinite, float)):
        raise FieldError(where, f"must be finite, got {describe(bad)}")
    raise FieldError(where, f"must be a JSON value, got {describe(bad)}")


_SCALARS = (int, str, bool, type(None))


def _first_non_finite(value: Any) -> list | None:
    # allocation-free on the way down (a list of a million numbers costs one
    # pass and no memory); the path is built only when something is found
    t = type(value)
    if t in _SCALARS:
        return None
    if t is float:
        return None if value - value == 0 else []  # inf - inf and nan - nan are nan
    if t is dict:
        items = value.items()
    elif t is list:
        items = enumerate(value)
    else:
        return []  # NonFinite, or something that is no JSON value at all
    for k, v in items:
        tv = type(v)
        if tv in _SCALARS or (tv is float and v - v == 0):
            continue
        below = _first_non_finite(v)
        if below is not None:
            return [k, *below]
    return None


def _at(value: Any, keys: list) -> Any:
    for k in keys:
        value = value[k]
    return value


# ------------------------------------------------------------------ the archive
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")

#: exceptions zipfile and zlib raise on damaged archives
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
               struct.error, NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError,
               KeyError, IndexError)

_READ_CHUNK = 1 * MiB


def directory_extent(fh, size: int) -> tuple[int, int] | None:
    """(entries, bytes) of the zip central directory as `zipfile` will read it:
    the end record (and a zip64 end record before it), found the same way
    `zipfile` finds them. None if there is no end record."""
    tail_len = min(size, _EOCD.size + (1 << 16))
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    if len(tail) >= _EOCD.size and tail[-_EOCD.size:-_EOCD.size + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0":
        start = len(tail) - _EOCD.size
    else:
        start = tail.rfind(b"PK\x05\x06")
        if start < 0 or start + _EOCD.size > len(tail):
            return None
    rec = _EOCD.unpack_from(tail, start)
    entries, cd_bytes = rec[4], rec[5]
    eocd_at = size - len(tail) + start
    if eocd_at >= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size:
        fh.seek(eocd_at - _ZIP64_LOCATOR.size)
        if fh.read(4) == b"PK\x06\x07":
            fh.seek(eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size)
            raw = fh.read(_ZIP64_EOCD.size)
            if len(raw) == _ZIP64_EOCD.size and raw[:4] == b"PK\x06\x06":
                z = _ZIP64_EOCD.unpack(raw)
                entries, cd_bytes = max(entries, z[6], z[7]), z[8]
    return entries, cd_bytes


class Archive:
    """An opened `.hwnet` zip whose directory has passed the limits."""

    def __init__(self, path: str | os.PathLike, limits: LoadLimits):
        self.limits = limits
        try:
            self._fh = open(path, "rb")
        except OSError as exc:
            raise FormatProblem(f"cannot open: {exc.strerror or exc}") from None
        try:
            self._open()
        except BaseException:
            self._fh.close()
            raise

    def _open(self) -> None:
        limits = self.limits
        st = os.fstat(self._fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FormatProblem("not a regular file")
        if st.st_size > limits.max_file_bytes:
            raise FormatProblem(f"file is {st.st_size} bytes; the limit is {limits.max_file_bytes} bytes")
        try:
            extent = directory_extent(self._fh, st.st_size)
        except OSError as exc:
            raise FormatProblem(f"cannot read: {exc}") from None
        if extent is None:
            raise FormatProblem("not an hwloop network file (not a zip archive, or truncated)")
        entries, cd_bytes = extent
        if entries > limits.max_members:
            raise FormatProblem(f"archive declares {entries} members; the limit is {limits.max_members}")
        if cd_bytes > limits.max_directory_bytes:
            raise FormatProblem(f"zip directory is {cd_bytes} bytes; the limit is {limits.max_directory_bytes}")
        self._fh.seek(0)
        try:
            self.zip = zipfile.ZipFile(self._fh, "r")
        except zipfile.BadZipFile:
            raise FormatProblem("not an hwloop network file (not a zip archive, or truncated)") from None
        except _ZIP_ERRORS as exc:
            raise FormatProblem(f"archive is corrupt ({type(exc).__name__}: {exc})") from None
        infos = self.zip.infolist()
        if len(infos) > limits.max_members:
            raise FormatProblem(f"archive holds {len(infos)} members; the limit is {limits.max_members}")
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.filename in self.members:
                raise FormatProblem(f"duplicate member {info.filename!r} (an archive may hold each name once)")
            self.members[info.filename] = info

    def close(self) -> None:
        """Close the archive and its file."""
        try:
            if hasattr(self, "zip"):
                self.zip.close()
        finally:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def folders(self) -> set[str]:
        """Names of folder entries (``layers/``, as ``zip -r`` writes them)."""
        return {n for n, i in self.members.items() if n.endswith("/") and i.file_size == 0}

    def read(self, name: str, max_bytes: int, bound: str) -> bytearray:
        """The member's bytes, at most ``max_bytes`` (``bound`` says where that
        limit comes from): checked against the directory before reading and
        counted again while decompressing."""
        info = self.members.get(name)
        if info is None:
            raise FormatProblem(f"missing {name}" if name == "manifest.json" else f"member {name!r} is missing")
        if info.flag_bits & 0x1:
            raise FormatProblem(f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FormatProblem(f"member {name!r} uses compression method {info.compress_type}; "
                                "a network file uses stored (0) or deflated (8) members")
        if info.file_size > max_bytes:
            raise FormatProblem(f"member {name!r} declares {info.file_size} bytes; the limit is {max_bytes} ({bound})")
        out = bytearray()
        try:
            with self.zip.open(info) as fh:
                while len(out) <= info.file_size:
                    chunk = fh.read(min(_READ_CHUNK, info.file_size + 1 - len(out)))
                    if not chunk:
                        break
                    out += chunk
        except zipfile.BadZipFile as exc:
            raise FormatProblem(f"member {name!r} is corrupt ({exc})") from None
        except _ZIP_ERRORS as exc:
            raise FormatProblem(f"member {name!r} is corrupt ({type(exc).__name__}: {exc})") from None
        if len(out) != info.file_size:
            raise FormatProblem(f"member {name!r} holds {len(out)} bytes but its directory entry "
                                f"declares {info.file_size}")
        return out


# ----------------------------------------------------------------- .npy arrays
#: longest .npy header accepted (numpy writes 118 bytes for a 2-D float64 array)
MAX_NPY_HEADER = 4096
_NPY_DTYPES = {np.dtype(t) for t in ("<f8", ">f8", "<f4", ">f4", "<f2", ">f2")}


def npy_array(data: bytearray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """The array in ``.npy`` bytes, which must have exactly ``shape``, a float
    dtype and no trailing bytes. The header is checked before any array is
    made; the array is a view of ``data``."""
    head = io.BytesIO(bytes(data[:MAX_NPY_HEADER + 16]))
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            got_shape, fortran, dtype = np.lib.format.read_array_header_1_0(head, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            got_shape, fortran, dtype = np.lib.format.read_array_header_2_0(head, max_header_size=MAX_NPY_HEADER)
        else:
            raise FormatProblem(f"{what} is .npy version {version[0]}.{version[1]}; 1.0 and 2.0 are read")
    except FormatProblem:
        raise
    except Exception as exc:  # numpy raises ValueError, SyntaxError, ... on bad headers
        raise FormatProblem(f"{what} is not a valid .npy array ({type(exc).__name__}: {exc})") from None
    if dtype not in _NPY_DTYPES:
        raise FormatProblem(f"{what} has dtype {dtype}; a weight is float64 (or float32/float16)")
    if tuple(got_shape) != tuple(shape):
        raise FormatProblem(f"{what} header says shape {list(got_shape)} but the manifest says {list(shape)}")
    offset = head.tell()
    count = math.prod(shape)
    need = count * dtype.itemsize
    if len(data) - offset != need:
        raise FormatProblem(f"{what} holds {len(data) - offset} data bytes; shape {list(shape)} of {dtype} "
                            f"needs {need}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")
