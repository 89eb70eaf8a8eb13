"""The `software` target: the float first-spike-time model itself, and the
discrete-time CUBA and QIF ("qif-trains") models for spike-train networks
(format version 2).

The reference every other target is compared with, and the forward pass of
pure software training. No quantisation; a first-spike-time network has no
time grid, a spike-train network runs on its own steps of ``dt``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hwloop.models import network_forward
from hwloop.network import Network

from .base import Backend, Measurement, SpikeEvents


class SoftwareBackend(Backend):
    scheme = "software"
    description = "the float closed-form model (reference, no hardware effects)"

    SPIKE_TRAINS = True

    def compile(self, net: Network) -> Network:
        return net  # the model runs the network as it is

    def _deploy(self, compiled: Network) -> None:
        self._weights = [torch.tensor(w, dtype=torch.float64) for w in compiled.weights()]
        if compiled.is_spike_train:
            self._params = [layer.neuron.trains_params() for layer in compiled.layers]  # cuba or qif-trains
            self._recurrent = [None if layer.recurrent is None else torch.tensor(layer.recurrent, dtype=torch.float64)
                               for layer in compiled.layers]

    def run_raster(self, raster: np.ndarray, probe: bool = False) -> Measurement:
        """Run the deployed spike-train network on an input raster (n_steps, batch, n_features)."""
        from hwloop.models.trains import Surrogate, trains_network_forward

        net = self.network
        r = self.checked_raster(raster)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = trains_network_forward(torch.as_tensor(r, dtype=torch.float64), self._weights, self._params,
                                         Surrogate(), self._recurrent, record="all")
        target_s = time.perf_counter() - t0
        events, times = [], []
        for layer, s in zip(net.layers, out.spikes):
            ev = SpikeEvents.from_raster(s.numpy())
            first = ev.first_steps()
            times.append(np.where(first >= 0, first * net.dt, np.inf))
            events.append(ev)
        probes = [v.numpy().copy() for v in out.membranes] if probe else None
        kind, w = net.decoding.kind, net.decoding.window or (0, net.n_steps)
        if kind == "max-membrane":
            scores = out.membranes[-1][w[0]:w[1]].max(dim=0).values.numpy().copy()
        elif kind == "spike-count":
            scores = out.spikes[-1][w[0]:w[1]].sum(0).numpy().copy()
        else:
            scores = None
        total = time.perf_counter() - t0
        return Measurement(times=times, target=self.url.raw, target_time_s=target_s,
                           host_time_s=max(0.0, total - target_s), info={}, events=events, probes=probes, scores=scores,
                           dt=net.dt)

    def _run(self, t_features: np.ndarray):
        net = self.network
        t0 = time.perf_counter()
        with torch.no_grad():
            x = torch.as_tensor(t_features, dtype=torch.float64)
            times = network_forward(net.layers, self._weights, x, net.t_max)
        elapsed = time.perf_counter() - t0
        return [t.numpy() for t in times], elapsed, {}
