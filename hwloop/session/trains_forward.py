"""The forward pass of a spike-train network in which the target's measurements
replace the simulated values, layer by layer and step by step (what hxtorch does
for BrainScaleS-2: Cramer et al. 2022, PNAS 119, e2109194119).

For every layer and every time step the model's own step function runs on the
model's state, and then

* the spike it computes is replaced by the spike the target **measured**
  (straight-through: the forward value is the measurement, the backward pass
  the model's surrogate derivative of the simulated spike);
* the reset of the next state uses the measured spike, and the recurrent input
  of the next step is the measured spike (with its straight-through gradient);
* with membranes (``v_meas`` given) the membrane before reset is replaced by the
  measured one in the same way (value measured, gradient the model's), so the
  surrogate derivative is taken at the measured distance to the threshold and
  the next state continues from the measured membrane;
* layer l + 1 is driven by layer l's measured spikes.

When the measurement equals the simulation (the `software` target) every
replacement adds an exact zero, so the forward value and the gradient are
those of the plain-autograd reference loop (`cuba_step`) -- the software
trainer's loss and gradient (tests/test_loop_trains.py holds them equal).

A neuron model joins with one function of the signature of `cuba_forward` and
one `FORWARDS` entry (`register`).

**Fully measured CUBA layers** (spikes and membranes both given, the
``spikes+membranes`` signal; no refractory period, the reset outside the
gradient): every forward value of the layer is then a measurement, so the
model's step loop is not run at all. `_MeasuredCubaLayer` returns the
measurements and its backward runs the adjoint of that loop directly (the
recursion the loop's autograd graph encodes, docs/in-the-loop.md):

    dv_t = g_v[t] + surrogate'(v_meas[t] - threshold) * (g_s[t] + dx_{t+1} @ w_rec^T)
           + beta * (1 - s_meas[t] * (1 - subtract)) * dv_{t+1}
    di_t = dv_t + alpha * di_{t+1}          dx_t = di_t         dw_rec = sum_t s_meas[t-1]^T dx_t

-- the same gradient as the loop's to rounding (tests/test_trains_forward_fast.py),
in a fraction of the time (it is most of the host's share of a step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from hwloop.errors import HwloopError


class _Substitute(torch.autograd.Function):
    """Forward: the measured value, exactly; backward: the gradient passes to the simulated one."""

    @staticmethod
    def forward(ctx, simulated, measured):
        return measured.detach().to(simulated.dtype).clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(simulated: torch.Tensor, measured: torch.Tensor | None) -> torch.Tensor:
    """``measured`` forward (exactly), the gradient of ``simulated`` backward
    (``simulated`` itself where nothing was measured)."""
    if measured is None:
        return simulated
    return _Substitute.apply(simulated, measured)


@dataclass
class LayerResult:
    """One layer over a trial: spikes and membranes before reset, each (T, batch, n),
    with their values measured where measurements were given and the model's gradient."""

    spikes: torch.Tensor
    membranes: torch.Tensor


class _MeasuredCubaLayer(torch.autograd.Function):
    """A CUBA layer whose spikes and membranes before reset are all measured:
    forward the measurements, backward the adjoint of `cuba_forward`'s loop at
    them (module docstring). Inputs: ``x_all`` (T, B, n) feed-forward current,
    ``w_rec`` (n, n) or None, the measured ``s_meas`` / ``v_meas`` (T, B, n)."""

    @staticmethod
    def forward(ctx, x_all, w_rec, s_meas, v_meas, p, surrogate):
        dtype = x_all.dtype
        s = s_meas.detach().to(dtype) if p.spiking else torch.zeros_like(x_all)
        v = v_meas.detach().to(dtype)
        ctx.save_for_backward(s, v, w_rec)
        ctx.p, ctx.surrogate = p, surrogate
        return s.clone(), v.clone()

    @staticmethod
    def backward(ctx, g_s, g_v):
        s, v, w_rec = ctx.saved_tensors
        p, sg = ctx.p, ctx.surrogate
        T = s.shape[0]
        g_s = torch.zeros_like(s) if g_s is None else g_s
        g_v = torch.zeros_like(v) if g_v is None else g_v
        alpha, beta = float(p.alpha), float(p.beta)
        if p.spiking:
            dsg = sg.derivative(v - p.threshold)
            keep = beta * (1.0 - s * (0.0 if p.reset == "subtract" else 1.0))
        g_x = torch.empty_like(v)
        dv = torch.zeros_like(v[0])
        di = torch.zeros_like(v[0])
        dx_next = None
        for t in range(T - 1, -1, -1):
            if p.spiking:
                gs = g_s[t] if dx_next is None or w_rec is None else g_s[t] + dx_next @ w_rec.T
                dv = g_v[t] + dsg[t] * gs + keep[t] * dv
            else:
                dv = g_v[t] + beta * dv
            di = dv + alpha * di
            g_x[t] = di
            dx_next = di
        g_rec = None
        if w_rec is not None and ctx.needs_input_grad[1]:
            n = s.shape[2]
            g_rec = s[:-1].reshape(-1, n).T @ g_x[1:].reshape(-1, n)
        return g_x, g_rec, None, None, None, None


