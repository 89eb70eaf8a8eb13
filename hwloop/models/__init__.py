"""Neuron models, one folder per network family, and what they share.

* `ttfs/`: the first-spike-time family (LIF, QIF, non-leaky IF): closed-form
  first spike times and exact gradients, one spike per neuron per trial.
* `trains/`: the spike-train family (discrete-time CUBA LIF, the Loihi
  neuron): many spikes per neuron, reset, optional recurrence, trained with
  surrogate gradients (BPTT, or the SuperSpike online rule).

Shared here: the registry (``get_model(name)`` returns the TTFS model object
for a `NeuronParams.model` name) and the autograd that serves simulation and
hardware in the loop alike (`SpikeLayerFn` in `base`; ``network_forward``
runs a whole feed-forward TTFS network layer by layer through it, optionally
substituting measured times per layer). Losses are in `hwloop.losses`.
"""

from __future__ import annotations

import importlib
from typing import Sequence

import torch

from ..errors import NetworkSpecError
from ..network import Layer
from .base import SpikeLayerFn, TTFSModel, with_bias

# name -> (module, attribute); imported on first use
_REGISTRY = {
    "lif": ("hwloop.models.ttfs.lif", "LIF"),
    "qif": ("hwloop.models.ttfs.qif", "QIF"),
    "nlif": ("hwloop.models.ttfs.nlif", "NonLeakyIF"),
}
_CACHE: dict[str, TTFSModel] = {}


def get_model(name: str) -> TTFSModel:
    if name not in _REGISTRY:
        raise NetworkSpecError(f"unknown neuron model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    if name not in _CACHE:
        mod, attr = _REGISTRY[name]
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise NetworkSpecError(f"neuron model {name!r} is not available in this build ({exc})") from None
        _CACHE[name] = cls()
    return _CACHE[name]


def network_forward(
    layers: Sequence[Layer],
    weights: Sequence[torch.Tensor],
    t_features: torch.Tensor,
    t_max: float,
    measured: Sequence[torch.Tensor] | None = None,
    grad_times: Sequence[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Spike times of every layer, differentiable w.r.t. ``weights`` and ``t_features``.

    ``layers`` supply the neuron parameters and bias times (their own weights
    are ignored: ``weights`` are the live, trainable tensors). With
    ``measured`` (one tensor per layer, e.g. from a target), each layer's
    forward output is the measured time and its backward the model's exact
    derivative at that time, with the *measured* times of the previous layer
    as inputs. ``grad_times`` (one tensor per layer) moves the point at
    which each layer's derivative is evaluated away from its forward times.
    """
    if len(weights) != len(layers):
        raise NetworkSpecError(f"{len(layers)} layers but {len(weights)} weight tensors")
    if measured is not None and len(measured) != len(layers):
        raise NetworkSpecError(f"{len(layers)} layers but {len(measured)} measured time tensors")
    out: list[torch.Tensor] = []
    t = t_features
    for i, (layer, w) in enumerate(zip(layers, weights)):
        model = get_model(layer.neuron.model)
        t_src = with_bias(t, layer.bias_times)
        t = SpikeLayerFn.apply(t_src, w, model, layer.neuron, float(t_max),
                               None if measured is None else measured[i],
                               None if grad_times is None else grad_times[i])
        out.append(t)
    return out


__all__ = ["get_model", "network_forward", "SpikeLayerFn", "TTFSModel", "with_bias"]
