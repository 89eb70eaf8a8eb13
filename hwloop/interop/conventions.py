"""How each NIR consumer reads a ``CubaLIF`` node, and the parameters that make it run our LIF.

NIR's ``CubaLIF`` is a continuous-time ODE (see `nir_io`). The tools that load
NIR graphs run it on a time grid, each in its own way (read from their
sources: snnTorch 1.0.0 ``snntorch/import_nir.py``, Norse 1.1.0
``norse/torch/utils/import_nir.py``, Rockpool 3.1.0
``rockpool/nn/modules/torch/nir.py``). With ``a`` the per-step decay of the
synaptic current and ``b`` that of the membrane, and a spike of weight ``W``
arriving at step 0, every one of them computes a membrane of the form

    m_n = U * G_n,   G_n = (b^(n+1) - a^(n+1)) / (b - a)      ((n+1) a^n when a == b)

while our LIF's continuous membrane at the grid points is

    V((n+1) h) = w * tau_s / (tau_m - tau_s) * (b^(n+1) - a^(n+1))  (w (n+1) h/tau a^(n+1) when equal),

with ``a = exp(-h/tau_s)``, ``b = exp(-h/tau_m)`` for a grid step ``h``. So if
the consumer's decays are *exactly* these exponentials, its membrane is
``c * V`` at every grid point for one constant ``c`` per layer, and a
threshold of ``c * theta`` there gives our spike times up to the grid (the
same construction the Loihi mapping uses, docs/loihi.md). What differs is
how each tool derives its decays, input jump ``U`` and step from the node:

* **snnTorch** (``import_from_nir``): its step is fixed, ``dt = 1e-4`` in the
  graph's time unit; ``alpha = 1 - dt/tau_syn``, ``beta = 1 - dt/tau_mem``
  (so we write ``tau = dt / (1 - exp(-h/tau))``, exactly as snnTorch's own
  exporter writes ``dt / (1 - beta)``); it asserts ``r == tau_mem/dt`` and
  ``v_leak == 0``, divides the threshold by ``w_in dt / tau_syn`` (we make
  that 1), and computes ``syn = alpha syn + x; mem = beta mem + syn``: ``U =
  W``, ``c = (tau_m - tau_s) / (tau_s (b - a))`` (``tau/(h a)`` when equal).
* **Norse** (``from_nir(graph, dt=...)``): the step is the caller's ``dt``;
  ``I += dt/tau_syn (w_in x - I)``, ``v += dt/tau_mem (r I - v)`` (forward
  Euler, so again ``tau = dt / (1 - exp(-h/tau))``); with ``w_in =
  tau_syn/dt`` and ``r = tau_mem/dt`` it is snnTorch's arithmetic exactly.
* **Rockpool** (``from_nir``): continuous taus with exact exponential decays;
  its step is derived from the node as ``dt = tau_mem / (1 + r)``, so we write
  ``r = tau_mem/h - 1``; ``isyn = (isyn + x) a; vmem = b vmem + isyn``: ``U
  = W a``, ``c = a (tau_m - tau_s) / (tau_s (b - a))`` (``tau/h`` when equal);
  it ignores ``w_in`` (we still write the value that keeps the graph
  consistent with NIR's ODE).

Every consumer's spikes are one-step pulses of height 1 (area ``h``) and a
spike is delivered to the next layer in the step it is emitted.
All three reset and fire again; Rockpool may emit several spikes in one
step. Those are the consumers' semantics, not ours (one spike per neuron):
`docs/interop.md` says what that changes, measured.
"""

from __future__ import annotations

import math

#: snnTorch's import_from_nir and export_to_nir hard-code this step (graph time units)
SNNTORCH_DT = 1e-4
#: default grid for the discrete consumers: t_max / DEFAULT_STEPS
DEFAULT_STEPS = 1000
DISCRETE = ("snntorch", "norse", "rockpool")
CONSUMERS = ("nir",) + DISCRETE


def decays(h: float, tau_s: float, tau_m: float) -> tuple[float, float]:
    return math.exp(-h / tau_s), math.exp(-h / tau_m)


def euler_gain(h: float, tau_s: float, tau_m: float) -> float:
    """``c`` for a consumer whose jump is ``U = W`` (snnTorch, Norse)."""
    a, b = decays(h, tau_s, tau_m)
    if abs(tau_m - tau_s) <= 1e-12 * max(tau_m, tau_s):
        return tau_m / (h * a)
    return (tau_m - tau_s) / (tau_s * (b - a))


def rockpool_gain(h: float, tau_s: float, tau_m: float) -> float:
    """``c`` for Rockpool, whose jump is ``U = W a``."""
    a, _ = decays(h, tau_s, tau_m)
    return a * euler_gain(h, tau_s, tau_m)


def euler_tau(graph_dt: float, h: float, tau: float) -> float:
    """The tau a forward-Euler consumer with step ``graph_dt`` must read so
    that its decay ``1 - graph_dt/tau'`` equals ``exp(-h/tau)``."""
    return graph_dt / (1.0 - math.exp(-h / tau))


def tau_from_euler(graph_dt: float, tau_nir: float) -> float:
    """Inverse of `euler_tau` in the consumer's own time unit (``h = graph_dt``)."""
    decay = 1.0 - graph_dt / tau_nir
    if not 0.0 < decay < 1.0:
        return math.nan
    return -graph_dt / math.log(decay)


def rockpool_dt(tau_mem: float, r: float) -> float:
    """The step Rockpool 3.1.0's ``from_nir`` derives from a node (``tau_mem / (1 + r)``)."""
    return tau_mem / (1.0 + r)


def rockpool_dt_of_export(tau_mem: float, r: float) -> float:
    """The step ``dt`` Rockpool's own ``to_nir`` used, from ``r = tau_mem exp(-dt/tau_mem) / dt``.

    ``r`` falls monotonically in ``dt``; solved by bisection (no closed form).
    """
    if not (r > 0 and tau_mem > 0):
        return math.nan
    lo, hi = 0.0, tau_mem * 50.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid == 0.0 or tau_mem * math.exp(-mid / tau_mem) / mid > r:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
