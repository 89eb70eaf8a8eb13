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


class CubaNetworkFn(torch.autograd.Function):
    """A feed-forward stack of CUBA layers (one or more) in one autograd node:
    (raster, W_1..W_L, R_1..R_L) -> (S_1..S_L, V_1..V_L, C_1..C_L): spikes,
    membranes before reset and spike counts per layer (an unrecorded S or V
    comes back as an empty tensor).

    The numba kernel runs every layer of a chunk of samples before the next
    chunk; the backward recomputes membranes from checkpoints and passes
    only dL/dx of the layer above between layers, so no (T, B, N) spike
    gradient is stored (`kernel`). The counts are an output of their own so
    that the activity bounds and a count readout cost (B, N), not (T, B, N),
    of gradient."""

    @staticmethod
    def forward(ctx, raster, meta, *tensors):
        ctx.set_materialize_grads(False)
        params, sg, L, record_s, record_v = meta
        weights, recurrent = list(tensors[:L]), [None if r.numel() == 0 else r for r in tensors[L:]]
        runs = kernel.network_forward(raster, weights, recurrent, params, sg, record_s, record_v)
        ctx.meta, ctx.runs = meta, runs
        ctx.save_for_backward(*tensors)  # the weights the runs were computed with
        empty = raster.new_empty(0)
        spikes = [torch.from_numpy(r.out_s) if rs else empty for r, rs in zip(runs, record_s)]
        membranes = [torch.from_numpy(r.out_v) if rv else empty for r, rv in zip(runs, record_v)]
        counts = [torch.from_numpy(r.counts) for r in runs]
        return (*spikes, *membranes, *counts)

    @staticmethod
    def backward(ctx, *grads):
        params, sg, L, _, _ = ctx.meta
        tensors = ctx.saved_tensors
        dtype = ctx.runs[0].dtype

        def as_np(g):
            return None if g is None or g.numel() == 0 else kernel._np(g, dtype)

        g_s = [as_np(g) for g in grads[:L]]
        g_v = [as_np(g) for g in grads[L:2 * L]]
        g_c = [as_np(g) for g in grads[2 * L:]]
        g_in, wg = kernel.network_backward(ctx.runs, g_s, g_v, g_c, need_in=ctx.needs_input_grad[0])
        ctx.runs = None
        g_w = [g.to(w.dtype) for (g, _), w in zip(wg, tensors[:L])]
        g_r = [(None if r.numel() == 0 or gr is None else gr.to(r.dtype)) for (_, gr), r in zip(wg, tensors[L:])]
        return (g_in, None, *g_w, *g_r)


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
        r = s_in.new_empty(0) if w_rec is None else w_rec
        s, v, _ = CubaNetworkFn.apply(s_in, ((p,), sg, 1, (True,), (True,)), w_in, r)
        return s, v
    T, B, n_in = s_in.shape
    x = (s_in.reshape(T * B, n_in) @ w_in).reshape(T, B, w_in.shape[1])
    return cuba_layer_reference(x, p, sg, w_rec)


@dataclass(frozen=True)
class TrainsOutput:
    """What a forward pass of a spike-train network returns: per layer, the
    spike raster and the membrane trace before reset, each (T, batch, n)
    (None for a layer that was not recorded), and the spike counts per
    trial (batch, n), always."""

    spikes: list[torch.Tensor | None]
    membranes: list[torch.Tensor | None]
    counts: list[torch.Tensor]


RECORD = ("all", "output")


def check_network_args(raster, weights, params, recurrent, record: str) -> list:
    """The checks every spike-train network forward makes on its arguments
    (`NetworkSpecError` naming the mismatch); the recurrent list, filled with None."""
    if record not in RECORD:
        raise NetworkSpecError(f"record must be one of {list(RECORD)}, got {record!r}")
    if len(weights) != len(params):
        raise NetworkSpecError(f"{len(params)} layer parameter records but {len(weights)} weight matrices")
    recurrent = list(recurrent) if recurrent is not None else [None] * len(weights)
    if len(recurrent) != len(weights):
        raise NetworkSpecError(f"{len(weights)} layers but {len(recurrent)} recurrent entries")
    if raster.ndim != 3:
        raise NetworkSpecError(f"input raster must be (T, batch, n_in), got shape {tuple(raster.shape)}")
    return recurrent


def cuba_network_forward(raster: torch.Tensor, weights: Sequence[torch.Tensor],
                         params: Sequence[CubaParams], sg: Surrogate,
                         recurrent: Sequence[torch.Tensor | None] | None = None,
                         engine: str | None = None, record: str = "all") -> TrainsOutput:
    """Feed-forward stack of CUBA layers (each optionally recurrent).

    ``raster`` (T, batch, n_in) input spikes; ``weights[l]`` (n_prev, n_l),
    from source i to neuron j; spikes of layer l at step t drive layer l+1
    at the same step (no synaptic delay; docs/models-cuba.md).
    ``record="all"``: every layer's spikes and membranes; ``"output"``: the
    last layer's only (hidden layers give their counts; what training
    needs, and on the numba kernel much less memory traffic).
    """
    recurrent = check_network_args(raster, weights, params, recurrent, record)
    n_prev = raster.shape[2]
    for li, (w, p, wr) in enumerate(zip(weights, params, recurrent)):
        if w.ndim != 2 or w.shape[0] != n_prev:
            raise NetworkSpecError(f"layer {li}: weights have shape {tuple(w.shape)} but the layer gets {n_prev} inputs")
        _check(raster.new_zeros(1, 1, w.shape[0]), w, wr, p, sg)
        n_prev = w.shape[1]
    L = len(weights)
    keep = [record == "all" or li == L - 1 for li in range(L)]
    if kernel.use_kernel(engine, raster):
        ws = [w.to(raster.dtype) for w in weights]
        rs = [raster.new_empty(0) if r is None else r.to(raster.dtype) for r in recurrent]
        res = CubaNetworkFn.apply(raster, (tuple(params), sg, L, tuple(keep), tuple(keep)), *ws, *rs)
        spikes = [res[li] if keep[li] else None for li in range(L)]
        membranes = [res[L + li] if keep[li] else None for li in range(L)]
        return TrainsOutput(spikes, membranes, list(res[2 * L:]))
    spikes, membranes, counts = [], [], []
    h = raster
    for li, (w, p, wr) in enumerate(zip(weights, params, recurrent)):
        s, v = cuba_layer(h, w, p, sg, wr, engine=engine)
        spikes.append(s if keep[li] else None)
        membranes.append(v if keep[li] else None)
        counts.append(s.sum(0))
        h = s
    return TrainsOutput(spikes, membranes, counts)
