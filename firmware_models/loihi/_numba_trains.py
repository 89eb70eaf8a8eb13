"""The numba kernel of the multi-spike (CUBA) Loihi layer (see `trains.py`).

The same integer arithmetic as `trains.simulate_trains`, in the same order,
per sample: event-driven synaptic sums (rows of the weight matrix for the inputs
that spiked), each connection's sum shifted on its own, Lava's decays
(truncation toward zero), the 24-bit wrap of ``u``, the clip of ``v``, reset
to zero. Module level so numba's on-disk cache finds it again.

Threads as in `_numba_kernel` (the first-spike-time kernel): the kernel is
serial and releases the GIL; `trains_layer` splits the batch into contiguous
shares over plain Python threads (the same executor and thread count), so no
numba/OpenMP pool ever starts, and each sample is computed alone, so the
result does not depend on the thread count.
"""

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def _shift(x, e):
    if e > 0:
        return x << e
    return x >> (-e)


@nb.njit(cache=True, inline="always")
def _trunc_decay(x, factor):
    p = x * factor
    if p < 0:
        return -((-p) >> 12)
    return p >> 12


@nb.njit(cache=True, nogil=True)
def trains_samples(b0, b1, spk_in, w, e, r, e_rec, has_rec, fu, fv, vth, out, v_rec, u_rec, record):
    """One layer for samples ``b0 .. b1-1``: ``spk_in`` (T, B, n_in) uint8, ``w``
    (n_in, n) int64, ``r`` (n, n) int64 (ignored unless ``has_rec``); writes
    ``out`` (T, B, n) uint8 and, with ``record``, post-reset ``v_rec`` and
    ``u_rec`` (T, B, n) int32."""
    T, B, n_in = spk_in.shape
    n = w.shape[1]
    M = 8388608
    for b in range(b0, b1):
        u = np.zeros(n, np.int64)
        v = np.zeros(n, np.int64)
        s = np.zeros(n, np.uint8)
        acc = np.zeros(n, np.int64)
        racc = np.zeros(n, np.int64)
        for k in range(T):
            acc[:] = 0
            for i in range(n_in):
                if spk_in[k, b, i]:
                    for j in range(n):
                        acc[j] += w[i, j]
            if has_rec:
                racc[:] = 0
                for i in range(n):
                    if s[i]:
                        for j in range(n):
                            racc[j] += r[i, j]
            for j in range(n):
                a = _shift(acc[j], e)
                if has_rec:
                    a += _shift(racc[j], e_rec)
                d = _trunc_decay(u[j], fu) + (a << 6)
                if d > M:
                    uj = d - 2 * M
                else:
                    uj = d
                if uj <= -M:
                    uj = d + 2 * M
                u[j] = uj
                vj = _trunc_decay(v[j], fv) + uj
                if vj > M - 1:
                    vj = M - 1
                elif vj < -(M - 1):
                    vj = -(M - 1)
                if vj > vth:
                    s[j] = 1
                    vj = 0
                else:
                    s[j] = 0
                v[j] = vj
                out[k, b, j] = s[j]
                if record:
                    v_rec[k, b, j] = vj
                    u_rec[k, b, j] = uj


def trains_layer(spk_in, w, e, r, e_rec, has_rec, fu, fv, vth, out, v_rec, u_rec, record, threads=None):
    """One layer for the whole batch: `trains_samples` over contiguous shares of
    the batch, one per thread (``threads``: default `_numba_kernel.num_threads`)."""
    from ._numba_kernel import split_batch

    split_batch(trains_samples, spk_in.shape[1],
                (spk_in, w, e, r, e_rec, has_rec, fu, fv, vth, out, v_rec, u_rec, record), threads)
