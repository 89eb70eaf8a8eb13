"""Numba forward and hand-written backward of one qif-trains layer over a
trial (`hwloop.models.trains.qif_trains`; docs/models-qif-trains.md,
section 3, derives the adjoint).

The layer's input current ``x`` (T, B, N) (the feed-forward spikes through
the input weights) is formed by torch outside, so torch's autograd carries
the gradient of the input weights and of the spikes below; this kernel runs
the recurrence, the neuron and its BPTT adjoint, one sample at a time (a
sample's state stays in the cache), samples in a fixed number of chunks
spread over threads (per-chunk recurrent-weight gradients summed in a fixed
order: results do not depend on the thread count). It computes what the
plain-autograd loop (`qif_layer(..., engine="torch")`) computes; the tests
hold the two to 1e-6 in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from . import kernel as K
from .functional import Surrogate
from .qif_trains import V_MIN, QifTrainsParams

_CHUNKS = K._CHUNKS

if K.nb is not None:
    nb = K.nb

    @nb.njit(cache=True, nogil=True)
    def _surrogate(code, beta, x):
        if code == 0:
            q = beta * abs(x) + 1.0
            return 1.0 / (q * q)
        if code == 1:
            e = np.exp(-beta * abs(x))
            return 4.0 * e / ((1.0 + e) * (1.0 + e))
        if code == 2:
            return max(0.0, 1.0 - beta * abs(x))
        return np.exp(-beta * abs(x))

    @nb.njit(cache=True, nogil=True)
    def _forward_chunk(c0, c1, nchunks, x, w_rec, has_rec, alpha, k, i0, vp, vr, v0, n_ref, spiking, smooth,
                       sbeta, out_s, out_v, out_a, out_f):
        T, B, N = x.shape
        i = np.empty(N, x.dtype)
        v = np.empty(N, x.dtype)
        r = np.empty(N, x.dtype)
        xin = np.empty(N, x.dtype)
        vmin = x.dtype.type(V_MIN)
        for c in range(c0, c1):
            b0, b1 = c * B // nchunks, (c + 1) * B // nchunks
            for b in range(b0, b1):
                for j in range(N):
                    i[j] = 0.0
                    v[j] = v0
                    r[j] = 0.0
                for t in range(T):
                    for j in range(N):
                        xin[j] = x[t, b, j]
                    if has_rec and t > 0:
                        for m in range(N):
                            sm = out_s[t - 1, b, m]
                            if sm != 0.0:
                                for j in range(N):
                                    xin[j] += sm * w_rec[m, j]
                    for j in range(N):
                        ij = alpha * i[j] + xin[j]
                        i[j] = ij
                        vj = v[j]
                        if not spiking:
                            vt = vj + k * (ij - vj)
                            out_v[t, b, j] = vt
                            out_s[t, b, j] = 0.0
                            out_a[t, b, j] = 1
                            out_f[t, b, j] = 1
                            v[j] = vt
                            continue
                        a = r[j] < 0.5
                        u = vj + k * (vj * (vj - 1.0) + i0 + ij) if a else vj
                        f = u >= vmin
                        vt = u if f else vmin
                        if smooth:
                            sj = 1.0 / (1.0 + np.exp(-sbeta * (vt - vp)))
                        else:
                            sj = 1.0 if (a and vt > vp) else 0.0
                        out_v[t, b, j] = vt
                        out_s[t, b, j] = sj
                        out_a[t, b, j] = a
                        out_f[t, b, j] = f
                        v[j] = vt - sj * (vt - vr)
                        if n_ref > 0.0:
                            r[j] = r[j] - (1.0 if r[j] > 0.5 else 0.0) + sj * n_ref

    @nb.njit(cache=True, nogil=True)
    def _backward_chunk(c0, c1, nchunks, g_s, has_gs, g_v, has_gv, w_rec, has_rec, alpha, k, vp, vr, v0, spiking,
                        smooth, code, sbeta, through_reset, s, vt, act, flo, g_x, g_rec):
        T, B, N = s.shape
        gi = np.empty(N, s.dtype)
        lv = np.empty(N, s.dtype)
        gs = np.empty(N, s.dtype)
        for c in range(c0, c1):
            b0, b1 = c * B // nchunks, (c + 1) * B // nchunks
            for b in range(b0, b1):
                for j in range(N):
                    gi[j] = 0.0
                    lv[j] = 0.0
                for t in range(T - 1, -1, -1):
                    for j in range(N):
                        gs[j] = g_s[t, b, j] if has_gs else 0.0
                    if has_rec and t < T - 1:
                        # s_t feeds x_{t+1} through w_rec: dL/ds_t[m] += sum_j w_rec[m, j] dL/dx_{t+1}[j]
                        for m in range(N):
                            acc = 0.0
                            for j in range(N):
                                acc += w_rec[m, j] * g_x[t + 1, b, j]
                            gs[m] += acc
                    for j in range(N):
                        vtj = vt[t, b, j]
                        if t > 0:
                            vprev = vt[t - 1, b, j] - s[t - 1, b, j] * (vt[t - 1, b, j] - vr)
                        else:
                            vprev = v0
                        dv = g_v[t, b, j] if has_gv else 0.0
                        if not spiking:
                            dv += lv[j]
                            gij = dv * k + alpha * gi[j]
                            lv[j] = dv * (1.0 - k)
                        else:
                            sj = s[t, b, j]
                            a = 1.0 if act[t, b, j] else 0.0
                            gsj = gs[j]
                            if through_reset:
                                gsj -= lv[j] * (vtj - vr)
                            if smooth:
                                sd = sbeta * sj * (1.0 - sj)
                            else:
                                sd = _surrogate(code, sbeta, vtj - vp)
                            dv += lv[j] * (1.0 - sj) + gsj * a * sd
                            du = dv if flo[t, b, j] else 0.0
                            gij = du * a * k + alpha * gi[j]
                            lv[j] = du * (a * (1.0 + k * (2.0 * vprev - 1.0)) + (1.0 - a))
                        gi[j] = gij
                        g_x[t, b, j] = gij
                    if has_rec and t > 0:
                        for m in range(N):
                            sm = s[t - 1, b, m]
                            if sm != 0.0:
                                for j in range(N):
                                    g_rec[c, m, j] += sm * g_x[t, b, j]


def _scalars(p: QifTrainsParams, sg: Surrogate, ty):
    return (ty(p.alpha), ty(p.k), ty(p.i0), ty(p.v_peak), ty(p.v_reset), ty(p.v_rest), ty(p.refractory),
            ty(sg.beta))


class QifLayerFn(torch.autograd.Function):
    """(x, w_rec) -> (spikes, membranes before reset), each (T, B, N), of one
    qif-trains layer driven by the input current x (numba forward, the
    hand-written adjoint backward)."""

    @staticmethod
    def forward(ctx, x, w_rec, meta):
        p, sg = meta
        ctx.set_materialize_grads(False)
        dtype = K._np_dtype(x.dtype)
        xn = K._np(x, dtype)
        T, B, N = xn.shape
        has_rec = w_rec.numel() > 0
        wr = K._np(w_rec, dtype) if has_rec else np.zeros((1, 1), dtype)
        s = np.empty((T, B, N), dtype)
        v = np.empty((T, B, N), dtype)
        a = np.empty((T, B, N), np.bool_)
        f = np.empty((T, B, N), np.bool_)
        alpha, k, i0, vp, vr, v0, n_ref, sbeta = _scalars(p, sg, dtype)
        K._run_chunks(_forward_chunk, xn, wr, has_rec, alpha, k, i0, vp, vr, v0, n_ref, p.spiking, sg.smooth,
                      sbeta, s, v, a, f)
        ctx.meta = meta
        ctx.arrays = (s, v, a, f, wr, has_rec, dtype)
        ctx.x_dtype = x.dtype
        return torch.from_numpy(s), torch.from_numpy(v)

    @staticmethod
    def backward(ctx, g_s, g_v):
        p, sg = ctx.meta
        s, v, a, f, wr, has_rec, dtype = ctx.arrays
        ctx.arrays = None
        T, B, N = s.shape
        d3 = np.zeros((1, 1, 1), dtype)
        gs = K._np(g_s, dtype) if g_s is not None else d3
        gv = K._np(g_v, dtype) if g_v is not None else d3
        g_x = np.empty((T, B, N), dtype)
        g_rec = np.zeros((_CHUNKS, N, N) if has_rec else (_CHUNKS, 1, 1), dtype)
        alpha, k, i0, vp, vr, v0, n_ref, sbeta = _scalars(p, sg, dtype)
        K._run_chunks(_backward_chunk, gs, g_s is not None, gv, g_v is not None, wr, has_rec, alpha, k, vp, vr, v0,
                      p.spiking, sg.smooth, sg.code, sbeta, sg.through_reset, s, v, a, f, g_x, g_rec)
        gr = torch.from_numpy(K._ordered_sum(g_rec)) if has_rec else None
        return torch.from_numpy(g_x).to(ctx.x_dtype), gr, None


def qif_layer_kernel(x: torch.Tensor, p: QifTrainsParams, sg: Surrogate,
                     w_rec: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`qif_layer` on the numba kernel (CPU float32/float64)."""
    r = x.new_empty(0) if w_rec is None else w_rec.to(x.dtype)
    return QifLayerFn.apply(x, r, (p, sg))
