"""The Yin-Yang data set (Kriener, Göltz & Petrovici 2022), generated on the fly.

Why this data set: it needs no download and trains in seconds, yet it shows a
clear gap between a shallow classifier (about 64 % test accuracy in the
reference results) and one hidden layer (about 98 %), so it tells whether a
deep TTFS network actually uses its hidden layer.

Geometry (all in the unit square): a circle of radius ``R_BIG = 0.5`` centred
at (0.5, 0.5) is cut by an S-shaped curve made of two half circles of radius
``R_BIG/2`` centred at (0.25, 0.5) and (0.75, 0.5). Two dots of radius
``R_SMALL = 0.1`` sit at those two centres. Labels follow the published
generator's integer convention so that per-class numbers stay comparable:

* 0 ``yin``  -- the body below the S-curve (lower half plus the right
  medium disc, minus the dots);
* 1 ``yang`` -- the body above the S-curve (upper half plus the left
  medium disc, minus the dots);
* 2 ``dot``  -- inside either small dot.

Each sample's features are (x, y, 1-x, 1-y). The mirrored copies make the
input symmetric (every sample's features sum to 2), so a point near a corner
is not told apart merely by having all-early or all-late input spikes; the
authors added them so that neuron models without an intrinsic bias can be
trained.

Sampling: classes are balanced *exactly* (counts differ by at most one, the
first ``n % 3`` classes get the extra sample) by rejection sampling: uniform
candidates in the square, drop those outside the circle, classify the rest and
keep, per class, the first ones needed. Candidates are drawn in vectorised
chunks from ``numpy.random.default_rng(seed)``; the order of classes in the
output is a seeded permutation. The points are therefore distributed exactly
as in the reference generator but are not the same points (its generator
draws one candidate at a time from the legacy ``RandomState``).
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from .dataset import Dataset, check_split

NAME = "yinyang"
CLASSES = ("yin", "yang", "dot")
R_BIG = 0.5
R_SMALL = 0.1

#: split -> (size, seed); the seeds are those of the reference generator's
#: README (train 42, validation 41, test 40), so the three splits come from
#: different random streams.
SPLITS = {"train": (5000, 42), "val": (1000, 41), "test": (1000, 40)}

# Share of the square covered by the rarest class (the two dots); sizes the
# first chunk of candidates so that one chunk nearly always suffices.
_P_DOT = 2.0 * np.pi * R_SMALL**2


def classify(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Label (0 yin, 1 yang, 2 dot) of points assumed inside the big circle."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d_left = np.hypot(x - 0.5 * R_BIG, y - R_BIG)  # centre of the left medium disc / dot
    d_right = np.hypot(x - 1.5 * R_BIG, y - R_BIG)
    upper_body = (y > R_BIG) & (d_right > 0.5 * R_BIG)  # upper half minus the right medium disc
    left_bulge = d_left <= 0.5 * R_BIG  # the left medium disc belongs to the upper body
    label = np.where(upper_body | left_bulge, 1, 0)
    dot = (d_left < R_SMALL) | (d_right < R_SMALL)
    return np.where(dot, 2, label).astype(np.int64)


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` class-balanced samples from seed ``seed``: features (n, 4), labels (n,)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise DatasetError(f"{NAME}: sample count must be a positive int, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DatasetError(f"{NAME}: seed must be an int >= 0, got {seed!r}")
    n = int(n)
    rng = np.random.default_rng(int(seed))
    need = np.full(3, n // 3)
    need[: n % 3] += 1

    found: list[list[np.ndarray]] = [[], [], []]
    have = np.zeros(3, dtype=np.int64)
    chunk = int(need.max() / _P_DOT * 1.25) + 256
    while np.any(have < need):
        pts = rng.random((chunk, 2)) * (2.0 * R_BIG)
        inside = np.hypot(pts[:, 0] - R_BIG, pts[:, 1] - R_BIG) <= R_BIG
        pts = pts[inside]
        lab = classify(pts[:, 0], pts[:, 1])
        for c in range(3):
            short = need[c] - have[c]
            if short > 0:
                take = pts[lab == c][:short]
                found[c].append(take)
                have[c] += len(take)

    # Interleave the classes in a seeded random order; within a class keep
    # the order in which candidates were accepted.
    order = rng.permutation(np.repeat(np.arange(3), need))
    xy = np.empty((n, 2))
    for c in range(3):
        xy[order == c] = np.concatenate(found[c])[: need[c]]
    features = np.column_stack([xy[:, 0], xy[:, 1], 1.0 - xy[:, 0], 1.0 - xy[:, 1]])
    return features, order.astype(np.int64)


def load(split: str) -> Dataset:
    check_split(split, NAME)
    size, seed = SPLITS[split]
    x, y = generate(size, seed)
    return Dataset(NAME, split, x, y, CLASSES, value_min=0.0, value_max=1.0)
