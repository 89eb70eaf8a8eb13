"""What every first-spike-time neuron model provides, and the one autograd
function that serves both pure simulation and hardware in the loop.

A model gives, for one layer and a batch:

* ``spike_times(t_in, w, params, t_max)``: first spike time of every neuron
  (no autograd), ``inf`` for a neuron silent within the trial;
* ``vjp(t_in, w, t_out, grad_out, params, t_max)``: the exact derivatives of
  those times, contracted with ``grad_out``, *evaluated at the given output
  times*. In simulation these are the model's own times; in the loop they are
  the times the target measured ("hardware forward, software backward").

`SpikeLayerFn` wires the two into torch autograd. Layer inputs are the
previous layer's times followed by the layer's bias spikes (see
`hwloop.network.Layer`).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from ..network import NeuronParams


class TTFSModel(Protocol):
    name: str

    def spike_times(
        self, t_in: torch.Tensor, w: torch.Tensor, params: NeuronParams, t_max: float
    ) -> torch.Tensor:  # (B, n_src), (n_src, n_out) -> (B, n_out)
        ...

    def vjp(
        self,
        t_in: torch.Tensor,
        w: torch.Tensor,
        t_out: torch.Tensor,
        grad_out: torch.Tensor,
        params: NeuronParams,
        t_max: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # grad wrt t_in (B, n_src), w (n_src, n_out)
        ...


class SpikeLayerFn(torch.autograd.Function):
    """t_out = layer(t_in, w). Forward: the model's closed form, or times
    measured on a target (``t_measured``). Backward: the model's exact
    derivative at the forward's output times, or at ``t_grad`` where given
    (e.g. the model's own time for the measured inputs, when measured times
    sit on a coarse grid)."""

    @staticmethod
    def forward(ctx, t_in, w, model, params, t_max, t_measured=None, t_grad=None):
        with torch.no_grad():
            if t_measured is None:
                t_out = model.spike_times(t_in, w, params, t_max)
            else:
                t_out = t_measured.to(dtype=t_in.dtype)
            at = t_out if t_grad is None else t_grad.to(dtype=t_in.dtype)
        ctx.model, ctx.params, ctx.t_max = model, params, t_max
        ctx.save_for_backward(t_in, w, at)
        return t_out

    @staticmethod
    def backward(ctx, grad_out):
        t_in, w, at = ctx.saved_tensors
        g_in, g_w = ctx.model.vjp(t_in, w, at, grad_out, ctx.params, ctx.t_max)
        return g_in, g_w, None, None, None, None, None


def with_bias(t_prev: torch.Tensor, bias_times: Sequence[float]) -> torch.Tensor:
    """Append the layer's bias spikes (same in every sample) to its inputs."""
    if not bias_times:
        return t_prev
    b = torch.as_tensor(bias_times, dtype=t_prev.dtype, device=t_prev.device)
    return torch.cat([t_prev, b.expand(t_prev.shape[0], -1)], dim=1)
