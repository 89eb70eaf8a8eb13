"""Check a NIR file's declared structure before anything is read into memory.

``nir.read`` loads every dataset of the file into numpy arrays, recursing
into nested groups. A small file can declare far more than it holds (a
chunked, compressed 60000 x 60000 weight is a few kB on disk and 26.8 GiB in
memory), nest groups deeper than Python's recursion limit, or store numbers
of the wrong type. `check_nir_file` walks the HDF5 tree with h5py's metadata
only (shapes and dtypes, no data), iteratively, and refuses such files with a
`NetworkFileError` naming the node and the attribute, *before* ``nir.read``
allocates anything. The limits (documented in docs/interop.md):
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import NetworkFileError

#: elements declared by all datasets of one file together (a 4096 x 8192 weight is 2^25)
MAX_ELEMENTS = 1 << 26
#: bytes declared by all datasets together (64 Mi float64 elements)
MAX_BYTES = 1 << 29
#: groups and datasets in one file
MAX_OBJECTS = 100_000
#: group nesting depth (a flat graph is /node/nodes/<name>/<attr>: depth 4; each nested graph adds 2)
MAX_DEPTH = 16
#: attributes of a node that hold text, not numbers
TEXT_KEYS = {"type", "edges"}


def _where(parts: list[str]) -> str:
    """'node 'fc0', attribute 'weight'' from /node/nodes/fc0/weight (nested graphs: 'g.fc0')."""
    names, i, attr = [], 1, None  # parts[0] is the root group 'node'
    while i < len(parts):
        if parts[i] == "nodes" and i + 1 < len(parts):
            names.append(parts[i + 1])
            i += 2
            attr = None
            continue
        attr = "/".join(parts[i:]) if attr is None else attr
        break
    if not names:
        return f"graph attribute {'/'.join(parts[1:]) or '/'!r}"
    node = ".".join(names)
    return f"node {node!r}, attribute {attr!r}" if attr else f"node {node!r}"


def check_nir_file(path: str | Path) -> None:
    """Raise `NetworkFileError` if the file's declared contents break a limit or a type rule."""
    import h5py  # noqa: PLC0415

    path = Path(path)

    def fail(msg: str) -> NetworkFileError:
        return NetworkFileError(f"{path}: {msg}")

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise fail(f"not a NIR file (not HDF5, or truncated: {exc})") from None
    with f:
        if "node" not in f or not isinstance(f["node"], h5py.Group):
            raise fail("not a valid NIR graph (no 'node' group)")
        elements = nbytes = objects = 0
        stack: list[tuple[h5py.Group, list[str]]] = [(f["node"], ["node"])]
        while stack:
            group, parts = stack.pop()
            if len(parts) > MAX_DEPTH:
                raise fail(f"{_where(parts)}: groups nested deeper than {MAX_DEPTH} levels "
                           f"(limit MAX_DEPTH={MAX_DEPTH})")
            try:
                keys = list(group.keys())
            except Exception as exc:  # noqa: BLE001 - a damaged group table
                raise fail(f"{_where(parts)}: unreadable group ({type(exc).__name__}: {exc})") from None
            objects += len(keys)
            if objects > MAX_OBJECTS:
                raise fail(f"more than {MAX_OBJECTS} groups and datasets (limit MAX_OBJECTS)")
            in_metadata = "metadata" in parts
            for key in keys:
                sub = parts + [key]
                try:
                    obj = group.get(key, getlink=False)
                except Exception as exc:  # noqa: BLE001 - dangling or external link, damaged header
                    raise fail(f"{_where(sub)}: unreadable ({type(exc).__name__}: {exc})") from None
                if isinstance(obj, h5py.Group):
                    stack.append((obj, sub))
                    continue
                if not isinstance(obj, h5py.Dataset):
                    raise fail(f"{_where(sub)}: is neither a group nor a dataset")
                shape = obj.shape
                if shape is None:  # HDF5 null dataspace
                    continue
                n = int(np.prod(shape, dtype=np.float64))
                elements += n
                nbytes += n * max(int(obj.dtype.itemsize), 1)
                if elements > MAX_ELEMENTS or nbytes > MAX_BYTES:
                    raise fail(f"{_where(sub)}: declares shape {tuple(shape)} ({n} elements); with the rest of "
                               f"the file that exceeds the limit of {MAX_ELEMENTS} elements / {MAX_BYTES >> 20} MiB "
                               "per NIR file (checked before reading)")
                kind = obj.dtype.kind
                if kind == "c":
                    raise fail(f"{_where(sub)}: complex values (dtype {obj.dtype}); NIR parameters are real")
                if in_metadata:
                    if kind not in "biufSUO":
                        raise fail(f"{_where(sub)}: metadata of unsupported dtype {obj.dtype}")
                    continue
                if key in TEXT_KEYS and len(sub) >= 2:
                    if kind not in "SUO":
                        raise fail(f"{_where(sub)}: must be text, got dtype {obj.dtype}")
                    continue
                if kind not in "biuf":
                    raise fail(f"{_where(sub)}: must hold real numbers, got dtype {obj.dtype}")
