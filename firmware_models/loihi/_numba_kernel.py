"""The fused numba kernel of the bit-accurate Loihi core (see `core.py`).

Defined at module level so that numba's on-disk cache (``cache=True``)
finds it again in the next process: kernels defined inside a function get a
fresh cache key every time and are recompiled in every process.

numba keys that cache on this file's path, size and modification time, not
on the module's name: when the module was renamed (to
``hwloop.firmware_models.loihi``) without this file changing, the old cache
entries, which name the old module, were loaded and failed to import. Any
edit to this file invalidates them, as this paragraph did.

Two kernels (`layer_kernel` picks one per layer): `layer_block_samples`
(blocks of samples, SIMD over their live neurons, float64 lanes holding exact
integers) and `layer_samples` (one neuron at a time, integers); see
docs/loihi.md, "bitexact engines".

Threads: the kernels are serial and release the GIL (``nogil``); `layer_kernel`
splits the batch over plain Python threads, which claim shares of it in turn. It used numba's parallel loops
(``prange``) before, and once numba's OpenMP pool had started in a process,
its workers spin-waited after every kernel on the cores torch's own OpenMP
pool needs (a second OpenMP runtime: numba's ``omp`` layer is not the copy
torch bundles): a 2-thread torch op then took ~25x longer, for the rest of the
process (issue #18; `bench/bench_threads.py` measures it). Python threads
start no OpenMP runtime at all, whatever was imported first, and the serial
kernel compiles in a fraction of the parallel one's time.
"""

import itertools
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
    # u is a 24-bit register that wraps once per step, as Lava's bit-accurate LIF does
    # (an int, or a float holding one: the block kernel's). A step whose input is more
    # than a wrap away leaves u outside +-2**23, and later steps wrap it again: so the
    # wrap is applied on every step, with input or not.
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
                  fu, fv, du1, vth, steps, out):
    """Samples ``b0 .. b1-1`` of the batch, serially, one neuron at a time
    (the kernel for layers with more sources than neurons, e.g. an output
    layer: its input arrives on most steps, and one neuron's u and v stay in
    registers from its first input to its spike)."""
    n_src = in_steps.shape[1]
    n = w.shape[1]
    if b0 >= b1:
        return
    # acc[k, j]: the summed weights of the sample's sources that spiked at step k
    # (zero again after each sample: only the rows it wrote are cleared)
    acc = np.zeros((steps, n), np.int64)
    first_bias = steps
    for k in range(steps):
        if bias_step[k]:
            first_bias = k
            break
    for b in range(b0, b1):
        last = last_input
        first = first_bias
        for i in range(n_src):
            s = in_steps[b, i]
            if 0 <= s < steps:
                for j in range(n):
                    acc[s, j] += w[i, j]
                last = max(last, s)
                first = min(first, s)
        # with no constant bias, u = v = 0 until the first input: nothing happens
        k0 = 0 if eb_any else first
        for j in range(n):
            eb = eff_bias[j]
            u = np.int64(0)
            v = np.int64(0)
            res = -1
            for k in range(k0, steps):
                # on a step without input a is 0 and the wrap a no-op (|u| only shrinks)
                a = acc[k, j]
                if weight_exp >= 0:
                    a = ((a << weight_exp) + bias_in[k, j]) << 6
                else:
                    a = ((a >> (-weight_exp)) + bias_in[k, j]) << 6
                u = wrap24(trunc_decay(u, fu) + a)
                v = clip24(trunc_decay(v, fv) + u + eb)
                if v > vth:
                    res = k  # one spike per trial: the neuron is done
                    break
                # once all input is in, stop a neuron that provably cannot fire: with
                # no input and bias <= 0, v stays <= max(v,0) + max(u,0)*fu/(du+1)
                # (only while u is inside the 24-bit range: outside it, it wraps again)
                if k >= last and eb <= 0 and -8388608 < u <= 8388608:
                    up = u if u > 0 else 0
                    vp = v if v > 0 else 0
                    if vp * du1 + up * fu <= vth * du1:
                        break
            out[b, j] = res
        for i in range(n_src):
            s = in_steps[b, i]
            if 0 <= s < steps:
                for j in range(n):
                    acc[s, j] = 0


# ------------------------------------------------------------------ the block kernel
#: samples integrated together by `layer_block_samples` (their live neurons share one loop)
BLOCK = 8
#: `layer_block_samples` drops slots that cannot fire any more every PRUNE_PERIOD steps
#: (and whenever half of the slots have fired); the period changes no result
PRUNE_PERIOD = 32
_LIM = 8388607.0  # +-(2**23 - 1), v's clip


