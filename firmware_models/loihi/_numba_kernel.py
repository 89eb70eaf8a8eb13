"""The fused numba kernel of the bit-accurate Loihi core (see `core.py`).

Defined at module level so that numba's on-disk cache (``cache=True``)
finds it again in the next process: kernels defined inside a function get a
fresh cache key every time and are recompiled in every process.

numba keys that cache on this file's path, size and modification time, not
on the module's name: when the module was renamed (to
``hwloop.firmware_models.loihi``) without this file changing, the old cache
entries, which name the old module, were loaded and failed to import. Any
edit to this file invalidates them, as this paragraph did.

Threads: the kernel is serial and releases the GIL (``nogil``); `layer_kernel`
splits the batch over plain Python threads. It used numba's parallel loops
(``prange``) before, and once numba's OpenMP pool had started in a process,
its workers spin-waited after every kernel on the cores torch's own OpenMP
pool needs (a second OpenMP runtime: numba's ``omp`` layer is not the copy
torch bundles): a 2-thread torch op then took ~25x longer, for the rest of the
process (issue #18; `bench/bench_threads.py` measures it). Python threads
start no OpenMP runtime at all, whatever was imported first, and the serial
kernel compiles in a fraction of the parallel one's time.
"""

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def trunc_decay(x, factor):
    # trunc(p / 4096) toward zero without a branch: add 4095 when p < 0
    p = x * factor
    return (p + ((p >> 63) & 4095)) >> 12


@nb.njit(cache=True, inline="always")
def wrap24(d):
    # u is a 24-bit register: one wrap suffices, |d| < 3 * 2**23
    if d > 8388608:
        d -= 16777216
    elif d <= -8388608:
        d += 16777216
    return d


@nb.njit(cache=True, inline="always")
def clip24(x):
    if x > 8388607:
        x = 8388607
    elif x < -8388607:
        x = -8388607
    return x


@nb.njit(cache=True, nogil=True)
def layer_samples(b0, b1, in_steps, w, weight_exp, bias_in, bias_step, last_input, eff_bias, eb_any,
                  fu, fv, du1, vth, steps, prune_every, out):
    """Samples ``b0 .. b1-1`` of the batch, serially (one thread's share)."""
    n_src = in_steps.shape[1]
    n = w.shape[1]
    if b0 < b1:
        # scratch once per share of samples, not per sample
        start = np.empty(steps + 2, np.int64)
        order = np.empty(n_src, np.int64)
        a = np.empty(n, np.int64)
        idx = np.empty(n, np.int64)
        u = np.empty(n, np.int64)
        v = np.empty(n, np.int64)
        eb = np.empty(n, np.int64)
        thr = np.empty(n, np.int64)
        NEVER = np.int64(1) << 62
        for b in range(b0, b1):
            # counting sort of this sample's source spikes by step:
            # sources of step k are order[start[k]:start[k + 1]]
            for k in range(steps + 2):
                start[k] = 0
            last = last_input
            for i in range(n_src):
                s = in_steps[b, i]
                if 0 <= s < steps:
                    start[s + 2] += 1
                    if s > last:
                        last = s
            for k in range(2, steps + 2):
                start[k] += start[k - 1]
            for i in range(n_src):
                s = in_steps[b, i]
                if 0 <= s < steps:
                    order[start[s + 1]] = i
                    start[s + 1] += 1
            # live neurons, compacted: idx[x] is the neuron in slot x
            for j in range(n):
                idx[j] = j
                u[j] = 0
                v[j] = 0
                eb[j] = eff_bias[j]
                thr[j] = vth
                out[b, j] = -1
            n_act = n
            n_dead = 0
            for k in range(steps):
                e0 = start[k]
                e1 = start[k + 1]
                if e0 < e1 or bias_step[k]:
                    # an input step: per-neuron input of both synapse groups
                    for j in range(n):
                        a[j] = 0
                    for e in range(e0, e1):
                        i = order[e]
                        for j in range(n):
                            a[j] += w[i, j]
                    if weight_exp >= 0:
                        for j in range(n):
                            a[j] = ((a[j] << weight_exp) + bias_in[k, j]) << 6
                    else:
                        for j in range(n):
                            a[j] = ((a[j] >> (-weight_exp)) + bias_in[k, j]) << 6
                    nf = 0
                    for x in range(n_act):
                        uu = wrap24(trunc_decay(u[x], fu) + a[idx[x]])
                        u[x] = uu
                        vv = clip24(trunc_decay(v[x], fv) + uu + eb[x])
                        v[x] = vv
                        nf += vv > thr[x]
                else:
                    # no input: |u| only shrinks, no wrap possible
                    nf = 0
                    for x in range(n_act):
                        uu = trunc_decay(u[x], fu)
                        u[x] = uu
                        vv = clip24(trunc_decay(v[x], fv) + uu + eb[x])
                        v[x] = vv
                        nf += vv > thr[x]
                # (fired neurons stay in their slot with an unreachable
                # threshold until enough of them pile up to compact)
                if nf > 0:
                    for x in range(n_act):
                        if v[x] > thr[x]:
                            out[b, idx[x]] = k
                            thr[x] = NEVER
                    n_dead += nf
                    if n_dead == n_act:
                        break
                prune = k >= last and (k - last) % prune_every == 0
                if prune or 4 * n_dead > n_act:
                    # drop neurons that fired (one spike per trial) and, once
                    # all input is in, those that provably cannot fire: with
                    # no input and bias <= 0, v stays <= max(v,0) + max(u,0)*fu/(du+1)
                    y = 0
                    for x in range(n_act):
                        if thr[x] == NEVER:
                            continue
                        vv = v[x]
                        uu = u[x]
                        if prune and eb[x] <= 0:
                            up = uu if uu > 0 else 0
                            vp = vv if vv > 0 else 0
                            if vp * du1 + up * fu <= vth * du1:
                                continue
                        idx[y] = idx[x]
                        u[y] = uu
                        v[y] = vv
                        eb[y] = eb[x]
                        thr[y] = vth
                        y += 1
                    n_act = y
                    n_dead = 0
                    if n_act == 0:
                        break


