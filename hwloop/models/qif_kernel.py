"""Fused event-based numba kernel for the QIF (theta) layer.

Computes exactly what the torch path of `hwloop.models.qif.QIF` computes
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
* **Samples in parallel** (``prange``) in a fixed number of chunks, each
  chunk with its own weight-gradient accumulator summed in a fixed order:
  results do not depend on the thread count (bit-reproducible training).

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

import numpy as np
import torch

from ..errors import NetworkSpecError

ENV_VAR = "HWLOOP_QIF_ENGINE"
_ENGINES = ("auto", "numba", "torch")
#: samples per backward chunk are summed per chunk, chunks in a fixed order;
#: the count is fixed (not the thread count) so results are reproducible
_BWD_CHUNKS = 8
_FWD_CHUNKS = 64
#: renormalise the rotating-frame state this often (pure overflow guard)
_RENORM_EVERY = 16

_kernels = None
_import_error: str | None = None


def _engine(engine: str | None) -> str:
    e = (engine if engine is not None else os.environ.get(ENV_VAR, "auto")).strip().lower() or "auto"
    if e not in _ENGINES:
        where = "engine argument" if engine is not None else f"environment variable {ENV_VAR}"
        raise NetworkSpecError(f"qif: {where} must be one of {list(_ENGINES)}, got {e!r}")
    return e


def available() -> bool:
    """Whether numba imports and the kernels compile on this machine."""
    return _build() is not None


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


def _build():
    """Compile the kernels on first use (cached on disk by numba)."""
    global _kernels, _import_error
    if _kernels is not None or _import_error is not None:
        return _kernels
    try:
        import numba as nb
    except ImportError as exc:  # pragma: no cover - numba is a dependency
        _import_error = str(exc)
        return None

    @nb.njit(cache=True, inline="always")
    def schedule(t, b, T, merge, keys, ids, gstart, gtime):
        """Sorted delivered inputs (t <= T) of sample b as groups of jumps:
        group g is inputs ids[gstart[g]:gstart[g+1]] at time gtime[g].
        Returns the number of groups."""
        S = t.shape[1]
        m = 0
        ordered = True
        for i in range(S):
            ti = t[b, i]
            if ti <= T:  # False for nan
                if m > 0 and ti < keys[m - 1]:
                    ordered = False
                keys[m] = ti
                ids[m] = i
                m += 1
        if not ordered:
            p = np.argsort(keys[:m], kind="mergesort")  # stable: ties in index order
            k2 = keys[:m][p]
            i2 = ids[:m][p]
            keys[:m] = k2
            ids[:m] = i2
        G = 0
        for x in range(m):
            if x == 0 or not merge or keys[x] != keys[x - 1]:
                gstart[G] = x
                gtime[G] = keys[x]
                G += 1
        gstart[G] = m
        return G

    @nb.njit(cache=True, inline="always")
    def jump(u, ids, x0, x1, buf):
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
    def pseudo_input(t, b, u, T, period, one, iu):
        """iu[j] = Σ_i ρ(t_i) u_ij over the late inputs T < t_i < T + Θ
        (section 3, in units of w / r). Returns whether any input is late."""
        iu[:] = 0
        late = False
        for i in range(t.shape[1]):
            ti = t[b, i]
            if ti > T and ti < T + period:
                rho = one - (ti - T) / period
                row = u[i]
                for j in range(iu.shape[0]):
                    iu[j] += rho * row[j]
                late = True
        return late

    @nb.njit(cache=True, parallel=True, nogil=True)
    def forward(t, u, T, omega, period, ca0, sa0, after, pi, merge, freeze, extended, nchunks, renorm, out):
        """Times of one layer (section 2/3) into out (B, n).

        freeze=True: first-spike dynamics; out = spike time, inf (extended
        False) or pseudospike (extended True) for silent neurons.
        freeze=False: the phase runs on through model spikes (measured mode of
        `pseudospikes_for_measured`); out = pseudospike where the model is
        silent, ``after`` (just after T) where the model spiked."""
        B, S = t.shape
        n = u.shape[1]
        one = T / T
        zero = T - T
        for ch in nb.prange(nchunks):
            keys = np.empty_like(t[0])
            ids = np.empty(S, np.int64)
            gstart = np.empty(S + 1, np.int64)
            gtime = np.empty_like(t[0])
            zx = np.empty_like(u[0])
            zy = np.empty_like(u[0])
            alive = np.empty_like(u[0])
            buf = np.empty_like(u[0])
            iu = np.empty_like(u[0])
            for b in range(ch * B // nchunks, (ch + 1) * B // nchunks):
                G = schedule(t, b, T, merge, keys, ids, gstart, gtime)
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
                        U = jump(u, ids, gstart[g], gstart[g + 1], buf)
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
                            # the state of a neuron that died here is its state after event pt
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
                if freeze and not extended:
                    continue
                if freeze and n_alive == 0:
                    continue
                # pseudospikes: state at T (pc, ps are cos/sin of ωT here), one
                # pulse Σ ρ w, free flow to Θ
                pseudo_input(t, b, u, T, period, one, iu)
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

    @nb.njit(cache=True, parallel=True, nogil=True)
    def backward(t, u, w, tout, go, T, omega, period, ca0, sa0, kw, merge, kmax, g_in, g_parts):
        """Exact vjp (section 4) at the given output times: g_in (B, S) is
        written, g_parts (chunks, S, n) accumulated per chunk of samples."""
        B, S = t.shape
        n = u.shape[1]
        nchunks = g_parts.shape[0]
        one = T / T
        zero = T - T
        for ch in nb.prange(nchunks):
            gw = g_parts[ch]
            keys = np.empty_like(t[0])
            ids = np.empty(S, np.int64)
            gstart = np.empty(S + 1, np.int64)
            gtime = np.empty_like(t[0])
            zx = np.empty_like(u[0])
            zy = np.empty_like(u[0])
            gv = np.empty_like(u[0])
            gg = np.empty_like(u[0])
            pp = np.empty_like(u[0])
            hw = np.empty_like(u[0])
            buf = np.empty_like(u[0])
            iu = np.empty_like(u[0])
            H = np.empty((kmax, n), dtype=u.dtype)
            A = np.empty((kmax, n), dtype=u.dtype)
            C = np.empty((kmax, n), dtype=u.dtype)
            for b in range(ch * B // nchunks, (ch + 1) * B // nchunks):
                to = tout[b]
                active = False
                for j in range(n):
                    gj = go[b, j]
                    if np.isfinite(to[j]) and np.isfinite(gj) and gj != zero:
                        gv[j] = gj
                        active = True
                    else:
                        gv[j] = zero
                if not active:
                    continue
                G = schedule(t, b, T, merge, keys, ids, gstart, gtime)
                for j in range(n):
                    zx[j] = ca0
                    zy[j] = sa0
                # forward over the causal inputs (t_i < t_out), unit state before
                # each event, storing ∂H/∂φ = 1/N', y'^2/N' and 2x'y'/N'
                for g in range(G):
                    s = gtime[g]
                    ang = omega * s
                    c = np.cos(ang)
                    sn = np.sin(ang)
                    U = jump(u, ids, gstart[g], gstart[g + 1], buf)
                    Hg, Ag, Cg = H[g], A[g], C[g]
                    for j in range(n):
                        d = zx[j] * sn + zy[j] * c
                        dc = d if s < to[j] else zero
                        q = U[j] * dc
                        nx = zx[j] - q * c
                        ny = zy[j] + q * sn
                        nn = nx * nx + ny * ny
                        inv = one / nn
                        xp = c * nx - sn * ny
                        Hg[j] = inv
                        a = dc * inv
                        Ag[j] = a * dc
                        Cg[j] = (a + a) * xp
                        nr = np.sqrt(nn)
                        zx[j] = nx / nr
                        zy[j] = ny / nr
                # ∂t/∂θ at the end: −1 (ordinary spike) or −∂H/∂φ(φ(T), I) (pseudospike)
                angT = omega * T
                cT = np.cos(angT)
                sT = np.sin(angT)
                any_pseudo = False
                for j in range(n):
                    if gv[j] != zero and to[j] > T:
                        any_pseudo = True
                if any_pseudo:
                    pseudo_input(t, b, u, T, period, one, iu)
                for j in range(n):
                    pp[j] = zero
                    if gv[j] != zero and to[j] > T:
                        xT = cT * zx[j] - sT * zy[j]
                        yT = sT * zx[j] + cT * zy[j]
                        xp = xT - iu[j] * yT
                        inv = one / (xp * xp + yT * yT)
                        gg[j] = -gv[j] * inv
                        pp[j] = -gv[j] * kw * yT * yT * inv  # ∂L/∂I
                    else:
                        gg[j] = -gv[j]
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
                # reverse through the events
                for g in range(G - 1, -1, -1):
                    Hg, Ag, Cg = H[g], A[g], C[g]
                    for j in range(n):
                        hw[j] = gg[j] * kw * Ag[j]
                    for x in range(gstart[g], gstart[g + 1]):
                        i = ids[x]
                        row = u[i]
                        grow = gw[i]
                        acc = zero
                        for j in range(n):
                            grow[j] += hw[j]
                            ui = row[j]
                            acc += gg[j] * ui * (ui * Ag[j] + Cg[j])
                        g_in[b, i] = acc
                    for j in range(n):
                        gg[j] *= Hg[j]

    _kernels = (forward, backward)
    return _kernels


def _scalars(dtype: np.dtype, c, t_max: float):
    f = dtype.type
    T = f(t_max)
    return dict(T=T, omega=f(c.omega), period=f(c.period), ca0=f(math.cos(c.alpha0)), sa0=f(math.sin(c.alpha0)),
                after=np.nextafter(T, f(np.inf)), pi=f(math.pi))


def _np(x: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return x.detach().to(dtype).contiguous().numpy()


def layer_forward(t_in: torch.Tensor, w: torch.Tensor, c, t_max: float, dtype: torch.dtype, *,
                  extended: bool, merge: bool | None = None, freeze: bool = True) -> torch.Tensor:
    """(B, n) times of one QIF layer; see `forward` in `_build` for the modes.
    ``c`` is a `ThetaConstants`."""
    forward, _ = _build()
    t = _np(t_in, dtype)
    u = _np(w.detach().to(dtype) / c.r, dtype)
    B, n = t.shape[0], u.shape[1]
    out = np.empty((B, n), dtype=t.dtype)
    if B and n:
        k = _scalars(t.dtype, c, t_max)
        forward(t, u, k["T"], k["omega"], k["period"], k["ca0"], k["sa0"], k["after"], k["pi"],
                merge is not False, freeze, extended, min(B, _FWD_CHUNKS), _RENORM_EVERY, out)
    return torch.from_numpy(out)


def layer_vjp(t_in: torch.Tensor, w: torch.Tensor, t_out: torch.Tensor, grad_out: torch.Tensor, c,
              t_max: float, dtype: torch.dtype, merge: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂L/∂t_in, ∂L/∂w) for L = Σ grad_out · t_out at the given t_out."""
    _, backward = _build()
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
        kmax = int((t <= k["T"]).sum(1).max())
        backward(t, u, wn, to, go, k["T"], k["omega"], k["period"], k["ca0"], k["sa0"],
                 t.dtype.type(c.tau / c.r ** 2), merge is not False, kmax, g_in, parts)
    return torch.from_numpy(g_in), torch.from_numpy(parts.sum(0))


__all__ = ["ENV_VAR", "available", "layer_forward", "layer_vjp", "use_kernel"]