# The block kernel's u and v are float64 holding integers: every value is an
# integer below 2**53 in magnitude (24-bit state, 12-bit decay factors, products
# below 2**36), so each product, sum and comparison is exact, and
# trunc(x * (f / 4096)) is exactly trunc(x * f / 4096) (f / 4096 and the scaling
# by a power of two are exact). Bit for bit the integer arithmetic, but it
# vectorises: the CPU multiplies and rounds doubles in SIMD lanes, int64 products
# it does not. Loops index with uint64 so that numba emits no negative-index
# wraparound, which would stop the vectoriser.

@nb.njit(cache=True, inline="always")
def _v_next(v, gv, uu, ebx, eb_any):
    if eb_any:
        return min(max(np.trunc(v * gv) + uu + ebx, -_LIM), _LIM)
    # no constant bias: no upper clip needed, v above the limit fires either way
    return max(np.trunc(v * gv) + uu, -_LIM)


@nb.njit(cache=True, inline="always")
def _slot_update(x, k, uu, u, v, eb, fs, eb_any, gv, fvth):
    """Slot x at step k, given its new u: store u and v; True if it fired now
    (its step goes to ``fs``; a slot that fired before does not fire again)."""
    u[x] = uu
    vv = _v_next(v[x], gv, uu, eb[x], eb_any)
    v[x] = vv
    f = (vv > fvth) & (fs[x] < 0)
    fs[x] = k if f else fs[x]
    return f


@nb.njit(cache=True, inline="always")
def _step_input(x0, x1, k, u, v, eb, fs, jj, row, n, eb_any, gu, gv, fvth):
    """One step of slots x0..x1-1, all of one sample, with input ``row[neuron]``;
    returns how many fired now (their step goes to ``fs``). When all of the
    sample's neurons are live its slots are neurons 0..n-1 and the row is read
    in order, no gather (``full`` and ``eb_any`` are the same on every
    iteration: the compiler moves both tests out of the loop)."""
    nf = 0
    full = x1 - x0 == n
    base = np.uint64(x0)
    for t in range(np.uint64(x1 - x0)):
        x = base + t
        nf += _slot_update(x, k, wrap24(np.trunc(u[x] * gu) + row[t if full else jj[x]]), u, v, eb, fs, eb_any, gv, fvth)
    return nf


@nb.njit(cache=True, inline="always")
def _step_free(x0, x1, k, u, v, eb, fs, eb_any, gu, gv, fvth):
    """One step of slots x0..x1-1 (any samples) with no input: |u| only shrinks, but a u
    left outside the 24-bit range by an earlier step wraps again (as in Lava)."""
    nf = 0
    for x in range(np.uint64(x0), np.uint64(x1)):
        nf += _slot_update(x, k, wrap24(np.trunc(u[x] * gu)), u, v, eb, fs, eb_any, gv, fvth)
    return nf


@nb.njit(cache=True, inline="always")
def _step_samples(s0, s1, sb, k, has_bias, u, v, eb, fs, jj, brow, n, eb_any, gu, gv, fvth):
    """One step of samples s0..s1-1, none of which has a source spike at step k."""
    nf = 0
    if s0 < s1:
        if has_bias:
            for s in range(s0, s1):
                nf += _step_input(sb[s], sb[s + 1], k, u, v, eb, fs, jj, brow, n, eb_any, gu, gv, fvth)
        else:
            nf = _step_free(sb[s0], sb[s1], k, u, v, eb, fs, eb_any, gu, gv, fvth)
    return nf


