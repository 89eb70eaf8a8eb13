"""First-spike-time layers as `torch.nn.Module`s, for use inside your own models.

`SpikeLayer` maps a batch of input spike times ``(B, n_in)`` to the first
spike time of each of its neurons ``(B, n_out)`` (``inf``: silent in the
trial). Forward is the neuron model's closed form, backward its exact
derivative: both are the autograd function the trainer uses
(`hwloop.models.base.SpikeLayerFn`), so gradients here are the trainer's
gradients (tested). Gradients flow to the weights *and* to the input times,
so anything upstream that produces spike times (a learnable encoder, another
layer) trains too.

`SpikeNetwork` is a stack of them, convertible to and from `hwloop.Network`
(`from_network`, `to_network`), so a network trained here deploys on every
target, and a deployed one can be fine-tuned here. `TTFSLoss` is the
trainer's loss as a module.

QIF layers (``neuron.model == "qif"``) give silent neurons *pseudospike*
times after the trial end in training mode (``module.train()``), as the
trainer does, so that they have gradients; in ``module.eval()`` mode they
return ordinary times (``inf`` for silent). LIF and non-leaky IF layers
behave the same in both modes; silent LIF neurons have no gradient (use
`SpikeNetwork.revive` as the trainer does).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch

from . import __version__
from .errors import NetworkSpecError
from .models import get_model
from .models.base import SpikeLayerFn, with_bias
from .network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding, Provenance, now_iso
from .training import TrainConfig, build_layers, default_config, encoding_for, init_weights, revive_silent, ttfs_loss

__all__ = ["SpikeLayer", "SpikeNetwork", "TTFSLoss"]


class SpikeLayer(torch.nn.Module):
    """One feed-forward first-spike-time layer: spike times in, spike times out.

    ``n_in`` input sources feed ``n_out`` neurons with parameters ``neuron``
    (a `hwloop.NeuronParams`; default: LIF, τs = τm = 1, threshold 1).
    ``bias_times``: one extra source per entry that spikes at that time in
    every sample (default one bias spike at 0.9, the trainer's default;
    ``()`` for none). ``t_max``: the trial length; a neuron that has not
    spiked by then is silent. Times are in whatever unit ``neuron`` is in.

    ``weight`` (``(n_in + len(bias_times), n_out)``, rows: sources, then bias
    sources) is the trainable `torch.nn.Parameter`; without it the weights
    are drawn from a normal distribution ``init = (mean, std)`` with
    ``generator``. ``pseudospikes``: give silent QIF neurons pseudospike
    times (None: in training mode only; ignored by models without them).
    """

    def __init__(self, n_in: int, n_out: int, neuron: NeuronParams | None = None, *,
                 bias_times: Sequence[float] = (0.9,), t_max: float = 4.0,
                 weight: torch.Tensor | np.ndarray | None = None, init: tuple[float, float] = (1.0, 0.8),
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                 pseudospikes: bool | None = None):
        super().__init__()
        self.neuron = neuron if neuron is not None else NeuronParams()
        self.neuron.validate("SpikeLayer")
        self.model = get_model(self.neuron.model)
        self.bias_times = tuple(float(t) for t in bias_times)
        if not (t_max > 0 and np.isfinite(t_max)):
            raise NetworkSpecError(f"SpikeLayer: t_max must be finite and > 0, got {t_max!r}")
        self.t_max = float(t_max)
        self.pseudospikes = pseudospikes
        shape = (int(n_in) + len(self.bias_times), int(n_out))
        if n_in < 1 or n_out < 1:
            raise NetworkSpecError(f"SpikeLayer: n_in and n_out must be >= 1, got {n_in}, {n_out}")
        if weight is None:
            mean, std = init
            w = torch.randn(shape, generator=generator, dtype=dtype) * std + mean
        else:
            w = (weight.detach().clone().to(dtype) if isinstance(weight, torch.Tensor)
                 else torch.tensor(np.array(weight, dtype=np.float64), dtype=dtype))
            if tuple(w.shape) != shape:
                raise NetworkSpecError(f"SpikeLayer: weight shape {tuple(w.shape)} != {shape} "
                                       f"({n_in} sources + {len(self.bias_times)} bias, {n_out} neurons)")
        self.weight = torch.nn.Parameter(w)

    @property
    def n_in(self) -> int:
        """Number of input sources (bias sources not counted)."""
        return self.weight.shape[0] - len(self.bias_times)

    @property
    def n_out(self) -> int:
        """Number of neurons."""
        return self.weight.shape[1]

    def extra_repr(self) -> str:
        """What ``print(module)`` shows besides the class name."""
        return (f"n_in={self.n_in}, n_out={self.n_out}, model={self.neuron.model!r}, "
                f"bias_times={self.bias_times}, t_max={self.t_max:g}")

    def _use_pseudospikes(self) -> bool:
        wanted = self.training if self.pseudospikes is None else self.pseudospikes
        return bool(wanted) and hasattr(self.model, "pseudo_spike_times")

    def forward(self, t_in: torch.Tensor, measured: torch.Tensor | None = None,
                grad_at: torch.Tensor | None = None) -> torch.Tensor:
        """Spike times ``(B, n_out)`` of the layer's neurons for input times ``t_in`` ``(B, n_in)``.

        ``measured``: times a target measured for this layer, returned as
        the forward value while the backward pass stays the model's exact
        derivative (hardware forward, software backward; ``t_in`` should
        then be the *measured* times of the layer before). ``grad_at``:
        evaluate that derivative at these times instead (see
        `hwloop.inloop.measured_forward`)."""
        t_in = t_in.to(self.weight.dtype)
        if t_in.ndim != 2 or t_in.shape[1] != self.n_in:
            raise NetworkSpecError(f"SpikeLayer: expected input times of shape (batch, {self.n_in}), "
                                   f"got {tuple(t_in.shape)}")
        src = with_bias(t_in, self.bias_times)
        if self._use_pseudospikes():
            with torch.no_grad():
                if measured is None:
                    measured = self.model.pseudo_spike_times(src.detach(), self.weight.detach(), self.neuron,
                                                             self.t_max)
                elif torch.isinf(measured).any():
                    measured = self.model.pseudospikes_for_measured(src.detach(), self.weight.detach(),
                                                                    measured.to(src.dtype), self.neuron,
                                                                    self.t_max)
        return SpikeLayerFn.apply(src, self.weight, self.model, self.neuron, self.t_max, measured, grad_at)

    @classmethod
    def from_layer(cls, layer: Layer, t_max: float, dtype: torch.dtype = torch.float64) -> "SpikeLayer":
        """The trainable module for a `hwloop.Layer` of a network with trial length ``t_max``."""
        return cls(layer.n_in, layer.n_out, layer.neuron, bias_times=layer.bias_times, t_max=t_max,
                   weight=layer.weight, dtype=dtype)

    def to_layer(self) -> Layer:
        """The current weights as a `hwloop.Layer` (float64)."""
        return Layer(weight=self.weight.detach().to(torch.float64).cpu().numpy(), neuron=self.neuron,
                     bias_times=self.bias_times)


class SpikeNetwork(torch.nn.Module):
    """A stack of `SpikeLayer`s sharing one trial length: spike times in,
    output spike times out; convertible to and from `hwloop.Network`.

    ``layers``: the layers, each one's ``n_in`` the previous one's
    ``n_out``. ``encoding``, ``decoding``, ``time_unit``, ``provenance``:
    what `to_network` needs to make a deployable `hwloop.Network` (set by
    `from_network` and `for_dataset`; may be given to `to_network` instead).
    ``config``: the `hwloop.TrainConfig` it was built from, if any.
    """

    def __init__(self, layers: Sequence[SpikeLayer], *, encoding: InputEncoding | None = None,
                 decoding: OutputDecoding | None = None, time_unit: str = "ms",
                 provenance: Provenance | None = None, config: TrainConfig | None = None):
        super().__init__()
        if not layers:
            raise NetworkSpecError("SpikeNetwork: needs at least one layer")
        for i in range(1, len(layers)):
            if layers[i].n_in != layers[i - 1].n_out:
                raise NetworkSpecError(f"SpikeNetwork: layer {i} takes {layers[i].n_in} inputs but layer {i - 1} "
                                       f"has {layers[i - 1].n_out} neurons")
        if len({layer.t_max for layer in layers}) != 1:
            raise NetworkSpecError("SpikeNetwork: all layers must share one t_max (the trial length)")
        self.layers = torch.nn.ModuleList(layers)
        self.encoding, self.decoding, self.time_unit = encoding, decoding, time_unit
        self.provenance, self.config = provenance, config

    @property
    def t_max(self) -> float:
        """The trial length, shared by every layer."""
        return self.layers[0].t_max

    def layer_times(self, t_in: torch.Tensor, measured: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Spike times of every layer, ``[(B, n_1), ..., (B, n_out)]``, for input times ``t_in``.

        ``measured`` (one tensor per layer, e.g. `hwloop.Measurement.times`):
        the forward values are the measured times, each layer's input the
        measured times of the layer before, and the backward the model's
        exact derivative there (as `hwloop.inloop.measured_forward`)."""
        if measured is not None and len(measured) != len(self.layers):
            raise NetworkSpecError(f"{len(self.layers)} layers but {len(measured)} measured time tensors")
        out, t = [], t_in
        for i, layer in enumerate(self.layers):
            m = None if measured is None else torch.as_tensor(measured[i], dtype=layer.weight.dtype)
            t = layer(t, m)
            out.append(t)
        return out

    def forward(self, t_in: torch.Tensor, measured: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Output spike times ``(B, n_classes)`` for input times ``t_in``; see `layer_times`."""
        return self.layer_times(t_in, measured)[-1]

    def encode(self, x) -> torch.Tensor:
        """Feature values ``(B, n_features)`` -> input spike times with the network's encoding."""
        if self.encoding is None:
            raise NetworkSpecError("SpikeNetwork: no input encoding (build it with from_network or for_dataset)")
        return torch.as_tensor(self.encoding.encode(np.asarray(x)), dtype=self.layers[0].weight.dtype)

    def revive(self, times: Sequence[torch.Tensor], max_missing: Sequence[float] = (0.3, 0.0),
               bump: float = 0.005) -> list[int]:
        """The trainer's weight bumping (docs/training.md): raise every
        incoming weight of a neuron that was silent in more than a fraction
        ``max_missing[layer]`` (last value repeats) of the batch's samples.
        Call it after the optimiser step with `layer_times`'s output; returns
        the indices of the layers it changed."""
        rates = [max_missing[min(i, len(max_missing) - 1)] for i in range(len(self.layers))]
        return revive_silent([layer.weight for layer in self.layers], times, rates, bump)

    @classmethod
    def from_network(cls, net: Network, dtype: torch.dtype = torch.float64) -> "SpikeNetwork":
        """The trainable module for a `hwloop.Network` (its weights copied)."""
        return cls([SpikeLayer.from_layer(layer, net.t_max, dtype) for layer in net.layers],
                   encoding=net.encoding, decoding=net.decoding, time_unit=net.time_unit,
                   provenance=net.provenance)

    @classmethod
    def for_dataset(cls, dataset: str = "yinyang", model: str = "lif", *, seed: int = 0,
                    **options) -> "SpikeNetwork":
        """A network laid out and initialised as ``hwloop.train(model, dataset,
        seed=seed, **options)`` would start it: the same layers, neuron
        parameters, encoding and initial weights (``options``: `hwloop.TrainConfig` fields)."""
        from .data import load_dataset

        hidden = options.get("hidden")
        if isinstance(hidden, int):
            options["hidden"] = (hidden,)
        cfg = default_config(model, dataset, seed=seed, **options)
        cfg.validate()
        enc = encoding_for(cfg)
        classes = load_dataset(cfg.dataset, "train", root=cfg.data_root).classes
        layers = build_layers(cfg, enc.n_features, len(classes))
        weights = init_weights(cfg, layers, torch.Generator().manual_seed(cfg.seed))
        t_max = cfg.t_max * cfg.tau
        dtype = getattr(torch, cfg.dtype)
        mods = [SpikeLayer(layer.n_in, layer.n_out, layer.neuron, bias_times=layer.bias_times, t_max=t_max,
                           weight=w.detach(), dtype=dtype) for layer, w in zip(layers, weights)]
        return cls(mods, encoding=enc, decoding=OutputDecoding(classes=classes), time_unit=cfg.time_unit,
                   provenance=Provenance(model=cfg.model, dataset=cfg.dataset, seed=cfg.seed), config=cfg)

    def to_network(self, *, encoding: InputEncoding | None = None, classes: Sequence[str] | None = None,
                   time_unit: str | None = None, provenance: Provenance | None = None) -> Network:
        """The current weights as a deployable `hwloop.Network`.

        Encoding, classes, time unit and provenance default to the ones the
        module was built with. The default provenance is the one it was built
        with, minus its accuracies (they belong to other weights), with a new
        creation time and ``extra["converted_from"] = "hwloop.nn.SpikeNetwork"``."""
        encoding = encoding or self.encoding
        if encoding is None:
            raise NetworkSpecError("to_network: pass encoding= (the module was not built from a Network)")
        if classes is not None:
            decoding = OutputDecoding(classes=tuple(classes))
        elif self.decoding is not None:
            decoding = self.decoding
        else:
            raise NetworkSpecError("to_network: pass classes= (the module was not built from a Network)")
        if provenance is None:
            base = self.provenance or Provenance(model=self.layers[0].neuron.model)
            provenance = dataclasses.replace(base, accuracy={}, created=now_iso(), hwloop_version=__version__,
                                             extra={**dict(base.extra), "converted_from": "hwloop.nn.SpikeNetwork"})
        return Network(layers=tuple(layer.to_layer() for layer in self.layers), encoding=encoding,
                       decoding=decoding, t_max=self.t_max, time_unit=time_unit or self.time_unit,
                       provenance=provenance)


class TTFSLoss(torch.nn.Module):
    """The trainer's loss on output spike times (`hwloop.training.ttfs_loss`,
    docs/training.md): cross-entropy on ``-t / (xi * tau)`` plus ``alpha *
    (exp(t_label / (beta * tau)) - 1)``; silent outputs count as ``t_max``.
    ``end_logit``: the trial end competes as one more class. Call it as
    ``loss(t_out, labels)``."""

    def __init__(self, t_max: float, tau: float = 1.0, xi: float = 0.2, alpha: float = 0.005, beta: float = 2.6,
                 end_logit: bool = False):
        super().__init__()
        self.t_max, self.tau, self.xi, self.alpha, self.beta = float(t_max), float(tau), xi, alpha, beta
        self.end_logit = end_logit

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "TTFSLoss":
        """The loss the trainer uses for ``cfg`` (e.g. `SpikeNetwork.config`)."""
        return cls(cfg.t_max * cfg.tau, cfg.tau, cfg.xi, cfg.alpha, cfg.beta, cfg.end_logit)

    def forward(self, t_out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch for output times ``(B, C)`` and integer labels ``(B,)``."""
        return ttfs_loss(t_out, labels, self.t_max, self.tau, self.xi, self.alpha, self.beta, self.end_logit)
