"""scikit-learn's 8x8 handwritten digits, split into train / val / test.

Why this data set: it ships inside scikit-learn (no download), has 64 inputs
and 10 classes, so it exercises wider layers and more outputs than Yin-Yang
while still training on a laptop in a minute.

The 1797 images have integer pixel values 0..16 (0 = background). They are
split by class-stratified sampling with a fixed seed (`SEED`) into
`SIZES` = train 1077 / val 360 / test 360: each class contributes to val and
test in proportion to its size (largest-remainder rounding, so the totals are
exact), the rest is train. Within a split the samples keep the order of
`sklearn.datasets.load_digits`.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import DatasetError
from .dataset import Dataset, check_split

NAME = "digits"
CLASSES = tuple(str(d) for d in range(10))
VALUE_MIN = 0.0
VALUE_MAX = 16.0
SEED = 0
SIZES = {"train": 1077, "val": 360, "test": 360}


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError(
            f"{NAME}: needs scikit-learn (pip install scikit-learn); it ships the 8x8 digits"
        ) from None
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def stratified_split(y: np.ndarray, sizes: dict[str, int], seed: int, rest: str = "train") -> dict[str, np.ndarray]:
    """Indices of each split: ``sizes`` fixes every split but ``rest``, which
    takes what is left. Each class is shared out in proportion to its size.

    Per split, class quotas are ``size * n_class / n`` rounded down, and the
    missing units go to the classes with the largest remainders (lowest class
    first on ties), so the split sizes are exact and each class's share is
    within one sample of proportional.
    """
    y = np.asarray(y)
    n = len(y)
    classes, counts = np.unique(y, return_counts=True)
    fixed = {k: int(v) for k, v in sizes.items() if k != rest}
    if any(v < 0 for v in fixed.values()) or sum(fixed.values()) > n:
        raise DatasetError(f"split sizes {fixed} do not fit {n} samples")
    quotas = {}
    room = counts.astype(np.int64)  # samples of each class not yet given to a split
    for name, size in fixed.items():
        exact = size * counts / n
        q = np.minimum(np.floor(exact).astype(np.int64), room)
        short = size - int(q.sum())
        # largest remainders first, among classes that still have a sample to give
        # (split by split alone, two small splits could both claim a class's last one)
        order = [i for i in np.argsort(-(exact - q), kind="stable") if q[i] < room[i]]
        if short > len(order):
            raise DatasetError(f"split sizes {fixed} do not fit the class counts {counts.tolist()}")
        q[order[:short]] += 1
        quotas[name] = q
        room = room - q
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {name: [] for name in list(fixed) + [rest]}
    for ci, c in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for name in fixed:
            k = int(quotas[name][ci])
            out[name].append(idx[start : start + k])
            start += k
        if start > len(idx):
            raise DatasetError(f"split sizes {fixed} leave class {c!r} short of samples")
        out[rest].append(idx[start:])
    return {name: np.sort(np.concatenate(parts)) for name, parts in out.items()}


@functools.lru_cache(maxsize=1)
def _split_indices() -> dict[str, np.ndarray]:
    _, y = _raw()
    return stratified_split(y, SIZES, SEED)


def load(split: str) -> Dataset:
    check_split(split, NAME)
    x, y = _raw()
    idx = _split_indices()[split]
    return Dataset(NAME, split, x[idx], y[idx], CLASSES, value_min=VALUE_MIN, value_max=VALUE_MAX)
