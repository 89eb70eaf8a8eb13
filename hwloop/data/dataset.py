"""`Dataset`: one split of one data set, as plain arrays.

Every loader returns the same small frozen record so that training,
evaluation and the CLI never care where the numbers came from. Feature values
are kept in the data set's own units (Yin-Yang coordinates in [0, 1], pixel
intensities 0..16 or 0..255) together with their nominal range; turning them
into spike times is the job of an `InputEncoding` (see `docs/encoding.md`),
because that mapping belongs to the network, not to the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DatasetError

SPLITS = ("train", "val", "test")


def check_split(split: str, name: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"{name}: unknown split {split!r}; choose one of {', '.join(SPLITS)}")


@dataclass(frozen=True)
class Dataset:
    """One split of a labelled data set.

    ``x`` is float64 of shape (N, n_features), ``y`` int64 of shape (N,) with
    values in ``range(len(classes))``. ``value_min``/``value_max`` are the
    nominal range of every feature (what an encoding maps to its two anchor
    times), not the observed extremes of this split. Both arrays are fresh
    copies owned by this record: every load returns new ones, so a caller
    that changes them in place harms no one else. They stay writable because
    torch warns on (and cannot protect) read-only arrays in ``as_tensor``.
    """

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    value_min: float
    value_max: float

    def __post_init__(self):
        where = f"{self.name}/{self.split}"
        x = np.array(self.x, dtype=np.float64, copy=True)
        y_raw = np.asarray(self.y)
        if y_raw.size and not np.issubdtype(y_raw.dtype, np.integer):
            raise DatasetError(f"{where}: labels must be integers, got dtype {y_raw.dtype}")
        y = np.array(y_raw, dtype=np.int64, copy=True)
        classes = tuple(str(c) for c in self.classes)
        if x.ndim != 2:
            raise DatasetError(f"{where}: x must be 2-D (N, n_features), got shape {x.shape}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DatasetError(f"{where}: y must have shape ({x.shape[0]},), got {y.shape}")
        if len(classes) < 2:
            raise DatasetError(f"{where}: need at least 2 classes, got {classes}")
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise DatasetError(f"{where}: labels must lie in 0..{len(classes) - 1}, got {y.min()}..{y.max()}")
        vmin, vmax = float(self.value_min), float(self.value_max)
        if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
            raise DatasetError(f"{where}: need finite value_min < value_max, got {vmin}, {vmax}")
        if not np.all(np.isfinite(x)):
            raise DatasetError(f"{where}: x contains non-finite values")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "value_min", vmin)
        object.__setattr__(self, "value_max", vmax)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_features(self) -> int:
        """Number of input features per sample."""
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        """Number of samples per class, shape (n_classes,)."""
        return np.bincount(self.y, minlength=self.n_classes)

    def summary(self) -> str:
        """One line: name, split, sizes, value range and samples per class."""
        counts = ", ".join(f"{c}={n}" for c, n in zip(self.classes, self.class_counts()))
        return (
            f"{self.name}/{self.split}: {len(self)} samples x {self.n_features} features "
            f"in [{self.value_min:g}, {self.value_max:g}]; {counts}"
        )
