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

import numpy as np
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


# --------------------------------------------------------------- the step
def _floor(v):
    """max(v, V_MIN): ``torch.clamp_min`` on tensors, ``max`` on numbers."""
    if isinstance(v, torch.Tensor):
        return v.clamp_min(V_MIN)
    return v if v > V_MIN else V_MIN


def qif_integrate(i, v, r, x, p: QifTrainsParams):
    """Synaptic current and membrane before reset, (i', v~), of one step
    (arithmetic operators and the floor only: tensors or numbers). ``r``
    the refractory steps left (0: active; None: every neuron active, the
    same result without the blend); a readout (``spiking=False``)
    integrates as the leaky readout of the module docstring and ignores r."""
    i = p.alpha * i + x
    k = p.k
    if not p.spiking:
        return i, v + k * (i - v)
    v_int = v + k * (v * (v - 1.0) + p.i0 + i)
    if r is not None:
        a = (r < 0.5) * 1.0
        v_int = a * v_int + (1.0 - a) * v
    return i, _floor(v_int)


def qif_reset(v, s, p: QifTrainsParams):
    """Membrane after the reset of neurons that spiked (``s`` = 1): to v_reset."""
    return v - s * (v - p.v_reset)


def qif_active(r):
    """1.0 where the neuron is not refractory (r == 0), else 0.0."""
    return (r < 0.5) * 1.0


class QifState(NamedTuple):
    """State of a qif-trains layer between steps: current, membrane (after
    reset), refractory steps left, and the spikes of the step just taken
    (the recurrent input of the next one). Each (batch, neurons)."""

    i: torch.Tensor
    v: torch.Tensor
    r: torch.Tensor
    s: torch.Tensor

    @classmethod
    def initial(cls, batch: int, n: int, p: QifTrainsParams, dtype=torch.float64, device=None) -> "QifState":
        """v = v_rest (a readout: 0), i = r = s = 0."""
        z = torch.zeros(batch, n, dtype=dtype, device=device)
        return cls(z, torch.full((batch, n), p.v_rest, dtype=dtype, device=device), z, z)


def qif_step(state: QifState, x: torch.Tensor, p: QifTrainsParams, surrogate: Surrogate,
             w_rec: torch.Tensor | None = None) -> tuple[QifState, torch.Tensor]:
    """One step of a layer (torch, differentiable): the new state and the
    membrane before reset v~ (what the surrogate and the readouts see).

    ``x``: this step's feed-forward input current (batch, n); ``w_rec``
    (n, n), ``w_rec[k, j]`` from neuron k to neuron j: the layer's spikes of
    the previous step add ``state.s @ w_rec``. The spike is
    H(v~ - v_peak) forward and the surrogate's derivative backward
    (`Surrogate`); the reset treats it as a constant unless
    ``surrogate.through_reset``.
    """
    if w_rec is not None:
        x = x + state.s @ w_rec
    i, v_pre = qif_integrate(state.i, state.v, state.r if p.refractory > 0 else None, x, p)
    if not p.spiking:
        return QifState(i, v_pre, state.r, torch.zeros_like(v_pre)), v_pre
    active = qif_active(state.r).to(x.dtype) if p.refractory > 0 else None
    s = spike(v_pre - p.v_peak, surrogate)
    if active is not None:
        s = active * s
    s_reset = s if surrogate.through_reset else s.detach()
    v = qif_reset(v_pre, s_reset, p)
    r = refractory(state.r, s.detach(), float(p.refractory)) if p.refractory > 0 else state.r
    return QifState(i, v, r, s), v_pre


