"""The discrete-time CUBA LIF neuron as pure functions: state in, state out,
parameters as small frozen records (Norse's functional split).

One step of one neuron (docs/models-cuba.md, section 1), with ``x`` the
weighted input of this step (feed-forward spikes of this step plus the
layer's own spikes of the previous step through the recurrent weights)::

    a  = 1 if r == 0 else 0                   # not refractory
    i' = (1 - du) * i + x                      # synaptic current
    v~ = a * ((1 - dv) * v + i') + (1 - a) * v # membrane before reset
    s  = a * H(v~ - threshold)                 # spike, H(0) = 0: v~ must exceed the threshold, as on Loihi
    v' = v~ - s * threshold    (reset "subtract")
    v' = v~ - s * v~           (reset "zero")
    r' = r - (r > 0) + s * refractory

``du`` and ``dv`` are the fractions of current and voltage lost per step
(Loihi's ``du`` and ``dv`` divided by 4096). A non-spiking layer (``spiking
= False``, the leaky-integrator readout) has ``s = 0`` and no reset.

The arithmetic of the step lives in `integrate`, `reset` and `refractory`,
written with arithmetic operators only, so that the same three functions run
on torch tensors (the reference loop, `cuba_step`, and the in-the-loop
substitution) and compiled by numba on scalars (the fast kernel,
`hwloop.models.trains.kernel`): one step, three users. The spike itself sits
between them: a Heaviside with a surrogate derivative in training
(`Surrogate`), a comparison in the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import torch

from ...errors import NetworkSpecError

RESETS = ("zero", "subtract")
SHAPES = ("superspike", "sigmoid", "linear", "exponential")


def _finite(name: str, value, where: str, *, low: float | None = None, high: float | None = None,
            strict_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NetworkSpecError(f"{where}: {name} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (strict_low and v == low)):
        op = ">" if strict_low else ">="
        raise NetworkSpecError(f"{where}: {name} must be {op} {low:g}, got {v!r}")
    if high is not None and v > high:
        raise NetworkSpecError(f"{where}: {name} must be <= {high:g}, got {v!r}")
    return v


@dataclass(frozen=True)
class CubaParams:
    """Neuron parameters of one CUBA LIF layer (the Loihi neuron).

    ``dt`` is the time step in the network's time unit; ``current_decay`` and
    ``voltage_decay`` are the fractions of synaptic current and membrane
    voltage lost per step, in [0, 1]; ``threshold`` > 0; ``reset`` is
    ``"zero"`` (v jumps to 0) or ``"subtract"`` (v drops by the threshold);
    ``refractory`` is the number of steps after a spike in which the neuron
    neither integrates nor fires (0: none). ``spiking=False`` makes the
    layer a leaky integrator without threshold (a readout).
    """

    dt: float = 1.0
    current_decay: float = 0.1
    voltage_decay: float = 0.1
    threshold: float = 1.0
    reset: str = "zero"
    refractory: int = 0
    spiking: bool = True

    def __post_init__(self):
        self.validate()

    def validate(self, where: str = "cuba neuron") -> None:
        _finite("dt", self.dt, where, low=0.0, strict_low=True)
        _finite("current_decay", self.current_decay, where, low=0.0, high=1.0)
        _finite("voltage_decay", self.voltage_decay, where, low=0.0, high=1.0)
        _finite("threshold", self.threshold, where, low=0.0, strict_low=True)
        if self.reset not in RESETS:
            raise NetworkSpecError(f"{where}: reset must be one of {list(RESETS)}, got {self.reset!r}")
        if isinstance(self.refractory, bool) or not isinstance(self.refractory, int) or self.refractory < 0:
            raise NetworkSpecError(f"{where}: refractory must be an int >= 0 (steps), got {self.refractory!r}")
        if not isinstance(self.spiking, bool):
            raise NetworkSpecError(f"{where}: spiking must be true or false, got {self.spiking!r}")

    @classmethod
    def from_time_constants(cls, dt: float, tau_syn: float, tau_mem: float, **kw) -> "CubaParams":
        """Decays from time constants (same unit as ``dt``): 1 - exp(-dt/tau)."""
        where = "cuba neuron"
        dt = _finite("dt", dt, where, low=0.0, strict_low=True)
        tau_syn = _finite("tau_syn", tau_syn, where, low=0.0, strict_low=True)
        tau_mem = _finite("tau_mem", tau_mem, where, low=0.0, strict_low=True)
        return cls(dt=dt, current_decay=-math.expm1(-dt / tau_syn), voltage_decay=-math.expm1(-dt / tau_mem), **kw)

    @property
    def alpha(self) -> float:
        """Current kept per step, 1 - current_decay."""
        return 1.0 - self.current_decay

    @property
    def beta(self) -> float:
        """Voltage kept per step, 1 - voltage_decay."""
        return 1.0 - self.voltage_decay

    def to_json(self) -> dict:
        return {"dt": float(self.dt), "current_decay": float(self.current_decay),
                "voltage_decay": float(self.voltage_decay), "threshold": float(self.threshold),
                "reset": self.reset, "refractory": int(self.refractory), "spiking": bool(self.spiking)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CubaParams":
        known = {"dt", "current_decay", "voltage_decay", "threshold", "reset", "refractory", "spiking"}
        extra = set(d) - known
        if extra:
            raise NetworkSpecError(f"cuba neuron: unknown field(s) {sorted(extra)}")
        if "dt" not in d:
            raise NetworkSpecError("cuba neuron: dt is missing")
        return cls(**dict(d))


@dataclass(frozen=True)
class Surrogate:
    """How the spike's derivative is taken in training.

    ``shape`` of the surrogate derivative of H at x = v - threshold, every
    one with peak 1 at x = 0 and width set by ``beta`` (per unit of voltage):

    * ``superspike``: 1 / (beta |x| + 1)^2 (fast sigmoid; Zenke & Ganguli 2018)
    * ``sigmoid``: 4 s (1 - s), s = 1 / (1 + exp(-beta x)) (derivative of a logistic)
    * ``linear``: max(0, 1 - beta |x|) (piecewise linear; Esser et al. 2016)
    * ``exponential``: exp(-beta |x|)

    ``through_reset``: whether the gradient also flows through the reset
    term (default no, as Zenke & Vogels 2021 recommend). ``smooth``: a
    smooth stand-in for testing only: the forward spike itself is the
    logistic s(beta x) (a real number in (0, 1)), and its derivative is the
    exact one, so the network is differentiable and its gradient can be
    checked against finite differences. Needs ``shape="sigmoid"``.
    """

    shape: str = "superspike"
    beta: float = 10.0
    through_reset: bool = False
    smooth: bool = False

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise NetworkSpecError(f"surrogate: shape must be one of {list(SHAPES)}, got {self.shape!r}")
        _finite("beta", self.beta, "surrogate", low=0.0, strict_low=True)
        if self.smooth and self.shape != "sigmoid":
            raise NetworkSpecError("surrogate: the smooth stand-in is the logistic; use shape='sigmoid'")

    @property
    def code(self) -> int:
        return SHAPES.index(self.shape)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative at x = v - threshold (torch)."""
        b = self.beta
        if self.shape == "superspike":
            return 1.0 / (b * x.abs() + 1.0) ** 2
        if self.shape == "sigmoid":
            s = torch.sigmoid(b * x)
            return 4.0 * s * (1.0 - s)
        if self.shape == "linear":
            return (1.0 - b * x.abs()).clamp_min(0.0)
        return torch.exp(-b * x.abs())


