"""Non-leaky integrate-and-fire neurons with exponential synapses (Mostafa 2017).

    dV/dt = Σ_i w_i exp(−(t − t_i)/τs)  for t ≥ t_i,    V(0) = 0,   spike at V = ϑ

No leak, so V is a sum of saturating exponentials and the first spike time
has a closed form in ``z = exp(t/τs)`` for every candidate causal set; the
causal set is found by trying the time-sorted prefixes of the inputs
(Mostafa's search). Derivation, conventions and the gradients at measured
times: ``docs/models-nlif.md``. ``τs`` is ``NeuronParams.tau_syn``, ``ϑ`` its
``threshold``; ``tau_mem`` is unused (no leak).
"""

from __future__ import annotations

import math

import torch

from ...errors import NetworkSpecError
from ...network import NeuronParams

#: (batch × inputs × neurons) elements processed at once
_CHUNK_ELEMS = 1 << 22


def _constants(params: NeuronParams) -> tuple[float, float]:
    tau_s, theta = float(params.tau_syn), float(params.threshold)
    if not (math.isfinite(tau_s) and tau_s > 0):
        raise NetworkSpecError(f"nlif: tau_syn must be > 0, got {tau_s}")
    if not (math.isfinite(theta) and theta > 0):
        raise NetworkSpecError(f"nlif: threshold must be > 0 (V starts at 0), got {theta}")
    if params.options:
        raise NetworkSpecError(f"nlif: takes no options, got {sorted(params.options)}")
    return tau_s, theta


def _check(t_in, w, t_max) -> torch.dtype:
    if t_in.dim() != 2 or w.dim() != 2 or t_in.shape[1] != w.shape[0]:
        raise NetworkSpecError(
            f"nlif: need t_in (batch, n_src) and w (n_src, n_out), got {tuple(t_in.shape)} and {tuple(w.shape)}"
        )
    if not (math.isfinite(t_max) and t_max > 0):
        raise NetworkSpecError(f"nlif: t_max must be finite and > 0, got {t_max}")
    return torch.promote_types(t_in.dtype, w.dtype)


class NonLeakyIF:
    """Mostafa's neuron as a `TTFSModel`."""

    name = "nlif"

    def spike_times(self, t_in: torch.Tensor, w: torch.Tensor, params: NeuronParams, t_max: float) -> torch.Tensor:
        dtype = _check(t_in, w, t_max)
        tau_s, theta = _constants(params)
        t_in, w = t_in.detach().to(dtype), w.detach().to(dtype)
        B, S = t_in.shape
        n = w.shape[1]
        out = torch.full((B, n), math.inf, dtype=dtype)
        if B == 0 or S == 0:
            return out
        delivered = t_in <= t_max
        key = torch.where(delivered, t_in, torch.full_like(t_in, math.inf))
        s, order = torch.sort(key, dim=1)
        K = int(delivered.sum(1).max())
        if K == 0:
            return out
        s, order = s[:, :K], order[:, :K]
        valid = torch.isfinite(s)
        is_last = torch.arange(K)[None, :] == (valid.sum(1) - 1)[:, None]
        # interval of prefix k: [s_k, s_{k+1}), the last one [s_k, T]
        nxt = torch.cat([s[:, 1:], torch.full((B, 1), math.inf, dtype=dtype)], 1)
        nxt = torch.where(is_last | ~valid, torch.full_like(nxt, t_max), nxt)
        # z relative to the trial end keeps exp() in range: z ≤ 1 for delivered inputs
        z = torch.where(valid, torch.exp((s - t_max) / tau_s), torch.zeros_like(s))
        c = theta / tau_s
        chunk = max(1, _CHUNK_ELEMS // max(1, K * n))
        for b0 in range(0, B, chunk):
            sl = slice(b0, b0 + chunk)
            wk = w[order[sl]] * valid[sl, :, None]  # (b, K, n) weights in time order
            A = torch.cumsum(wk, 1)
            Bz = torch.cumsum(wk * z[sl, :, None], 1)
            den = A - c
            ratio = Bz / torch.where(den > 0, den, torch.ones_like(den))
            ok = (den > 0) & (ratio > 0)
            t_k = t_max + tau_s * torch.log(torch.where(ok, ratio, torch.ones_like(ratio)))
            upper = (t_k < nxt[sl, :, None]) | (is_last[sl, :, None] & (t_k <= t_max))
            ok &= valid[sl, :, None] & (t_k >= s[sl, :, None]) & upper
            first = torch.argmax(ok.to(torch.int8), dim=1)  # first valid prefix (0 if none)
            any_ok = ok.any(1)
            t_first = torch.gather(t_k, 1, first[:, None, :]).squeeze(1)
            out[sl] = torch.where(any_ok, t_first, out[sl])
        return out

    def vjp(self, t_in, w, t_out, grad_out, params: NeuronParams, t_max: float):
        """Implicit-function derivative of V(t) = ϑ at the given ``t_out``,
        causal set = delivered inputs with t_i < t_out (docs/models-nlif.md)."""
        dtype = _check(t_in, w, t_max)
        tau_s, _ = _constants(params)
        t_in, w = t_in.detach().to(dtype), w.detach().to(dtype)
        t_out, grad_out = t_out.detach().to(dtype), grad_out.detach().to(dtype)
        B, S = t_in.shape
        n = w.shape[1]
        g_in, g_w = torch.zeros_like(t_in), torch.zeros_like(w)
        finite = torch.isfinite(t_out) & torch.isfinite(grad_out)
        go = torch.where(finite, grad_out, torch.zeros_like(grad_out))
        delivered = t_in <= t_max
        z = torch.where(delivered, torch.exp((torch.clamp(t_in, max=t_max) - t_max) / tau_s), torch.zeros_like(t_in))
        z_out = torch.exp((torch.where(finite, t_out, torch.zeros_like(t_out)) - t_max) / tau_s)
        chunk = max(1, _CHUNK_ELEMS // max(1, S * n))
        for b0 in range(0, B, chunk):
            sl = slice(b0, b0 + chunk)
            causal = (delivered[sl, :, None] & (t_in[sl, :, None] < t_out[sl, None, :])).to(dtype)  # (b, S, n)
            zc = causal * z[sl, :, None]
            slope = torch.einsum("bsn,sn->bn", zc, w)  # Σ_C w z = Z_out · dV/dt at t_out
            rising = slope > 0  # the derivative exists only where V is rising
            q = torch.where(rising & finite[sl], go[sl] / torch.where(rising, slope, torch.ones_like(slope)),
                            torch.zeros_like(slope))
            # ∂t/∂w_i = τs (z_i − Z_out)/slope,  ∂t/∂t_i = w_i z_i / slope
            g_w += tau_s * (torch.einsum("bsn,bn->sn", zc, q) - torch.einsum("bsn,bn->sn", causal, q * z_out[sl]))
            g_in[sl] = torch.einsum("bsn,sn,bn->bs", zc, w, q)
        return g_in, g_w


__all__ = ["NonLeakyIF"]