@nb.njit(cache=True, nogil=True)
def _layer_block(b0, b1, in_steps, w, weight_exp, bias_in, bias_step, last_input, eff_bias, eb_any,
                 fu, fv, du1, vth, steps, oflat, start, order_s, order_i, last_s, sb, brow, arow,
                 u, v, eb, fs, jj):
    """Samples b0..b1-1 (at most BLOCK) together, time step by time step."""
    n_src = in_steps.shape[1]
    n = w.shape[1]
    S = b1 - b0
    gu = fu / 4096.0
    gv = fv / 4096.0
    fvth = float(vth)
    # counting sort of the block's source spikes by step, sample-major within a step:
    # spikes of step k are (order_s[e], order_i[e]) for e in start[k]..start[k + 1]-1
    for k in range(steps + 2):
        start[k] = 0
    first = steps
    for k in range(steps):
        if bias_step[k]:
            first = k
            break
    for s in range(S):
        last = last_input
        for i in range(n_src):
            t = in_steps[b0 + s, i]
            if 0 <= t < steps:
                start[t + 2] += 1
                if t > last:
                    last = t
                if t < first:
                    first = t
        last_s[s] = last
    for k in range(2, steps + 2):
        start[k] += start[k - 1]
    for s in range(S):
        for i in range(n_src):
            t = in_steps[b0 + s, i]
            if 0 <= t < steps:
                p = start[t + 1]
                order_s[p] = s
                order_i[p] = i
                start[t + 1] = p + 1
    # slots: (sample, neuron) pairs in sample-major order; sample s owns slots
    # sb[s]..sb[s + 1]-1; fs is a slot's spike step (-1: not yet). Fired slots
    # stay (their fs blocks a second spike) until a compaction drops them.
    x = 0
    for s in range(S):
        sb[s] = x
        r = (b0 + s) * n
        for j in range(n):
            jj[x] = np.uint64(j)
            u[x] = 0.0
            v[x] = 0.0
            eb[x] = eff_bias[j]
            fs[x] = -1
            oflat[r + j] = -1
            x += 1
    sb[S] = x
    n_act = x
    n_dead = 0
    # with no constant bias, u = v = 0 until the first input: nothing happens
    k0 = 0 if eb_any else first
    for k in range(k0, steps):
        e0 = start[k]
        e1 = start[k + 1]
        has_bias = bias_step[k]
        if has_bias:
            for j in range(n):
                brow[j] = float(bias_in[k, j] << 6)
        nf = 0
        sp = 0  # samples sp.. have not been stepped yet
        e = e0
        while e < e1:
            # a sample with source spikes at k: its input row over both synapse groups
            s = order_s[e]
            for j in range(n):
                arow[j] = 0.0
            while e < e1 and order_s[e] == s:
                i = order_i[e]
                for j in range(n):
                    arow[j] += w[i, j]
                e += 1
            if weight_exp >= 0:
                for j in range(n):
                    arow[j] = float(((np.int64(arow[j]) << weight_exp) + bias_in[k, j]) << 6)
            else:
                for j in range(n):
                    arow[j] = float(((np.int64(arow[j]) >> (-weight_exp)) + bias_in[k, j]) << 6)
            nf += _step_samples(sp, s, sb, k, has_bias, u, v, eb, fs, jj, brow, n, eb_any, gu, gv, fvth)
            nf += _step_input(sb[s], sb[s + 1], k, u, v, eb, fs, jj, arow, n, eb_any, gu, gv, fvth)
            sp = s + 1
        nf += _step_samples(sp, S, sb, k, has_bias, u, v, eb, fs, jj, brow, n, eb_any, gu, gv, fvth)
        n_dead += nf
        if n_dead == n_act:
            break
        if 2 * n_dead > n_act or k % PRUNE_PERIOD == 0:
            # compaction: fired slots go (their step out), and so, for samples whose
            # input is all in, do neurons that provably cannot fire any more: with
            # no input and bias <= 0, v stays <= max(v,0) + max(u,0)*fu/(du+1).
            # Branch-free: every slot is copied down, the write index advances if kept.
            y = np.uint64(0)
            for s in range(S):
                x0 = sb[s]
                x1 = sb[s + 1]
                sb[s] = y
                done = k >= last_s[s]
                r = np.uint64((b0 + s) * n)
                for x in range(np.uint64(x0), np.uint64(x1)):
                    vv = v[x]
                    uu = u[x]
                    j = jj[x]
                    f = fs[x]
                    oflat[r + j] = f  # -1 for a live neuron: still right
                    up = uu if uu > 0 else 0.0
                    vp = vv if vv > 0 else 0.0
                    inside = (uu > -8388608.0) & (uu <= 8388608.0)  # outside, u wraps again
                    dead = done & inside & (eb[x] <= 0) & (vp * du1 + up * fu <= fvth * du1)
                    keep = (f < 0) & (dead ^ True)
                    jj[y] = j
                    u[y] = uu
                    v[y] = vv
                    eb[y] = eb[x]
                    fs[y] = -1
                    y += np.uint64(1) if keep else np.uint64(0)
            sb[S] = y
            n_act = np.int64(y)
            n_dead = 0
            if n_act == 0:
                break
    for s in range(S):
        r = np.uint64((b0 + s) * n)
        for x in range(np.uint64(sb[s]), np.uint64(sb[s + 1])):
            oflat[r + jj[x]] = fs[x]