# --------------------------------------------------------------- the step
# Arithmetic only (no torch or numpy calls): these run on tensors and, compiled
# by numba, on scalars. ``active`` and ``s`` are 0.0 / 1.0 (``s`` in (0, 1)
# for the smooth stand-in); ``subtract`` is 1.0 for reset "subtract", else 0.0.

def integrate(i, v, x, active, alpha, beta):
    """Synaptic current and membrane before reset: (i', v~)."""
    i = alpha * i + x
    v = active * (beta * v + i) + (1.0 - active) * v
    return i, v


def reset(v, s, threshold, subtract):
    """Membrane after the reset of neurons that spiked (``s`` = 1)."""
    return v - s * (subtract * threshold + (1.0 - subtract) * v)


def refractory(r, s, steps):
    """Refractory steps left after this step; the neuron is active next step iff 0."""
    return r - (r > 0.5) * 1.0 + s * steps


class CubaState(NamedTuple):
    """State of a layer between steps: current, membrane (after reset),
    refractory steps left, and the spikes of the step just taken (the
    recurrent input of the next one). Each (batch, neurons)."""

    i: torch.Tensor
    v: torch.Tensor
    r: torch.Tensor
    s: torch.Tensor

    @classmethod
    def zeros(cls, batch: int, n: int, dtype=torch.float64, device=None) -> "CubaState":
        z = torch.zeros(batch, n, dtype=dtype, device=device)
        return cls(z, z, z, z)


class SurrogateSpike(torch.autograd.Function):
    """H(x) forward (H(0) = 0, as on Loihi: v > vth fires), the surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x, surrogate: Surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


def spike(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """The spike nonlinearity used in training (torch)."""
    if surrogate.smooth:
        return torch.sigmoid(surrogate.beta * x)
    return SurrogateSpike.apply(x, surrogate)


def cuba_step(state: CubaState, x: torch.Tensor, p: CubaParams, surrogate: Surrogate,
              w_rec: torch.Tensor | None = None) -> tuple[CubaState, torch.Tensor]:
    """One step of a layer (torch, differentiable): returns the new state and
    the membrane before reset v~ (what the surrogate and the readouts see).

    ``x``: this step's feed-forward input current (batch, n); ``w_rec``
    (n, n), ``w_rec[k, j]`` from neuron k to neuron j: the layer's spikes of
    the previous step (``state.s``) add ``state.s @ w_rec``.
    """
    if w_rec is not None:
        x = x + state.s @ w_rec
    active = (state.r < 0.5).to(x.dtype) if p.refractory > 0 else torch.ones_like(x)
    i, v_pre = integrate(state.i, state.v, x, active, p.alpha, p.beta)
    if not p.spiking:
        return CubaState(i, v_pre, state.r, torch.zeros_like(v_pre)), v_pre
    s = active * spike(v_pre - p.threshold, surrogate)
    s_reset = s if surrogate.through_reset else s.detach()
    v = reset(v_pre, s_reset, p.threshold, 1.0 if p.reset == "subtract" else 0.0)
    r = refractory(state.r, s.detach(), float(p.refractory)) if p.refractory > 0 else state.r
    return CubaState(i, v, r, s), v_pre


def cuba_layer_reference(x: torch.Tensor, p: CubaParams, surrogate: Surrogate,
                         w_rec: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain-autograd reference loop: ``x`` (T, batch, n) input currents
    -> spikes and membranes before reset, each (T, batch, n)."""
    state = CubaState.zeros(x.shape[1], x.shape[2], dtype=x.dtype, device=x.device)
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        state, v_pre = cuba_step(state, x[t], p, surrogate, w_rec)
        spikes.append(state.s)
        membranes.append(v_pre)
    return torch.stack(spikes), torch.stack(membranes)
