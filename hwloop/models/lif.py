"""Current-based LIF neuron with exponential synapses: first spike time in
closed form, exact gradients by the implicit function theorem.

Model (times in the network's unit, see docs/models-lif.md)::

    dI/dt = -I / tau_s,        I += w_i at t = t_i
    tau_m dV/dt = -V + I,      V(0) = I(0) = 0,   spike when V crosses theta upward

so ``V(t) = sum_{t_i < t} w_i eps(t - t_i)`` with the PSP kernel
``eps(s) = tau_s/(tau_m - tau_s) (exp(-s/tau_m) - exp(-s/tau_s))`` (and
``(s/tau) exp(-s/tau)`` for tau_m = tau_s = tau). Only the first spike counts.

Why only two time-constant ratios: for a fixed *causal set* (the inputs that
arrived before the spike) the threshold equation has a closed form only when
the two exponentials are commensurate in a solvable way (Göltz et al. 2021):

* tau_m == tau_s: ``e^{-s}(A s - B) = theta`` -> Lambert W (principal branch);
* tau_m == 2 tau_s: a quadratic in ``y = e^{-t/tau_m}`` -> square root.

Forward algorithm, vectorised over batch, neurons and causal-set size k:
sort each sample's inputs once; cumulative sums over the sorted axis give, for
every k, the coefficients of the membrane restricted to the first k inputs.
Within the interval ``(t_(k), t_(k+1)]`` that membrane is unimodal, so
"it reaches theta in this interval" is decided from its value at the interval
end and at its peak (when the peak lies inside) -- no root is needed for that.
The spike is in the first interval that reaches theta; only there, one closed
form per (sample, neuron) is evaluated. This keeps the expensive part (Lambert
W) off the (batch, inputs, neurons) expansion, which holds only a handful of
cheap elementwise operations.

Backward (`vjp`) never re-solves: at the given output time ``t*`` (the model's,
or one measured on hardware) the causal set is simply ``t_i < t*`` and
``dt*/dw_i = -eps(t*-t_i)/V'(t*)``, ``dt*/dt_i = w_i eps'(t*-t_i)/V'(t*)``.
``V'(t*)`` is 0 at the tangent case (membrane touching theta) and can be <= 0
at measured times the model would not produce; it is clamped from below at
``vdot_floor * theta / tau_m`` (default 1e-3), which bounds
``|dt*/dw| <= tau_m / (e * vdot_floor * theta)``-ish instead of emitting inf.
"""

from __future__ import annotations

import math

import torch

from ..errors import NetworkSpecError
from ..network import NeuronParams
from .lambertw import lambertw

#: relative tolerance when deciding tau_m == tau_s or tau_m == 2 tau_s
RATIO_TOL = 1e-9
#: default lower clamp of V'(t*) in the backward pass, in units of theta / tau_m
VDOT_FLOOR = 1e-3
#: largest spread of input times (in units of tau_s) the exponentials of the
#: closed form take in each dtype before overflowing (e^88 ~ float32 max)
_SPAN_LIMIT = {torch.float32: 80.0, torch.float64: 700.0}
#: (batch * inputs * neurons) above which the forward pass works in batch
#: chunks, so its temporaries stay cache-sized
_CHUNK_ELEMENTS = 1 << 18

_INV_E = math.exp(-1.0)


def _ratio_kind(params: NeuronParams) -> str:
    """'equal' (tau_m == tau_s) or 'double' (tau_m == 2 tau_s); else raise."""
    if params.model != "lif":
        raise NetworkSpecError(f"LIF model got neuron parameters for model {params.model!r}")
    if not (math.isfinite(params.tau_syn) and math.isfinite(params.tau_mem)
            and params.tau_syn > 0 and params.tau_mem > 0):
        raise NetworkSpecError(
            f"lif: tau_syn and tau_mem must be finite and > 0, got {params.tau_syn!r}, {params.tau_mem!r}")
    if not (math.isfinite(params.threshold) and params.threshold > 0):
        raise NetworkSpecError(f"lif: threshold must be finite and > 0, got {params.threshold!r}")
    r = params.tau_mem / params.tau_syn
    if abs(r - 1.0) <= RATIO_TOL:
        return "equal"
    if abs(r - 2.0) <= 2.0 * RATIO_TOL:
        return "double"
    raise NetworkSpecError(
        f"lif: rule 'tau-ratio' violated: tau_mem/tau_syn = {r:.12g} "
        f"(tau_mem={params.tau_mem!r}, tau_syn={params.tau_syn!r}); the closed-form spike time "
        "exists only for tau_mem == tau_syn (Lambert W) or tau_mem == 2*tau_syn (square root)")


def _check_shapes(t_in: torch.Tensor, w: torch.Tensor) -> None:
    if t_in.ndim != 2 or w.ndim != 2:
        raise NetworkSpecError(
            f"lif: expected t_in (batch, n_src) and w (n_src, n_out), got shapes "
            f"{tuple(t_in.shape)} and {tuple(w.shape)}")
    if t_in.shape[1] != w.shape[0]:
        raise NetworkSpecError(
            f"lif: t_in has {t_in.shape[1]} sources but w has {w.shape[0]} rows")


