"""Spike-train encodings: feature values -> a (T, N, n_inputs) spike raster
for the discrete-time spike-train family (docs/models-cuba.md, section 5).

`LatencyTrains` is the discrete-time counterpart of the first-spike-time
family's `InputEncoding`: each feature sends one spike, at a step that moves
linearly with its value between ``first_step`` (the most salient value) and
``last_step``; optionally a value at the minimum sends none (black pixels),
and optionally one extra bias unit fires at ``bias_step`` in every sample.

Defaults per data set (`default_train_encoding`):

* ``yinyang``: (x, y, 1-x, 1-y) plus a bias unit; coordinate 0 at step 0,
  coordinate 1 at step 60, bias at step 0; trial 100 steps. The mirrored
  inputs and the bias play the same part as in the TTFS encoding.
* ``digits``: 64 pixels, brightness 16 at step 0, brightness 1 at step 30,
  black pixels silent; trial 50 steps.
* ``randman``: the data set's own times, one spike per unit at
  floor(u * 100 * 0.5) (`hwloop.data.randman.raster`); trial 100 steps.
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


def default_train_encoding(name: str) -> LatencyTrains | None:
    """The documented spike-train encoding of a data set (None for randman,
    whose features already are spike times: use `randman.raster`)."""
    key = name.strip().lower()
    if key == "yinyang":
        return LatencyTrains(n_features=4, n_steps=100, first_step=0, last_step=60, bias_step=0)
    if key == "digits":
        return LatencyTrains(n_features=64, n_steps=50, first_step=0, last_step=30, value_min=0.0,
                             value_max=16.0, early_is_max=True, silent_at_min=True)
    if key == "randman":
        return None
    raise DatasetError(f"no spike-train encoding for data set {name!r}; known: yinyang, digits, randman")