@nb.njit(cache=True, nogil=True)
def layer_block_samples(b0, b1, in_steps, w, weight_exp, bias_in, bias_step, last_input, eff_bias, eb_any,
                        fu, fv, du1, vth, steps, out):
    """Samples ``b0 .. b1-1`` of the batch (one thread's share), BLOCK samples at
    a time: the kernel for layers with more neurons than sources (a hidden layer
    fed by a few inputs). Within a block the live (sample, neuron) slots of
    every sample are stepped in one loop (SIMD over slots); a sample's input row
    is added only on the steps where one of its sources spiked."""
    n_src = in_steps.shape[1]
    n = w.shape[1]
    if b0 >= b1:
        return
    S = BLOCK
    start = np.empty(steps + 2, np.int64)
    order_s = np.empty(S * n_src, np.int64)
    order_i = np.empty(S * n_src, np.int64)
    last_s = np.empty(S, np.int64)
    sb = np.empty(S + 1, np.int64)
    brow = np.empty(n, np.float64)
    arow = np.empty(n, np.float64)
    u = np.empty(S * n, np.float64)
    v = np.empty(S * n, np.float64)
    eb = np.empty(S * n, np.float64)
    fs = np.empty(S * n, np.int64)
    jj = np.empty(S * n, np.uint64)
    oflat = out.reshape(-1)
    for c0 in range(b0, b1, S):
        _layer_block(c0, min(c0 + S, b1), in_steps, w, weight_exp, bias_in, bias_step, last_input, eff_bias,
                     eb_any, fu, fv, du1, vth, steps, oflat, start, order_s, order_i, last_s, sb, brow, arow,
                     u, v, eb, fs, jj)


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
                 fu, fv, du1, vth, steps, out, threads=None, kind=None):
    """One layer for the whole batch into ``out`` (C-contiguous), split over
    ``threads`` (default `num_threads`). ``kind``: "block" (`layer_block_samples`)
    or "neuron" (`layer_samples`); default: "block" when the layer has at least
    as many neurons as sources (a hidden layer fed by a few inputs, where the
    block kernel measured 3x faster), else "neuron" (an output layer fed by a
    wide hidden layer: 1.2x faster there). Results depend on neither."""
    n_src, n = w.shape
    if kind is None:
        kind = "block" if n >= n_src else "neuron"
    if kind == "block":
        kernel = layer_block_samples
    elif kind == "neuron":
        kernel = layer_samples
    else:
        raise ValueError(f"unknown kernel kind {kind!r} (block, neuron)")
    B = in_steps.shape[0]
    split_batch(kernel, B, (in_steps, w, weight_exp, bias_in, bias_step, last_input, eff_bias, eb_any,
                            fu, fv, du1, vth, steps, out), threads, chunk=_chunk(B, threads))


#: shares per thread when `layer_kernel` splits a batch: threads that finish
#: early take more, so a thread slowed down (a shared machine) costs less wall time
CHUNKS_PER_THREAD = 4


def _chunk(B: int, threads) -> int:
    k = num_threads() if threads is None else max(1, int(threads))
    c = max(MIN_SAMPLES_PER_THREAD, -(-B // (k * CHUNKS_PER_THREAD)))
    return -(-c // BLOCK) * BLOCK  # whole blocks


def split_batch(kernel, B: int, args: tuple, threads=None, chunk: int | None = None) -> None:
    """``kernel(b0, b1, *args)`` over contiguous shares of a batch of ``B``
    samples on plain Python threads (the kernels are nogil; ``threads``:
    default `num_threads`; at least MIN_SAMPLES_PER_THREAD samples each), the
    calling thread one of them. ``chunk=None``: one share per thread; else
    shares of ``chunk`` samples, each thread taking the next one left."""
    k = num_threads() if threads is None else max(1, int(threads))
    k = max(1, min(k, B // MIN_SAMPLES_PER_THREAD))
    if k == 1:
        kernel(0, B, *args)
        return
    if chunk is None:
        bounds = [(i * B // k, (i + 1) * B // k) for i in range(k)]
    else:
        chunk = max(1, int(chunk))
        bounds = [(b0, min(B, b0 + chunk)) for b0 in range(0, B, chunk)]
    # next() of an itertools.count holds the GIL: each share goes to one thread
    claim = itertools.count()

    def work():
        for i in iter(claim.__next__, None):
            if i >= len(bounds):
                return
            kernel(*bounds[i], *args)

    futures = [_executor(k - 1).submit(work) for _ in range(k - 1)]
    try:
        work()
    finally:
        for f in futures:
            f.result()
