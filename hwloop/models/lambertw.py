"""Principal branch W0 of the Lambert W function for real tensors (torch).

The LIF first-spike time for tau_mem == tau_syn is ``t = tau (b - W0(z))``
with ``z`` in ``[-1/e, 0)``; ``z == -1/e`` is the *tangent case*, where the
membrane touches threshold without crossing. That end of the domain is where
naive Newton/Halley iterations divide by ``1 + W -> 0`` and produce NaN, so it
gets its own treatment here:

* the distance to the branch point, ``q = e z + 1``, is computed as
  ``e ((z + c_hi) + c_lo)`` with ``1/e = c_hi + c_lo`` in two words. Near the
  branch point ``z + c_hi`` is exact (Sterbenz), so ``q`` keeps full relative
  accuracy where a plain ``e * z + 1`` would cancel to a single ulp of 1;
* near the branch point (``p = sqrt(2 q)`` small) the branch-point series
  ``W = -1 + p - p^2/3 + 11/72 p^3 - ...`` (Corless et al. 1996) is accurate
  to rounding by itself and no iteration is run;
* elsewhere an initial guess (that series for z < -1/4, Winitzki's
  approximation above) is polished by two steps of the fourth-order iteration
  of Fritsch, Shafer & Crowley (1973). It works on ``log(z / w) - w`` and so
  never forms ``w e^w`` (no overflow for large z).

Fixed iteration count, no data-dependent loop: fully vectorised, every element
costs the same. Accuracy in float64 is ~1e-15 relative; close to the branch
point it is as good as ``z`` itself allows (dW/dz ~ 1/p). Domain handling:
``z`` within a few ulps below ``-1/e`` is treated as ``-1/e`` (rounding in the
caller's arithmetic), clearly smaller ``z`` gives NaN (W0 is not real there),
``+inf`` gives ``+inf``, NaN gives NaN.
"""

from __future__ import annotations

import math

import torch

_E = math.e

# 1/e as an unevaluated sum hi + lo (lo = 1/e - hi, rounded) per dtype
_INV_E_PARTS = {
    torch.float64: (0.36787944117144233, -1.2428753672788363e-17),
    torch.float32: (0.3678794503211975, -9.149755619830557e-09),
}

# W0 in powers of p = sqrt(2 (e z + 1)) around z = -1/e, up to p^6; the
# next coefficient is 680863/43545600 ~ 0.016
_BRANCH_SERIES = (
    -1.0,
    1.0,
    -1.0 / 3.0,
    11.0 / 72.0,
    -43.0 / 540.0,
    769.0 / 17280.0,
    -221.0 / 8505.0,
)
# p below which the series alone is exact to rounding: 0.016 p^7 < eps / 4
_SERIES_EXACT_P = {torch.float64: 5e-3, torch.float32: 0.1}


def _branch_series(p: torch.Tensor) -> torch.Tensor:
    acc = p * _BRANCH_SERIES[-1] + _BRANCH_SERIES[-2]
    for c in reversed(_BRANCH_SERIES[:-2]):
        acc = acc * p + c
    return acc


def lambertw(z: torch.Tensor, iterations: int = 2) -> torch.Tensor:
    """W0(z) elementwise for a real floating tensor; same dtype and device.

    ``iterations`` Fritsch steps polish the initial guess (2 reach full
    float64 precision from every starting region; more do no harm).
    """
    if z.dtype not in _INV_E_PARTS:
        return lambertw(z.to(torch.float64), iterations).to(
            z.dtype if torch.is_floating_point(z) else torch.float64)
    c_hi, c_lo = _INV_E_PARTS[z.dtype]
    eps = torch.finfo(z.dtype).eps
    q = ((z + c_hi) + c_lo) * _E
    out_of_domain = q < -16 * eps
    p = torch.sqrt(q.clamp_min(0.0) * 2.0)

    w_series = _branch_series(p)
    L = torch.log1p(z.clamp_min(-0.25))
    w_winitzki = L * (1.0 - torch.log1p(L) / (2.0 + L))  # ~2% for every z >= -1/4
    w = torch.where(z < -0.25, w_series, w_winitzki)

    # Run the iteration only where it is needed and well defined: not next to
    # the branch point (series exact, 1 + w -> 0 there), not at z == 0 (exactly
    # 0, and log(z/w) is 0/0), not at inf/nan. Others get the dummy z = e, w = 1.
    iterate = (p >= _SERIES_EXACT_P[z.dtype]) & (z != 0) & (z < math.inf)
    ws = torch.where(iterate, w, 1.0)
    zs = torch.where(iterate, z, _E)
    for _ in range(iterations):
        zn = torch.log(zs / ws) - ws
        w1 = ws + 1.0
        qn = 2.0 * w1 * (w1 + (2.0 / 3.0) * zn)
        ws = ws + ws * (zn / w1) * ((qn - zn) / (qn - 2.0 * zn))
    w = torch.where(iterate, ws, w)
    # z == 0 is already exact (Winitzki gives 0); fix the ends of the domain
    w = torch.where(z == math.inf, z, w)
    return torch.where(out_of_domain, math.nan, w)


__all__ = ["lambertw"]
