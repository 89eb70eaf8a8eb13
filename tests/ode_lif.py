"""Independent reference for the LIF first-spike time: numerical integration
of the ODE itself, no closed form anywhere.

    dI/dt = -I / tau_s          (I jumps by w_i when input i spikes)
    tau_m dV/dt = -V + I        (V(0) = I(0) = 0)

Each sample is integrated piecewise between consecutive input spike times
with `scipy.integrate.solve_ivp` (DOP853, tight tolerances), applying the
current jumps at the segment boundaries. One event function per neuron
detects upward threshold crossings; the first one is the spike time. A small
``max_step`` keeps the integrator from stepping over a crossing that goes up
and back down between two steps (which event detection, looking only at sign
changes between steps, would otherwise miss).

Slow by design (Python per sample); used only by the tests on small layers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp


def _crossing_event(j: int, threshold: float):
    def event(t, y):
        return y[j] - threshold

    event.direction = 1.0
    event.terminal = False
    return event


def first_spike_times_ode(t_in, w, tau_syn: float, tau_mem: float, threshold: float, t_max: float,
                          rtol: float = 1e-10, atol: float = 1e-12, max_step: float | None = None):
    """(B, n_src) input times, (n_src, n_out) weights -> (B, n_out) first spike
    times, ``inf`` for neurons that do not cross ``threshold`` by ``t_max``."""
    t_in = np.asarray(t_in, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    B, n_src = t_in.shape
    n_out = w.shape[1]
    if max_step is None:
        max_step = min(tau_syn, tau_mem) / 20.0
    events = [_crossing_event(j, threshold) for j in range(n_out)]

    def rhs(t, y):
        v, i = y[:n_out], y[n_out:]
        return np.concatenate([(i - v) / tau_mem, -i / tau_syn])

    out = np.full((B, n_out), math.inf)
    for b in range(B):
        times = t_in[b]
        live = np.isfinite(times) & (times < t_max)
        order = np.argsort(np.where(live, times, np.inf))[: int(live.sum())]
        y = np.zeros(2 * n_out)
        # segment boundaries: distinct input times, then the trial end
        bounds = sorted(set(times[order].tolist()))
        if not bounds:
            continue
        t_now = bounds[0]
        pending = list(order)
        stops = bounds[1:] + [t_max]
        for t_stop in stops:
            # apply every input arriving at t_now
            while pending and times[pending[0]] <= t_now:
                y[n_out:] += w[pending.pop(0)]
            if t_stop > t_now:
                sol = solve_ivp(rhs, (t_now, t_stop), y, method="DOP853", rtol=rtol, atol=atol,
                                max_step=max_step, events=events)
                for j in range(n_out):
                    if math.isinf(out[b, j]) and len(sol.t_events[j]):
                        out[b, j] = sol.t_events[j][0]
                y = sol.y[:, -1].copy()
            t_now = t_stop
            if np.all(np.isfinite(out[b])):
                break
    return out

