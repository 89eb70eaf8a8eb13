"""Spike-train encodings: feature values -> a (T, N, n_inputs) spike raster
for the discrete-time spike-train family (docs/models-cuba.md, section 5).

* `LatencyTrains`: the discrete-time counterpart of the first-spike-time
  family's `InputEncoding`: one spike per feature, at a step linear in its
  value; optionally none for a value at the minimum, and a bias unit.
* `PopulationTrains`: each feature by a population of units with Gaussian
  receptive fields, each firing once (earlier the closer the value is to
  its centre) or not at all.
* `RateTrains`: a value as a regular train of up to ``max_spikes`` spikes.

Defaults per data set (`default_train_encoding`), chosen on the validation
split (docs/models-cuba.md):

* ``yinyang``: population code, 10 units per feature of (x, y, 1-x, 1-y),
  centres 0, 1/9, ..., 1, width 0.1, a unit fires at step 20 (1 - r) for a
  tuning response r >= 0.1, else not; trial 40 steps (40 inputs).
* ``digits``: rate code, brightness b of 0..16 sends round(b / 2) spikes,
  evenly spaced over the first 32 steps; trial 40 steps (64 inputs).
* ``randman``: the data set's own times, one spike per unit at
  floor(u * 100 * 0.5) (`hwloop.data.randman.raster`); trial 100 steps.

A single latency spike per Yin-Yang coordinate (`LatencyTrains`, as the
TTFS family uses) trained to about 81 % in 10 epochs and then collapsed;
the population code reaches 98-99 % (docs/models-cuba.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DatasetError


@dataclass(frozen=True)
class LatencyTrains:
    """One spike per feature at a step linear in its value (see module doc)."""

    n_features: int
    n_steps: int
    first_step: int
    last_step: int
    value_min: float = 0.0
    value_max: float = 1.0
    early_is_max: bool = False
    silent_at_min: bool = False
    bias_step: int | None = None

    def __post_init__(self):
        for name in ("n_features", "n_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DatasetError(f"latency trains: {name} must be a positive int, got {v!r}")
        if not (0 <= self.first_step < self.n_steps and 0 <= self.last_step < self.n_steps):
            raise DatasetError(f"latency trains: first and last step must lie in [0, {self.n_steps}), "
                               f"got {self.first_step}, {self.last_step}")
        if self.bias_step is not None and not (0 <= self.bias_step < self.n_steps):
            raise DatasetError(f"latency trains: bias step must lie in [0, {self.n_steps}), got {self.bias_step}")
        if not self.value_max > self.value_min:
            raise DatasetError("latency trains: value_max must exceed value_min")

    @property
    def n_inputs(self) -> int:
        return self.n_features + (1 if self.bias_step is not None else 0)

    def steps(self, x: np.ndarray) -> np.ndarray:
        """Spike step of every feature (N, n_features); -1 = no spike."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise DatasetError(f"latency trains: expected (N, {self.n_features}) features, got shape {x.shape}")
        u = (np.clip(x, self.value_min, self.value_max) - self.value_min) / (self.value_max - self.value_min)
        if self.early_is_max:
            u = 1.0 - u
        k = np.rint(self.first_step + u * (self.last_step - self.first_step)).astype(np.int64)
        if self.silent_at_min:
            k = np.where(x <= self.value_min, -1, k)
        return k

    def raster(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """(n_steps, N, n_inputs) raster, bias unit last."""
        k = self.steps(x)
        n = k.shape[0]
        r = np.zeros((self.n_steps, n, self.n_inputs), dtype=dtype)
        b, j = np.nonzero(k >= 0)
        r[k[b, j], b, j] = 1.0
        if self.bias_step is not None:
            r[self.bias_step, :, -1] = 1.0
        return r


@dataclass(frozen=True)
class RateTrains:
    """A value as a regular spike train: u = (x - value_min) / (value_max -
    value_min) in [0, 1] sends round(u * max_spikes) spikes, evenly spaced
    over steps [0, window) (the k-th of n spikes at floor((k + 1/2) * window
    / n)); no noise, so a value always gives the same train."""

    n_features: int
    n_steps: int
    window: int
    max_spikes: int
    value_min: float = 0.0
    value_max: float = 1.0

    def __post_init__(self):
        for name in ("n_features", "n_steps", "window", "max_spikes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DatasetError(f"rate trains: {name} must be a positive int, got {v!r}")
        if self.window > self.n_steps or self.max_spikes > self.window:
            raise DatasetError(f"rate trains: need max_spikes <= window <= n_steps, got "
                               f"{self.max_spikes}, {self.window}, {self.n_steps}")
        if not self.value_max > self.value_min:
            raise DatasetError("rate trains: value_max must exceed value_min")

    @property
    def n_inputs(self) -> int:
        return self.n_features

    def counts(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise DatasetError(f"rate trains: expected (N, {self.n_features}) features, got shape {x.shape}")
        u = (np.clip(x, self.value_min, self.value_max) - self.value_min) / (self.value_max - self.value_min)
        return np.rint(u * self.max_spikes).astype(np.int64)

    def raster(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        k = self.counts(x)
        r = np.zeros((self.n_steps, k.shape[0], self.n_features), dtype=dtype)
        for n in range(1, self.max_spikes + 1):
            b, j = np.nonzero(k == n)
            if len(b) == 0:
                continue
            steps = np.floor((np.arange(n) + 0.5) * self.window / n).astype(np.int64)
            r[steps[:, None], b[None, :], j[None, :]] = 1.0
        return r


@dataclass(frozen=True)
class PopulationTrains:
    """Each feature by a population of ``per_feature`` units with Gaussian
    tuning curves (receptive fields): centres evenly spaced over [value_min,
    value_max], width ``sigma`` (in units of the range). Unit m of feature f
    fires once, at step first_step + (1 - r) * (last_step - first_step) with
    r = exp(-(u - c_m)^2 / (2 sigma^2)) its tuning response, or not at all
    where r < ``cutoff``; optionally one bias unit at ``bias_step``. A value
    is then carried by which units fire and when, not by one spike time
    alone."""

    n_features: int
    per_feature: int
    n_steps: int
    first_step: int
    last_step: int
    sigma: float = 0.1
    cutoff: float = 0.1
    value_min: float = 0.0
    value_max: float = 1.0
    bias_step: int | None = None

    def __post_init__(self):
        for name in ("n_features", "per_feature", "n_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DatasetError(f"population trains: {name} must be a positive int, got {v!r}")
        if not (0 <= self.first_step <= self.last_step < self.n_steps):
            raise DatasetError(f"population trains: need 0 <= first_step <= last_step < {self.n_steps}")
        if not (self.sigma > 0 and 0 <= self.cutoff < 1):
            raise DatasetError("population trains: need sigma > 0 and 0 <= cutoff < 1")
        if not self.value_max > self.value_min:
            raise DatasetError("population trains: value_max must exceed value_min")

    @property
    def n_inputs(self) -> int:
        return self.n_features * self.per_feature + (1 if self.bias_step is not None else 0)

    def steps(self, x: np.ndarray) -> np.ndarray:
        """Spike step of every unit (N, n_features * per_feature), -1 = none;
        units of feature 0 first."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise DatasetError(f"population trains: expected (N, {self.n_features}) features, got shape {x.shape}")
        u = (np.clip(x, self.value_min, self.value_max) - self.value_min) / (self.value_max - self.value_min)
        centres = (np.linspace(0.0, 1.0, self.per_feature) if self.per_feature > 1 else np.array([0.5]))
        r = np.exp(-((u[:, :, None] - centres[None, None, :]) ** 2) / (2 * self.sigma**2))
        k = np.rint(self.first_step + (1.0 - r) * (self.last_step - self.first_step)).astype(np.int64)
        k = np.where(r >= self.cutoff, k, -1)
        return k.reshape(x.shape[0], -1)

    def raster(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        k = self.steps(x)
        n, m = k.shape
        r = np.zeros((self.n_steps, n, self.n_inputs), dtype=dtype)
        b, j = np.nonzero(k >= 0)
        r[k[b, j], b, j] = 1.0
        if self.bias_step is not None:
            r[self.bias_step, :, -1] = 1.0
        return r


def default_train_encoding(name: str):
    """The documented spike-train encoding of a data set (None for randman,
    whose features already are spike times: use `randman.raster`)."""
    key = name.strip().lower()
    if key == "yinyang":
        return PopulationTrains(n_features=4, per_feature=10, n_steps=40, first_step=0, last_step=20, sigma=0.1,
                                cutoff=0.1)
    if key == "digits":
        return RateTrains(n_features=64, n_steps=40, window=32, max_spikes=8, value_min=0.0, value_max=16.0)
    if key == "randman":
        return None
    raise DatasetError(f"no spike-train encoding for data set {name!r}; known: yinyang, digits, randman")
