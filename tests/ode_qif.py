"""Independent reference for the QIF model: numerical integration of the V-ODE.

    τ dV/dt = V(V − 1) + I0,   V → V + w at each delivered input

V itself reaches +∞ in finite time, so we integrate u = arctan V instead:

    τ du/dt = sin²u − sin u cos u + I0 cos²u

which is smooth and bounded; the spike is u crossing +π/2 (found by
solve_ivp's event location, DOP853, tolerances 1e-12). An input maps
u → arctan(tan u + w). Nothing here uses the model's closed form (phase,
angle or transfer function); only the definition of the pseudodynamics
(docs/models-qif.md, section 3) is shared: after T the neuron receives one
pulse Σ w_i ρ(t_i) and then flows freely until it spikes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp


def _rhs(tau, i0):
    def f(_t, u):
        s, c = math.sin(u[0]), math.cos(u[0])
        return [(s * s - s * c + i0 * c * c) / tau]

    return f


def _spike_event(_t, u):
    return u[0] - math.pi / 2


_spike_event.terminal = True
_spike_event.direction = 1.0


def _flow(u, t0, t1, tau, i0):
    """Integrate from t0 to t1; return (u(t1), spike time or None)."""
    if t1 <= t0:
        return u, None
    sol = solve_ivp(_rhs(tau, i0), (t0, t1), [u], method="DOP853", rtol=1e-12, atol=1e-12,
                    events=_spike_event)
    if sol.t_events[0].size:
        return None, float(sol.t_events[0][0])
    return float(sol.y[0, -1]), None


def neuron_times(t_in, w, t_max, tau=1.0, i0=1.25, v0=0.5):
    """(ordinary spike time or inf, extended time) of one neuron."""
    t_in = np.asarray(t_in, dtype=float)
    w = np.asarray(w, dtype=float)
    period = math.pi * tau / math.sqrt(i0 - 0.25)
    delivered = np.isfinite(t_in) & (t_in <= t_max)
    order = np.argsort(np.where(delivered, t_in, np.inf), kind="stable")[: int(delivered.sum())]
    u, t = math.atan(v0), 0.0
    for i in order:
        u, spike = _flow(u, t, float(t_in[i]), tau, i0)
        if spike is not None:
            return spike, spike
        t = float(t_in[i])
        u = math.atan(math.tan(u) + w[i])
    u, spike = _flow(u, t, t_max, tau, i0)
    if spike is not None:
        return spike, spike
    late = np.isfinite(t_in) & (t_in > t_max) & (t_in < t_max + period)
    pulse = float(np.sum(w[late] * (1.0 - (t_in[late] - t_max) / period)))
    u = math.atan(math.tan(u) + pulse)
    _, spike = _flow(u, t_max, t_max + 2 * period, tau, i0)
    assert spike is not None, "a free theta neuron must spike within one period"
    return math.inf, spike


def layer_times(t_in, w, t_max, tau=1.0, i0=1.25, v0=0.5):
    """(ordinary, extended) times of a layer: t_in (B, S), w (S, n)."""
    t_in, w = np.asarray(t_in, float), np.asarray(w, float)
    B, n = t_in.shape[0], w.shape[1]
    ordinary, extended = np.empty((B, n)), np.empty((B, n))
    for b in range(B):
        for j in range(n):
            ordinary[b, j], extended[b, j] = neuron_times(t_in[b], w[:, j], t_max, tau, i0, v0)
    return ordinary, extended
