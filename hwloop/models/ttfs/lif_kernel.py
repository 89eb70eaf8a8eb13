"""Fused numba kernel for the LIF first-spike-time layer (forward and vjp).

Computes what the torch path of `hwloop.models.ttfs.lif.LIF` computes (its
module docstring has the model and the algorithm), one sample at a time:

* **Forward.** Each sample takes its delivered inputs (``t < t_max``), sorts
  them (insertion sort: layers have few inputs per sample), and walks them in
  time order keeping, per neuron, the two running sums of the closed form
  (``A = sum w e^s``, ``C = sum w s e^s`` for tau_m = tau_s; ``a``, ``2b`` for
  tau_m = 2 tau_s). After each input it asks the torch path's question --
  does the membrane restricted to the inputs so far reach threshold inside
  the interval up to the next input? -- by its value at its peak clamped into
  the interval, and a neuron that says yes gets its closed-form time (Lambert
  W or the square root) and leaves the walk. The walk stops when every
  neuron has spiked. The same sums, in the same order, as the torch path's
  cumulative sums: times agree to rounding.
* **Backward.** At the given output times (the model's or measured ones),
  per (sample, neuron) with a nonzero upstream gradient: one pass over the
  causal inputs for ``V'(t*)`` (clamped from below at ``vdot_floor theta /
  tau_m``, as in the torch path), a second for the contributions to the input
  and weight gradients. No (batch, inputs, neurons) tensor is ever formed.
* **Samples in parallel** on torch's own OpenMP team (as many threads as
  torch uses; see "Running the chunks on torch's own OpenMP team" below;
  plain threads, `qif_kernel._run_chunks`, where torch's pool is not
  OpenMP), in a fixed number of chunks, each chunk with its own
  weight-gradient accumulator summed in a fixed order: results do not depend
  on the thread count.

The kernel computes in float64 whatever the input dtype (float32 inputs get
float32 outputs, rounded from float64 results: at least as accurate as the
torch path, which works in float32 where the time span allows).

Engine choice: environment variable ``HWLOOP_LIF_ENGINE`` = ``auto``
(default: this kernel for CPU tensors), ``numba`` or ``torch``; the
``engine=`` argument of `LIF.spike_times` / `LIF.vjp` overrides it.
"""

from __future__ import annotations

import ctypes
import math
import os
import time

import numpy as np
import torch

from ...errors import NetworkSpecError
from . import qif_kernel

ENV_VAR = "HWLOOP_LIF_ENGINE"
_ENGINES = ("auto", "numba", "torch")
#: samples are split into this many chunks (weight gradients are summed per
#: chunk, chunks in a fixed order): fixed, so results do not depend on threads
_FWD_CHUNKS = 16
_BWD_CHUNKS = 8
#: below this many (sample x input x neuron) terms the calling thread does the
#: whole call: the fork and join of torch's team costs ~10 us (break-even at
#: 10 000-20 000 terms, measured; a Yin-Yang batch has 90 000 and 54 000)
_MIN_PARALLEL_TERMS = 16_000

try:
    import numba as nb
except ImportError as exc:  # pragma: no cover
    nb = None
    _import_error = str(exc)
else:
    _import_error = None


def _engine(engine: str | None) -> str:
    e = (engine if engine is not None else os.environ.get(ENV_VAR, "auto")).strip().lower() or "auto"
    if e not in _ENGINES:
        where = "engine argument" if engine is not None else f"environment variable {ENV_VAR}"
        raise NetworkSpecError(f"lif: {where} must be one of {list(_ENGINES)}, got {e!r}")
    return e


def available() -> bool:
    """Whether numba imports on this machine."""
    return nb is not None


def use_kernel(engine: str | None, *tensors: torch.Tensor) -> bool:
    """Torch path or kernel for one call: the kernel serves CPU tensors;
    ``engine="numba"`` insists (and says why it cannot)."""
    e = _engine(engine)
    if e == "torch":
        return False
    fits = all(t.device.type == "cpu" for t in tensors)
    if e == "numba":
        if not fits:
            raise NetworkSpecError(f"lif: the numba kernel needs CPU tensors, got {tensors[0].device}")
        if not available():
            raise NetworkSpecError(f"lif: the numba kernel is not available ({_import_error})")
        return True
    return fits and available()


# 1/e in two words, and the Pade guess of lambertw.py (float64 path)
_C_HI, _C_LO = 0.36787944117144233, -1.2428753672788363e-17
_INV_E = math.exp(-1.0)

