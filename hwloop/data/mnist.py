"""MNIST from the four standard IDX files in a local folder.

hwloop never downloads anything, so MNIST is for users who already have the
files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; each may also be
gzipped, ``*.gz``, or use the common ``train-images.idx3-ubyte`` spelling).

IDX is simple enough to parse with numpy alone: two zero bytes, a dtype code,
the number of dimensions, one big-endian uint32 per dimension, then the data
in big-endian C order. We check every part of that and raise `DatasetError`
naming the file for anything that does not fit (missing, unreadable gzip,
truncated, trailing bytes, wrong magic, wrong dimensions, image/label count
mismatch, labels outside 0..9), because a silently misread file would train
on garbage.

Splits: ``test`` is the t10k pair. ``train`` and ``val`` both come from the
train pair: ``val`` is its last ``N // 6`` samples, which for the standard
60000-image file is the customary last 10000, and ``train`` the rest (50000).
Smaller files are split in the same proportion.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .dataset import Dataset, check_split

NAME = "mnist"
CLASSES = tuple(str(d) for d in range(10))
VALUE_MIN = 0.0
VALUE_MAX = 255.0
IMAGE_SHAPE = (28, 28)
N_FEATURES = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
VAL_FRACTION_DENOM = 6  # val = last N // 6 of the train file (10000 of 60000)

#: IDX dtype code -> big-endian numpy dtype
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAGIC_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions
MAGIC_LABELS = 0x00000801  # unsigned bytes, 1 dimension

#: split -> (images stem, labels stem)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path}: not a readable gzip file, or truncated ({exc})") from None
    return raw


def read_idx(path: str | os.PathLike, expect_magic: int | None = None, what: str = "") -> np.ndarray:
    """Parse one IDX file (optionally ``.gz``) into a native-endian array.

    With ``expect_magic`` the 4-byte magic number (0, 0, dtype code, number of
    dimensions) must equal it; ``what`` says in the error what was expected.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes, need at least 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise DatasetError(
            f"{path}: wrong magic number 0x{raw[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    code, ndim = raw[2], raw[3]
    magic = int.from_bytes(raw[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise DatasetError(f"{path}: magic number 0x{magic:08x}, expected 0x{expect_magic:08x} for {what}")
    if code not in IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX data type code 0x{code:02x} in magic number 0x{raw[:4].hex()}")
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[code])
    count = int(np.prod(dims, dtype=np.int64))
    need = count * dtype.itemsize
    have = len(raw) - header
    if have < need:
        raise DatasetError(
            f"{path}: truncated: dimensions {dims} need {need} data bytes but the file holds {have}"
        )
    if have > need:
        raise DatasetError(f"{path}: {have - need} unexpected bytes after the data of dimensions {dims}")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    """The file for ``stem`` in ``root``: plain or ``.gz``, dash or dot before ``idx``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        p = root / name
        if p.is_file():
            return p
    raise DatasetError(f"{NAME}: {root / stem} not found (also looked for .gz and '{dotted}')")


def read_pair(root: str | os.PathLike, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of the ``train`` or ``test`` pair."""
    root = Path(root)
    img_stem, lab_stem = FILES[which]
    img_path, lab_path = _find(root, img_stem), _find(root, lab_stem)
    images = read_idx(img_path, MAGIC_IMAGES, "images (unsigned bytes, 3 dimensions)")
    labels = read_idx(lab_path, MAGIC_LABELS, "labels (unsigned bytes, 1 dimension)")
    if images.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(
            f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"MNIST images are {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{img_path} holds {images.shape[0]} images but {lab_path} holds {labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{lab_path}: label {int(labels.max())} outside 0..9")
    return images, labels


def load(split: str, root: str | os.PathLike | None) -> Dataset:
    check_split(split, NAME)
    if root is None:
        raise DatasetError(
            f"{NAME}: no folder given; pass root= (CLI: --data-root) pointing at the IDX files "
            f"{', '.join(s for pair in FILES.values() for s in pair)} (.gz allowed)"
        )
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{NAME}: {root} is not a folder")
    images, labels = read_pair(root, "test" if split == "test" else "train")
    n = images.shape[0]
    if split != "test":
        n_val = n // VAL_FRACTION_DENOM
        sl = slice(n - n_val, n) if split == "val" else slice(0, n - n_val)
        images, labels = images[sl], labels[sl]
    if images.shape[0] == 0:
        raise DatasetError(f"{NAME}/{split}: no samples (the {n} images in {root} are too few for this split)")
    x = images.reshape(images.shape[0], N_FEATURES).astype(np.float64)
    return Dataset(NAME, split, x, labels.astype(np.int64), CLASSES, value_min=VALUE_MIN, value_max=VALUE_MAX)
