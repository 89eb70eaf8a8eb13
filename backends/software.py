"""The `software` target: the float first-spike-time model itself.

The reference every other target is compared with, and the forward pass of
pure software training. No quantisation, no time grid.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hwloop.models import network_forward
from hwloop.network import Network

from .base import Backend


class SoftwareBackend(Backend):
    scheme = "software"
    description = "the float closed-form model (reference, no hardware effects)"

    def compile(self, net: Network) -> Network:
        return net  # the model runs the network as it is

    def _deploy(self, compiled: Network) -> None:
        self._weights = [torch.tensor(w, dtype=torch.float64) for w in compiled.weights()]

    def _run(self, t_features: np.ndarray):
        net = self.network
        t0 = time.perf_counter()
        with torch.no_grad():
            x = torch.as_tensor(t_features, dtype=torch.float64)
            times = network_forward(net.layers, self._weights, x, net.t_max)
        elapsed = time.perf_counter() - t0
        return [t.numpy() for t in times], elapsed, {}
