"""Randman: spike-timing classification on smooth random manifolds (Zenke &
Vogels 2021), generated from a seed, nothing downloaded.

Each class is its own random smooth manifold of dimension ``dim_manifold``
embedded in ``n_units`` dimensions. Embedding coordinate m of a manifold is a
product over the manifold's dimensions d of a random 1-D function

    f_md(x) = sum_{k=0}^{K-1} a_mdk / (k+1)^alpha * sin(2 pi (k x c_mdk + p_mdk)),

with a, c, p drawn uniformly from [0, 1) and a_md0 = 0 (no constant offset);
``alpha`` sets the smoothness (the power spectrum falls off as k^-alpha) and
K = min(ceil(prec^(-1/alpha)), 1000) frequencies are kept (prec = 1e-3).
A sample of class c is a point x drawn uniformly from [0, 1)^dim_manifold,
mapped through class c's manifold; each coordinate is min-max standardised
over that class's samples to [0, 1) and becomes the spike time of one input
unit: unit m fires exactly once, at step floor(u_m * n_steps * step_frac).
So the information is in the relative timing of the spikes only (every
sample has the same spike count per unit).

This follows the definition of the original generator (fzenke/randman and
stork's ``make_tempo_randman``), written anew; the random streams differ, so
the manifolds are not the same ones, only drawn the same way.

`STORK` holds the parameters of the public stork example (the shallow SNN
on Randman, which reports 96.3 % test accuracy): 10 classes x 1000 samples,
20 units, 100 steps, spikes in the first half of the trial (step_frac 0.5),
1-D manifolds, alpha = 1, one spike per unit, split 80 / 10 / 10 in the
generator's (shuffled) order. Features of a `Dataset` are the standardised
times u in [0, 1) (one per unit, value range [0, 1]); `raster` turns them
into the (T, N, n_units) spike raster a spike-train network reads.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..fileio import atomic_path
from .dataset import Dataset, check_split

NAME = "randman"
PREC = 1e-3
MAX_FREQUENCIES = 1000
_EPS = 1e-7  # as in the original standardisation: u = (y - min) / (max - min + eps) < 1


@dataclass(frozen=True)
class RandmanSpec:
    """Everything that fixes a Randman data set."""

    n_classes: int = 10
    n_units: int = 20
    n_steps: int = 100
    step_frac: float = 0.5
    dim_manifold: int = 1
    alpha: float = 1.0
    samples_per_class: int = 1000
    seed: int = 1
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def validate(self) -> None:
        for name in ("n_classes", "n_units", "n_steps", "dim_manifold", "samples_per_class"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DatasetError(f"{NAME}: {name} must be a positive int, got {v!r}")
        if self.n_classes < 2:
            raise DatasetError(f"{NAME}: need at least 2 classes, got {self.n_classes}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise DatasetError(f"{NAME}: alpha must be a finite number > 0, got {self.alpha!r}")
        if not (0 < self.step_frac <= 1):
            raise DatasetError(f"{NAME}: step_frac must lie in (0, 1], got {self.step_frac!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise DatasetError(f"{NAME}: seed must be an int >= 0, got {self.seed!r}")
        if len(self.splits) != 3 or any(f <= 0 for f in self.splits):
            raise DatasetError(f"{NAME}: splits must be three positive fractions, got {self.splits}")

    @property
    def n_frequencies(self) -> int:
        return int(min(math.ceil(PREC ** (-1.0 / self.alpha)), MAX_FREQUENCIES))


#: the public stork example's parameters (see module doc)
STORK = RandmanSpec()


def _manifold(rng: np.random.Generator, spec: RandmanSpec, x: np.ndarray) -> np.ndarray:
    """One random manifold evaluated at points x (n, dim) -> (n, n_units)."""
    K = spec.n_frequencies
    params = rng.random((spec.n_units, spec.dim_manifold, 3, K))
    params[:, :, 0, 0] = 0.0
    scale = 1.0 / (np.arange(K, dtype=np.float64) + 1.0) ** spec.alpha
    return _evaluate(np.ascontiguousarray(x, dtype=np.float64), params, scale)


def _evaluate_py(x, params, scale):
    n, dim = x.shape
    n_units, K = params.shape[0], params.shape[3]
    y = np.ones((n, n_units))
    two_pi = 2.0 * np.pi
    for m in range(n_units):
        for d in range(dim):
            for q in range(n):
                acc = 0.0
                for k in range(K):
                    acc += params[m, d, 0, k] * scale[k] * np.sin(
                        two_pi * (k * x[q, d] * params[m, d, 1, k] + params[m, d, 2, k]))
                y[q, m] *= acc
    return y


try:  # the sum has n_units * n * K terms (2e8 for the stork set): compiled, ~1 s
    import numba as _nb

    _evaluate = _nb.njit(cache=True)(_evaluate_py)
except ImportError:  # pragma: no cover
    def _evaluate(x, params, scale):
        k = np.arange(params.shape[3], dtype=np.float64)
        y = np.ones((x.shape[0], params.shape[0]))
        for m in range(params.shape[0]):
            for d in range(x.shape[1]):
                amp, freq, phase = params[m, d, 0] * scale, params[m, d, 1], params[m, d, 2]
                y[:, m] *= np.sin(2.0 * np.pi * (x[:, d, None] * (k * freq)[None, :] + phase[None, :])) @ amp
        return y


#: bump when the generator's output changes, so cached files are not reused
GENERATOR_VERSION = 1


def _cache_file(spec: RandmanSpec) -> Path | None:
    """Where a generated set is kept between processes (the stork set costs
    2e8 sines, seconds on a busy machine): ``$HWLOOP_CACHE_DIR`` or
    ``~/.cache/hwloop``; ``HWLOOP_CACHE_DIR=off`` disables the cache."""
    root = os.environ.get("HWLOOP_CACHE_DIR")
    if root is not None and root.strip().lower() in ("off", "0", "none", ""):
        return None
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hwloop"
    key = hashlib.sha256(json.dumps([GENERATOR_VERSION, dataclasses.astuple(spec)]).encode()).hexdigest()[:16]
    return base / f"randman-{key}.npz"


@functools.lru_cache(maxsize=4)
def _generate_cached(spec: RandmanSpec) -> tuple[np.ndarray, np.ndarray]:
    spec.validate()
    path = _cache_file(spec)
    if path is not None and path.is_file():
        try:
            with np.load(path) as f:
                u, lab = f["u"], f["labels"]
            if u.shape == (spec.n_classes * spec.samples_per_class, spec.n_units):
                u.setflags(write=False)
                lab.setflags(write=False)
                return u, lab
        except (OSError, ValueError, KeyError):
            pass  # unreadable: generate again and overwrite
    u, lab = _generate_now(spec)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, u=u, labels=lab)
        except OSError:
            pass  # a read-only home is no reason to fail
    return u, lab


def _generate_now(spec: RandmanSpec) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    class_seeds = rng.integers(0, 2**63 - 1, size=spec.n_classes)
    feats, labels = [], []
    for c in range(spec.n_classes):
        x = rng.random((spec.samples_per_class, spec.dim_manifold))
        y = _manifold(np.random.default_rng(int(class_seeds[c])), spec, x)
        lo, hi = y.min(axis=0), y.max(axis=0)
        feats.append((y - lo) / (hi - lo + _EPS))
        labels.append(np.full(spec.samples_per_class, c, dtype=np.int64))
    u = np.concatenate(feats)
    lab = np.concatenate(labels)
    order = rng.permutation(len(lab))
    u, lab = u[order], lab[order]
    u.setflags(write=False)
    lab.setflags(write=False)
    return u, lab


def generate(spec: RandmanSpec = STORK) -> tuple[np.ndarray, np.ndarray]:
    """All samples in the generator's shuffled order: standardised spike
    times u (N, n_units) in [0, 1) and labels (N,)."""
    return _generate_cached(spec)


def split_bounds(spec: RandmanSpec, n: int) -> dict[str, tuple[int, int]]:
    """Contiguous train / val / test ranges in the generator's order (each
    fraction of ``n`` rounded down, as stork's ``split_dataset``)."""
    f = np.asarray(spec.splits, dtype=np.float64)
    f = f / f.sum()
    out, start = {}, 0
    for name, frac in zip(("train", "val", "test"), f):
        end = start + int(frac * n)
        out[name] = (start, end)
        start = end
    return out