def _fully_measured(p, surrogate, s_meas, v_meas) -> bool:
    """The fast path applies: every forward value measured, and a loop whose
    gradient `_MeasuredCubaLayer` writes out (no refractory period, the reset
    outside the gradient, a true spike)."""
    return (v_meas is not None and (s_meas is not None or not p.spiking) and p.refractory == 0
            and not surrogate.through_reset and not surrogate.smooth)


def cuba_forward(s_in: torch.Tensor, w: torch.Tensor, w_rec: torch.Tensor | None, params, surrogate,
                 s_meas: torch.Tensor | None, v_meas: torch.Tensor | None, fast: bool = True) -> LayerResult:
    """One CUBA layer (`hwloop.models.trains.functional`) with the substitution.

    ``s_in`` (T, batch, n_in): the input spikes (the previous layer's measured
    spikes, carrying their gradient); ``w`` (n_in, n); ``w_rec`` (n, n) or None;
    ``params``: the layer's `NeuronParams` (or a `CubaParams`);
    ``s_meas`` / ``v_meas`` (T, batch, n): measured spikes / membranes before
    reset (None: the model's own, e.g. the non-spiking readout's membrane when
    the target has no probes). ``fast=False``: the step loop even where every
    value is measured (the reference for `_MeasuredCubaLayer`)."""
    from hwloop.models.trains.functional import integrate, refractory, reset, spike

    p = params.cuba_params() if hasattr(params, "cuba_params") else params  # a NeuronParams record or CubaParams
    T, B, n_in = s_in.shape
    n = w.shape[1]
    x_all = (s_in.reshape(T * B, n_in) @ w).reshape(T, B, n)
    if fast and _fully_measured(p, surrogate, s_meas, v_meas):
        spikes, membranes = _MeasuredCubaLayer.apply(x_all, w_rec, s_meas, v_meas, p, surrogate)
        return LayerResult(spikes, membranes)
    z = torch.zeros(B, n, dtype=x_all.dtype)
    i, v, r, s = z, z, z, z
    subtract = 1.0 if p.reset == "subtract" else 0.0
    spikes, membranes = [], []
    for t in range(T):
        x = x_all[t] if w_rec is None else x_all[t] + s @ w_rec
        active = (r < 0.5).to(x.dtype) if p.refractory > 0 else torch.ones_like(x)
        i, v_pre = integrate(i, v, x, active, p.alpha, p.beta)
        v_pre = straight_through(v_pre, None if v_meas is None else v_meas[t])
        if not p.spiking:
            s = torch.zeros_like(v_pre)
            v = v_pre
        else:
            s = straight_through(active * spike(v_pre - p.threshold, surrogate),
                                 None if s_meas is None else s_meas[t])
            v = reset(v_pre, s if surrogate.through_reset else s.detach(), p.threshold, subtract)
            if p.refractory > 0:
                r = refractory(r, s.detach(), float(p.refractory))
        spikes.append(s)
        membranes.append(v_pre)
    return LayerResult(torch.stack(spikes), torch.stack(membranes))


