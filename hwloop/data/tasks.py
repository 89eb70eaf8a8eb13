"""Generated spike-train tasks (nothing downloaded, everything from a seed).

* `delayed_xor`: a task that needs memory. Two cues separated by a silent
  delay; the label is the XOR of the two cue bits and is read out after the
  second cue. A feed-forward network forgets the first cue within a few
  membrane time constants; only a network with memory (recurrence) can
  solve it. See docs/models-cuba.md, section 6.
* `pattern_task`: the SuperSpike target task: frozen Poisson input spike
  trains and a fixed random target raster of many output neurons over about
  a second (docs/superspike.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DatasetError


@dataclass(frozen=True)
class DelayedXor:
    """Parameters of the delayed-memory XOR task (steps of the network's dt).

    Inputs: 4 groups of ``group`` units: A0, A1, B0, B1. Bit a is shown
    during steps [0, cue) by group A_a firing with probability ``p_cue`` per
    step and unit; then ``delay`` silent steps; then bit b during
    [cue + delay, 2 cue + delay) by group B_b; then the response window of
    ``response`` steps, in which the readout is read. Every unit also fires
    with probability ``p_noise`` per step throughout. Label: a XOR b.
    """

    group: int = 10
    cue: int = 10
    delay: int = 50
    response: int = 20
    p_cue: float = 0.3
    p_noise: float = 0.005

    @property
    def n_steps(self) -> int:
        return 2 * self.cue + self.delay + self.response

    @property
    def n_inputs(self) -> int:
        return 4 * self.group

    @property
    def response_window(self) -> tuple[int, int]:
        return self.n_steps - self.response, self.n_steps


def delayed_xor(n: int, seed: int, task: DelayedXor = DelayedXor(), dtype=np.float32):
    """``n`` samples: raster (T, n, 4 * group), labels (n,), bits (n, 2)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DatasetError(f"delayed_xor: sample count must be a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    bits = np.stack([np.arange(n) % 2, (np.arange(n) // 2) % 2], axis=1)  # balanced
    bits = bits[rng.permutation(n)]
    T, g = task.n_steps, task.group
    r = (rng.random((T, n, 4 * g)) < task.p_noise).astype(dtype)
    cue_a = slice(0, task.cue)
    cue_b = slice(task.cue + task.delay, 2 * task.cue + task.delay)
    for which, window, offset in ((0, cue_a, 0), (1, cue_b, 2 * g)):
        for bit in (0, 1):
            idx = np.flatnonzero(bits[:, which] == bit)
            units = slice(offset + bit * g, offset + (bit + 1) * g)
            fire = rng.random((window.stop - window.start, len(idx), g)) < task.p_cue
            part = r[window]  # a view: (cue steps, n, inputs)
            part[:, idx, units] = np.maximum(part[:, idx, units], fire.astype(dtype))
    labels = (bits[:, 0] ^ bits[:, 1]).astype(np.int64)
    return r, labels, bits


@dataclass(frozen=True)
class PatternTask:
    """The SuperSpike pattern task: ``n_in`` inputs firing frozen Poisson
    trains at ``input_rate`` (per unit of time), and a fixed random target
    raster for ``n_out`` outputs: each output fires ``spikes_per_output``
    times at uniformly random times in [margin, duration - margin), at least
    ``min_isi`` apart. Times in the unit of ``dt`` (ms by default)."""

    n_in: int = 100
    n_out: int = 50
    duration: float = 1000.0
    dt: float = 1.0
    input_rate: float = 0.005  # 5 Hz in spikes per ms
    spikes_per_output: int = 4
    min_isi: float = 50.0
    margin: float = 50.0

    @property
    def n_steps(self) -> int:
        return int(round(self.duration / self.dt))


def pattern_task(task: PatternTask = PatternTask(), seed: int = 0, dtype=np.float64):
    """Frozen input raster (T, n_in) and target raster (T, n_out)."""
    rng = np.random.default_rng(seed)
    T = task.n_steps
    inputs = (rng.random((T, task.n_in)) < task.input_rate * task.dt).astype(dtype)
    target = np.zeros((T, task.n_out), dtype=dtype)
    lo, hi = int(task.margin / task.dt), T - int(task.margin / task.dt)
    gap = int(np.ceil(task.min_isi / task.dt))
    if hi - lo < task.spikes_per_output * gap:
        raise DatasetError("pattern_task: the trial is too short for that many spikes at that spacing")
    for j in range(task.n_out):
        while True:
            k = np.sort(rng.integers(lo, hi, size=task.spikes_per_output))
            if np.all(np.diff(k) >= gap):
                break
        target[k, j] = 1.0
    return inputs, target
