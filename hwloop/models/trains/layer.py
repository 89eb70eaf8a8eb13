"""A CUBA LIF layer over a whole trial as one autograd function, and the
thin module that wires layers into a network.

`cuba_layer` runs the fused numba kernel (forward, hand-written backward)
where it can and the plain-autograd reference loop otherwise; both compute
the same thing (tests hold them to 1e-6). Engine choice as for the QIF
kernel: environment variable ``HWLOOP_CUBA_ENGINE`` = ``auto`` (default),
``numba`` or ``torch``, overridden by the ``engine=`` argument.

Shapes: time first, ``(T, batch, neurons)``, spikes as a dense 0/1 raster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ...errors import NetworkSpecError
from . import kernel
from .functional import CubaParams, Surrogate, cuba_layer_reference


class CubaLayerFn(torch.autograd.Function):
    """(s_in, w_in, w_rec) -> (spikes, membranes before reset) of one layer
    over a trial; the input current s_in @ w_in is formed by events inside
    the kernel, and the BPTT backward is hand-written (numba)."""

    @staticmethod
    def forward(ctx, s_in, w_in, w_rec, p: CubaParams, sg: Surrogate):
        ctx.set_materialize_grads(False)
        s, v, a = kernel.layer_forward(s_in, w_in, w_rec, p, sg)
        ctx.p, ctx.sg = p, sg
        ctx.has_a, ctx.has_rec = a is not None, w_rec is not None
        ctx.save_for_backward(s_in, w_in, s, v, *([a] if a is not None else []), *([w_rec] if w_rec is not None else []))
        return s, v

    @staticmethod
    def backward(ctx, g_s, g_v):
        s_in, w_in, s, v, *rest = ctx.saved_tensors
        a = rest.pop(0) if ctx.has_a else None
        w_rec = rest.pop(0) if ctx.has_rec else None
        g_in, g_w, g_r = kernel.layer_backward(g_s, g_v, s_in, w_in, s, v, a, w_rec, ctx.p, ctx.sg,
                                               need_in=ctx.needs_input_grad[0])
        return (g_in, g_w.to(w_in.dtype), None if g_r is None else g_r.to(w_rec.dtype), None, None)


def _check(s_in: torch.Tensor, w_in: torch.Tensor, w_rec: torch.Tensor | None, p: CubaParams, sg: Surrogate) -> None:
    if s_in.ndim != 3:
        raise NetworkSpecError(f"cuba layer: input spikes must be (T, batch, inputs), got shape {tuple(s_in.shape)}")
    if w_in.ndim != 2 or w_in.shape[0] != s_in.shape[2]:
        raise NetworkSpecError(f"cuba layer: input weights must be ({s_in.shape[2]}, neurons) for "
                               f"{s_in.shape[2]} inputs, got {tuple(w_in.shape)}")
    n = w_in.shape[1]
    if w_rec is not None and tuple(w_rec.shape) != (n, n):
        raise NetworkSpecError(f"cuba layer: recurrent weights must be ({n}, {n}) for {n} neurons, "
                               f"got {tuple(w_rec.shape)}")
    if sg.smooth and p.refractory > 0:
        raise NetworkSpecError("cuba layer: the smooth stand-in has no refractory period (set refractory=0)")


def cuba_layer(s_in: torch.Tensor, w_in: torch.Tensor, p: CubaParams, sg: Surrogate,
               w_rec: torch.Tensor | None = None, engine: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and membranes before reset, each (T, batch, n), of one layer
    driven by the input spikes ``s_in`` (T, batch, n_in) through ``w_in``
    (n_in, n), ``w_in[i, j]`` from input i to neuron j; ``w_rec[k, j]`` from
    neuron k to neuron j (None: no recurrence). Input spikes at step t drive
    the layer at step t (no synaptic delay)."""
    _check(s_in, w_in, w_rec, p, sg)
    w_in = w_in.to(s_in.dtype)
    if w_rec is not None:
        w_rec = w_rec.to(s_in.dtype)
    if kernel.use_kernel(engine, s_in):
        return CubaLayerFn.apply(s_in, w_in, w_rec, p, sg)
    T, B, n_in = s_in.shape
    x = (s_in.reshape(T * B, n_in) @ w_in).reshape(T, B, w_in.shape[1])
    return cuba_layer_reference(x, p, sg, w_rec)


@dataclass(frozen=True)
class TrainsOutput:
    """What a forward pass of a spike-train network returns: per layer, the
    spike raster and the membrane trace before reset, each (T, batch, n)."""

    spikes: list[torch.Tensor]
    membranes: list[torch.Tensor]


def cuba_network_forward(raster: torch.Tensor, weights: Sequence[torch.Tensor],
                         params: Sequence[CubaParams], sg: Surrogate,
                         recurrent: Sequence[torch.Tensor | None] | None = None,
                         engine: str | None = None) -> TrainsOutput:
    """Feed-forward stack of CUBA layers (each optionally recurrent).

    ``raster`` (T, batch, n_in) input spikes; ``weights[l]`` (n_prev, n_l),
    from source i to neuron j; spikes of layer l at step t drive layer l+1
    at the same step (no synaptic delay; docs/models-cuba.md).
    """
    if len(weights) != len(params):
        raise NetworkSpecError(f"{len(params)} layer parameter records but {len(weights)} weight matrices")
    recurrent = list(recurrent) if recurrent is not None else [None] * len(weights)
    if len(recurrent) != len(weights):
        raise NetworkSpecError(f"{len(weights)} layers but {len(recurrent)} recurrent entries")
    if raster.ndim != 3:
        raise NetworkSpecError(f"input raster must be (T, batch, n_in), got shape {tuple(raster.shape)}")
    spikes, membranes = [], []
    h = raster
    for li, (w, p, wr) in enumerate(zip(weights, params, recurrent)):
        if h.shape[2] != w.shape[0]:
            raise NetworkSpecError(f"layer {li}: weights have {w.shape[0]} rows but the layer gets {h.shape[2]} inputs")
        s, v = cuba_layer(h, w, p, sg, wr, engine=engine)
        spikes.append(s)
        membranes.append(v)
        h = s
    return TrainsOutput(spikes, membranes)
