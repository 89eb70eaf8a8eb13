"""Hardware forward, software backward: gradients from measured spike times.

`measured_forward` runs a batch on a target and returns every layer's
*measured* spike times as tensors wired into autograd: their backward pass is
the model's exact first-spike-time derivative evaluated at the measured times
(with the measured times of the previous layer as its inputs). This is how
Göltz et al. 2021 trained BrainScaleS-2; the same code serves `software`
(where it reproduces plain software training exactly) and every target.

`spsa_gradient` is the model-free alternative for targets without a trusted
model: simultaneous-perturbation estimates from measured losses only.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import NetworkSpecError
from .models import get_model, network_forward
from .network import Layer, Network


def recurrent_layers(template: Network) -> list[int]:
    """The indices of ``template``'s layers that have recurrent weights."""
    return [i for i, layer in enumerate(template.layers) if layer.recurrent is not None]


def trainable_weights(net: Network, recurrent: bool = False) -> list[torch.Tensor]:
    """``net``'s weights as the float64 list a session trains: one feed-forward
    matrix per layer, then (``recurrent``) the recurrent matrix of every layer
    that has one, in layer order."""
    out = [torch.tensor(np.array(w), dtype=torch.float64) for w in net.weights()]
    if recurrent:
        out += [torch.tensor(np.array(net.layers[i].recurrent), dtype=torch.float64) for i in recurrent_layers(net)]
    return out


def split_weights(template: Network, weights: Sequence[torch.Tensor]):
    """(feed-forward matrices, recurrent matrix or None per layer) of a list
    laid out as `trainable_weights`: with one matrix per layer only, the
    recurrent matrices are the template's (as float64 tensors)."""
    n = len(template.layers)
    idx = recurrent_layers(template)
    extra = list(weights[n:])
    if len(weights) < n or (extra and len(extra) != len(idx)):
        raise NetworkSpecError(f"expected {n} weight matrices (+ {len(idx)} recurrent), got {len(weights)}")
    rec = [None if layer.recurrent is None else torch.tensor(layer.recurrent, dtype=torch.float64)
           for layer in template.layers]
    for i, w in zip(idx, extra):
        rec[i] = w
    return list(weights[:n]), rec


def network_with(template: Network, weights: Sequence[torch.Tensor]) -> Network:
    """The template network carrying the current float master weights (laid
    out as `trainable_weights`: the recurrent matrices too, where given)."""
    import dataclasses

    n = len(template.layers)
    net = template.with_weights([w.detach().to(torch.float64).cpu().numpy() for w in weights[:n]])
    if len(weights) == n:
        return net
    _, rec = split_weights(template, weights)  # checks the count
    layers = tuple(layer if r is None else dataclasses.replace(layer, recurrent=_recurrent_array(layer, r))
                   for layer, r in zip(net.layers, rec))
    return dataclasses.replace(net, layers=layers)


def _recurrent_array(layer: Layer, r: torch.Tensor) -> np.ndarray:
    a = r.detach().to(torch.float64).cpu().numpy()
    if a.shape != layer.recurrent.shape:
        raise NetworkSpecError(f"new recurrent weight shape {a.shape} != {layer.recurrent.shape}")
    return a


def measured_forward(backend, template: Network, weights: Sequence[torch.Tensor],
                     t_features: torch.Tensor, redeploy: bool = True, grad_at: str = "measured"):
    """Run ``t_features`` on the target with the current weights.

    Returns (times, measurement): ``times`` is one tensor per layer whose
    values are the measured spike times and whose gradient is the model's
    exact derivative; silent neurons (inf) get none, unless the model defines
    pseudospikes for them (`with_pseudospikes`).

    ``grad_at`` chooses where each layer's derivative is evaluated:
    ``"measured"``: at the measured output time (Göltz et al. on BrainScaleS-2);
    ``"model"``: at the model's own output time for the *measured* inputs of
    that layer. On a coarse time grid a measured time can sit past the true
    crossing, where dV/dt is small or negative and the implicit-function
    derivative blows up; the model time is where the derivative is defined.
    Where the model says silent but the target fired, the measured time is used.
    """
    if grad_at not in ("measured", "model"):
        raise ValueError(f"grad_at must be 'measured' or 'model', got {grad_at!r}")
    deploy_s = 0.0
    if redeploy:
        t0 = time.perf_counter()
        backend.load(network_with(template, weights))
        deploy_s = time.perf_counter() - t0
    m = backend.run(t_features.detach().cpu().numpy())
    m.info["deploy_s"] = deploy_s
    dtype = weights[0].dtype
    measured = [torch.as_tensor(t, dtype=dtype) for t in m.times]
    measured = with_pseudospikes(template.layers, weights, t_features, measured, template.t_max)
    grad_times = None
    if grad_at == "model":
        grad_times = model_times_at_measured_inputs(template, weights, t_features, measured)
    times = network_forward(template.layers, weights, t_features, template.t_max, measured=measured,
                            grad_times=grad_times)
    return times, m


