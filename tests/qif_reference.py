"""Independent ground truth for QIF chip tests: the exact first-spike times
of a feed-forward theta-neuron network, event by event.

Between inputs the phase of a theta neuron advances linearly: with
V = 1/2 + r tan(psi), r = sqrt(I0 - 1/4), d psi/dt = r / tau exactly, and an
input of weight w maps tan(psi) -> tan(psi) + w / r. A spike is psi = pi/2.
This is the closed form the trainer's model is built on, written here
without any code from the chip emulator (which integrates numerically)."""

from __future__ import annotations

import math

import numpy as np


def layer_times(src: np.ndarray, w: np.ndarray, tau: float, i0: float, v0: float, t_end: float) -> np.ndarray:
    r = math.sqrt(i0 - 0.25)
    omega = r / tau
    n, n_out = src.shape[0], w.shape[1]
    out = np.full((n, n_out), np.inf)
    for b in range(n):
        order = np.argsort(src[b], kind="stable")
        psi = np.full(n_out, math.atan((v0 - 0.5) / r))
        t = 0.0
        done = np.zeros(n_out, bool)
        for i in order:
            te = src[b, i]
            if not np.isfinite(te) or te >= t_end:
                break
            pe = psi + omega * (te - t)
            fire = (pe >= math.pi / 2) & ~done
            out[b, fire] = t + (math.pi / 2 - psi[fire]) / omega
            done |= fire
            psi = np.arctan(np.tan(np.minimum(pe, math.pi / 2 - 1e-15)) + w[i] / r)
            t = te
        rest = ~done
        out[b, rest] = t + (math.pi / 2 - psi[rest]) / omega
    return np.where(out < t_end, out, np.inf)


def network_times(net, t_in: np.ndarray) -> list[np.ndarray]:
    """Every layer's first spike times for a `hwloop.Network` of QIF layers (inf = silent)."""
    t = np.asarray(t_in, dtype=np.float64)
    res = []
    for layer in net.layers:
        bias = np.broadcast_to(np.asarray(layer.bias_times, dtype=np.float64), (t.shape[0], len(layer.bias_times)))
        src = np.concatenate([t, bias], axis=1)
        o = layer.neuron.options
        t = layer_times(src, layer.weight, layer.neuron.tau_mem, float(o.get("i0", 1.25)), float(o.get("v0", 0.5)), net.t_max)
        res.append(t)
    return res
