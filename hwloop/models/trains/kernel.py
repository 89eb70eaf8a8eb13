"""Fused numba kernel for a CUBA LIF layer over a whole trial: the forward
loop and its hand-written backward (backpropagation through time with the
surrogate derivative).

Computes what the plain-autograd reference loop
(`hwloop.models.trains.functional.cuba_layer_reference`) computes, with the
same step functions (`integrate`, `reset`, `refractory`, compiled here); the
tests hold the two to 1e-6 in float64. The adjoint recursion is derived in
docs/models-cuba.md, section 3.

Why it is fast (on a CPU the layer is bound by memory traffic, not by
arithmetic; measured: writing one float32 (T, B, N) array costs more than
the neuron update itself):

* **One sample at a time, all its steps.** A sample's state (current,
  membrane, refractory count) is a few vectors of the layer's width that stay
  in the L1 cache for the whole trial; no tensor temporaries, no per-step
  Python or autograd bookkeeping.
* **Inputs and recurrence by events.** The input current is formed inside
  the kernel from the input spikes (rows of the weight matrix), and the
  layer's own spikes of the previous step add rows of the recurrent matrix:
  the cost is the spikes, not the matrix.
* **Spikes stored as bytes, membranes not stored.** Internally a layer keeps
  its spikes as a uint8 raster and, every `_SEGMENT` steps, a checkpoint of
  its state. The backward recomputes each segment's membranes from its
  checkpoint (the same arithmetic in the same order, so bit for bit the
  forward's values) into a small buffer and runs the adjoint over it. Float
  rasters and membrane traces are written only where the caller asks for
  them (``record``).
* **Whole networks, chunk by chunk.** `network_forward` runs every layer of a
  chunk of samples before the next chunk, and `network_backward` passes
  only dL/dx of the layer above between layers (the gradient of a layer's
  spikes through the next weights is formed inside the kernel).
* **Samples in parallel** (as many threads as torch uses) in a fixed number
  of chunks; weight gradients are accumulated per chunk and summed in a
  fixed order, so results do not depend on the thread count.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ...errors import NetworkSpecError
from . import functional as F

ENV_VAR = "HWLOOP_CUBA_ENGINE"
_ENGINES = ("auto", "numba", "torch")
#: fixed chunk count: per-chunk weight gradients summed in a fixed order
_CHUNKS = 16
#: steps between state checkpoints; the backward recomputes one segment at a time
_SEGMENT = 10
_FASTMATH = {"reassoc", "contract"}

_import_error: str | None = None
try:  # numba is a dependency; without it the layer runs the torch reference loop
    import numba as nb
except ImportError as exc:  # pragma: no cover
    nb = None
    _import_error = str(exc)
else:
    # the fused loops touch many arrays: let LLVM vectorise them (llvm_options)
    from hwloop.models.llvm_options import allow_many_runtime_checks

    allow_many_runtime_checks()


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

    @nb.njit(cache=True, nogil=True)
    def _samples(c, nchunks, B):
        return c * B // nchunks, (c + 1) * B // nchunks

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
    def _surrogate_row(code, beta, v, theta, out):
        """out[j] = surrogate derivative at v[j] - theta (`functional.Surrogate`,
        peak 1); one loop per shape."""
        one = v.dtype.type(1.0)
        if code == 0:
            for j in range(v.shape[0]):
                q = beta * abs(v[j] - theta) + one
                out[j] = one / (q * q)
        elif code == 1:
            for j in range(v.shape[0]):
                e = np.exp(-beta * abs(v[j] - theta))  # symmetric: no overflow far below threshold
                out[j] = 4.0 * e / ((one + e) * (one + e))
        elif code == 2:
            for j in range(v.shape[0]):
                out[j] = max(0.0, one - beta * abs(v[j] - theta))
        else:
            for j in range(v.shape[0]):
                out[j] = np.exp(-beta * abs(v[j] - theta))

    # The hot loops index the (T, B, N) arrays directly: a row view per step
    # costs a reference-count increment and decrement on the parent array.

    @nb.njit(cache=True, nogil=True, inline="always")
    def _events(arr, t, b, idx):
        """Indices of the nonzero entries of arr[t, b] into ``idx`` (ascending),
        their number returned; branch-free."""
        n = 0
        for k in range(arr.shape[2]):
            idx[n] = k
            n += arr[t, b, k] != 0
        return n

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
    def _input(x, s_in, t, b, w_in, has_rec, s_own, w_rec, idx):
        """x = s_in[t, b] @ w_in (+ s_own[t-1, b] @ w_rec), over the nonzero
        spikes only, in ascending index order (the forward and the recompute
        share it)."""
        zero = x.dtype.type(0.0)
        N = x.shape[0]
        for j in range(N):
            x[j] = zero
        n = _events(s_in, t, b, idx)
        for e in range(n):
            k = idx[e]
            sv = x.dtype.type(s_in[t, b, k])
            for j in range(N):
                x[j] += sv * w_in[k, j]
        if has_rec and t > 0:
            n = _events(s_own, t - 1, b, idx)
            for e in range(n):
                k = idx[e]
                sv = x.dtype.type(s_own[t - 1, b, k])
                for j in range(N):
                    x[j] += sv * w_rec[k, j]

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
    def _update(x, i, v, r, alpha, beta, theta, subtract, n_ref, spiking, smooth, sbeta, vb, sb, ab, q):
        """One step of the layer's neurons (`integrate`, spike, `reset`,
        `refractory`): vb[q] gets v~ (before reset), sb[q] the spikes, ab[q]
        the active mask."""
        one = x.dtype.type(1.0)
        zero = x.dtype.type(0.0)
        N = x.shape[0]
        if not spiking:
            for j in range(N):
                ij, vj = _integrate(i[j], v[j], x[j], one, alpha, beta)
                i[j] = ij
                v[j] = vj
                vb[q, j] = vj
                sb[q, j] = zero
                ab[q, j] = one
        elif smooth:
            for j in range(N):
                ij, vj = _integrate(i[j], v[j], x[j], one, alpha, beta)
                sj = one / (one + np.exp(-sbeta * (vj - theta)))
                i[j] = ij
                vb[q, j] = vj
                sb[q, j] = sj
                ab[q, j] = one
                v[j] = _reset(vj, sj, theta, subtract)
        elif n_ref > zero:
            for j in range(N):
                a = one if r[j] < 0.5 else zero
                ij, vj = _integrate(i[j], v[j], x[j], a, alpha, beta)
                sj = one if (vj > theta and a > zero) else zero
                i[j] = ij
                vb[q, j] = vj
                sb[q, j] = sj
                ab[q, j] = a
                v[j] = _reset(vj, sj, theta, subtract)
                r[j] = _refractory(r[j], sj, n_ref)
        else:
            for j in range(N):
                ij, vj = _integrate(i[j], v[j], x[j], one, alpha, beta)
                sj = one if vj > theta else zero
                i[j] = ij
                vb[q, j] = vj
                sb[q, j] = sj
                ab[q, j] = one
                v[j] = _reset(vj, sj, theta, subtract)

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _forward_chunk(c0, c1, nchunks, s_in, w_in, w_rec, has_rec, alpha, beta, theta, subtract, n_ref, spiking,
                       smooth, sbeta, seg, s_int, ck_i, ck_v, ck_r, out_c, rec_s, out_s, rec_v, out_v):
        """Samples of chunks [c0, c1): the layer over the whole trial.
        s_int (T, B, N): the spikes, in the internal raster's dtype (uint8, or
        float for the smooth stand-in); ck_*: the state before every
        ``seg``-th step; out_c (B, N): spike counts; out_s, out_v: float
        spikes and membranes before reset, where ``rec_s`` / ``rec_v``."""
        T, B, n_in = s_in.shape
        N = w_in.shape[1]
        dt = ck_v.dtype
        zero = dt.type(0.0)
        i = np.zeros(N, dt)
        v = np.zeros(N, dt)
        r = np.zeros(N, dt)
        x = np.zeros(N, dt)
        vb = np.zeros((1, N), dt)
        sb = np.zeros((1, N), dt)
        ab = np.zeros((1, N), dt)
        idx = np.zeros(max(n_in, N), np.int64)
        for c in range(c0, c1):
            b0, b1 = _samples(c, nchunks, B)
            for b in range(b0, b1):
                i[:] = zero
                v[:] = zero
                r[:] = zero
                for j in range(N):
                    out_c[b, j] = zero
                for t in range(T):
                    if t % seg == 0:
                        k = t // seg
                        for j in range(N):
                            ck_i[k, b, j] = i[j]
                            ck_v[k, b, j] = v[j]
                            ck_r[k, b, j] = r[j]
                    _input(x, s_in, t, b, w_in, has_rec, s_int, w_rec, idx)
                    _update(x, i, v, r, alpha, beta, theta, subtract, n_ref, spiking, smooth, sbeta, vb, sb, ab, 0)
                    if spiking:  # a readout's spike rasters stay as allocated: zero
                        for j in range(N):
                            s_int[t, b, j] = sb[0, j]
                            out_c[b, j] += sb[0, j]
                        if rec_s:
                            for j in range(N):
                                out_s[t, b, j] = sb[0, j]
                    if rec_v:
                        for j in range(N):
                            out_v[t, b, j] = vb[0, j]

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _backward_chunk(c0, c1, nchunks, g_s, has_gs, g_v, has_gv, g_c, has_gc, gx_next, w_next_t, has_next,
                        s_in, w_in, w_in_t, s_int, w_rec, has_rec, alpha, beta, theta, subtract, n_ref, spiking,
                        smooth, code, sbeta, through_reset, seg, ck_i, ck_v, ck_r, need_in, g_in, emit_gx, gx_out,
                        g_w_in, g_w_rec):
        """Reverse-time adjoint (docs/models-cuba.md, section 3) for the samples
        of chunks [c0, c1), one segment at a time: the segment's membranes
        are recomputed from its checkpoint, then the adjoint runs back over it.

        dL/ds_t of this layer is the sum of: the direct gradient ``g_s``, the
        gradient of its spike counts ``g_c`` (every step alike), the layer
        above's dL/dx through its weights, gx_next[t] @ w_next^T
        (``has_next``), and the recurrent path. dL/dx_t = dL/di_t (``li``) is
        used at once: the weight gradient by the input events, the input
        spikes' gradient densely (``need_in``), and, for the layer below,
        stored in ``gx_out`` (``emit_gx``). Chunk c accumulates into
        g_w_in[c] and g_w_rec[c].
        """
        T, B, n_in = s_in.shape
        N = w_in_t.shape[0]
        dt = ck_v.dtype
        one = dt.type(1.0)
        zero = dt.type(0.0)
        li = np.zeros(N, dt)   # dL/di_{t+1}
        lv = np.zeros(N, dt)   # dL/dv_t (after reset), from step t+1
        gr = np.zeros(N, dt)   # dL/ds_t through the recurrent weights
        gs = np.zeros(N, dt)   # dL/ds_t, then dL/dv~_t
        d = np.zeros(N, dt)    # ds_t/dv~_t (surrogate, times the active mask)
        vq = np.zeros(N, dt)
        i = np.zeros(N, dt)
        v = np.zeros(N, dt)
        r = np.zeros(N, dt)
        x = np.zeros(N, dt)
        vb = np.zeros((seg, N), dt)
        sb = np.zeros((seg, N), dt)
        ab = np.zeros((seg, N), dt)
        idx = np.zeros(max(n_in, N), np.int64)
        keep = one - subtract          # zero reset: dv/dv~ = 1 - s
        n_next = w_next_t.shape[0]
        nseg = (T + seg - 1) // seg
        for c in range(c0, c1):
            b0, b1 = _samples(c, nchunks, B)
            for b in range(b0, b1):
                li[:] = zero
                lv[:] = zero
                for sgi in range(nseg - 1, -1, -1):
                    t0 = sgi * seg
                    t1 = min(T, t0 + seg)
                    # ---- recompute the segment from its checkpoint (a readout's
                    # adjoint is linear: it needs no membranes)
                    if spiking:
                        for j in range(N):
                            i[j] = ck_i[sgi, b, j]
                            v[j] = ck_v[sgi, b, j]
                            r[j] = ck_r[sgi, b, j]
                        for t in range(t0, t1):
                            _input(x, s_in, t, b, w_in, has_rec, s_int, w_rec, idx)
                            _update(x, i, v, r, alpha, beta, theta, subtract, n_ref, spiking, smooth, sbeta,
                                    vb, sb, ab, t - t0)
                    # ---- adjoint back over it
                    for t in range(t1 - 1, t0 - 1, -1):
                        q = t - t0
                        rec_now = has_rec and t < T - 1
                        if rec_now:
                            for k in range(N):
                                acc = zero
                                for j in range(N):
                                    acc += w_rec[k, j] * li[j]
                                gr[k] = acc
                        if not spiking:
                            for j in range(N):
                                gvp = lv[j]
                                if has_gv:
                                    gvp += g_v[t, b, j]
                                li[j] = alpha * li[j] + gvp
                                lv[j] = beta * gvp
                        else:
                            for j in range(N):
                                vq[j] = vb[q, j]
                            if smooth:
                                for j in range(N):
                                    d[j] = sbeta * sb[q, j] * (one - sb[q, j])
                            else:
                                _surrogate_row(code, sbeta, vq, theta, d)
                                if n_ref > zero:
                                    for j in range(N):
                                        d[j] *= ab[q, j]
                            if has_gs:
                                for j in range(N):
                                    gs[j] = g_s[t, b, j]
                            else:
                                gs[:] = zero
                            if has_gc:
                                for j in range(N):
                                    gs[j] += g_c[b, j]
                            if has_next:
                                for m in range(n_next):
                                    gm = gx_next[t, b, m]
                                    if gm != zero:
                                        for j in range(N):
                                            gs[j] += gm * w_next_t[m, j]
                            if rec_now:
                                for j in range(N):
                                    gs[j] += gr[j]
                            if through_reset:
                                for j in range(N):
                                    gs[j] -= lv[j] * (subtract * theta + keep * vq[j])
                            for j in range(N):
                                gs[j] = lv[j] * (one - keep * sb[q, j]) + gs[j] * d[j]  # now dL/dv~
                            if has_gv:
                                for j in range(N):
                                    gs[j] += g_v[t, b, j]
                            if n_ref > zero:
                                for j in range(N):
                                    a = ab[q, j]
                                    li[j] = alpha * li[j] + a * gs[j]
                                    lv[j] = (a * beta + (one - a)) * gs[j]
                            else:
                                for j in range(N):
                                    li[j] = alpha * li[j] + gs[j]
                                    lv[j] = beta * gs[j]
                        # li is dL/dx_t now: weight gradients by events, input gradient densely
                        if emit_gx:
                            for j in range(N):
                                gx_out[t, b, j] = li[j]
                        n = _events(s_in, t, b, idx)
                        for e in range(n):
                            k = idx[e]
                            sv = dt.type(s_in[t, b, k])
                            for j in range(N):
                                g_w_in[c, k, j] += sv * li[j]
                        if need_in:
                            for k in range(n_in):
                                g_in[t, b, k] = zero
                            for j in range(N):
                                lj = li[j]
                                for k in range(n_in):
                                    g_in[t, b, k] += lj * w_in_t[j, k]
                        if has_rec and t >= 1:
                            # the forward's spikes, stored (the same as recomputed)
                            n = _events(s_int, t - 1, b, idx)
                            for e in range(n):
                                k = idx[e]
                                sv = dt.type(s_int[t - 1, b, k])
                                for j in range(N):
                                    g_w_rec[c, k, j] += sv * li[j]


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


class _BufferPool:
    """Reuses the big output arrays (spike rasters, membrane traces, input
    gradients: T x batch x neurons each) once nothing refers to them any more.

    Why: a fresh array of that size is fresh memory from the OS, and the
    page faults of first touching it cost as much as the layer's arithmetic
    (measured: 11 ms of a 25 ms forward). An array handed out is wrapped by
    ``torch.from_numpy``, whose tensor (and every view of it) holds a
    reference to it; only arrays whose reference count shows no such holder
    are handed out again. A few arrays per shape are kept, no more.
    """

    KEEP = 6

    def __init__(self):
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, shape, dtype, fill=None) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            held = self._free.setdefault(key, [])
            for arr in held:
                # references: the list, the loop variable, getrefcount's argument
                if sys.getrefcount(arr) == 3:
                    break
            else:
                arr = np.empty(shape, dtype)
                if len(held) < self.KEEP:
                    held.append(arr)
        if fill is not None:
            arr.fill(fill)
        return arr


_buffers = _BufferPool()


def _scalars(p: F.CubaParams, sg: F.Surrogate, dtype):
    ty = np.float32 if _torch_dtype(dtype) == torch.float32 else np.float64
    return (ty(p.alpha), ty(p.beta), ty(p.threshold), ty(1.0 if p.reset == "subtract" else 0.0),
            ty(p.refractory), ty(sg.beta))


def _torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.float32 if np.dtype(dtype) == np.float32 else torch.float64


def _np_dtype(dtype):
    return np.float32 if _torch_dtype(dtype) == torch.float32 else np.float64


def _np(t, dtype) -> np.ndarray:
    """A C-contiguous numpy array of ``dtype`` (torch or numpy) sharing memory where it can."""
    if isinstance(t, np.ndarray):
        return np.ascontiguousarray(t, dtype=_np_dtype(dtype))
    return np.ascontiguousarray(t.detach().to(_torch_dtype(dtype)).numpy())


_DUMMY: dict = {}


def _dummy(dtype, ndim):
    key = (np.dtype(dtype).str, ndim)
    if key not in _DUMMY:
        _DUMMY[key] = np.zeros((1,) * ndim, dtype)
    return _DUMMY[key]


class LayerRun:
    """One layer's forward state: the internal spike raster, the checkpoints,
    the counts and the recorded float rasters (numpy arrays, pooled)."""

    def __init__(self, s_in: np.ndarray, w_in, w_rec, p: F.CubaParams, sg: F.Surrogate, dtype, record_s: bool,
                 record_v: bool):
        self.dtype = _np_dtype(dtype)
        self.s_in = s_in
        T, B, _ = s_in.shape
        self.w_in = _np(w_in, dtype)
        N = self.w_in.shape[1]
        self.has_rec = w_rec is not None
        self.w_rec = _np(w_rec, dtype) if self.has_rec else _dummy(self.dtype, 2)
        self.p, self.sg = p, sg
        self.shape = (T, B, N)
        nseg = (T + _SEGMENT - 1) // _SEGMENT
        # spikes are 0/1 except for the smooth stand-in: bytes are enough
        self.s_int = _buffers.get((T, B, N), self.dtype if sg.smooth else np.uint8,
                                  fill=None if p.spiking else 0)
        self.ck = [_buffers.get((nseg, B, N), self.dtype) for _ in range(3)]
        self.counts = np.zeros((B, N), self.dtype)
        self.record_s, self.record_v = record_s, record_v
        self.out_s = (_buffers.get((T, B, N), self.dtype, fill=None if p.spiking else 0.0) if record_s
                      else _dummy(self.dtype, 3))
        self.out_v = _buffers.get((T, B, N), self.dtype) if record_v else _dummy(self.dtype, 3)

    def forward(self, c0, c1):
        alpha, beta, theta, sub, n_ref, sbeta = _scalars(self.p, self.sg, self.dtype)
        _forward_chunk(c0, c1, _CHUNKS, self.s_in, self.w_in, self.w_rec, self.has_rec, alpha, beta, theta, sub,
                       n_ref, self.p.spiking, self.sg.smooth, sbeta, _SEGMENT, self.s_int, self.ck[0], self.ck[1],
                       self.ck[2], self.counts, self.record_s, self.out_s, self.record_v, self.out_v)

    def grads(self):
        T, B, N = self.shape
        self.w_in_t = np.ascontiguousarray(self.w_in.T)
        self.g_w_in = np.zeros((_CHUNKS,) + self.w_in.shape, self.dtype)
        self.g_w_rec = np.zeros((_CHUNKS, N, N) if self.has_rec else (_CHUNKS, 1, 1), self.dtype)

    def backward(self, c0, c1, g_s=None, g_v=None, g_c=None, gx_next=None, w_next_t=None, need_in=False, g_in=None,
                 gx_out=None):
        dt = self.dtype
        d3, d2 = _dummy(dt, 3), _dummy(dt, 2)
        alpha, beta, theta, sub, n_ref, sbeta = _scalars(self.p, self.sg, dt)
        _backward_chunk(c0, c1, _CHUNKS,
                        g_s if g_s is not None else d3, g_s is not None,
                        g_v if g_v is not None else d3, g_v is not None,
                        g_c if g_c is not None else d2, g_c is not None,
                        gx_next if gx_next is not None else d3, w_next_t if w_next_t is not None else d2,
                        gx_next is not None,
                        self.s_in, self.w_in, self.w_in_t, self.s_int, self.w_rec, self.has_rec,
                        alpha, beta, theta, sub, n_ref, self.p.spiking, self.sg.smooth, self.sg.code, sbeta,
                        self.sg.through_reset, _SEGMENT, self.ck[0], self.ck[1], self.ck[2],
                        need_in, g_in if g_in is not None else d3, gx_out is not None,
                        gx_out if gx_out is not None else d3, self.g_w_in, self.g_w_rec)

    def weight_grads(self):
        gw = torch.from_numpy(_ordered_sum(self.g_w_in))
        gr = torch.from_numpy(_ordered_sum(self.g_w_rec)) if self.has_rec else None
        return gw, gr

    def spikes(self) -> torch.Tensor:
        """The layer's spikes as a float raster (the recorded one, or converted now)."""
        if self.record_s:
            return torch.from_numpy(self.out_s)
        return torch.from_numpy(self.s_int).to(_torch_dtype(self.dtype))


