"""Gradient estimators: how a session turns one batch on the target into a gradient.

Every estimator has the one method `GradientEstimator.estimate`: given the
open target, the current master weights and a batch, it runs the target as
often as it needs and returns an `Estimate` (a gradient per weight tensor,
the batch loss on the target, the measurement of the current weights). The
session applies the gradient; it never needs to know how it was obtained.

Built: `ModelGradient` (the model's exact derivative at the measured spike
times, "hardware forward, software backward") and `SpsaGradient` (model-free
simultaneous perturbation). The surrogate-gradient, node-perturbation and
adjoint estimators of the spike-train family plug in here.
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


def make_estimator(cfg: LoopConfig, template: Network, loss) -> GradientEstimator:
    if cfg.gradient == "spsa":
        return SpsaGradient(template, loss, cfg.spsa_sigma, cfg.spsa_pairs, cfg.seed)
    return ModelGradient(template, loss, cfg.grad_at, cfg.loss_times)
