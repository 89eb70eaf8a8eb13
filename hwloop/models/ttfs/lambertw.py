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
* on ``[-1/e, 0]`` the initial guess is ``z R(p)``, ``R`` the [3/3] Padé
  approximant in ``p = sqrt(2 q)`` of ``exp(-W0) = W0/z``, built from the
  branch-point series ``W = -1 + p - p^2/3 + 11/72 p^3 - ...`` (Corless et al.
  1996). It is within 1.5e-5 relative error of W0 on the whole interval (z
  near 0 included), so next to the branch point (p < p_exact) it is exact to
  rounding and is used as is, and elsewhere one step of the fourth-order
  iteration of Fritsch, Shafer & Crowley (1973) takes it to full precision;
* for z > 0 Winitzki's approximation (~2%) and two such steps. The iteration
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

# [3/3] Padé approximant in p of exp(-W0) = W0 / z, from its series at the
# branch point (numerator, denominator; coefficients of p^0..p^3). We derived
# the series of W0 in p by reverting (1 - v) e^v = 1 - p^2/2 (W = v - 1), took
# exp(-W) of it, and the Padé of that. The guess W ~ z R(p) is then within
# 1.5e-5 *relative* error of W0 on all of [-1/e, 0] -- including z -> 0, where
# an absolute-accuracy guess would not do -- and exact to rounding as p -> 0.
_PADE_NUM = (2.718281828459045, 1.3642270435745671, 0.06995017264856546, -0.00277847475644394)
_PADE_DEN = (1.0, 1.5018710824211807, 0.6942709795116475, 0.09446737819773184)

# p below which the guess is W0 to rounding (its error there is ~1e-2 p^7)
_EXACT_P = {torch.float64: 5e-3, torch.float32: 0.1}

def _branch_p(z: torch.Tensor) -> torch.Tensor:
    """p = sqrt(2 (e z + 1)) with e z + 1 accurate near z = -1/e; 0 below it."""
    c_hi, c_lo = _INV_E_PARTS[z.dtype]
    return torch.sqrt(((z + c_hi) + c_lo).mul_(2.0 * _E).clamp_min_(0.0))


def _negative_guess(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """W0 ~ z R(p) on [-1/e, 0] (relative error <= 1.5e-5; one step -> 1e-16).
    Horner in place: these run on every (sample, neuron) of a LIF layer."""
    n, d = _PADE_NUM, _PADE_DEN
    num = torch.mul(p, n[3]).add_(n[2]).mul_(p).add_(n[1]).mul_(p).add_(n[0])
    den = torch.mul(p, d[3]).add_(d[2]).mul_(p).add_(d[1]).mul_(p).add_(d[0])
    return num.div_(den).mul_(z)


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
    winitzki = L * (1.0 - torch.log1p(L) / (2.0 + L))  # relative error <~ 2% for every z >= 0
    w = torch.where(zz <= 0, _negative_guess(zz, p), winitzki)
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
    `lambertw`, written with few buffers updated in place: this runs on every
    (sample, neuron) of a LIF layer, where every pass over memory counts.
    """
    c_hi, c_lo = _INV_E_PARTS[z.dtype]
    P = torch.add(z, c_hi).add_(c_lo).mul_(2.0 * _E).clamp_min_(0.0).sqrt_()  # p
    keep_guess = (P < _EXACT_P[z.dtype]) | (z == 0)
    W = _negative_guess(z, P)
    # one Fritsch step (see _fritsch_step), buffers reused
    zn = torch.div(z, W).log_().sub_(W)
    w1 = torch.add(W, 1.0, out=P)
    Q = torch.add(w1, zn, alpha=2.0 / 3.0).mul_(w1)
    q_minus_zn = Q - zn
    Q.sub_(zn, alpha=0.5).div_(q_minus_zn).mul_(zn).div_(w1)  # relative correction
    Q.mul_(W).add_(W)
    return torch.where(keep_guess, W, Q, out=Q)


__all__ = ["lambertw", "lambertw_neg"]
