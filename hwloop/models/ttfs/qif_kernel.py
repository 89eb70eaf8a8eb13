"""Fused event-based numba kernel for the QIF (theta) layer.

Computes exactly what the torch path of `hwloop.models.ttfs.qif.QIF` computes
(docs/models-qif.md, sections 2-4): ordinary first-spike times, extended
(pseudospike) times, the pseudospikes that complete measured silences, and
the exact vjp at given output times. The torch path stays the reference
implementation; `QIF` dispatches here when this kernel can serve the call.

Why it is faster than the torch sweep, which steps every sample through the
union of all samples' event times with whole-tensor ops:

* **One sample at a time, its own events only.** Each sample sorts its
  delivered inputs once and merges inputs that share a time into one jump
  (binary pixel encodings collapse to one or two events). The free flow
  between events is the identity in the rotating frame (module docstring of
  ``qif.py``), so an event is a few multiply-adds per neuron in one tight,
  vectorisable loop over neurons; no tensor temporaries, no trigonometry
  except one cos/sin per event.
* **Early exit.** A sample stops as soon as every neuron has spiked; in the
  backward only neurons with a nonzero upstream gradient carry weight, and a
  sample whose upstream gradient is all zero is skipped.
* **Samples in parallel** (as many threads as torch uses, see `_run_chunks`)
  in a fixed number of chunks, each chunk with its own weight-gradient
  accumulator summed in a fixed order: results do not depend on the thread
  count (bit-reproducible training).

Ties: inputs of a sample at exactly the same time are merged into one jump
(``merge=True``, the default), giving each input the order-free one-sided
time derivative of the torch path's ``merged`` layout; ``merge=False`` keeps
one step per input in stable index order, like the torch ``gather`` layout.
Times and weight gradients are the same either way.

Engine choice: environment variable ``HWLOOP_QIF_ENGINE`` = ``auto``
(default: this kernel where it applies), ``numba`` or ``torch``; the
``engine=`` argument of `QIF._forward` / `QIF.vjp` overrides it.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ...errors import NetworkSpecError

ENV_VAR = "HWLOOP_QIF_ENGINE"
_ENGINES = ("auto", "numba", "torch")
#: samples per backward chunk are summed per chunk, chunks in a fixed order;
#: the count is fixed (not the thread count) so results are reproducible
_BWD_CHUNKS = 8
_FWD_CHUNKS = 64
#: renormalise the rotating-frame state this often (pure overflow guard);
#: the backward checks more often, its rescaling must stay far from overflow
_RENORM_EVERY = 16
_RESCALE_EVERY = 4

_import_error: str | None = None

try:  # numba is a dependency; without it QIF runs on its torch path
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
        raise NetworkSpecError(f"qif: {where} must be one of {list(_ENGINES)}, got {e!r}")
    return e


def available() -> bool:
    """Whether numba imports on this machine."""
    return nb is not None


def use_kernel(engine: str | None, *tensors: torch.Tensor) -> bool:
    """Decide torch path vs kernel for one call: the kernel serves CPU float32
    / float64 tensors; ``engine="numba"`` insists (and says why it cannot)."""
    e = _engine(engine)
    if e == "torch":
        return False
    fits = all(t.device.type == "cpu" for t in tensors)
    dtype = torch.promote_types(tensors[0].dtype, tensors[1].dtype)
    fits = fits and dtype in (torch.float32, torch.float64)
    if e == "numba":
        if not fits:
            raise NetworkSpecError(f"qif: the numba kernel needs CPU float32/float64 tensors, got {dtype} on "
                                   f"{tensors[0].device}")
        if not available():
            raise NetworkSpecError(f"qif: the numba kernel is not available ({_import_error})")
        return True
    return fits and available()


# The kernels are module-level functions so that numba's on-disk cache finds
# them again in the next process (one compilation per dtype, ever). fastmath
# only allows reassociation and contraction (vectorised sums); no flag that
# assumes finite values, since inf marks silence.
_FASTMATH = {"reassoc", "contract"}

if nb is not None:
    @nb.njit(cache=True)
    def _sort_events(keys, ids, m, tk, ti, bk, cnt):
        """Stable sort of keys[:m] (ids alongside). A bucket sort (one bucket
        per event over [min, max], then insertion sort, which only has to fix
        order inside buckets) is near-linear for spread-out times; crowded
        buckets fall back to a merge sort."""
        lo = keys[0]
        hi = keys[0]
        for x in range(1, m):
            k = keys[x]
            if k < lo:
                lo = k
            if k > hi:
                hi = k
        span = float(hi) - float(lo)
        crowded = not (span > 0.0 and span < np.inf)
        if not crowded:
            scale = m / span
            for x in range(m + 1):
                cnt[x] = 0
            for x in range(m):
                bi = int((float(keys[x]) - float(lo)) * scale)
                if bi >= m:
                    bi = m - 1
                bk[x] = bi
                cnt[bi + 1] += 1
            for x in range(m):
                if cnt[x + 1] > 32:
                    crowded = True
                cnt[x + 1] += cnt[x]
        if crowded:
            p = np.argsort(keys[:m], kind="mergesort")
            for x in range(m):
                tk[x] = keys[p[x]]
                ti[x] = ids[p[x]]
        else:
            for x in range(m):
                q = cnt[bk[x]]
                tk[q] = keys[x]
                ti[q] = ids[x]
                cnt[bk[x]] = q + 1
            for x in range(1, m):
                k = tk[x]
                i = ti[x]
                y = x - 1
                while y >= 0 and tk[y] > k:
                    tk[y + 1] = tk[y]
                    ti[y + 1] = ti[y]
                    y -= 1
                tk[y + 1] = k
                ti[y + 1] = i
        for x in range(m):
            keys[x] = tk[x]
            ids[x] = ti[x]

    @nb.njit(cache=True)
    def _schedule(t, b, T, merge, fw, iw):
        """Sorted delivered inputs (t <= T) of sample b as groups of jumps:
        group g is inputs ids[gstart[g]:gstart[g+1]] at time gtime[g], with
        ids = iw[0], gstart = iw[1], gtime = fw[1] (fw, iw: scratch rows).
        Ties are one group when ``merge``. Returns the number of groups."""
        S = t.shape[1]
        keys, gtime, tk = fw[0], fw[1], fw[2]
        ids, gstart, ti, bk, cnt = iw[0], iw[1], iw[2], iw[3], iw[4]
        m = 0
        ordered = True
        for i in range(S):
            x = t[b, i]
            if x <= T:  # False for nan
                if m > 0 and x < keys[m - 1]:
                    ordered = False
                keys[m] = x
                ids[m] = i
                m += 1
        if not ordered:
            _sort_events(keys, ids, m, tk, ti, bk, cnt)
        G = 0
        for x in range(m):
            if x == 0 or not merge or keys[x] != keys[x - 1]:
                gstart[G] = x
                gtime[G] = keys[x]
                G += 1
        gstart[G] = m
        return G

    @nb.njit(cache=True, inline="always")
    def _jump(u, ids, x0, x1, buf):
        """Jump vector (w / r summed over the group) of inputs ids[x0:x1]."""
        if x1 - x0 == 1:
            return u[ids[x0]]
        buf[:] = u[ids[x0]]
        for x in range(x0 + 1, x1):
            row = u[ids[x]]
            for j in range(buf.shape[0]):
                buf[j] += row[j]
        return buf

    @nb.njit(cache=True, inline="always")
    def _pseudo_input(t, b, u, T, period, one, iu):
        """iu[j] = Σ_i ρ(t_i) u_ij over the late inputs T < t_i < T + Θ
        (section 3, in units of w / r)."""
        iu[:] = 0
        for i in range(t.shape[1]):
            ti = t[b, i]
            if ti > T and ti < T + period:
                rho = one - (ti - T) / period
                row = u[i]
                for j in range(iu.shape[0]):
                    iu[j] += rho * row[j]

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _forward_chunk(ch, t, u, T, omega, period, ca0, sa0, after, pi, merge, freeze, extended, nchunks, renorm, out):
        """Times of one layer (sections 2, 3) into out (B, n).

        freeze=True: first-spike dynamics; out = spike time, inf (extended
        False) or pseudospike (extended True) for silent neurons.
        freeze=False: the phase runs on through model spikes (measured mode of
        `pseudospikes_for_measured`); out = pseudospike where the model is
        silent, ``after`` (just after T) where the model spiked."""
        B, S = t.shape
        n = u.shape[1]
        one = T / T
        zero = T - T
        fw = np.empty((3, S), dtype=t.dtype)
        iw = np.empty((5, S + 1), dtype=np.int64)
        zx = np.empty_like(u[0])
        zy = np.empty_like(u[0])
        alive = np.empty_like(u[0])
        buf = np.empty_like(u[0])
        iu = np.empty_like(u[0])
        for b in range(ch * B // nchunks, (ch + 1) * B // nchunks):
            G = _schedule(t, b, T, merge, fw, iw)
            ids, gstart, gtime = iw[0], iw[1], fw[1]
            o = out[b]
            for j in range(n):
                zx[j] = ca0
                zy[j] = sa0
                alive[j] = one
                o[j] = np.inf
            n_alive = n
            # reference event for spike times: the last event before the spike
            pt, pc, ps = zero, one, zero
            for g in range(G + 1):
                if freeze and n_alive == 0:
                    break
                closing = g == G  # the weightless step at T
                s = T if closing else gtime[g]
                ang = omega * s
                c = np.cos(ang)
                sn = np.sin(ang)
                long = (s - pt) >= period  # a gap of >= Θ always holds a spike
                died = 0
                if closing:
                    for j in range(n):
                        d = zx[j] * sn + zy[j] * c
                        if alive[j] > zero and (long or not d > zero):
                            alive[j] = zero
                            died += 1
                else:
                    U = _jump(u, ids, gstart[g], gstart[g + 1], buf)
                    for j in range(n):
                        d = zx[j] * sn + zy[j] * c  # (scaled) sin α just before the event
                        a = alive[j]
                        a2 = zero if (long or not d > zero) else a
                        died += a > a2
                        alive[j] = a2
                        q = U[j] * d
                        if freeze:
                            q = q * a2
                        zx[j] -= q * c
                        zy[j] += q * sn
                if died:
                    n_alive -= died
                    if freeze:
                        # a neuron that died here still holds its state after event pt
                        for j in range(n):
                            if alive[j] == zero and o[j] == np.inf:
                                x = pc * zx[j] - ps * zy[j]
                                y = ps * zx[j] + pc * zy[j]
                                ts = pt + (pi - np.arctan2(y, x)) / omega
                                o[j] = ts if ts < T else T
                pt, pc, ps = s, c, sn
                if g % renorm == renorm - 1:
                    for j in range(n):
                        nr = np.sqrt(zx[j] * zx[j] + zy[j] * zy[j])
                        zx[j] /= nr
                        zy[j] /= nr
            if freeze and (not extended or n_alive == 0):
                continue
            # pseudospikes: state at T (pc, ps are cos/sin of ωT here), one
            # pulse Σ ρ w, free flow to Θ
            _pseudo_input(t, b, u, T, period, one, iu)
            for j in range(n):
                if alive[j] > zero:
                    x = pc * zx[j] - ps * zy[j]
                    y = ps * zx[j] + pc * zy[j]
                    nr = np.sqrt(x * x + y * y)
                    x /= nr
                    y /= nr
                    xp = x - iu[j] * y
                    tp = T + (pi - np.arctan2(y, xp)) / omega
                    o[j] = tp if tp > after else after
                elif not freeze:
                    o[j] = after


    @nb.njit(cache=True, nogil=True)
    def _forward_chunks(c0, c1, t, u, T, omega, period, ca0, sa0, after, pi, merge, freeze, extended, nchunks, renorm, out):
        for ch in range(c0, c1):
            _forward_chunk(ch, t, u, T, omega, period, ca0, sa0, after, pi, merge, freeze, extended, nchunks, renorm, out)

    @nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _backward_chunk(ch, t, u, w, tout, go, T, omega, period, ca0, sa0, kw, merge, kc, renorm, g_in, g_parts):
        """Exact vjp (section 4) at the given output times: g_in (B, S) is
        written, g_parts (chunks, S, n) accumulated per chunk of samples.

        No reverse sweep and no stored chain: the state z̃ is never normalised
        (only rescaled by exact powers of two, ``kc``), and the shear of an
        input has determinant 1, so ∂H/∂φ of event k is |z̃_{k−1}|²/|z̃_k|²
        and the product over the events after k telescopes:
        ∂t/∂φ_k = g |z̃_k|²/|z̃_K|². With y_k the (unnormalised) sin α at
        event k and x'_k the cos α just after it, the contributions become
        σ kw y_k² (weights) and σ u y_k (u y_k + 2 x'_k) (input times) with one
        per-neuron factor σ = g / |z̃_K|². Pass 1 finds σ, pass 2 replays the
        same events and adds the contributions."""
        B, S = t.shape
        n = u.shape[1]
        nchunks = g_parts.shape[0]
        one = T / T
        zero = T - T
        hi, lo, down, up = kc[0], kc[1], kc[2], kc[3]
        gw = g_parts[ch]
        fw = np.empty((3, S), dtype=t.dtype)
        iw = np.empty((5, S + 1), dtype=np.int64)
        zx = np.empty_like(u[0])
        zy = np.empty_like(u[0])
        gv = np.empty_like(u[0])
        sig = np.empty_like(u[0])
        pp = np.empty_like(u[0])
        p1 = np.empty_like(u[0])
        p2 = np.empty_like(u[0])
        iu = np.empty_like(u[0])
        ex = np.empty(n, np.int64)
        flags = np.empty((S // renorm + 1, n), dtype=np.int8)
        ustore = np.empty((S // 2 + 1, n), dtype=u.dtype)  # jumps of merged groups, pass 1 -> 2
        for b in range(ch * B // nchunks, (ch + 1) * B // nchunks):
            to = tout[b]
            active = False
            t_last = zero  # no event at or after the latest active output time matters
            for j in range(n):
                gj = go[b, j]
                if np.isfinite(to[j]) and np.isfinite(gj) and gj != zero:
                    gv[j] = gj
                    active = True
                    if to[j] > t_last:
                        t_last = to[j]
                else:
                    gv[j] = zero
            if not active:
                continue
            G = _schedule(t, b, T, merge, fw, iw)
            ids, gstart, gtime = iw[0], iw[1], fw[1]
            # pass 1: the causal chain (inputs with t_i < t_out), recording
            # the power-of-two rescalings so that pass 2 repeats them exactly
            for j in range(n):
                zx[j] = ca0
                zy[j] = sa0
                ex[j] = 0
            Gs = 0
            n_merged = 0
            for g in range(G):
                s = gtime[g]
                if s >= t_last:
                    break
                Gs = g + 1
                ang = omega * s
                c = np.cos(ang)
                sn = np.sin(ang)
                x0 = gstart[g]
                x1 = gstart[g + 1]
                if x1 - x0 == 1:
                    U = u[ids[x0]]
                else:
                    U = _jump(u, ids, x0, x1, ustore[n_merged])
                    n_merged += 1
                for j in range(n):
                    d = zx[j] * sn + zy[j] * c
                    dc = d if s < to[j] else zero
                    q = U[j] * dc
                    zx[j] -= q * c
                    zy[j] += q * sn
                if g % renorm == renorm - 1:
                    fl = flags[g // renorm]
                    for j in range(n):
                        nn = zx[j] * zx[j] + zy[j] * zy[j]
                        f = 0
                        while nn > hi and f < 100:
                            zx[j] *= down
                            zy[j] *= down
                            nn *= lo
                            f += 1
                        while nn < lo and nn > zero and f > -100:
                            zx[j] *= up
                            zy[j] *= up
                            nn *= hi
                            f -= 1
                        fl[j] = f
                        ex[j] += f
            # σ = g/|z̃_K|² with g = −1 (ordinary) or −∂H/∂φ(φ(T), I) (pseudospike)
            angT = omega * T
            cT = np.cos(angT)
            sT = np.sin(angT)
            any_pseudo = False
            for j in range(n):
                if gv[j] != zero and to[j] > T:
                    any_pseudo = True
            if any_pseudo:
                _pseudo_input(t, b, u, T, period, one, iu)
            for j in range(n):
                pp[j] = zero
                if gv[j] == zero:
                    sg = zero
                elif to[j] > T:
                    xT = cT * zx[j] - sT * zy[j]
                    yT = sT * zx[j] + cT * zy[j]
                    xp = xT - iu[j] * yT
                    den = xp * xp + yT * yT
                    sg = -gv[j] / den
                    pp[j] = -gv[j] * kw * (yT * yT / den)  # ∂L/∂I
                else:
                    sg = -gv[j] / (zx[j] * zx[j] + zy[j] * zy[j])
                e = ex[j]  # back to the scale of the initial state
                while e > 0:
                    sg *= lo
                    e -= 1
                while e < 0:
                    sg *= hi
                    e += 1
                sig[j] = sg
                zx[j] = ca0
                zy[j] = sa0
            if any_pseudo:
                for i in range(S):
                    ti = t[b, i]
                    if ti > T and ti < T + period:
                        rho = one - (ti - T) / period
                        if rho > zero:
                            row = w[i]
                            grow = gw[i]
                            acc = zero
                            for j in range(n):
                                grow[j] += rho * pp[j]
                                acc += pp[j] * row[j]
                            g_in[b, i] = -acc / period
            # pass 2: the same events again, now adding the contributions
            n_merged = 0
            for g in range(Gs):
                s = gtime[g]
                ang = omega * s
                c = np.cos(ang)
                sn = np.sin(ang)
                x0 = gstart[g]
                x1 = gstart[g + 1]
                if x1 - x0 == 1:  # one input: fully fused
                    i = ids[x0]
                    row = u[i]
                    grow = gw[i]
                    acc = zero
                    for j in range(n):
                        d = zx[j] * sn + zy[j] * c
                        dc = d if s < to[j] else zero
                        q = row[j] * dc
                        zx[j] -= q * c
                        zy[j] += q * sn
                        xp = c * zx[j] - sn * zy[j]
                        sd = sig[j] * dc
                        a1 = sd * dc
                        grow[j] += kw * a1
                        acc += row[j] * (row[j] * a1 + (sd + sd) * xp)
                    g_in[b, i] = acc
                else:  # merged inputs: shared per-neuron factors, then each input
                    U = ustore[n_merged]
                    n_merged += 1
                    for j in range(n):
                        d = zx[j] * sn + zy[j] * c
                        dc = d if s < to[j] else zero
                        q = U[j] * dc
                        zx[j] -= q * c
                        zy[j] += q * sn
                        xp = c * zx[j] - sn * zy[j]
                        sd = sig[j] * dc
                        p1[j] = sd * dc
                        p2[j] = (sd + sd) * xp
                    for x in range(x0, x1):
                        i = ids[x]
                        row = u[i]
                        grow = gw[i]
                        acc = zero
                        for j in range(n):
                            grow[j] += kw * p1[j]
                            acc += row[j] * (row[j] * p1[j] + p2[j])
                        g_in[b, i] = acc
                if g % renorm == renorm - 1:
                    fl = flags[g // renorm]
                    for j in range(n):
                        f = fl[j]
                        while f > 0:
                            zx[j] *= down
                            zy[j] *= down
                            sig[j] *= hi
                            f -= 1
                        while f < 0:
                            zx[j] *= up
                            zy[j] *= up
                            sig[j] *= lo
                            f += 1



    @nb.njit(cache=True, nogil=True)
    def _backward_chunks(c0, c1, t, u, w, tout, go, T, omega, period, ca0, sa0, kw, merge, kc, renorm, g_in, g_parts):
        for ch in range(c0, c1):
            _backward_chunk(ch, t, u, w, tout, go, T, omega, period, ca0, sa0, kw, merge, kc, renorm, g_in, g_parts)


def _scalars(dtype: np.dtype, c, t_max: float):
    f = dtype.type
    T = f(t_max)
    return dict(T=T, omega=f(c.omega), period=f(c.period), ca0=f(math.cos(c.alpha0)), sa0=f(math.sin(c.alpha0)),
                after=np.nextafter(T, f(np.inf)), pi=f(math.pi))


_pool: ThreadPoolExecutor | None = None


def _run_chunks(kernel, nchunks: int, *args) -> None:
    """Run ``kernel(c0, c1, *args)`` over chunks [0, nchunks), split over as
    many threads as torch uses (``--threads``, `torch.set_num_threads`: one
    knob for the process; results do not depend on it).

    Plain Python threads around a nogil kernel rather than numba's parallel
    loops: numba's OpenMP workers spin-wait after each kernel on the cores
    torch needs (a Yin-Yang epoch took 5x longer, measured on 2 busy cores),
    and its parallel compilation costs ~30 s per kernel and dtype."""
    global _pool
    k = max(1, min(torch.get_num_threads(), nchunks, os.cpu_count() or 1))
    if k == 1:
        kernel(0, nchunks, *args)
        return
    if _pool is None or _pool._max_workers < k - 1:
        _pool = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="qif-kernel")
    bounds = [(i * nchunks // k, (i + 1) * nchunks // k) for i in range(k)]
    futures = [_pool.submit(kernel, c0, c1, *args) for c0, c1 in bounds[1:]]
    kernel(*bounds[0], *args)
    for f in futures:
        f.result()


def _np(x: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return x.detach().to(dtype).contiguous().numpy()


def layer_forward(t_in: torch.Tensor, w: torch.Tensor, c, t_max: float, dtype: torch.dtype, *,
                  extended: bool, merge: bool | None = None, freeze: bool = True) -> torch.Tensor:
    """(B, n) times of one QIF layer; see `_forward_chunk` for the modes.
    ``c`` is a `ThetaConstants`."""
    t = _np(t_in, dtype)
    u = _np(w.detach().to(dtype) / c.r, dtype)
    B, n = t.shape[0], u.shape[1]
    out = np.empty((B, n), dtype=t.dtype)
    if B and n:
        k = _scalars(t.dtype, c, t_max)
        chunks = min(B, _FWD_CHUNKS)
        _run_chunks(_forward_chunks, chunks, t, u, k["T"], k["omega"], k["period"], k["ca0"], k["sa0"], k["after"],
                    k["pi"], merge is not False, freeze, extended, chunks, _RENORM_EVERY, out)
    return torch.from_numpy(out)


def layer_vjp(t_in: torch.Tensor, w: torch.Tensor, t_out: torch.Tensor, grad_out: torch.Tensor, c,
              t_max: float, dtype: torch.dtype, merge: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂L/∂t_in, ∂L/∂w) for L = Σ grad_out · t_out at the given t_out."""
    t = _np(t_in, dtype)
    wn = _np(w, dtype)
    u = _np(w.detach().to(dtype) / c.r, dtype)
    to = _np(t_out, dtype)
    go = _np(grad_out, dtype)
    B, S = t.shape
    n = wn.shape[1]
    g_in = np.zeros((B, S), dtype=t.dtype)
    chunks = max(1, min(B, _BWD_CHUNKS))
    parts = np.zeros((chunks, S, n), dtype=t.dtype)
    if B and n:
        k = _scalars(t.dtype, c, t_max)
        kc = np.array([2.0 ** 40, 2.0 ** -40, 2.0 ** -20, 2.0 ** 20], dtype=t.dtype)  # exact rescalings
        _run_chunks(_backward_chunks, chunks, t, u, wn, to, go, k["T"], k["omega"], k["period"], k["ca0"], k["sa0"],
                    t.dtype.type(c.tau / c.r ** 2), merge is not False, kc, _RESCALE_EVERY, g_in, parts)
    return torch.from_numpy(g_in), torch.from_numpy(parts.sum(0))


__all__ = ["ENV_VAR", "available", "layer_forward", "layer_vjp", "use_kernel"]
