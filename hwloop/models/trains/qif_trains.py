"""The discrete-time QIF spike-train neuron (``"qif-trains"``): the neuron the
analog QIF chip learns spike trains with, a peer of the CUBA LIF of
`functional`. docs/models-qif-trains.md.

One step of one neuron, with ``x`` the weighted input of this step
(feed-forward spikes of this step plus the layer's own spikes of the
previous step through the recurrent weights), ``k = dt / tau_mem``::

    a  = 1 if r == 0 else 0                                   # not refractory
    i' = (1 - current_decay) * i + x                          # synaptic current
    v~ = a * (v + k * (v * (v - 1) + i0 + i')) + (1 - a) * v  # Euler step of the QIF
    v~ = max(v~, v_min),  v_min = -1                          # a floor: keeps the Euler step stable
    s  = a * H(v~ - v_peak)                                   # spike, H(0) = 0
    v' = v~ - s * (v~ - v_reset)                              # reset to v_reset
    r' = r - (r > 0) + s * refractory

Initial state ``v = v_rest = (1 - sqrt(1 - 4 i0)) / 2`` (``i0 < 1/4``, the
excitable regime; ``v_rest = 1/2`` is used for ``i0 >= 1/4``, which has no
rest point and oscillates), ``i = 0``, ``r = 0``.

A non-spiking layer (``spiking=False``, the readout) is a leaky integrator
with the CUBA readout's semantics and the QIF's input scale::

    i' = (1 - current_decay) * i + x
    v~ = v + k * (i' - v)        (= (1 - k) v + k i'; no threshold, no reset)

starting at ``v = 0``; ``i0``, ``v_peak``, ``v_reset`` and ``refractory``
are not used by it. (A QIF without reset diverges in finite time above its
unstable point, so it cannot serve as a max-over-time readout.)

The arithmetic lives in `qif_integrate` and `qif_reset` (and the CUBA
`refractory`), operators only, so that they run on torch tensors (the
network forward here, and a step-by-step in-the-loop substitution forward)
as the CUBA pieces do; the floor is written ``v + relu(v_min - v)`` with
``relu`` passed in (``torch.relu`` on tensors, a scalar max elsewhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ...errors import NetworkSpecError
from .functional import Surrogate, _finite, refractory, spike

#: the floor of the membrane (fixed; keeps the explicit Euler step stable)
V_MIN = -1.0
#: the largest dt / tau_mem accepted
MAX_STEP_RATIO = 0.5


def rest_point(i0: float) -> float:
    """The stable rest point (1 - sqrt(1 - 4 i0)) / 2 of the excitable regime
    (i0 < 1/4); 1/2 (the vertex of v(v - 1)) for i0 >= 1/4, which has none."""
    return (1.0 - math.sqrt(1.0 - 4.0 * i0)) / 2.0 if i0 < 0.25 else 0.5


def unstable_point(i0: float) -> float:
    """The unstable fixed point (1 + sqrt(1 - 4 i0)) / 2 (i0 < 1/4); 1/2 otherwise."""
    return (1.0 + math.sqrt(1.0 - 4.0 * i0)) / 2.0 if i0 < 0.25 else 0.5


def check_fields(where: str, dt, current_decay, tau_mem, i0, v_peak, v_reset, refractory, spiking) -> None:
    """Raise `NetworkSpecError` (prefixed with ``where``, naming the field) if
    the parameters of a qif-trains neuron are unusable."""
    dt = _finite("dt", dt, where, low=0.0, strict_low=True)
    _finite("current_decay", current_decay, where, low=0.0, high=1.0)
    tau = _finite("tau_mem", tau_mem, where, low=0.0, strict_low=True)
    if dt / tau > MAX_STEP_RATIO:
        raise NetworkSpecError(f"{where}: dt / tau_mem must be <= {MAX_STEP_RATIO:g} (explicit Euler), "
                               f"got {dt:g} / {tau:g} = {dt / tau:g} (tau_mem too small)")
    i0 = _finite("i0", i0, where)
    vp = _finite("v_peak", v_peak, where)
    vr = _finite("v_reset", v_reset, where)
    if isinstance(refractory, bool) or not isinstance(refractory, int) or refractory < 0:
        raise NetworkSpecError(f"{where}: refractory must be an int >= 0 (steps), got {refractory!r}")
    if not isinstance(spiking, bool):
        raise NetworkSpecError(f"{where}: spiking must be true or false, got {spiking!r}")
    if spiking:
        u = unstable_point(i0)
        if not vp > u:
            raise NetworkSpecError(f"{where}: v_peak must exceed the unstable point {u:g} (i0 = {i0:g}), got {vp!r}")
        if not vr < vp:
            raise NetworkSpecError(f"{where}: v_reset must be < v_peak ({vp:g}), got {vr!r}")


@dataclass(frozen=True)
class QifTrainsParams:
    """Neuron parameters of one discrete-time QIF layer.

    ``dt`` (> 0) the time step and ``tau_mem`` (> 0) the membrane time
    constant, both in the network's time unit, with ``dt / tau_mem <= 0.5``;
    ``current_decay`` in [0, 1] the fraction of synaptic current lost per
    step (as CUBA); ``i0`` the constant drive (dimensionless; < 1/4
    excitable, >= 1/4 oscillatory); ``v_peak`` the spike threshold, above
    the unstable point; ``v_reset`` (< ``v_peak``) where the membrane goes
    after a spike; ``refractory`` steps after a spike in which the neuron
    neither integrates nor fires; ``spiking=False`` a leaky-integrator
    readout (module docstring).
    """

    dt: float = 1.0
    current_decay: float = 0.1
    tau_mem: float = 10.0
    i0: float = 0.0
    v_peak: float = 4.0
    v_reset: float = 0.0
    refractory: int = 0
    spiking: bool = True

    def __post_init__(self):
        self.validate()

    def validate(self, where: str = "qif-trains neuron") -> None:
        check_fields(where, self.dt, self.current_decay, self.tau_mem, self.i0, self.v_peak, self.v_reset,
                     self.refractory, self.spiking)

    # ------------------------------------------------------------ derived
    @property
    def alpha(self) -> float:
        """Current kept per step, 1 - current_decay."""
        return 1.0 - self.current_decay

    @property
    def k(self) -> float:
        """The Euler step dt / tau_mem."""
        return self.dt / self.tau_mem

    @property
    def threshold(self) -> float:
        """The spike threshold (v_peak), under the name the CUBA records use."""
        return self.v_peak

    @property
    def excitable(self) -> bool:
        """Whether i0 < 1/4 (a stable rest point: the neuron is silent until driven)."""
        return self.i0 < 0.25

    @property
    def v_rest(self) -> float:
        """The initial membrane: the rest point (spiking), 0 (readout)."""
        return rest_point(self.i0) if self.spiking else 0.0

    @property
    def v_unstable(self) -> float:
        return unstable_point(self.i0)

    def to_json(self) -> dict:
        return {"dt": float(self.dt), "current_decay": float(self.current_decay), "tau_mem": float(self.tau_mem),
                "i0": float(self.i0), "v_peak": float(self.v_peak), "v_reset": float(self.v_reset),
                "refractory": int(self.refractory), "spiking": bool(self.spiking)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "QifTrainsParams":
        known = {"dt", "current_decay", "tau_mem", "i0", "v_peak", "v_reset", "refractory", "spiking"}
        extra = set(d) - known
        if extra:
            raise NetworkSpecError(f"qif-trains neuron: unknown field(s) {sorted(extra)}")
        for name in ("dt", "tau_mem"):
            if name not in d:
                raise NetworkSpecError(f"qif-trains neuron: {name} is missing")
        return cls(**dict(d))