#: samples per thread below which splitting costs more than it saves
MIN_SAMPLES_PER_THREAD = 16

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def num_threads() -> int:
    """Threads `layer_kernel` uses: torch's thread count when torch is loaded
    (``hwloop --threads``, `torch.set_num_threads`: one knob for the process,
    as for the QIF kernel), else the CPUs this process may run on."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return max(1, torch.get_num_threads())
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        # a forked child inherits the executor but not its threads: make its own
        if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bitexact")
            _pool_pid = os.getpid()
        return _pool


def layer_kernel(in_steps, w, weight_exp, bias_in, bias_step, last_input, eff_bias, eb_any,
                 fu, fv, du1, vth, steps, prune_every, out, threads=None):
    """One layer for the whole batch into ``out``: `layer_samples` over
    contiguous shares of the batch, one per thread (``threads``: default
    `num_threads`). Results do not depend on the thread count."""
    split_batch(layer_samples, in_steps.shape[0], (in_steps, w, weight_exp, bias_in, bias_step, last_input, eff_bias,
                                                   eb_any, fu, fv, du1, vth, steps, prune_every, out), threads)


def split_batch(kernel, B: int, args: tuple, threads=None) -> None:
    """``kernel(b0, b1, *args)`` over contiguous shares of a batch of ``B``
    samples, one per thread (``threads``: default `num_threads`; at least
    MIN_SAMPLES_PER_THREAD samples each), on plain Python threads (the
    kernels are nogil), the calling thread taking the first share."""
    k = num_threads() if threads is None else max(1, int(threads))
    k = max(1, min(k, B // MIN_SAMPLES_PER_THREAD))
    if k == 1:
        kernel(0, B, *args)
        return
    bounds = [(i * B // k, (i + 1) * B // k) for i in range(k)]
    futures = [_executor(k - 1).submit(kernel, b0, b1, *args) for b0, b1 in bounds[1:]]
    try:
        kernel(*bounds[0], *args)
    finally:
        for f in futures:
            f.result()
