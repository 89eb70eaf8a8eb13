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
