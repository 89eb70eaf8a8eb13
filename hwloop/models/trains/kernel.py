"""Fused numba kernel for a CUBA LIF layer over a whole trial: the forward
loop and its hand-written backward (backpropagation through time with the
surrogate derivative).

Computes what the plain-autograd reference loop
(`hwloop.models.trains.functional.cuba_layer_reference`) computes, with the
same step functions (`integrate`, `reset`, `refractory`, compiled here); the
tests hold the two to 1e-6 in float64. The adjoint recursion is derived in
docs/models-cuba.md, section 3.

Why it is fast:

* **One sample at a time, all its steps.** A sample's state (current,
  membrane, refractory count) is a few vectors of the layer's width that stay
  in the L1 cache for the whole trial; one pass over time, no tensor
  temporaries, no per-step Python or autograd bookkeeping.
* **Recurrent input by events.** The layer's spikes of the previous step add
  their rows of the recurrent matrix; spikes are sparse, so this costs the
  spikes, not the matrix.
* **Samples in parallel** (as many threads as torch uses) in a fixed number
  of chunks; the recurrent weight gradient is accumulated per chunk and the
  chunks summed in a fixed order, so results do not depend on the thread
  count.

The feed-forward matrix products around the layer (input spikes times
weights, their transposes in the backward) are torch's, outside this kernel.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ...errors import NetworkSpecError
from . import functional as F

ENV_VAR = "HWLOOP_CUBA_ENGINE"
_ENGINES = ("auto", "numba", "torch")
#: fixed chunk count: per-chunk recurrent gradients summed in a fixed order
_CHUNKS = 16
_FASTMATH = {"reassoc", "contract"}

_import_error: str | None = None
try:  # numba is a dependency; without it the layer runs the torch reference loop
    import numba as nb
except ImportError as exc:  # pragma: no cover
    nb = None
    _import_error = str(exc)


def _engine(engine: str | None) -> str:
    e = (engine if engine is not None else os.environ.get(ENV_VAR, "auto")).strip().lower() or "auto"
    if e not in _ENGINES:
        where = "engine argument" if engine is not None else f"environment variable {ENV_VAR}"
        raise NetworkSpecError(f"cuba: {where} must be one of {list(_ENGINES)}, got {e!r}")
    return e


def available() -> bool:
    return nb is not None


def use_kernel(engine: str | None, x: torch.Tensor) -> bool:
    e = _engine(engine)
    if e == "torch":
        return False
    fits = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    if e == "numba":
        if not fits:
            raise NetworkSpecError(f"cuba: the numba kernel needs CPU float32/float64 tensors, got {x.dtype} on {x.device}")
        if not available():
            raise NetworkSpecError(f"cuba: the numba kernel is not available ({_import_error})")
        return True
    return fits and available()


if nb is not None:
    _integrate = nb.njit(cache=True, inline="always")(F.integrate)
    _reset = nb.njit(cache=True, inline="always")(F.reset)
    _refractory = nb.njit(cache=True, inline="always")(F.refractory)

    @nb.njit(cache=True, inline="always")
    def _surrogate(code, beta, x):
        """Surrogate derivative of H at x (`functional.Surrogate`, peak 1)."""
        if code == 0:
            d = beta * abs(x) + 1.0
            return 1.0 / (d * d)
        if code == 1:
            s = 1.0 / (1.0 + np.exp(-beta * x))
            return 4.0 * s * (1.0 - s)
        if code == 2:
            return max(0.0, 1.0 - beta * abs(x))
        return np.exp(-beta * abs(x))

    @nb.njit(cache=True, nogil=True)
    def _samples(c, nchunks, B):
        return c * B // nchunks, (c + 1) * B // nchunks

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _forward_chunk(c0, c1, nchunks, s_in, w_in, w_rec, has_rec, alpha, beta, theta, subtract, n_ref,
                       spiking, smooth, sbeta, out_s, out_v, out_a):
        """Samples of chunks [c0, c1): per step, the input current from the
        input spikes (events: rows of w_in), plus the recurrent events, then
        the neuron update (`integrate`, spike, `reset`, `refractory`)."""
        T, B, n_in = s_in.shape
        N = w_in.shape[1]
        one = s_in.dtype.type(1.0)
        zero = s_in.dtype.type(0.0)
        i = np.zeros(N, s_in.dtype)
        v = np.zeros(N, s_in.dtype)
        r = np.zeros(N, s_in.dtype)
        sp = np.zeros(N, s_in.dtype)
        x = np.zeros(N, s_in.dtype)
        for c in range(c0, c1):
            b0, b1 = _samples(c, nchunks, B)
            for b in range(b0, b1):
                i[:] = zero
                v[:] = zero
                r[:] = zero
                sp[:] = zero
                for t in range(T):
                    x[:] = zero
                    sin = s_in[t, b]
                    for k in range(n_in):
                        sk = sin[k]
                        if sk != zero:
                            for j in range(N):
                                x[j] += sk * w_in[k, j]
                    if has_rec:
                        for k in range(N):
                            sk = sp[k]
                            if sk != zero:
                                for j in range(N):
                                    x[j] += sk * w_rec[k, j]
                    vt = out_v[t, b]
                    if not spiking:
                        for j in range(N):
                            ij, vj = _integrate(i[j], v[j], x[j], one, alpha, beta)
                            i[j] = ij
                            v[j] = vj
                            vt[j] = vj
                        continue
                    st = out_s[t, b]
                    if smooth:
                        for j in range(N):
                            ij, vj = _integrate(i[j], v[j], x[j], one, alpha, beta)
                            sj = one / (one + np.exp(-sbeta * (vj - theta)))
                            i[j] = ij
                            vt[j] = vj
                            st[j] = sj
                            sp[j] = sj
                            v[j] = _reset(vj, sj, theta, subtract)
                    elif n_ref > zero:
                        at = out_a[t, b]
                        for j in range(N):
                            a = one if r[j] < 0.5 else zero
                            ij, vj = _integrate(i[j], v[j], x[j], a, alpha, beta)
                            sj = one if (vj >= theta and a > zero) else zero
                            i[j] = ij
                            vt[j] = vj
                            st[j] = sj
                            sp[j] = sj
                            at[j] = a
                            v[j] = _reset(vj, sj, theta, subtract)
                            r[j] = _refractory(r[j], sj, n_ref)
                    else:
                        for j in range(N):
                            ij, vj = _integrate(i[j], v[j], x[j], one, alpha, beta)
                            sj = one if vj >= theta else zero
                            i[j] = ij
                            vt[j] = vj
                            st[j] = sj
                            sp[j] = sj
                            v[j] = _reset(vj, sj, theta, subtract)

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _backward_chunk(c0, c1, nchunks, g_s, has_gs, g_v, has_gv, s_in, w_in_t, s_all, v_all, a_all, w_rec,
                        has_rec, alpha, beta, theta, subtract, n_ref, spiking, smooth, code, sbeta, through_reset,
                        need_in, g_in, g_w_in, g_w_rec):
        """Reverse-time adjoint (docs/models-cuba.md, section 3) for the samples
        of chunks [c0, c1). dL/dx_t = dL/di_t is used at once: the weight
        gradient by the input events, the input spikes' gradient densely
        through w_in (``need_in``). Chunk c accumulates into g_w_in[c] and
        g_w_rec[c]."""
        T, B, n_in = s_in.shape
        N = w_in_t.shape[0]
        one = s_in.dtype.type(1.0)
        zero = s_in.dtype.type(0.0)
        li = np.zeros(N, s_in.dtype)   # dL/di_{t+1}
        lv = np.zeros(N, s_in.dtype)   # dL/dv_t (after reset), from step t+1
        gr = np.zeros(N, s_in.dtype)   # dL/ds_t through the recurrent weights
        keep = one - subtract          # zero reset: dv/dv~ = 1 - s
        for c in range(c0, c1):
            gwi = g_w_in[c]
            gwr = g_w_rec[c]
            b0, b1 = _samples(c, nchunks, B)
            for b in range(b0, b1):
                li[:] = zero
                lv[:] = zero
                for t in range(T - 1, -1, -1):
                    rec_now = has_rec and t < T - 1
                    if rec_now:
                        for k in range(N):
                            acc = zero
                            for j in range(N):
                                acc += w_rec[k, j] * li[j]
                            gr[k] = acc
                    vt = v_all[t, b]
                    if not spiking:
                        for j in range(N):
                            gvp = lv[j]
                            if has_gv:
                                gvp += g_v[t, b, j]
                            li[j] = alpha * li[j] + gvp
                            lv[j] = beta * gvp
                    else:
                        st = s_all[t, b]
                        for j in range(N):
                            sj = st[j]
                            vj = vt[j]
                            a = a_all[t, b, j] if n_ref > zero else one
                            gs = g_s[t, b, j] if has_gs else zero
                            if rec_now:
                                gs += gr[j]
                            if through_reset:
                                gs -= lv[j] * (subtract * theta + keep * vj)
                            if smooth:
                                d = sbeta * sj * (one - sj)
                            else:
                                d = a * _surrogate(code, sbeta, vj - theta)
                            gvp = lv[j] * (one - keep * sj) + gs * d
                            if has_gv:
                                gvp += g_v[t, b, j]
                            li[j] = alpha * li[j] + a * gvp
                            lv[j] = (a * beta + (one - a)) * gvp
                    # li is dL/dx_t now: weight gradients by events, input gradient densely
                    sin = s_in[t, b]
                    for k in range(n_in):
                        sk = sin[k]
                        if sk != zero:
                            for j in range(N):
                                gwi[k, j] += sk * li[j]
                    if need_in:
                        gin = g_in[t, b]
                        for k in range(n_in):
                            gin[k] = zero
                        for j in range(N):
                            lj = li[j]
                            wj = w_in_t[j]
                            for k in range(n_in):
                                gin[k] += lj * wj[k]
                    if has_rec and t >= 1:
                        sprev = s_all[t - 1, b]
                        for k in range(N):
                            sk = sprev[k]
                            if sk != zero:
                                for j in range(N):
                                    gwr[k, j] += sk * li[j]


_pool: ThreadPoolExecutor | None = None


def _run_chunks(kernel, *args) -> None:
    """``kernel(c0, c1, _CHUNKS, *args)`` over [0, _CHUNKS), split over as many
    threads as torch uses; results do not depend on the split."""
    global _pool
    k = max(1, min(torch.get_num_threads(), _CHUNKS, os.cpu_count() or 1))
    if k == 1:
        kernel(0, _CHUNKS, _CHUNKS, *args)
        return
    if _pool is None or _pool._max_workers < k - 1:
        _pool = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="cuba-kernel")
    bounds = [(i * _CHUNKS // k, (i + 1) * _CHUNKS // k) for i in range(k)]
    futures = [_pool.submit(kernel, c0, c1, _CHUNKS, *args) for c0, c1 in bounds[1:]]
    kernel(*bounds[0], _CHUNKS, *args)
    for f in futures:
        f.result()


def _scalars(p: F.CubaParams, sg: F.Surrogate, dtype):
    ty = np.float32 if dtype == torch.float32 else np.float64
    return (ty(p.alpha), ty(p.beta), ty(p.threshold), ty(1.0 if p.reset == "subtract" else 0.0),
            ty(p.refractory), ty(sg.beta))


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(dtype).numpy())


def layer_forward(s_in: torch.Tensor, w_in: torch.Tensor, w_rec: torch.Tensor | None, p: F.CubaParams,
                  sg: F.Surrogate):
    """Spikes, membranes before reset and the active mask (None without a
    refractory period) of one layer, each (T, B, N), driven by the input
    spikes ``s_in`` (T, B, n_in) through ``w_in`` (n_in, N)."""
    dtype = s_in.dtype
    sn = _np(s_in, dtype)
    T, B, _ = sn.shape
    wn = _np(w_in, dtype)
    N = wn.shape[1]
    alpha, beta, theta, sub, n_ref, sbeta = _scalars(p, sg, dtype)
    has_rec = w_rec is not None
    wr = _np(w_rec, dtype) if has_rec else np.zeros((1, 1), sn.dtype)
    out_s = np.zeros((T, B, N), sn.dtype)
    out_v = np.empty((T, B, N), sn.dtype)
    out_a = np.ones((T, B, N), sn.dtype) if p.refractory > 0 else np.zeros((1, 1, 1), sn.dtype)
    _run_chunks(_forward_chunk, sn, wn, wr, has_rec, alpha, beta, theta, sub, n_ref, p.spiking, sg.smooth, sbeta,
                out_s, out_v, out_a)
    a = torch.from_numpy(out_a) if p.refractory > 0 else None
    return torch.from_numpy(out_s), torch.from_numpy(out_v), a


def layer_backward(g_s: torch.Tensor | None, g_v: torch.Tensor | None, s_in: torch.Tensor, w_in: torch.Tensor,
                   s: torch.Tensor, v: torch.Tensor, a: torch.Tensor | None, w_rec: torch.Tensor | None,
                   p: F.CubaParams, sg: F.Surrogate, need_in: bool):
    """Gradients wrt the input spikes (None unless ``need_in``), the input
    weights and the recurrent weights (None without recurrence)."""
    dtype = s.dtype
    sn_in = _np(s_in, dtype)
    T, B, n_in = sn_in.shape
    wt = np.ascontiguousarray(_np(w_in, dtype).T)
    N = wt.shape[0]
    dummy3 = np.zeros((1, 1, 1), sn_in.dtype)
    gs = _np(g_s, dtype) if g_s is not None else dummy3
    gv = _np(g_v, dtype) if g_v is not None else dummy3
    alpha, beta, theta, sub, n_ref, sbeta = _scalars(p, sg, dtype)
    has_rec = w_rec is not None
    wr = _np(w_rec, dtype) if has_rec else np.zeros((1, 1), sn_in.dtype)
    an = a.numpy() if a is not None else dummy3
    g_in = np.empty_like(sn_in) if need_in else dummy3
    g_w_in = np.zeros((_CHUNKS, n_in, N), sn_in.dtype)
    g_w_rec = np.zeros((_CHUNKS, N, N) if has_rec else (_CHUNKS, 1, 1), sn_in.dtype)
    _run_chunks(_backward_chunk, gs, g_s is not None, gv, g_v is not None, sn_in, wt, s.numpy(), v.numpy(), an, wr,
                has_rec, alpha, beta, theta, sub, n_ref, p.spiking, sg.smooth, sg.code, sbeta, sg.through_reset,
                need_in, g_in, g_w_in, g_w_rec)
    gw_in = _ordered_sum(g_w_in)
    gw_rec = torch.from_numpy(_ordered_sum(g_w_rec)) if has_rec else None
    return (torch.from_numpy(g_in) if need_in else None), torch.from_numpy(gw_in), gw_rec


def _ordered_sum(per_chunk: np.ndarray) -> np.ndarray:
    acc = per_chunk[0].copy()
    for c in range(1, per_chunk.shape[0]):
        acc += per_chunk[c]
    return acc