def qif_layer(x: torch.Tensor, p: QifTrainsParams, surrogate: Surrogate,
              w_rec: torch.Tensor | None = None, engine: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer over a trial: ``x`` (T, batch, n) input currents -> spikes and
    membranes before reset, each (T, batch, n). ``engine`` as for the CUBA
    layer (``HWLOOP_CUBA_ENGINE``): ``auto`` the numba kernel
    (`qif_trains_kernel`) for CPU float32/float64 tensors, ``torch`` the
    plain-autograd loop over `qif_step` (the reference)."""
    if surrogate.smooth and p.refractory > 0:
        raise NetworkSpecError("qif-trains layer: the smooth stand-in has no refractory period (set refractory=0)")
    from . import kernel

    if kernel.use_kernel(engine, x):
        from .qif_trains_kernel import qif_layer_kernel

        return qif_layer_kernel(x, p, surrogate, w_rec)
    state = QifState.initial(x.shape[1], x.shape[2], p, dtype=x.dtype, device=x.device)
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        state, v_pre = qif_step(state, x[t], p, surrogate, w_rec)
        spikes.append(state.s)
        membranes.append(v_pre)
    return torch.stack(spikes), torch.stack(membranes)


def trains_network_forward(raster: torch.Tensor, weights: Sequence[torch.Tensor], params: Sequence[Any],
                           sg: Surrogate, recurrent: Sequence[torch.Tensor | None] | None = None,
                           engine: str | None = None, record: str = "all"):
    """`cuba_network_forward` for any discrete-time layers: each entry of
    ``params`` a `CubaParams` or a `QifTrainsParams` (or a `hwloop.Network`'s
    `NeuronParams`, or pass a `hwloop.Network` as ``params`` with ``weights``
    None to take its weights and recurrent weights). All-CUBA stacks go to
    `cuba_network_forward` unchanged (its kernel); otherwise layer by layer,
    CUBA layers through `cuba_layer`, QIF layers through `qif_layer`.
    Returns a `TrainsOutput`."""
    from .functional import CubaParams
    from .layer import TrainsOutput, check_network_args, cuba_layer, cuba_network_forward

    if hasattr(params, "layers") and hasattr(params, "is_spike_train"):  # a hwloop.Network
        net = params
        params = [layer.neuron for layer in net.layers]
        if weights is None:
            weights = [torch.tensor(np.array(w), dtype=raster.dtype) for w in net.weights()]
            recurrent = [None if layer.recurrent is None else torch.tensor(np.array(layer.recurrent), dtype=raster.dtype)
                         for layer in net.layers]
    params = [p.trains_params() if hasattr(p, "trains_params") else p for p in params]
    if all(isinstance(p, CubaParams) for p in params):
        return cuba_network_forward(raster, weights, params, sg, recurrent, engine=engine, record=record)
    recurrent = check_network_args(raster, weights, params, recurrent, record)
    n_prev = raster.shape[2]
    for li, (w, p, wr) in enumerate(zip(weights, params, recurrent)):
        if not isinstance(p, (CubaParams, QifTrainsParams)):
            raise NetworkSpecError(f"layer {li}: not a discrete-time neuron record: {type(p).__name__}")
        if w.ndim != 2 or w.shape[0] != n_prev:
            raise NetworkSpecError(f"layer {li}: weights have shape {tuple(w.shape)} but the layer gets {n_prev} inputs")
        n = w.shape[1]
        if wr is not None and tuple(wr.shape) != (n, n):
            raise NetworkSpecError(f"layer {li}: recurrent weights must be ({n}, {n}) for {n} neurons, "
                                   f"got {tuple(wr.shape)}")
        n_prev = n
    L = len(weights)
    spikes, membranes, counts = [], [], []
    h = raster
    for li, (w, p, wr) in enumerate(zip(weights, params, recurrent)):
        w = w.to(h.dtype)
        wr = None if wr is None else wr.to(h.dtype)
        if isinstance(p, CubaParams):
            s, v = cuba_layer(h, w, p, sg, wr, engine=engine)
        else:
            T, B, n_in = h.shape
            x = (h.reshape(T * B, n_in) @ w).reshape(T, B, w.shape[1])
            s, v = qif_layer(x, p, sg, wr, engine=engine)
        keep = record == "all" or li == L - 1
        spikes.append(s if keep else None)
        membranes.append(v if keep else None)
        counts.append(s.sum(0))
        h = s
    return TrainsOutput(spikes, membranes, counts)