if nb is not None:
    from llvmlite import ir as _ir
    from numba.core import types as _t
    from numba.extending import intrinsic as _intrinsic

    _jit = dict(cache=True, nogil=True, error_model="numpy")
    #: the backward's sums may be reassociated (and multiply-adds fused), so that
    #: LLVM vectorises them (layer 1 of Yin-Yang 8.7 -> 5.1 ms per epoch); no flag
    #: that assumes finite values. Every sample still runs the same code, so the
    #: results do not depend on the chunk (thread) a sample lands in.
    _REASSOC = {"reassoc", "contract"}

    @nb.njit(cache=True, inline="always", error_model="numpy")
    def _lambertw_neg(z):
        """W0(z) on [-1/e, 0]: the scalar form of `lambertw.lambertw_neg`
        (same guess, same single Fritsch step; two divisions fewer)."""
        p = ((z + _C_HI) + _C_LO) * (2.0 * math.e)
        p = math.sqrt(p) if p > 0.0 else 0.0
        num = ((p * -0.00277847475644394 + 0.06995017264856546) * p + 1.3642270435745671) * p + 2.718281828459045
        den = ((p * 0.09446737819773184 + 0.6942709795116475) * p + 1.5018710824211807) * p + 1.0
        w = num * z / den
        if p < 5e-3 or z == 0.0:
            return w
        zn = math.log(z / w) - w
        w1 = w + 1.0
        q = (w1 + zn * (2.0 / 3.0)) * w1
        return (q - 0.5 * zn) * zn / ((q - zn) * w1) * w + w

    # -- exp, log and W0 that LLVM can vectorise (libm's calls keep a loop
    # scalar; numba has no vector math library here): Cody-Waite reduction and
    # a degree-13 Taylor polynomial for exp, the atanh series for log; at most
    # 2 ulp from libm on the arguments the kernel gives them (|x| <= 708 for
    # exp, normal positive numbers for log), checked in tests/test_lif_kernel.py.
    @_intrinsic
    def _bits(typingctx, x):
        sig = _t.int64(_t.float64)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.IntType(64))
        return sig, codegen

    @_intrinsic
    def _from_bits(typingctx, x):
        sig = _t.float64(_t.int64)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _ir.DoubleType())
        return sig, codegen

    @nb.njit(cache=True, inline="always", error_model="numpy")
    def _exp_v(x):
        """e^x: 0 below -708, inf above 709, NaN for NaN."""
        xc = min(max(x, -708.0), 709.0)
        k = math.floor(xc * 1.4426950408889634 + 0.5)
        r = (xc - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        y = p * _from_bits((np.int64(k) + 1023) << 52)
        y = 0.0 if x < -708.0 else y
        y = math.inf if x > 709.0 else y
        return x if x != x else y

    @nb.njit(cache=True, inline="always", error_model="numpy")
    def _log_v(x):
        """log x for normal x > 0 (NaN for x <= 0 or NaN, inf for inf)."""
        b = _bits(x)
        e = ((b >> 52) & 0x7FF) - 1023
        m = _from_bits((b & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # [1, 2)
        big = m > 1.4142135623730951
        m = m * 0.5 if big else m
        e = e + 1 if big else e
        f = m - 1.0  # exact
        s = f / (2.0 + f)
        z = s * s
        r = 1.0 / 19.0
        r = r * z + 1.0 / 17.0
        r = r * z + 1.0 / 15.0
        r = r * z + 1.0 / 13.0
        r = r * z + 1.0 / 11.0
        r = r * z + 1.0 / 9.0
        r = r * z + 1.0 / 7.0
        r = r * z + 1.0 / 5.0
        r = r * z + 1.0 / 3.0
        # log(1 + f) = 2 atanh(s) = f - s (f - 2 z r)
        ef = float(e)
        y = ef * 6.93147180369123816490e-01 + ((f - s * (f - 2.0 * z * r)) + ef * 1.90821492927058770002e-10)
        y = math.inf if x == math.inf else y
        return y if x > 0.0 else math.nan

    @nb.njit(cache=True, inline="always", error_model="numpy")
    def _lambertw_neg_v(z):
        """`_lambertw_neg` without branches, on `_log_v` (vectorisable)."""
        p = ((z + _C_HI) + _C_LO) * (2.0 * math.e)
        p = math.sqrt(max(p, 0.0))
        num = ((p * -0.00277847475644394 + 0.06995017264856546) * p + 1.3642270435745671) * p + 2.718281828459045
        den = ((p * 0.09446737819773184 + 0.6942709795116475) * p + 1.5018710824211807) * p + 1.0
        w = num * z / den
        zn = _log_v(z / w) - w
        w1 = w + 1.0
        q = (w1 + zn * (2.0 / 3.0)) * w1
        wf = (q - 0.5 * zn) * zn / ((q - zn) * w1) * w + w
        return w if (p < 5e-3 or z == 0.0) else wf

    @nb.njit(**_jit)
    def _walk_equal(b, m, idx, ss, e1, w, t_ref, tau_s, A, C, done, flag, left, out, pj, pk, pb, pa, plo, phi):
        """The walk of `_forward_chunks` for tau_m = tau_s, two loops per input:
        the first, over all neurons without branches (LLVM vectorises it),
        updates the sums and decides the threshold test wherever the clamped
        peak is an interval end (``e^sc`` known) or the test fails on the
        cheap bound ``e^sc > e^lo``; the second visits only the neurons it
        flagged. The same operations on the same values as the one-loop form:
        the same decisions and times. Returns the neurons still silent."""
        n_out = w.shape[1]
        npend = 0
        for k in range(m):
            i = idx[k]
            lo = ss[k]
            hi = ss[k + 1]
            ek = e1[k]
            ek1 = e1[k + 1] = math.exp(hi)
            nlo = -lo
            for j in range(n_out):
                # A = sum w e^s, C holds -sum w s e^s (as the torch path);
                # V >= theta at the clamped peak sc <=> nC + A sc >= e^sc
                x = w[i, j] * ek
                a = A[j] + x
                nc = C[j] + x * nlo
                A[j] = a
                C[j] = nc
                sc = 1.0 - nc / a
                lo_side = sc <= lo
                hi_side = sc >= hi
                scc = lo if lo_side else (hi if hi_side else sc)
                ex = ek1 if (hi_side and not lo_side) else ek
                # 1: reaches theta at an interval end; 2: interior peak above the
                # bound e^lo, needs e^sc (NaN fails every test: no hit)
                fl = (np.int8(1) if (lo_side or hi_side) else np.int8(2)) if nc + a * scc >= ex else np.int8(0)
                flag[j] = np.int8(0) if done[j] else fl
            cnt = 0  # the flagged neurons, compacted without branches
            for j in range(n_out):
                pj[cnt] = j
                cnt += 1 if flag[j] != 0 else 0
            for q in range(cnt):
                j = pj[q]
                fl = flag[j]
                a = A[j]
                nc = C[j]
                if fl == 2:
                    sc = 1.0 - nc / a
                    if not (nc + a * sc >= math.exp(sc)):
                        continue
                if a <= 0.0:
                    out[b, j] = t_ref + tau_s * hi
                else:  # the closed form below, for all of the sample's hits at once
                    pk[npend] = j
                    pb[npend] = -nc / a
                    pa[npend] = a
                    plo[npend] = lo
                    phi[npend] = hi
                    npend += 1
                done[j] = True
                left -= 1
            if left == 0:
                break
        for q in range(npend):  # vectorised
            bb = pb[q]
            z = max(-(_exp_v(bb) / pa[q]), -_INV_E)
            pb[q] = min(max(bb - _lambertw_neg_v(z), plo[q]), phi[q])
        for q in range(npend):
            out[b, pk[q]] = t_ref + tau_s * pb[q]
        return left

    @nb.njit(**_jit)
    def _forward_chunks(c0, c1, t, w, tau_s, t_max, equal, nchunks, out, spans):
        B, n = t.shape
        n_out = w.shape[1]
        sv = np.empty(n)  # s of the delivered inputs, in input order
        iv = np.empty(n, dtype=np.int64)
        ss = np.empty(n + 1)  # the same, sorted, then s_end
        idx = np.empty(n, dtype=np.int64)
        cnt = np.empty(n + 1, dtype=np.int64)  # counting sort of wide layers
        bkt = np.empty(n, dtype=np.int64)
        tv = np.empty(n)
        ti_ = np.empty(n, dtype=np.int64)
        e1 = np.empty(n + 1)  # e^s (equal) / e^{s/2} (double), of ss
        eh = np.empty(n + 1)  # e^{-s/2} (double): the interval bounds of y
        A = np.empty(n_out)
        C = np.empty(n_out)
        done = np.empty(n_out, dtype=np.bool_)
        flag = np.empty(n_out, dtype=np.int8)
        pj = np.empty(n_out, dtype=np.int64)  # the flagged neurons of one input
        pk = np.empty(n_out, dtype=np.int64)  # hits waiting for their Lambert W
        pb = np.empty(n_out)
        pa = np.empty(n_out)
        plo = np.empty(n_out)
        phi = np.empty(n_out)
        # wide layers (tau_m = tau_s): the vectorised two-loop walk (20 % faster
        # at 120 neurons; at 3 the one-loop form is, measured)
        two_loops = equal and n_out >= 16
        for ch in range(c0, c1):
            span = 0.0
            for b in range(ch * B // nchunks, (ch + 1) * B // nchunks):
                t_ref = math.inf
                t_hi = -math.inf
                for i in range(n):
                    ti = t[b, i]
                    if ti < t_max:
                        if ti < t_ref:
                            t_ref = ti
                        if ti > t_hi:
                            t_hi = ti
                if t_ref == math.inf:
                    t_ref = 0.0
                else:
                    span = max(span, (t_hi - t_ref) / tau_s)
                m = 0
                for i in range(n):
                    ti = t[b, i]
                    if ti < t_max:
                        sv[m] = (ti - t_ref) / tau_s
                        iv[m] = i
                        m += 1
                xs = sv
                xi = iv
                if m > 32:
                    # wide layer: counting sort into m buckets by value (s >= 0), so
                    # the insertion sort below only moves elements within a bucket
                    # (numba's argsort took 7 us for 121 inputs, most of the layer);
                    # the largest s is the latest input's
                    smax = (t_hi - t_ref) / tau_s
                    sc_b = (m - 1) / smax if smax > 0.0 else 0.0
                    for q in range(m + 1):
                        cnt[q] = 0
                    for q in range(m):
                        bk = min(m - 1, int(sv[q] * sc_b))
                        bkt[q] = bk
                        cnt[bk + 1] += 1
                    for q in range(m):
                        cnt[q + 1] += cnt[q]
                    for q in range(m):
                        pos = cnt[bkt[q]]
                        cnt[bkt[q]] = pos + 1
                        tv[pos] = sv[q]
                        ti_[pos] = iv[q]
                    xs = tv
                    xi = ti_
                # insertion sort (stable; few inputs, or nearly sorted after the buckets)
                for q in range(m):
                    s = xs[q]
                    k = q
                    while k > 0 and ss[k - 1] > s:
                        ss[k] = ss[k - 1]
                        idx[k] = idx[k - 1]
                        k -= 1
                    ss[k] = s
                    idx[k] = xi[q]
                ss[m] = (t_max - t_ref) / tau_s
                for j in range(n_out):
                    A[j] = 0.0
                    C[j] = 0.0
                    done[j] = False
                    out[b, j] = math.inf
                left = n_out
                # the exponentials of the interval ends, each when the walk first
                # needs it (it often stops long before the last input)
                if equal:
                    e1[0] = math.exp(ss[0])
                else:
                    e1[0] = math.exp(0.5 * ss[0])
                    eh[0] = math.exp(-0.5 * ss[0])
                if two_loops:
                    left = _walk_equal(b, m, idx, ss, e1, w, t_ref, tau_s, A, C, done, flag, left, out,
                                       pj, pk, pb, pa, plo, phi)
                for k in range(0 if two_loops else m):
                    i = idx[k]
                    lo = ss[k]
                    hi = ss[k + 1]
                    ek = e1[k]
                    if equal:
                        e1[k + 1] = math.exp(hi)
                    else:
                        e1[k + 1] = math.exp(0.5 * hi)
                        eh[k + 1] = math.exp(-0.5 * hi)
                    for j in range(n_out):
                        if done[j]:
                            continue
                        x = w[i, j] * ek
                        if equal:
                            # A = sum w e^s, C holds -sum w s e^s (as the torch path);
                            # V >= theta at the clamped peak sc <=> nC + A sc >= e^sc
                            A[j] += x
                            C[j] += x * (-lo)
                            a = A[j]
                            nc = C[j]
                            sc = 1.0 - nc / a
                            if sc <= lo:  # e^sc known at the interval ends
                                sc = lo
                                ex = ek
                            elif sc >= hi:
                                sc = hi
                                ex = e1[k + 1]
                            else:
                                if nc + a * sc < ek:  # e^sc > e^lo: cannot reach
                                    continue
                                ex = math.exp(sc)  # NaN stays NaN: no hit
                            if not (nc + a * sc >= ex):
                                continue
                            if a <= 0.0:
                                s_star = hi
                            else:
                                bb = -nc / a
                                z = -(math.exp(bb) / a)
                                if z < -_INV_E:
                                    z = -_INV_E
                                s_star = bb - _lambertw_neg(z)
                        else:
                            # a = sum w e^{s/2}, C holds 2b = sum 2 w e^s
                            A[j] += x
                            C[j] += x * (2.0 * ek)
                            a = A[j]
                            b2 = C[j]
                            y = a / b2
                            if y < eh[k + 1]:
                                y = eh[k + 1]
                            if y > eh[k]:
                                y = eh[k]
                            if not ((a + (-0.5) * b2 * y) * y >= 1.0):
                                continue
                            bk = b2 * 0.5
                            if a <= 0.0 or bk <= 0.0:
                                s_star = hi
                            else:
                                d = (bk + (-0.25) * a * a) * -4.0
                                root = math.sqrt(d) if d > 0.0 else 0.0
                                s_star = math.log(bk * 2.0 / (root + a)) * 2.0
                        if s_star < lo:
                            s_star = lo
                        if s_star > hi:
                            s_star = hi
                        out[b, j] = t_ref + tau_s * s_star
                        done[j] = True
                        left -= 1
                    if left == 0:
                        break
            spans[ch] = span

    @nb.njit(**_jit, fastmath=_REASSOC)
    def _backward_sample_narrow(b, tl, E, F, ts, w, g, inv, scale, equal, floor, direct, vd, c, gw, acc_i, g_in):
        """`_backward_chunks` for one sample with the loops over inputs
        innermost; every sum adds the same terms in the same order (over
        inputs for V', over neurons for the input gradient): same results."""
        n_out, n = w.shape  # w and gw transposed: (n_out, n)
        for j in range(n_out):
            tj = ts[j]
            acc = 0.0
            if tj > -math.inf:
                fj = F[j]
                for i in range(n):
                    ti = tl[i]
                    if ti < tj:
                        x = (tj - ti) * inv
                        e = math.exp(x) if direct else fj * E[i]
                        if equal:
                            acc += (e + x * e) * w[j, i]
                        else:
                            acc += (e * e - 0.5 * e) * w[j, i]
            vd[j] = acc
        for j in range(n_out):
            v = vd[j] * scale
            if v < floor:
                v = floor
            c[j] = g[b, j] / v if ts[j] > -math.inf else 0.0
        for i in range(n):
            acc_i[i] = 0.0
        for j in range(n_out):
            tj = ts[j]
            if tj == -math.inf:
                continue
            fj = F[j]
            cj = c[j]
            for i in range(n):
                ti = tl[i]
                if ti < tj:
                    x = (tj - ti) * inv
                    e = math.exp(x) if direct else fj * E[i]
                    if equal:
                        ne = x * e
                        d = (e + ne) * w[j, i]
                    else:
                        e2 = e * e
                        ne = e2 - e
                        d = (e2 - 0.5 * e) * w[j, i]
                    gw[j, i] += ne * cj
                    acc_i[i] += d * cj
        for i in range(n):
            if tl[i] < math.inf:
                g_in[b, i] = acc_i[i] * scale

    @nb.njit(**_jit, fastmath=_REASSOC)
    def _backward_chunks(c0, c1, t, w, to, g, tau_m, scale, equal, floor, nchunks, g_in, parts):
        """Per sample: e^{-(t*_j - t_i)/tau_m} = F_j E_i with E_i = e^{(t_i -
        t_ref)/tau_m}, F_j = e^{-(t*_j - t_ref)/tau_m} (n + n_out exponentials
        instead of n n_out), unless the sample spans too many tau_m for that
        (then one exponential per term); loops over neurons innermost."""
        B, n = t.shape
        n_out = w.shape[1]
        tl = np.empty(n)  # input times, silent ones (NaN, +-inf) as +inf
        E = np.empty(n)
        F = np.empty(n_out)
        ts = np.empty(n_out)  # output times, -inf where no gradient flows
        vd = np.empty(n_out)
        c = np.empty(n_out)
        acc_i = np.empty(n)
        inv = -1.0 / tau_m
        # few neurons, many inputs (an output layer): the loops over inputs go
        # innermost, so that they are long (same sums in the same order)
        narrow = n_out < 8 and n > n_out
        wT = np.ascontiguousarray(w.T) if narrow else w[:0]
        gwT = np.empty((n_out, n) if narrow else (0, 0))
        for ch in range(c0, c1):
            gw = parts[ch]
            if narrow:
                gwT[:, :] = 0.0
            for b in range(ch * B // nchunks, (ch + 1) * B // nchunks):
                t_ref = math.inf
                t_top = -math.inf
                for i in range(n):
                    ti = t[b, i]
                    if abs(ti) < math.inf:
                        tl[i] = ti
                        t_ref = min(t_ref, ti)
                        t_top = max(t_top, ti)
                    else:
                        tl[i] = math.inf
                if t_ref == math.inf:
                    continue  # no causal input anywhere
                any_out = False
                for j in range(n_out):
                    tj = to[b, j]
                    if abs(tj) < math.inf and g[b, j] != 0.0:
                        ts[j] = tj
                        t_top = max(t_top, tj)
                        any_out = True
                    else:
                        ts[j] = -math.inf
                    vd[j] = 0.0
                if not any_out:
                    continue
                direct = (t_top - t_ref) * -inv > 300.0  # F or E would leave the safe range
                if not direct:
                    for i in range(n):  # vectorised; the arguments are within [0, 300] here
                        E[i] = _exp_v((tl[i] - t_ref) * -inv) if tl[i] < math.inf else 0.0
                    for j in range(n_out):
                        F[j] = _exp_v((ts[j] - t_ref) * inv) if ts[j] > -math.inf else 0.0
                if narrow:
                    _backward_sample_narrow(b, tl, E, F, ts, wT, g, inv, scale, equal, floor, direct, vd, c, gwT,
                                            acc_i, g_in)
                    continue
                # pass 1: V'(t*) of every neuron
                for i in range(n):
                    ti = tl[i]
                    if ti == math.inf:
                        continue
                    for j in range(n_out):
                        if ti < ts[j]:
                            x = (ts[j] - ti) * inv
                            e = math.exp(x) if direct else F[j] * E[i]
                            if equal:
                                vd[j] += (e + x * e) * w[i, j]
                            else:
                                vd[j] += (e * e - 0.5 * e) * w[i, j]
                for j in range(n_out):
                    v = vd[j] * scale
                    if v < floor:
                        v = floor
                    c[j] = g[b, j] / v if ts[j] > -math.inf else 0.0
                # pass 2: the contributions, -eps c to dw and w eps' c to dt_in
                for i in range(n):
                    ti = tl[i]
                    if ti == math.inf:
                        continue
                    acc = 0.0
                    for j in range(n_out):
                        if ti < ts[j]:
                            x = (ts[j] - ti) * inv
                            e = math.exp(x) if direct else F[j] * E[i]
                            if equal:
                                ne = x * e
                                d = (e + ne) * w[i, j]
                            else:
                                e2 = e * e
                                ne = e2 - e
                                d = (e2 - 0.5 * e) * w[i, j]
                            gw[i, j] += ne * c[j]
                            acc += d * c[j]
                    g_in[b, i] = acc * scale
            if narrow:
                for i in range(n):
                    for j in range(n_out):
                        gw[i, j] += gwT[j, i]


# ---------------------------------------------------------------------------
# Running the chunks on torch's own OpenMP team.
#
# torch's intra-op pool is an OpenMP team (libgomp in the CPU wheels); after
# each parallel region of a torch op its workers spin for a while, on the
# cores a second thread of ours would need (on 2 cores a worker thread of our
# own waited behind them: a Yin-Yang epoch 4x slower at load 5). So a batch
# is split over *that* team: `GOMP_parallel`, the entry point compiled OpenMP
# code calls, runs a numba cfunc on every team thread, and the threads take
# the fixed chunks from a shared counter (an atomic add), so a thread that
# starts late does less instead of being waited for. Chunk boundaries and the
# per-chunk weight-gradient sums do not depend on which thread ran a chunk:
# results are the same for any thread count.
#
# Descriptor: one int64 array per call; slot 0 is the counter, slot 1 the
# chunk count, then the kernel's arrays as (address, shape...) and scalars
# (floats in a float64 array whose address is stored). The arrays are owned
# by the Python caller for the whole call (GOMP_parallel returns when every
# team thread has left the cfunc).
# ---------------------------------------------------------------------------

_DESC = 16  # descriptor slots
_gomp = None  # (GOMP_parallel, fwd cfunc address, bwd cfunc address), or False


def _find_torch_openmp():
    """The GOMP_parallel of the OpenMP runtime torch's intra-op pool uses, or
    None (another ATen backend, or no such library loaded)."""
    if "OpenMP" not in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        return None
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.strip() else ""
                name = os.path.basename(path)
                if (name.startswith("libgomp") or name.startswith("libiomp")) and path not in libs:
                    libs.append(path)
    except OSError:
        return None
    torch_dir = os.path.dirname(torch.__file__)
    libs.sort(key=lambda p: not p.startswith(torch_dir))  # torch's own copy first
    for path in libs:
        try:
            fn = ctypes.CDLL(path).GOMP_parallel
        except (OSError, AttributeError):
            continue
        fn.restype = None
        fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)
        return fn
    return None


if nb is not None:
    @_intrinsic
    def _atomic_fetch_add(typingctx, addr, val):
        """Atomically ``*addr += val`` on an int64 at address ``addr``; the old value."""
        sig = _t.int64(_t.int64, _t.int64)

        def codegen(context, builder, signature, args):
            ptr = builder.inttoptr(args[0], _ir.IntType(64).as_pointer())
            return builder.atomic_rmw("add", ptr, args[1], "seq_cst")
        return sig, codegen

    @_intrinsic
    def _i64_ptr(typingctx, addr):
        sig = _t.CPointer(_t.int64)(_t.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], _ir.IntType(64).as_pointer())
        return sig, codegen

    @_intrinsic
    def _f64_ptr(typingctx, addr):
        sig = _t.CPointer(_t.float64)(_t.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], _ir.DoubleType().as_pointer())
        return sig, codegen

    @_intrinsic
    def _addr(typingctx, ptr):
        sig = _t.int64(_t.voidptr)

        def codegen(context, builder, signature, args):
            return builder.ptrtoint(args[0], _ir.IntType(64))
        return sig, codegen

    @nb.njit(cache=True, nogil=True)
    def _forward_team(addr):
        """One team thread's share of a forward call (descriptor at ``addr``)."""
        d = nb.carray(_i64_ptr(addr), (_DESC,))
        nch, B, n, n_out = d[1], d[2], d[3], d[4]
        t = nb.carray(_f64_ptr(d[5]), (B, n))
        w = nb.carray(_f64_ptr(d[6]), (n, n_out))
        out = nb.carray(_f64_ptr(d[7]), (B, n_out))
        spans = nb.carray(_f64_ptr(d[8]), (nch,))
        f = nb.carray(_f64_ptr(d[9]), (2,))
        equal = d[10] != 0
        while True:
            ch = _atomic_fetch_add(addr, 1)
            if ch >= nch:
                break
            _forward_chunks(ch, ch + 1, t, w, f[0], f[1], equal, nch, out, spans)

    @nb.njit(cache=True, nogil=True)
    def _backward_team(addr):
        """One team thread's share of a backward call (descriptor at ``addr``)."""
        d = nb.carray(_i64_ptr(addr), (_DESC,))
        nch, B, n, n_out = d[1], d[2], d[3], d[4]
        t = nb.carray(_f64_ptr(d[5]), (B, n))
        w = nb.carray(_f64_ptr(d[6]), (n, n_out))
        to = nb.carray(_f64_ptr(d[7]), (B, n_out))
        g = nb.carray(_f64_ptr(d[8]), (B, n_out))
        g_in = nb.carray(_f64_ptr(d[9]), (B, n))
        parts = nb.carray(_f64_ptr(d[10]), (nch, n, n_out))
        f = nb.carray(_f64_ptr(d[11]), (3,))
        equal = d[12] != 0
        while True:
            ch = _atomic_fetch_add(addr, 1)
            if ch >= nch:
                break
            _backward_chunks(ch, ch + 1, t, w, to, g, f[0], f[1], equal, f[2], nch, g_in, parts)

    @_intrinsic
    def _gomp_parallel(typingctx, fn, entry, data, threads):
        """``GOMP_parallel(entry, data, threads, 0)`` through the address ``fn``
        (an argument, not a constant: the compiled code stays cacheable)."""
        sig = _t.void(_t.int64, _t.int64, _t.int64, _t.int64)

        def codegen(context, builder, signature, args):
            vp = _ir.IntType(8).as_pointer()
            i32 = _ir.IntType(32)
            cb = _ir.FunctionType(_ir.VoidType(), [vp]).as_pointer()
            fnty = _ir.FunctionType(_ir.VoidType(), [cb, vp, i32, i32]).as_pointer()
            builder.call(builder.inttoptr(args[0], fnty),
                         [builder.inttoptr(args[1], cb), builder.inttoptr(args[2], vp),
                          builder.trunc(args[3], i32), _ir.Constant(i32, 0)])
            return context.get_dummy_value()
        return sig, codegen

    @nb.njit(**_jit)
    def _forward_launch(t, w, tau_s, t_max, equal, nchunks, threads, gomp, entry):
        """(times, largest span) of a forward call: on the calling thread, or
        on ``threads`` threads of torch's team (``gomp``, ``entry``: addresses)."""
        B, n = t.shape
        n_out = w.shape[1]
        out = np.empty((B, n_out))
        spans = np.zeros(nchunks)
        ok = True
        if threads <= 1:
            _forward_chunks(0, nchunks, t, w, tau_s, t_max, equal, nchunks, out, spans)
        else:
            f = np.empty(2)
            f[0] = tau_s
            f[1] = t_max
            d = np.zeros(_DESC, dtype=np.int64)
            d[1], d[2], d[3], d[4] = nchunks, B, n, n_out
            d[5], d[6], d[7], d[8], d[9] = t.ctypes.data, w.ctypes.data, out.ctypes.data, spans.ctypes.data, f.ctypes.data
            d[10] = 1 if equal else 0
            _gomp_parallel(gomp, entry, d.ctypes.data, threads)
            # every chunk taken (this reads d and f after the call: both stay alive)
            ok = d[0] >= nchunks and f[0] == tau_s
        return out, spans.max(), ok

    @nb.njit(**_jit)
    def _backward_launch(t, w, to, g, tau_m, scale, equal, floor, nchunks, threads, gomp, entry):
        """(input gradient, weight gradient) of a backward call, as `_forward_launch`;
        the chunks' weight gradients are summed in chunk order."""
        B, n = t.shape
        n_out = w.shape[1]
        g_in = np.zeros((B, n))
        parts = np.zeros((nchunks, n, n_out))
        ok = True
        if threads <= 1:
            _backward_chunks(0, nchunks, t, w, to, g, tau_m, scale, equal, floor, nchunks, g_in, parts)
        else:
            f = np.empty(3)
            f[0] = tau_m
            f[1] = scale
            f[2] = floor
            d = np.zeros(_DESC, dtype=np.int64)
            d[1], d[2], d[3], d[4] = nchunks, B, n, n_out
            d[5], d[6], d[7], d[8] = t.ctypes.data, w.ctypes.data, to.ctypes.data, g.ctypes.data
            d[9], d[10], d[11] = g_in.ctypes.data, parts.ctypes.data, f.ctypes.data
            d[12] = 1 if equal else 0
            _gomp_parallel(gomp, entry, d.ctypes.data, threads)
            ok = d[0] >= nchunks and f[0] == tau_m  # (as in _forward_launch)
        gw = parts[0].copy()
        for ch in range(1, nchunks):
            gw += parts[ch]
        return g_in, gw, ok


    def _forward_entry(p):
        _forward_team(_addr(p))

    def _backward_entry(p):
        _backward_team(_addr(p))


class _Team:
    """torch's OpenMP team as the kernels use it: the address of
    GOMP_parallel and of the two cfuncs (compiled on first use)."""

    def __init__(self, gomp):
        sig = nb.types.void(nb.types.voidptr)
        self._gomp = gomp  # keeps the ctypes library loaded
        self._cfuncs = (nb.cfunc(sig, cache=True, nogil=True)(_forward_entry),
                        nb.cfunc(sig, cache=True, nogil=True)(_backward_entry))
        self.gomp = ctypes.cast(gomp, ctypes.c_void_p).value
        self.forward, self.backward = (c.address for c in self._cfuncs)


def _team() -> "_Team | None":
    """torch's OpenMP team, or None where torch's pool is not OpenMP (then
    plain threads serve, `qif_kernel._run_chunks`)."""
    global _gomp
    if _gomp is None:
        fn = _find_torch_openmp() if nb is not None else None
        _gomp = _Team(fn) if fn is not None else False
    return _gomp or None


class _Chooser:
    """Team or calling thread, per call shape: whichever took less time per
    sample lately (a moving average of each), trying the other one every
    `EXPLORE` calls. On an idle machine the team wins; when other processes
    hold the cores, the team thread joins late and the calling thread alone
    is faster (measured at load 4: the team 1.6-2.8x slower), so the choice
    follows the machine. Either way the results are the same.

    Each runner's first call per shape is not counted (it loads the compiled
    code: 10-30x a later call). Other processes can only make a call slower,
    never faster, so the average follows a faster call more readily than a
    slower one, and a slow call counts at most 4x the average."""

    EXPLORE = 32
    UP, DOWN = 0.25, 0.5

    def __init__(self):
        self.stats: dict = {}
        self.force: bool | None = None  # True / False: always / never the team (tests)

    def pick(self, key) -> bool:
        if self.force is not None:
            return self.force
        st = self.stats.get(key)
        if st is None:  # [average on the thread, on the team, calls, timings of each]
            st = self.stats[key] = [0.0, 0.0, 0, 0, 0]
        st[2] += 1
        if st[3] < 2:
            return False
        if st[4] < 2:
            return True
        team = st[1] <= st[0]
        return (not team) if st[2] % self.EXPLORE == 0 else team

    def record(self, key, team: bool, seconds: float) -> None:
        st = self.stats.get(key)
        if st is None:
            return
        k = 1 if team else 0
        st[3 + k] += 1
        if st[3 + k] == 1:
            return  # the first call: compiled code loading
        old = st[k]
        if not old:
            st[k] = seconds
        elif seconds < old:
            st[k] = old + self.DOWN * (seconds - old)
        else:
            st[k] = old + self.UP * (min(seconds, 4.0 * old) - old)


_CHOOSER = _Chooser()
_CPUS = os.cpu_count() or 1


def _chunking(B: int, terms: int, nchunks: int):
    """(chunks, threads) for a call: threads only where the work pays for them."""
    chunks = max(1, min(B, nchunks))
    if terms < _MIN_PARALLEL_TERMS:
        return chunks, 1
    return chunks, max(1, min(torch.get_num_threads(), chunks, _CPUS))


def _np64(x: torch.Tensor) -> np.ndarray:
    if x.dtype != torch.float64 or x.device.type != "cpu":
        x = x.detach().to(device="cpu", dtype=torch.float64)
    a = x.detach().numpy()
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _launch(which: str, B: int, threads: int, key, args):
    """Run a forward / backward launcher on the calling thread or the team."""
    fn = _forward_launch if which == "forward" else _backward_launch
    team = _team() if threads > 1 else None
    if team is None:
        return fn(*args, 1, 0, 0)[:-1]
    use = _CHOOSER.pick(key)
    t0 = time.perf_counter()
    *res, ok = fn(*args, threads if use else 1, team.gomp, getattr(team, which))
    _CHOOSER.record(key, use, (time.perf_counter() - t0) / B)
    if not ok:  # pragma: no cover - the team ran fewer chunks than asked
        raise RuntimeError(f"lif kernel: torch's OpenMP team left chunks of a {which} call undone")
    return res


def spike_times(t_in: torch.Tensor, w: torch.Tensor, params, t_max: float, equal: bool,
                out_dtype: torch.dtype) -> torch.Tensor:
    """(B, n_out) first spike times; checks already done by `LIF.spike_times`."""
    t = _np64(t_in)
    wd = _np64(w)
    if params.threshold != 1.0:
        wd = wd / params.threshold  # threshold is 1 from here on
    B, n = t.shape
    n_out = wd.shape[1]
    chunks, threads = _chunking(B, B * n * n_out, _FWD_CHUNKS)
    tau_s, t_max = float(params.tau_syn), float(t_max)
    if threads > 1 and _team() is None:
        out, spans = np.empty((B, n_out)), np.zeros(chunks)
        qif_kernel._run_chunks(_forward_chunks, chunks, t, wd, tau_s, t_max, equal, chunks, out, spans)
        span = spans.max()
    else:
        out, span = _launch("forward", B, threads, ("f", n, n_out, equal),
                            (t, wd, tau_s, t_max, bool(equal), chunks))
    if span > 700.0:
        raise NetworkSpecError(
            f"lif: input spike times spread over {span:.4g} tau_syn within one sample; "
            "the closed form supports at most 700 (exp overflow)")
    out = torch.from_numpy(out)
    return out if out_dtype == torch.float64 else out.to(out_dtype)


def vjp(t_in: torch.Tensor, w: torch.Tensor, t_out: torch.Tensor, grad_out: torch.Tensor, params,
        equal: bool, vdot_floor: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_out . dt_out/dt_in, grad_out . dt_out/dw) at the given t_out."""
    t = _np64(t_in)
    wd = _np64(w)
    to = _np64(t_out)
    g = _np64(grad_out)
    B, n = t.shape
    n_out = wd.shape[1]
    if not (B and n and n_out):
        g_in, gw = np.zeros((B, n)), np.zeros((n, n_out))
    else:
        chunks, threads = _chunking(B, B * n * n_out, _BWD_CHUNKS)
        floor = float(vdot_floor * params.threshold / params.tau_mem)
        # the time scale of eps': 1/tau_m (tau_m = tau_s) or 1/tau_s (tau_m = 2 tau_s)
        scale = 1.0 / (params.tau_mem if equal else params.tau_syn)
        args = (t, wd, to, g, float(params.tau_mem), scale, bool(equal), floor, chunks)
        if threads > 1 and _team() is None:
            g_in, parts = np.zeros((B, n)), np.zeros((chunks, n, n_out))
            qif_kernel._run_chunks(_backward_chunks, chunks, *args[:-1], chunks, g_in, parts)
            gw = parts.sum(0)
        else:
            g_in, gw = _launch("backward", B, threads, ("b", n, n_out, equal), args)
    g_in, gw = torch.from_numpy(g_in), torch.from_numpy(gw)
    return (g_in if t_in.dtype == torch.float64 else g_in.to(t_in.dtype),
            gw if w.dtype == torch.float64 else gw.to(w.dtype))


__all__ = ["ENV_VAR", "available", "spike_times", "use_kernel", "vjp"]
