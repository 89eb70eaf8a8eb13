"""Losses shared by the model families and the trainers.

Losses live here, not in the models and not in the trainers, so that a model
can name the loss it trains with (QIF does) without importing a trainer, and
a trainer can use any family's loss.

* `ttfs_loss`: the first-spike-time loss (Göltz et al. 2021), on spike
  times; used by the TTFS trainer, the in-the-loop session and the
  spike-train family's first-spike readout.
"""

from __future__ import annotations

import torch


def ttfs_loss(t_out: torch.Tensor, y: torch.Tensor, t_max: float, tau: float,
              xi: float, alpha: float, beta: float, end_logit: bool = False) -> torch.Tensor:
    """Mean Göltz loss over the batch. Silent outputs count as ``t_max``.

    ``end_logit``: append the trial end ``t_max`` as one more competitor in
    the softmax (never the target), so the loss is only small when the label
    output spikes before the others *and* before the trial ends.
    """
    t = torch.where(torch.isfinite(t_out), t_out, torch.full_like(t_out, t_max))
    logits = -t / (xi * tau)
    if end_logit:
        logits = torch.cat([logits, logits.new_full((logits.shape[0], 1), -t_max / (xi * tau))], dim=1)
    ce = torch.nn.functional.cross_entropy(logits, y)
    t_label = t.gather(1, y[:, None]).squeeze(1)
    pull = alpha * (torch.exp(t_label / (beta * tau)) - 1.0)
    return ce + pull.mean()


# ------------------------------------------------------- spike-train readouts
# Rasters and traces are time first, (T, batch, n), as `cuba_network_forward`
# returns them.

def max_over_time_ce(v_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the maximum over time of each readout membrane
    (Zenke & Vogels 2021): the class whose readout peaks highest wins."""
    return torch.nn.functional.cross_entropy(v_out.max(dim=0).values, y)


def spike_count_ce(s_out: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Cross-entropy on ``scale`` times the output spike counts (a raster
    (T, batch, n) or its counts (batch, n)): the class whose neuron fires
    most wins."""
    c = s_out.sum(dim=0) if s_out.ndim == 3 else s_out
    return torch.nn.functional.cross_entropy(scale * c, y)


def first_spike_times(s_out: torch.Tensor, dt: float, t_max: float | None = None) -> torch.Tensor:
    """Differentiable first spike time of every neuron (batch, n), in the
    network's time unit: sum_t t_k * f_k with f_k = s_k * prod_{k'<k} (1 - s_k')
    the first-spike indicator, plus ``t_max`` (default: the trial length
    T * dt) times the probability-like remainder 1 - sum_k f_k for a neuron
    that never fires. On a binary raster this is exactly the time of the
    first spike (step k at time k * dt) or ``t_max``; the surrogate
    derivative of each s_k carries the gradient."""
    T = s_out.shape[0]
    t_max = T * dt if t_max is None else float(t_max)
    survive = torch.cumprod(1.0 - s_out, dim=0)
    before = torch.cat([torch.ones_like(s_out[:1]), survive[:-1]], dim=0)
    first = s_out * before
    steps = torch.arange(T, dtype=s_out.dtype, device=s_out.device).view(T, *([1] * (s_out.ndim - 1)))
    return (first * steps).sum(0) * dt + survive[-1] * t_max


def first_spike_loss(s_out: torch.Tensor, y: torch.Tensor, dt: float, tau: float, xi: float = 0.2,
                     alpha: float = 0.005, beta: float = 2.6) -> torch.Tensor:
    """The TTFS loss (`ttfs_loss`) on the first spike times of a raster."""
    t_max = s_out.shape[0] * dt
    return ttfs_loss(first_spike_times(s_out, dt, t_max), y, t_max, tau, xi, alpha, beta)


def activity_regularizer(spikes, lower: tuple[float, float] = (0.0, 0.0),
                         upper: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Activity bounds on spike counts per trial (Zenke & Vogels 2021), summed
    over the given layers: each a raster (T, batch, n) or its spike counts
    (batch, n) (cheaper to differentiate: `TrainsOutput.counts`).

    * lower ``(strength, threshold)``: per neuron and sample,
      strength * mean_{b,j} relu(threshold - c_bj)^2, keeping every neuron
      from falling silent;
    * upper ``(strength, threshold)``: per sample on the population mean,
      strength * mean_b relu(mean_j c_bj - threshold)^2, bounding the
      average count;

    with c_bj the spike count of neuron j in sample b.
    """
    total = None
    for s in spikes:
        c = s.sum(dim=0) if s.ndim == 3 else s
        term = c.new_zeros(())
        if lower[0] > 0:
            term = term + lower[0] * torch.relu(lower[1] - c).square().mean()
        if upper[0] > 0:
            term = term + upper[0] * torch.relu(c.mean(dim=1) - upper[1]).square().mean()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def van_rossum_distance(s: torch.Tensor, target: torch.Tensor, dt: float, tau_rise: float = 5.0,
                        tau_decay: float = 10.0) -> torch.Tensor:
    """Van Rossum distance between spike rasters (T, ..., n): the squared
    difference of the rasters filtered with the double-exponential kernel,
    integrated over time, summed over neurons, halved (Zenke & Ganguli 2018;
    time in the unit of ``dt``). The kernel exp(-t/tau_decay) - exp(-t/tau_rise)
    is normalised to peak 1 in continuous time."""
    s = torch.as_tensor(s, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    diff = (target - s).reshape(s.shape[0], -1)
    a = torch.exp(torch.tensor(-dt / tau_rise, dtype=torch.float64))
    b = torch.exp(torch.tensor(-dt / tau_decay, dtype=torch.float64))
    # the two exponentials of the kernel as recursions (exact for the sampled kernel)
    rise = torch.zeros_like(diff[0])
    decay = torch.zeros_like(diff[0])
    total = torch.zeros((), dtype=torch.float64)
    peak = _double_exp_peak(tau_rise, tau_decay)
    for t in range(diff.shape[0]):
        rise = a * rise + diff[t]
        decay = b * decay + diff[t]
        total = total + ((decay - rise) / peak).square().sum()
    return 0.5 * total * dt


def _double_exp_peak(tau_rise: float, tau_decay: float) -> float:
    import math

    t_peak = tau_rise * tau_decay / (tau_decay - tau_rise) * math.log(tau_decay / tau_rise)
    return math.exp(-t_peak / tau_decay) - math.exp(-t_peak / tau_rise)