def qif_trains_forward(s_in: torch.Tensor, w: torch.Tensor, w_rec: torch.Tensor | None, params, surrogate,
                       s_meas: torch.Tensor | None, v_meas: torch.Tensor | None) -> LayerResult:
    """One qif-trains layer (`hwloop.models.trains.qif_trains`, docs/models-qif-trains.md)
    with the substitution; arguments as `cuba_forward`. The spike is taken at
    the membrane's distance to ``v_peak``; a measured membrane (the chip's ADC,
    sampled at the end of the step) replaces the one before reset."""
    from hwloop.models.trains.functional import refractory, spike
    from hwloop.models.trains.qif_trains import QifState, qif_active, qif_integrate, qif_reset

    p = params.qif_trains_params() if hasattr(params, "qif_trains_params") else params
    T, B, n_in = s_in.shape
    n = w.shape[1]
    x_all = (s_in.reshape(T * B, n_in) @ w).reshape(T, B, n)
    i, v, r, s = QifState.initial(B, n, p, dtype=x_all.dtype)
    spikes, membranes = [], []
    for t in range(T):
        x = x_all[t] if w_rec is None else x_all[t] + s @ w_rec
        i, v_pre = qif_integrate(i, v, r if p.refractory > 0 else None, x, p)
        v_pre = straight_through(v_pre, None if v_meas is None else v_meas[t])
        if not p.spiking:
            s = torch.zeros_like(v_pre)
            v = v_pre
        else:
            sim = spike(v_pre - p.v_peak, surrogate)
            if p.refractory > 0:
                sim = qif_active(r).to(x.dtype) * sim
            s = straight_through(sim, None if s_meas is None else s_meas[t])
            v = qif_reset(v_pre, s if surrogate.through_reset else s.detach(), p)
            if s_meas is not None and v_meas is None:
                # the model crossed v_peak where the target did not fire: held at
                # v_peak (no gradient), since the quadratic term would run the
                # unreset Euler membrane off to inf within a few steps
                v = torch.clamp(v, max=p.v_peak)
            if p.refractory > 0:
                r = refractory(r, s.detach(), float(p.refractory))
        spikes.append(s)
        membranes.append(v_pre)
    return LayerResult(torch.stack(spikes), torch.stack(membranes))


#: neuron model name -> its substituted layer forward (signature of `cuba_forward`)
FORWARDS: dict[str, Callable[..., LayerResult]] = {"cuba": cuba_forward, "qif-trains": qif_trains_forward}


def register(model: str, forward: Callable[..., LayerResult]) -> None:
    """Add a neuron model's substituted forward (one function, signature of `cuba_forward`)."""
    FORWARDS[model] = forward


def forward_of(model: str) -> Callable[..., LayerResult]:
    try:
        return FORWARDS[model]
    except KeyError:
        raise HwloopError(f"no in-the-loop forward for neuron model {model!r} (known: {', '.join(sorted(FORWARDS))})"
                          ) from None


@dataclass
class SubstitutedOutput:
    """What `substituted_forward` returns, shaped as `hwloop.models.trains.TrainsOutput`
    (so the software trainer's readout and loss read it unchanged)."""

    spikes: list[torch.Tensor]
    membranes: list[torch.Tensor]
    counts: list[torch.Tensor]


def substituted_forward(layers, weights: Sequence[torch.Tensor], recurrent: Sequence[torch.Tensor | None],
                        raster: torch.Tensor, surrogate, spikes_meas: Sequence[torch.Tensor | None],
                        membranes_meas: Sequence[torch.Tensor | None] | None = None) -> SubstitutedOutput:
    """The whole network: ``layers`` (the network's `Layer` records, whose
    ``neuron.model`` picks the forward), ``raster`` (T, batch, n_in) input
    spikes, per layer the measured spikes (None: the model's) and, when given,
    the measured membranes (None entries: the model's)."""
    L = len(layers)
    membranes_meas = list(membranes_meas) if membranes_meas is not None else [None] * L
    out = SubstitutedOutput([], [], [])
    h = raster
    for li, layer in enumerate(layers):
        fwd = forward_of(layer.neuron.model)
        res = fwd(h, weights[li], recurrent[li], layer.neuron, surrogate, spikes_meas[li], membranes_meas[li])
        out.spikes.append(res.spikes)
        out.membranes.append(res.membranes)
        out.counts.append(res.spikes.sum(0))
        h = res.spikes
    return out
