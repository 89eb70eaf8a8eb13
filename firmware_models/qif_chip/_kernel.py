"""Fused numba kernel of the analog core's integrator (`core.AnalogCore.integrate_layer`).

The numpy path of `core.py` is the reference; this kernel integrates the same
equations in the same order, one sample at a time with its state in a few
small arrays, instead of one vectorised numpy operation per step over the
whole chunk (about twenty Python-level calls per step, holding the
interpreter lock between them while the UART thread waits for it).

Per sample, for the steps ``k0 <= k < k1`` of one segment: the sample's
input events of step ``k`` in time order (free flow to the event, the jump,
free flow back), then one Heun step, fed with the very float32 standard
normals ``z[k - k0, b, j]`` the numpy path draws (`AnalogCore._noise_steps`),
so a result stays a function of (chip, seed, layer, absolute sample index)
and does not depend on the chunking. Only the neurons that have not spiked
are integrated (packed at the front, swapped out at their spike: the chip
reports only the first spike, and the neurons of a layer are independent
given the layer's inputs), where the numpy path keeps integrating them to no
effect.

Arithmetic follows numpy's in order, and ``z sqrt(dt)`` is rounded to
float32 as numpy computes it. What differs is the trig: the reference
rounds ``2 psi`` to float32 and takes numpy's float32 sin/cos (an error up to
~3e-7), the kernel takes float64 polynomials (`sincos`, ~1e-16); that
enters only the drift's mismatch and injection terms ``Q cos + R sin``. Run
with float64 trig the reference agrees with the kernel to ~1e-13 of the
trial; against its float32 default the difference is that float32 error,
amplified where a neuron passes its threshold slowly
(`tests/test_qif_core_kernel.py`).

No numba parallel pool (the thread-pool clash of issue #18): the firmware
runs this kernel in its one compute thread, which releases the interpreter
lock in it (``nogil``), so the UART thread keeps the line busy. The neuron
loop of the Heun step vectorises (sin and cos are polynomials here, not
library calls; it writes one array, so LLVM needs few overlap checks, and
``error_model="numpy"`` keeps a division check out of it), which is why the
kernel sets no LLVM option (`hwloop.models.llvm_options` would import the
host package and torch into the chip's process).
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba as nb
except ImportError:  # pragma: no cover - numba is a dependency; the numpy path still works
    nb = None

HALF_PI = math.pi / 2
_TWO_OVER_PI = 2 / math.pi
_PIO2_HI = 1.5707963267948966  # pi/2 = _PIO2_HI + _PIO2_LO to ~1e-33
_PIO2_LO = 6.123233995736766e-17
# Taylor coefficients: sin r = r (1 + S3 r^2 + S5 r^4 + ...), cos r = 1 + C2 r^2 + C4 r^4 + ...
_S3, _S5, _S7, _S9, _S11, _S13, _S15 = (((-1) ** i) / math.factorial(2 * i + 1) for i in range(1, 8))
_C2, _C4, _C6, _C8, _C10, _C12, _C14, _C16 = (((-1) ** i) / math.factorial(2 * i) for i in range(1, 9))

if nb is not None:
    @nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
    def sincos(x):
        """(sin x, cos x) in float64 without a library call, so that the neuron loops
        vectorise: x reduced by multiples of pi/2 (two-part pi/2) to |r| <= pi/4, then
        Taylor polynomials to r^15 / r^16 (truncation below 1e-16 there), and the
        quadrant's swap and signs as selects."""
        q = np.rint(x * _TWO_OVER_PI)
        r = (x - q * _PIO2_HI) - q * _PIO2_LO
        z = r * r
        s = r * (1.0 + z * (_S3 + z * (_S5 + z * (_S7 + z * (_S9 + z * (_S11 + z * (_S13 + z * _S15)))))))
        c = 1.0 + z * (_C2 + z * (_C4 + z * (_C6 + z * (_C8 + z * (_C10 + z * (_C12 + z * (_C14 + z * _C16)))))))
        qi = np.int64(q)
        odd = (qi & 1) != 0
        sign = 1.0 - 2.0 * np.float64((qi >> 1) & 1)
        sn = sign * (c if odd else s)
        cs = sign * (-s if odd else c)
        return sn, cs

    # error_model="numpy": a float division by zero gives inf (as in numpy) instead of a
    # check and a raise in the neuron loop, which would keep it from vectorising (4x slower)
    @nb.njit(cache=True, nogil=True, error_model="numpy")
    def integrate_segment(k0, k1, dt, sq, lim, psi, t_spk, done, ev_off, ev_ptr, ev_k, ev_s, ev_src, w_r,
                          P, Q, R, G, per_sample, noisy, z):
        """Advance every (sample, neuron) not yet spiked through steps ``k0 .. k1 - 1``.

        ``psi``, ``t_spk`` (n, n_out) float64 and ``done`` (n, n_out) bool are
        updated in place; ``ev_ptr`` (n,) is each sample's next event in the
        CSR event arrays (``ev_off`` (n + 1,), time order within a sample;
        ``ev_k`` the step, ``ev_s`` the offset into it, ``ev_src`` the source
        line). ``P``, ``Q`` (n or 1, n_out): per sample when ``per_sample``;
        ``R``, ``G`` (n_out,); ``z`` (k1 - k0, n, n_out) float32 standard
        normals when ``noisy`` (``G`` = 0 otherwise). Returns how many
        (sample, neuron) pairs have not spiked yet.

        A sample's neurons that have not spiked are packed at the front of
        small arrays (their index ``act``, phase, coefficients); one that
        spikes is swapped out, so the loops run over the live neurons only."""
        n, n_out = psi.shape
        sq32 = np.float32(sq)
        act = np.empty(n_out, dtype=np.int64)
        p = np.empty(n_out)
        q = np.empty(n_out)
        cP = np.empty(n_out)
        cQ = np.empty(n_out)
        cR = np.empty(n_out)
        cG = np.empty(n_out)
        zp = np.zeros(n_out, dtype=np.float32)  # the live neurons' noise of the step (0 without noise)
        left_all = 0
        for b in range(n):
            e_start = ev_ptr[b]
            e_end = ev_off[b + 1]
            pb = b if per_sample else 0
            na = 0
            for j in range(n_out):
                if not done[b, j]:
                    act[na] = j
                    p[na] = psi[b, j]
                    cP[na] = P[pb, j]
                    cQ[na] = Q[pb, j]
                    cR[na] = R[j]
                    cG[na] = G[j]
                    na += 1
            e = e_start
            k = k0
            while na > 0 and k < k1:
                t0 = k * dt
                # this step's input events, at their exact times, in order
                while e < e_end and ev_k[e] == k:
                    sv = ev_s[e]
                    src = ev_src[e]
                    i = 0
                    while i < na:
                        j = act[i]
                        p0 = p[i]
                        s0, c0 = sincos(2.0 * p0)
                        pe = p0 + (cP[i] + cQ[i] * c0 + cR[i] * s0) * sv
                        if pe >= HALF_PI:  # spikes on the way to the event: done
                            t_spk[b, j] = t0 + sv * ((HALF_PI - p0) / (pe - p0 if pe > p0 else 1.0))
                            done[b, j] = True
                            na -= 1
                            act[i], p[i], cP[i], cQ[i], cR[i], cG[i] = act[na], p[na], cP[na], cQ[na], cR[na], cG[na]
                            continue  # the neuron swapped in has not seen this event yet
                        pj = math.atan(math.tan(min(max(pe, -lim), lim)) + w_r[src, j])
                        s1, c1 = sincos(2.0 * pj)
                        p[i] = pj - (cP[i] + cQ[i] * c1 + cR[i] * s1) * sv
                        i += 1
                    e += 1
                # one (stochastic) Heun step of every live neuron, into q: a loop that
                # writes one array, so LLVM vectorises it after few overlap checks
                if noisy:
                    zk = z[k - k0, b]
                    for i in range(na):
                        zp[i] = zk[act[i]]
                for i in range(na):
                    p0 = p[i]
                    s0, c0 = sincos(2.0 * p0)
                    f0 = cP[i] + cQ[i] * c0 + cR[i] * s0
                    g0 = cG[i] * (1.0 + c0)
                    dW = np.float64(zp[i] * sq32)  # float32, as numpy's z * sqrt(dt)
                    pp = p0 + f0 * dt + g0 * dW
                    s1, c1 = sincos(2.0 * pp)
                    f1 = cP[i] + cQ[i] * c1 + cR[i] * s1
                    g1 = cG[i] * (1.0 + c1)
                    q[i] = p0 + 0.5 * (f0 + f1) * dt + 0.5 * (g0 + g1) * dW
                # spikes in this step (rare): record, swap out
                i = 0
                while i < na:
                    if q[i] >= HALF_PI:
                        j = act[i]
                        t_spk[b, j] = t0 + dt * ((HALF_PI - p[i]) / (q[i] - p[i]))
                        done[b, j] = True
                        na -= 1
                        act[i], p[i], q[i], cP[i], cQ[i], cR[i], cG[i] = (act[na], p[na], q[na], cP[na], cQ[na],
                                                                          cR[na], cG[na])
                    else:
                        i += 1
                p, q = q, p
                k += 1
            for i in range(na):
                psi[b, act[i]] = p[i]
            left_all += na
            # the sample's next event: the first one at or after step k1
            e = e_start
            while e < e_end and ev_k[e] < k1:
                e += 1
            ev_ptr[b] = e
        return left_all

else:  # pragma: no cover
    sincos = integrate_segment = None


def warm() -> None:
    """Compile (or load from numba's cache) `integrate_segment` for the argument types
    `core.AnalogCore` passes, on a tiny input: a first compile takes seconds, which a
    RUN must not spend while the host waits for its first result."""
    if integrate_segment is None:  # pragma: no cover
        return
    n, m = 1, 2
    f2 = np.zeros((n, m))
    integrate_segment(0, 1, 0.1, math.sqrt(0.1), HALF_PI - 1e-12, f2.copy(), np.full((n, m), np.inf),
                      np.zeros((n, m), dtype=np.bool_), np.zeros(n + 1, dtype=np.int64), np.zeros(n, dtype=np.int64),
                      np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros((1, m)),
                      f2, f2, np.zeros(m), np.zeros(m), False, True, np.zeros((1, n, m), dtype=np.float32))
