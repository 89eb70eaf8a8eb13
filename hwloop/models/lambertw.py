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
* on ``[-1/e, 0]`` the initial guess is the [3/3] Padé approximant, in
  ``p = sqrt(2 q)``, of the branch-point series
  ``W = -1 + p - p^2/3 + 11/72 p^3 - ...`` (Corless et al. 1996). It matches
  the series through p^6 and is within 4e-5 of W0 on the whole interval, so
  next to the branch point (p < p_exact) it is exact to rounding and is used
  as is, and elsewhere one step of the fourth-order iteration of Fritsch,
  Shafer & Crowley (1973) takes it to full precision;
* for |z| < 0.05 the Taylor series at 0 instead (relative accuracy matters
  there), for z > 0.05 Winitzki's approximation (~2%) and two such steps. The iteration
  works on ``log(z / w) - w`` and never forms ``w e^w`` (no overflow).

Fixed iteration count, no data-dependent loop: fully vectorised, every element
costs the same. `lambertw_neg` is the lean variant for arguments known to lie
in ``[-1/e, 0]`` (the LIF model's case), about half the work of `lambertw`.
Accuracy in float64 is ~1e-15 relative; close to the branch point it is as
good as ``z`` itself allows (dW/dz ~ 1/p).
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

# [3/3] Padé approximant in p of the branch-point series of W0 (numerator,
# denominator; coefficients of p^0..p^3). Derived from the exact rational
# series coefficients by series reversion of (1 - v) e^v = 1 - p^2/2,
# W = v - 1; max |error| 3.7e-5 for p in [0, sqrt(2)], i.e. z in [-1/e, 0].
_PADE_NUM = (-1.0, -0.04298512732247672, 0.4221694470188446, 0.07648628702845571)
_PADE_DEN = (1.0, 1.0429851273224766, 0.2874823469702988, 0.01611212861212861)

# |z| below which the Taylor series is the better initial guess
_SMALL_Z = 0.05

# p below which the Padé guess is W0 to rounding (its error there is ~1e-2 p^7)
_EXACT_P = {torch.float64: 5e-3, torch.float32: 0.1}


_SCALARS: dict = {}


def _scalar(x: float, like: torch.Tensor) -> torch.Tensor:
    """A cached 0-d tensor (the fused ops below need tensor addends)."""
    key = (x, like.dtype, like.device)
    t = _SCALARS.get(key)
    if t is None:
        t = _SCALARS[key] = torch.tensor(x, dtype=like.dtype, device=like.device)
    return t


def _branch_p(z: torch.Tensor) -> torch.Tensor:
    """p = sqrt(2 (e z + 1)) with e z + 1 accurate near z = -1/e; 0 below it."""
    c_hi, c_lo = _INV_E_PARTS[z.dtype]
    return torch.sqrt(((z + c_hi) + c_lo).mul_(2.0 * _E).clamp_min_(0.0))


def _pade_guess(p: torch.Tensor) -> torch.Tensor:
    n3, d3 = _PADE_NUM, _PADE_DEN
    num = torch.add(_scalar(n3[2], p), p, alpha=n3[3])
    num = torch.addcmul(_scalar(n3[1], p), num, p)
    num = torch.addcmul(_scalar(n3[0], p), num, p)
    den = torch.add(_scalar(d3[2], p), p, alpha=d3[3])
    den = torch.addcmul(_scalar(d3[1], p), den, p)
    den = torch.addcmul(_scalar(d3[0], p), den, p)
    return num.div_(den)


def _small_guess(z: torch.Tensor) -> torch.Tensor:
    """z - z^2 + 3/2 z^3 - 8/3 z^4: relative accuracy 2e-5 for |z| <= 0.05,
    where the Padé guess (absolutely, not relatively, accurate) is not enough."""
    acc = torch.add(_scalar(1.5, z), z, alpha=-8.0 / 3.0)
    acc = torch.addcmul(_scalar(-1.0, z), acc, z)
    acc = torch.addcmul(_scalar(1.0, z), acc, z)
    return acc.mul_(z)


def _negative_guess(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Initial guess on [-1/e, 0], relative error <= 1.5e-4 (one step -> 1e-15)."""
    return torch.where(z > -_SMALL_Z, _small_guess(z), _pade_guess(p))


def _fritsch_step(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One fourth-order step; NaN/inf where w == 0 or w == -1 (callers mask)."""
    zn = torch.log(z / w).sub_(w)
    w1 = w + 1.0
    q = torch.add(w1, zn, alpha=2.0 / 3.0).mul_(w1)  # half of Fritsch's q_n
    ratio = torch.sub(q, zn, alpha=0.5).div_(q - zn)
    return torch.addcmul(w, w, ratio.mul_(zn).div_(w1))


def lambertw(z: torch.Tensor) -> torch.Tensor:
    """W0(z) elementwise for a real tensor: float32 and float64 keep their
    dtype, anything else is computed and returned in float64.

    ``z`` within a few ulps below ``-1/e`` is treated as ``-1/e`` (rounding in
    the caller's arithmetic); clearly smaller ``z`` gives NaN (W0 is not real
    there); ``+inf`` gives ``+inf``; NaN gives NaN.
    """
    zz = z if z.dtype in _INV_E_PARTS else z.to(torch.float64)
    c_hi, c_lo = _INV_E_PARTS[zz.dtype]
    out_of_domain = (zz + c_hi) + c_lo < -8 * torch.finfo(zz.dtype).eps
    p = _branch_p(zz)
    L = torch.log1p(zz.clamp_min(0.0))
    winitzki = L * (1.0 - torch.log1p(L) / (2.0 + L))  # ~2% for every z >= 0
    w = torch.where(zz < _SMALL_Z, _negative_guess(zz, p), winitzki)
    polished = _fritsch_step(zz, _fritsch_step(zz, w))
    # next to the branch point the guess is exact and the step ill-conditioned;
    # z == 0 is exactly 0 (the step is 0/0 there); inf stays inf
    keep_guess = (p < _EXACT_P[zz.dtype]) | (zz == 0) | (zz == math.inf)
    w = torch.where(keep_guess, w, polished)
    w = torch.where(zz == math.inf, zz, w)
    return torch.where(out_of_domain, math.nan, w)


def lambertw_neg(z: torch.Tensor) -> torch.Tensor:
    """W0(z) for ``z`` in ``[-1/e, 0]`` (float32/float64), the lean path.

    Arguments below -1/e are treated as -1/e; arguments above 0 are outside
    its contract (callers clamp). The same guess and one Fritsch step as
    `lambertw`, written with five buffers updated in place: this runs on every
    (sample, neuron) of a LIF layer, where fresh temporaries cost more than
    the arithmetic.
    """
    c_hi, c_lo = _INV_E_PARTS[z.dtype]
    n, d = _PADE_NUM, _PADE_DEN
    P = torch.add(z, c_hi).add_(c_lo).mul_(2.0 * _E).clamp_min_(0.0).sqrt_()  # p
    keep_guess = (P < _EXACT_P[z.dtype]) | (z == 0)
    S = torch.add(_scalar(1.5, z), z, alpha=-8.0 / 3.0)  # Taylor guess, see _small_guess
    S.mul_(z).sub_(1.0).mul_(z).add_(1.0).mul_(z)
    N = torch.mul(P, n[3]).add_(n[2]).mul_(P).add_(n[1]).mul_(P).add_(n[0])  # Padé guess
    D = torch.mul(P, d[3]).add_(d[2]).mul_(P).add_(d[1]).mul_(P).add_(d[0])
    W = torch.where(z > -_SMALL_Z, S, N.div_(D), out=N)
    # one Fritsch step (see _fritsch_step), buffers S, D, P reused
    zn = torch.div(z, W, out=S).log_().sub_(W)
    w1 = torch.add(W, 1.0, out=D)
    Q = torch.add(w1, zn, alpha=2.0 / 3.0).mul_(w1)
    q_minus_zn = torch.sub(Q, zn, out=P)
    Q.sub_(zn, alpha=0.5).div_(q_minus_zn).mul_(zn).div_(w1)  # relative correction
    Q.mul_(W).add_(W)
    return torch.where(keep_guess, W, Q, out=Q)


__all__ = ["lambertw", "lambertw_neg"]