def network_forward(raster: torch.Tensor, weights, recurrent, params, sg: F.Surrogate, record_s, record_v):
    """All layers of a feed-forward stack, chunk by chunk of samples, every
    layer of a chunk before the next chunk (the chunk's spikes are still in
    the cache when the layer above reads them). ``record_s`` / ``record_v``:
    per layer, whether to write its float spikes / membranes. Returns one
    `LayerRun` per layer."""
    dtype = raster.dtype
    h = _np(raster, dtype)
    runs = []
    for w, wr, p, rs, rv in zip(weights, recurrent, params, record_s, record_v):
        run = LayerRun(h, w, wr, p, sg, dtype, rs, rv)
        runs.append(run)
        h = run.s_int

    def work(c0, c1, _n):
        for c in range(c0, c1):
            for run in runs:
                run.forward(c, c + 1)

    _run_chunks(work)
    return runs


def network_backward(runs, g_s, g_v, g_c, need_in: bool):
    """Weight gradients (and the input raster's, with ``need_in``) of a stack
    run by `network_forward`; g_s, g_v, g_c: per layer, numpy arrays or None.
    Chunk by chunk, top layer first; between layers only dL/dx of the layer
    above (T, B, n_above) passes, never a (T, B, N) spike gradient."""
    L = len(runs)
    dtype = runs[0].dtype
    for run in runs:
        run.grads()
    T, B, _ = runs[0].s_in.shape
    gx = [(_buffers.get(runs[li].shape, dtype) if li > 0 else None) for li in range(L)]
    w_next_t = [runs[li + 1].w_in_t if li + 1 < L else None for li in range(L)]
    g_in = _buffers.get(runs[0].s_in.shape, dtype) if need_in else None

    def work(c0, c1, _n):
        for c in range(c0, c1):
            for li in range(L - 1, -1, -1):
                runs[li].backward(c, c + 1, g_s=g_s[li], g_v=g_v[li], g_c=g_c[li],
                                  gx_next=gx[li + 1] if li + 1 < L else None, w_next_t=w_next_t[li],
                                  need_in=need_in and li == 0, g_in=g_in if li == 0 else None, gx_out=gx[li])

    _run_chunks(work)
    return (torch.from_numpy(g_in) if need_in else None), [run.weight_grads() for run in runs]


def _ordered_sum(per_chunk: np.ndarray) -> np.ndarray:
    acc = per_chunk[0].copy()
    for c in range(1, per_chunk.shape[0]):
        acc += per_chunk[c]
    return acc