def _work_dtype(t_in: torch.Tensor) -> torch.dtype:
    return t_in.dtype if t_in.dtype in (torch.float32, torch.float64) else torch.float64


class LIF:
    """The current-based LIF first-spike-time model (tau_m = tau_s or 2 tau_s)."""

    name = "lif"

    def __init__(self, vdot_floor: float = VDOT_FLOOR):
        if not (math.isfinite(vdot_floor) and vdot_floor > 0):
            raise NetworkSpecError(f"lif: vdot_floor must be finite and > 0, got {vdot_floor!r}")
        self.vdot_floor = float(vdot_floor)

    # ------------------------------------------------------------ forward
    def spike_times(self, t_in: torch.Tensor, w: torch.Tensor, params: NeuronParams,
                    t_max: float) -> torch.Tensor:
        """First spike time of each neuron, (B, n_src), (n_src, n_out) -> (B, n_out).

        ``inf`` for a neuron that does not reach threshold by ``t_max``. Input
        times that are inf, NaN or >= t_max are silent inputs (a spike at or
        after the trial end cannot move the membrane within the trial).
        """
        kind = _ratio_kind(params)
        _check_shapes(t_in, w)
        out_dtype = _work_dtype(t_in)
        t_max = float(t_max)
        if not t_max > 0:
            raise NetworkSpecError(f"lif: t_max must be > 0, got {t_max!r}")
        with torch.no_grad():
            t = t_in.to(out_dtype)
            B, n = t.shape
            n_out = w.shape[1]
            if B == 0 or n_out == 0:
                return t.new_full((B, n_out), math.inf)
            active = t < t_max
            big = torch.where(active, t, math.inf)
            t_ref = big.amin(1, keepdim=True)
            t_ref = torch.where(torch.isfinite(t_ref), t_ref, 0.0)
            # spread of input times in units of tau_s decides the working dtype
            span = (torch.where(active, t, -math.inf).amax(1, keepdim=True) - t_ref).amax().item()
            span = span / params.tau_syn if math.isfinite(span) else 0.0
            dtype = out_dtype
            if span > _SPAN_LIMIT[dtype]:
                dtype = torch.float64
                if span > _SPAN_LIMIT[dtype]:
                    raise NetworkSpecError(
                        f"lif: input spike times spread over {span:.4g} tau_syn within one sample; "
                        f"the closed form supports at most {_SPAN_LIMIT[dtype]:.0f} (exp overflow)")
            t = t.to(dtype)
            t_ref = t_ref.to(dtype)
            wd = w.detach().to(dtype)
            step = max(1, _CHUNK_ELEMENTS // max(1, n * n_out))
            if step >= B:
                out = self._forward_block(t, wd, t_ref, active, params, t_max, kind)
            else:
                out = torch.cat([
                    self._forward_block(t[i:i + step], wd, t_ref[i:i + step], active[i:i + step],
                                        params, t_max, kind)
                    for i in range(0, B, step)])
            return out.to(out_dtype)

    @staticmethod
    def _forward_block(t, w, t_ref, active, params, t_max, kind):
        """The algorithm of the module docstring for one block of samples.

        Time is measured as ``s = (t - t_ref) / tau_s`` with ``t_ref`` each
        sample's earliest input, so the exponentials below start at 1.
        Interval k is ``[s_lo_k, s_hi_k]``: from the k-th input to the next one
        (or the trial end). Rows past a sample's last input get the empty
        interval ``[s_end, s_end]``: they can only "reach threshold" where an
        earlier row already did, so they never change the first hit.
        """
        tau_s = params.tau_syn
        theta = params.threshold
        B, n = t.shape
        s = torch.where(active, (t - t_ref) / tau_s, math.inf)
        s_sorted, order = torch.sort(s, dim=1)
        act = s_sorted < math.inf
        s_end = (t_max - t_ref) / tau_s  # (B, 1)
        s_lo = torch.where(act, s_sorted, s_end)
        s_hi = torch.cat([s_lo[:, 1:], s_end], dim=1)
        w_sorted = w.index_select(0, order.reshape(-1)).view(B, n, -1)
        lo3, hi3 = s_lo.unsqueeze(2), s_hi.unsqueeze(2)

        if kind == "equal":
            # V_k(s) = e^{-s} (A s - C), A = sum w e^{s_i}, C = sum w s_i e^{s_i};
            # unimodal with its maximum at s = C/A + 1 (A > 0), so its maximum over
            # the interval is at that point clamped into the interval
            e_k = torch.where(act, torch.exp(s_lo), 0.0)
            p = w_sorted * e_k.unsqueeze(2)
            A = torch.cumsum(p, 1)
            C = torch.cumsum(p * lo3, 1)
            s_c = torch.clamp(C / A + 1.0, min=lo3, max=hi3)
            hit = (A * s_c - C) >= theta * torch.exp(s_c)
        else:
            # y = e^{-s/2}; V_k = a y - b y^2, a = sum w e^{s_i/2}, b = sum w e^{s_i};
            # maximum at y = a / (2b) (a, b > 0), clamp it into the interval
            e_half = torch.where(act, torch.exp(0.5 * s_lo), 0.0)
            p = w_sorted * e_half.unsqueeze(2)
            a = torch.cumsum(p, 1)
            b2 = torch.cumsum(p * (2.0 * e_half).unsqueeze(2), 1)  # 2b
            y_c = torch.clamp(a / b2, min=torch.exp(-0.5 * hi3), max=torch.exp(-0.5 * lo3))
            hit = y_c * torch.sub(a, b2 * y_c, alpha=0.5) >= theta

        # first interval that reaches theta (max over bool returns the first
        # maximal index, and is much faster than argmax over a middle dim)
        spikes, k = hit.max(1)  # (B, n_out) each
        lo = s_lo.gather(1, k)
        hi = s_hi.gather(1, k)
        kk = k.unsqueeze(1)
        if kind == "equal":
            A_k = A.gather(1, kk).squeeze(1)
            C_k = C.gather(1, kk).squeeze(1)
            # A_k > 0 wherever theta > 0 is truly reached; the guard only keeps
            # rounding-level false hits and non-spiking entries finite
            ok = spikes & (A_k > 0)
            A_k = torch.where(ok, A_k, 1.0)
            bb = torch.where(ok, C_k, 0.0) / A_k
            z = (torch.exp(bb) * (-theta) / A_k).clamp_min(-_INV_E)
            s_star = bb - lambertw(z)
        else:
            a_k = a.gather(1, kk).squeeze(1)
            b_k = 0.5 * b2.gather(1, kk).squeeze(1)
            ok = spikes & (a_k > 0) & (b_k > 0)
            a_k = torch.where(ok, a_k, 1.0)
            b_k = torch.where(ok, b_k, 1.0)
            root = torch.sqrt((a_k * a_k - (4.0 * theta) * b_k).clamp_min(0.0))
            s_star = 2.0 * torch.log(2.0 * b_k / (a_k + root))
        # rounding can put the root a hair outside the interval it was found in
        s_star = torch.where(ok, torch.clamp(s_star, min=lo, max=hi), hi)
        t_out = t_ref + tau_s * s_star
        return torch.where(spikes, t_out, math.inf)

    # ----------------------------------------------------------- backward
    def vjp(self, t_in: torch.Tensor, w: torch.Tensor, t_out: torch.Tensor, grad_out: torch.Tensor,
            params: NeuronParams, t_max: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(grad_out . dt_out/dt_in, grad_out . dt_out/dw)`` at the given ``t_out``.

        ``t_out`` may be any times (the model's, or measured on a target);
        the causal set of each output is the inputs strictly before it.
        Silent (non-finite) outputs and silent inputs get zero gradient.
        """
        kind = _ratio_kind(params)
        _check_shapes(t_in, w)
        dtype = _work_dtype(t_in)
        tau_s, tau_m, theta = params.tau_syn, params.tau_mem, params.threshold
        with torch.no_grad():
            t = t_in.to(dtype)
            wd = w.detach().to(dtype)
            to = t_out.to(dtype)
            spiked = torch.isfinite(to)
            g = torch.where(spiked, grad_out.to(dtype), 0.0)
            # a silent output at -inf makes every dt -inf: no causal input
            to = torch.where(spiked, to, -math.inf)
            dt = to.unsqueeze(1) - t.unsqueeze(2)  # (B, n_src, n_out)
            causal = dt > 0  # False for silent inputs (-inf) and NaN
            dt = torch.where(causal, dt, 0.0)  # eps(0) = 0: non-causal terms drop out of eps
            if kind == "equal":
                nx = dt * (-1.0 / tau_m)
                ex = torch.exp(nx)
                neg_eps = nx * ex  # -eps
                deps = torch.where(causal, (nx + 1.0) * ex, 0.0)  # tau_m * eps'
                deps_scale = 1.0 / tau_m
            else:  # tau_m = 2 tau_s: eps = e^{-s/tau_m} - e^{-s/tau_s}
                e1 = torch.exp(dt * (-1.0 / tau_m))
                e2 = e1 * e1
                neg_eps = e2 - e1
                deps = torch.where(causal, torch.sub(e2, e1, alpha=0.5), 0.0)  # tau_s * eps'
                deps_scale = 1.0 / tau_s
            vdot = torch.einsum("bio,io->bo", deps, wd) * deps_scale  # V'(t*)
            c = g / vdot.clamp_min(self.vdot_floor * theta / tau_m)
            grad_w = torch.einsum("bio,bo->io", neg_eps, c)
            grad_t = torch.einsum("bio,bo->bi", deps * wd, c * deps_scale)
        return grad_t.to(t_in.dtype), grad_w.to(w.dtype)


__all__ = ["LIF", "RATIO_TOL", "VDOT_FLOOR"]