def model_times_at_measured_inputs(template: Network, weights, t_features, measured):
    """Per layer: the model's spike times given the previous layer's measured
    times; measured where the model is silent, inf where the target was."""
    from .models.base import with_bias

    out = []
    t_prev = t_features
    with torch.no_grad():
        for layer, w, t_meas in zip(template.layers, weights, measured):
            model = get_model(layer.neuron.model)
            t_mod = model.spike_times(with_bias(t_prev, layer.bias_times), w.detach(), layer.neuron,
                                      template.t_max)
            t_mod = torch.where(torch.isfinite(t_mod), t_mod, t_meas)
            out.append(torch.where(torch.isfinite(t_meas), t_mod, t_meas))
            t_prev = t_meas
    return out


def with_pseudospikes(layers: Sequence[Layer], weights, t_features, measured, t_max):
    """Replace measured silences by the model's pseudospike times where the
    model defines them (QIF): computed from the *measured* inputs of each layer."""
    out = []
    t_prev = t_features
    for layer, w, t_meas in zip(layers, weights, measured):
        model = get_model(layer.neuron.model)
        fill = getattr(model, "pseudospikes_for_measured", None)
        if fill is not None and torch.isinf(t_meas).any():
            from .models.base import with_bias

            with torch.no_grad():
                t_meas = fill(with_bias(t_prev, layer.bias_times), w.detach(), t_meas, layer.neuron, t_max)
        out.append(t_meas)
        t_prev = t_meas
    return out


def spsa_gradient(loss_of: Callable[[list[torch.Tensor]], float], weights: Sequence[torch.Tensor],
                  sigma: float, pairs: int, rng: np.random.Generator) -> tuple[list[torch.Tensor], int]:
    """Simultaneous-perturbation gradient estimate (Spall 1992), averaged over
    ``pairs`` Rademacher directions; each pair costs two target runs.

    ``loss_of(weights)`` must run the target and return the batch loss.
    Returns (gradient per weight tensor, number of target runs spent)."""
    grads = [torch.zeros_like(w) for w in weights]
    base = [w.detach() for w in weights]
    for _ in range(pairs):
        deltas = [torch.as_tensor(rng.choice([-1.0, 1.0], size=tuple(w.shape)), dtype=w.dtype) for w in base]
        plus = loss_of([w + sigma * d for w, d in zip(base, deltas)])
        minus = loss_of([w - sigma * d for w, d in zip(base, deltas)])
        scale = (plus - minus) / (2.0 * sigma * pairs)
        for g, d in zip(grads, deltas):
            g += scale * d
    return grads, 2 * pairs


def worst_case_output(template: Network, weights: Sequence[torch.Tensor], t_features: torch.Tensor,
                      times: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Output times for the loss: per sample and output, the *worse* of the
    measured time and the model's time for the measured inputs -- the later
    of the two for the label output, the earlier for every other output.

    Why (measured on `bitexact`, docs/in-the-loop.md): on a time grid with
    8-bit weights, the accuracy lost on the target is not small timing
    errors but outputs whose first crossing the target and the model
    disagree about (typically a large, fast race of excitatory and
    inhibitory inputs), firing 20-40 steps apart. Which way such an output
    goes flips with a one-LSB weight change, so with the measured loss the
    validation accuracy on the target jumps between two levels (~0.90 and
    ~0.95) from one step to the next. The measured loss cannot see a
    non-label output that the model fires early but the target happened to
    miss; the worst case of the two does, and its gradient (the model's, at
    the model's own crossing) pushes that membrane clear of the threshold,
    so that target and model agree, and the jumps stop.

    ``times`` are `measured_forward`'s outputs; the model's output layer is
    re-evaluated on the measured times of the layer before it (the network
    inputs for a one-layer network), so gradients flow into every layer.
    Silent is ``inf`` in both (the loss maps it to the trial end)."""
    from .models.base import SpikeLayerFn, with_bias

    layer, w = template.layers[-1], weights[-1]
    t_src = with_bias(times[-2] if len(times) > 1 else t_features, layer.bias_times)
    t_model = SpikeLayerFn.apply(t_src, w, get_model(layer.neuron.model), layer.neuron, float(template.t_max))
    t_meas = times[-1]
    is_label = torch.zeros_like(t_meas, dtype=torch.bool)
    is_label[torch.arange(len(labels)), labels] = True
    use_model = torch.where(is_label, t_model > t_meas, t_model < t_meas)
    return torch.where(use_model, t_model, t_meas)