def load(split: str, spec: RandmanSpec = STORK) -> Dataset:
    check_split(split, NAME)
    u, lab = generate(spec)
    a, b = split_bounds(spec, len(lab))[split]
    classes = tuple(str(c) for c in range(spec.n_classes))
    return Dataset(NAME, split, u[a:b], lab[a:b], classes, value_min=0.0, value_max=1.0)


def spike_steps(u: np.ndarray, spec: RandmanSpec = STORK) -> np.ndarray:
    """Spike step of every unit: floor(u * n_steps * step_frac), int64."""
    u = np.asarray(u, dtype=np.float64)
    if u.size and (u.min() < 0 or u.max() > 1):
        raise DatasetError(f"{NAME}: standardised times must lie in [0, 1]")
    steps = np.floor(u * spec.n_steps * spec.step_frac).astype(np.int64)
    return np.minimum(steps, spec.n_steps - 1)


def raster(u: np.ndarray, spec: RandmanSpec = STORK, dtype=np.float32) -> np.ndarray:
    """The (n_steps, N, n_units) raster: one spike per unit and sample."""
    steps = spike_steps(u, spec)
    n, m = steps.shape
    r = np.zeros((spec.n_steps, n, m), dtype=dtype)
    r[steps, np.arange(n)[:, None], np.arange(m)[None, :]] = 1.0
    return r


def with_seed(seed: int, spec: RandmanSpec = STORK) -> RandmanSpec:
    """The same data set drawn from another seed."""
    return replace(spec, seed=int(seed))
