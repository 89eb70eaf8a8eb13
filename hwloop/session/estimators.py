"""Gradient estimators: how a session turns one batch on the target into a gradient.

Every estimator has the one method `GradientEstimator.estimate`: given the
open target, the current master weights and a batch, it runs the target as
often as it needs and returns an `Estimate` (a gradient per weight tensor,
the batch loss on the target, the measurement of the current weights). The
session applies the gradient; it never needs to know how it was obtained.

Built: `ModelGradient` (the model's exact derivative at the measured spike
times, "hardware forward, software backward") and `SpsaGradient` (model-free
simultaneous perturbation) and `NodePerturbationGradient` (Fiete & Seung's node
perturbation through per-neuron current injection), and for spike-train
networks `SurrogateGradient` (measured spikes and membranes substituted into
the surrogate model's forward, `trains_forward`). The adjoint estimator of the
gated-synapse family plugs in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

from hwloop.backends.base import Measurement
from hwloop.network import Network

from .config import LoopConfig


@dataclass
class Estimate:
    grads: list[torch.Tensor | None]  # one per weight tensor (None: no gradient reached it)
    loss: float  # the batch loss the target measured for the current weights
    measurement: Measurement  # of the current weights on this batch
    target_runs: int  # batches run on the target for this estimate
    #: per-layer measured times with a gradient path (for the LIF revival
    #: rule); None where the estimator has no such times
    times: list[torch.Tensor] | None = None


class GradientEstimator(Protocol):
    def estimate(self, backend, weights: Sequence[torch.Tensor], xb: torch.Tensor, yb: torch.Tensor,
                 step: int) -> Estimate:
        """Run the batch (input times ``xb``, labels ``yb``) on ``backend`` with
        ``weights``; ``step`` keys any randomness, so a resumed session
        draws exactly what the uninterrupted one drew."""


class ModelGradient:
    """The model's exact first-spike-time gradient at the measured times
    (`hwloop.inloop.measured_forward`), optionally with the worst-case
    output times of `hwloop.inloop.worst_case_output` in the loss."""

    def __init__(self, template: Network, loss, grad_at: str = "measured", loss_times: str = "measured"):
        self.template, self.loss = template, loss
        self.grad_at, self.loss_times = grad_at, loss_times

    def estimate(self, backend, weights, xb, yb, step):
        from hwloop.inloop import measured_forward, worst_case_output

        times, m = measured_forward(backend, self.template, weights, xb, grad_at=self.grad_at)
        t_loss = times[-1]
        if self.loss_times == "worst":
            t_loss = worst_case_output(self.template, weights, xb, times, yb)
        loss = self.loss(t_loss, yb)
        grads = torch.autograd.grad(loss, list(weights), allow_unused=True)
        return Estimate(grads=list(grads), loss=float(loss.detach()), measurement=m, target_runs=1, times=times)


class SpsaGradient:
    """Simultaneous-perturbation estimate from measured losses only
    (`hwloop.inloop.spsa_gradient`): 2 * pairs runs, plus one run of the
    current weights for the logged loss and measurement."""

    def __init__(self, template: Network, loss, sigma: float, pairs: int, seed: int):
        self.template, self.loss = template, loss
        self.sigma, self.pairs, self.seed = sigma, pairs, seed

    def _loss_on_target(self, backend, ws, xb, yb) -> float:
        from hwloop.inloop import measured_forward

        with torch.no_grad():
            times, _ = measured_forward(backend, self.template, ws, xb)
        return float(self.loss(times[-1], yb))

    def estimate(self, backend, weights, xb, yb, step):
        from hwloop.inloop import measured_forward, spsa_gradient

        rng = np.random.default_rng([self.seed, step, 1])
        grads, runs = spsa_gradient(lambda ws: self._loss_on_target(backend, ws, xb, yb), weights,
                                    self.sigma, self.pairs, rng)
        with torch.no_grad():
            times, m = measured_forward(backend, self.template, weights, xb)
        return Estimate(grads=list(grads), loss=float(self.loss(times[-1], yb)), measurement=m,
                        target_runs=runs + 1)


class NodePerturbationGradient:
    """Node perturbation (Fiete & Seung 2006, PRL 97, 048104), model-free.

    Each of ``trials`` runs injects an independent Gaussian current
    ``xi[s, j] ~ N(0, sigma^2)`` into every neuron j for the whole trial of sample s
    (protocol 1.2 per-sample injection). The reward baseline is the unperturbed run's
    loss of the same sample, so ``(L_p[s] - L_0[s]) xi_p[s, j] / sigma^2`` estimates
    dL/dI_j; a synapse's eligibility is its perturbation times its presynaptic
    activity, here 1 when source i spiked before neuron j did (a first-spike-time
    network: later inputs cannot have mattered). The weight gradient is the mean
    over samples and trials of ``eligibility x reward change``. Cost: ``trials + 1``
    runs per step, whatever the number of weights (SPSA: ``2 pairs + 1``)."""

    def __init__(self, template: Network, loss, sigma: float, trials: int, seed: int):
        self.template, self.loss = template, loss
        self.sigma, self.trials, self.seed = float(sigma), int(trials), seed

    def _per_sample_loss(self, t_out: torch.Tensor, yb: torch.Tensor) -> np.ndarray:
        return np.array([float(self.loss(t_out[s : s + 1], yb[s : s + 1])) for s in range(t_out.shape[0])])

    def estimate(self, backend, weights, xb, yb, step):
        from hwloop.errors import TargetError
        from hwloop.inloop import measured_forward

        if not hasattr(backend, "run_injected"):
            raise TargetError(f"{backend.url.raw}: node perturbation needs a target that injects current "
                              f"(qif-emu, or qif:// with firmware speaking protocol 1.2)")
        # every perturbed run replays the baseline run's temporal noise (same noise seed), so
        # the loss change is the perturbation's, not the noise's
        state = backend.state() if hasattr(backend, "state") else None
        with torch.no_grad():
            times, m = measured_forward(backend, self.template, weights, xb)
        after = backend.state() if state is not None else None
        # the baseline is read exactly as the perturbed runs are (measured times, silent = inf)
        base = self._per_sample_loss(torch.as_tensor(m.times[-1], dtype=weights[0].dtype), yb)
        x = xb.detach().cpu().numpy()
        n, sizes = x.shape[0], [t.shape[1] for t in m.times]
        rng = np.random.default_rng([self.seed, step, 2])
        g_node = np.zeros((n, sum(sizes)))
        for _ in range(self.trials):
            xi = rng.normal(0.0, self.sigma, (n, sum(sizes)))
            if state is not None:
                backend.restore_state(state)
            mp = backend.run_injected(x, per_sample=xi)
            tp = torch.as_tensor(np.where(np.isfinite(mp.times[-1]), mp.times[-1], np.inf), dtype=weights[0].dtype)
            g_node += (self._per_sample_loss(tp, yb) - base)[:, None] * xi / self.sigma ** 2
        g_node /= self.trials
        if after is not None:
            backend.restore_state(after)
        grads, first, src = [], 0, x
        for li, (layer, w) in enumerate(zip(self.template.layers, weights)):
            nb = len(layer.bias_times)
            t_src = np.concatenate([src, np.broadcast_to(np.asarray(layer.bias_times, float), (n, nb))], axis=1)
            t_post = m.times[li]
            active = (np.isfinite(t_src)[:, :, None] & (t_src[:, :, None] < t_post[:, None, :])).astype(float)
            gl = np.einsum("sij,sj->ij", active, g_node[:, first : first + sizes[li]]) / n
            grads.append(torch.as_tensor(gl, dtype=w.dtype))
            first += sizes[li]
            src = t_post
        return Estimate(grads=grads, loss=float(self.loss(times[-1], yb)), measurement=m,
                        target_runs=self.trials + 1)


class SurrogateGradient:
    """Surrogate gradients in the loop for spike-train networks (hxtorch's scheme,
    Cramer et al. 2022): the batch runs on the target as a raster (with membrane
    probes for ``signal="spikes+membranes"``), then the differentiable forward of
    `hwloop.session.trains_forward` in which, layer by layer and step by step, the
    measured spikes (and membranes) replace the simulated ones (forward value
    measured, backward the surrogate model's); the loss is the network's trains
    loss on that forward. ``weights`` are laid out as `hwloop.inloop.trainable_weights`:
    where the session trains the recurrent matrices they follow the feed-forward
    ones (and get their gradient), else the start network's are used."""

    def __init__(self, template: Network, loss, signal: str, surrogate):
        self.template, self.loss, self.signal, self.surrogate = template, loss, signal, surrogate
        self.recurrent = [None if layer.recurrent is None else torch.tensor(layer.recurrent, dtype=torch.float64)
                          for layer in template.layers]

    def measure(self, backend, weights, xb):
        """Deploy ``weights``, run the raster ``xb`` (T, batch, n_in): the measurement,
        the measured spikes per layer and (with membranes) the measured membranes."""
        import time

        from hwloop.errors import TargetError
        from hwloop.inloop import network_with

        t0 = time.perf_counter()
        backend.load(network_with(self.template, weights))
        deploy_s = time.perf_counter() - t0
        membranes = self.signal in ("spikes+membranes", "spikes+readout")
        L = len(self.template.layers)
        # spikes+readout: only the readout's membrane is asked for (on a serial
        # chip the hidden layers' ADC samples are most of the link's traffic)
        probe = [L - 1] if self.signal == "spikes+readout" else membranes
        m = backend.run_raster(xb.detach().cpu().numpy(), probe=probe)
        m.info["deploy_s"] = deploy_s
        if m.events is None:
            raise TargetError(f"{backend.url.raw}: the target returned no spike trains for a spike-train network")
        dtype = weights[0].dtype
        s_meas = [torch.as_tensor(ev.raster(np.float64), dtype=dtype) for ev in m.events]
        v_meas = None
        if membranes:
            if m.probes is None:
                raise TargetError(f"{backend.url.raw}: signal spikes+membranes needs membrane probes, and this target "
                                  f"returned none; use --signal spikes")
            v_meas = [None if v is None else torch.as_tensor(np.asarray(v), dtype=dtype) for v in m.probes]
            if self.signal == "spikes+readout":
                v_meas = [None] * (L - 1) + [v_meas[-1]]
            if v_meas[-1] is None:
                raise TargetError(f"{backend.url.raw}: signal {self.signal} needs the readout's membrane, and "
                                  f"the target returned none")
        return m, s_meas, v_meas

    def forward(self, weights, xb, s_meas, v_meas):
        from .trains_forward import substituted_forward

        from hwloop.inloop import split_weights

        ff, rec = split_weights(self.template, weights)  # the trained recurrent matrices, where trained
        return substituted_forward(self.template.layers, ff, rec, xb.to(weights[0].dtype),
                                   self.surrogate, s_meas, v_meas)

    def estimate(self, backend, weights, xb, yb, step):
        m, s_meas, v_meas = self.measure(backend, weights, xb)
        out = self.forward(weights, xb, s_meas, v_meas)
        loss = self.loss(out, yb)
        grads = torch.autograd.grad(loss, list(weights), allow_unused=True)
        return Estimate(grads=list(grads), loss=float(loss.detach()), measurement=m, target_runs=1, times=None)


def make_estimator(cfg: LoopConfig, template: Network, loss) -> GradientEstimator:
    if template.is_spike_train:
        from hwloop.models.trains import Surrogate

        tc = getattr(loss, "tc", None)
        through_reset = bool(getattr(tc, "through_reset", False))
        return SurrogateGradient(template, loss, cfg.signal or "spikes",
                                 Surrogate(cfg.surrogate or "superspike", float(cfg.surrogate_beta or 20.0),
                                           through_reset=through_reset))
    if cfg.gradient == "node-perturbation":
        return NodePerturbationGradient(template, loss, getattr(cfg, "np_sigma", 0.2),
                                        getattr(cfg, "np_trials", 8), cfg.seed)
    if cfg.gradient == "spsa":
        return SpsaGradient(template, loss, cfg.spsa_sigma, cfg.spsa_pairs, cfg.seed)
    return ModelGradient(template, loss, cfg.grad_at, cfg.loss_times)
