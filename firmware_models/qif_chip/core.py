"""The analog core: QIF (theta) neurons integrated numerically, with the
imperfections of silicon.

Dynamics of neuron k (times in chip microseconds, V dimensionless)::

    tau_k dV/dt = V (V - c_k) + I0_k  + input jumps  + noise

with nominal c = 1, I0 and tau from the configuration, and fixed-pattern
mismatch drawn from the chip id: tau_k, I0_k, the critical voltage c_k, the
initial voltage v0_k, and the synaptic gain of every synapse row (presynaptic
line) and column (neuron). An input spike of effective weight w makes V jump
by w. Temporal noise is a white current of strength ``noise`` (V diffuses by
``noise`` per sqrt(tau)), drawn per run from (chip id, run seed, sample
index), so re-running a sample in the same run reproduces it exactly.

Integration variable. V runs off to +inf in finite time, so it is a bad
variable for a fixed step. The core integrates the transformed variable
``psi`` with ``V = 1/2 + r tan(psi)`` where ``r = sqrt(I0_cfg - 1/4)`` uses the
*configured* (nominal) parameters; a spike is psi crossing +pi/2 (V = +inf,
i.e. the theta-neuron phase 2 psi crossing pi). The V-dynamics above, with
all mismatch terms, map to::

    dpsi/dt = [ (h cos + r sin)((h - c_k) cos + r sin) + I0_k cos^2 ] / (r tau_k)
              + noise cos^2(psi) / (r sqrt(tau_k)) xi(t),        h = 1/2

which is bounded and smooth for all psi (no overflow near the spike). With
no mismatch the drift is the constant r / tau; with mismatch it varies with
psi, which is where the numerical integration matters. The scheme is Heun
(stochastic Heun = Stratonovich, so the change of variable is exact), fixed
step ``tau / steps_per_tau``.

Inputs arrive at exact times, not on the step grid: an input at t_n + s is
applied at grid point t_n as psi <- J(psi + f s) - f' s (free flow forward to
the event, the jump J(psi) = arctan(tan psi + w / r), free flow back), in time
order. This is exact when the drift is constant and first order in the drift's
variation otherwise. Spike times are interpolated linearly within the step
(again exact for constant drift). The time-to-digital converter then
quantises: tick = floor(t / lsb); the host reads the bin centre.

The chip delivers only a neuron's first spike downstream and reports only
that one (time-to-first-spike contract). Layers run one after the other:
layer l's analog spike times (not the TDC readings) drive layer l+1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..wire.messages import NO_SPIKE, ChipConfig
from .spec import ChipSpec

HALF_PI = math.pi / 2
#: integrators of `AnalogCore.integrate_layer` (``auto``: the numba kernel where numba imports)
ENGINES = ("auto", "numba", "numpy")


def _load_kernel(engine: str):
    """The `_kernel` module for ``engine`` (imported on first use: numba costs the chip's
    process a quarter of a second), or None for the numpy path."""
    if engine not in ENGINES:
        raise ValueError(f"integrator engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "numpy":
        return None
    from . import _kernel

    if _kernel.integrate_segment is None:
        if engine == "numba":
            raise ValueError("integrator engine 'numba': numba is not installed")
        return None
    return _kernel


class ConfigInvalid(ValueError):
    """A configuration the chip cannot hold; ``rule`` names the limit."""

    def __init__(self, rule: str, text: str):
        self.rule = rule
        super().__init__(f"{rule}: {text}")


def validate_config(cfg: ChipConfig, spec: ChipSpec) -> None:
    """The chip's own design-rule check (the host checks first, this is the backstop)."""
    if not 1 <= len(cfg.layers) <= spec.max_layers:
        raise ConfigInvalid("layer-count", f"{len(cfg.layers)} layers, chip has 1..{spec.max_layers}")
    if not 1 <= cfg.n_inputs <= spec.max_inputs:
        raise ConfigInvalid("input-count", f"{cfg.n_inputs} inputs, chip has 1..{spec.max_inputs}")
    if not 1 <= cfg.trial_ticks <= NO_SPIKE - 1:
        raise ConfigInvalid("trial-length", f"{cfg.trial_ticks} ticks, TDC counts 1..{NO_SPIKE - 1}")
    if cfg.n_neurons > spec.max_neurons:
        raise ConfigInvalid("neuron-count", f"{cfg.n_neurons} neurons, chip has {spec.max_neurons}")
    n_prev = cfg.n_inputs
    for i, layer in enumerate(cfg.layers):
        n_src, n_out = layer.codes.shape
        nb = len(layer.bias_ticks)
        if n_src - nb != n_prev:
            raise ConfigInvalid("layer-shape", f"layer {i} has {n_src - nb} source rows, previous stage has {n_prev}")
        if n_src > spec.max_fanin:
            raise ConfigInvalid("fan-in", f"layer {i} has {n_src} synapse rows, chip has {spec.max_fanin}")
        if nb > spec.max_bias:
            raise ConfigInvalid("bias-count", f"layer {i} has {nb} bias lines, chip has {spec.max_bias}")
        if np.abs(layer.codes.astype(int)).max(initial=0) > spec.max_code:
            raise ConfigInvalid("weight-code", f"layer {i} has a DAC code beyond +-{spec.max_code}")
        if not 0 <= layer.w_range < spec.n_ranges:
            raise ConfigInvalid("weight-range", f"layer {i} range {layer.w_range}, chip has 0..{spec.n_ranges - 1}")
        if not spec.tau_min_us <= layer.tau_us <= spec.tau_max_us:
            raise ConfigInvalid("tau-range", f"layer {i} tau {layer.tau_us:g} us outside {spec.tau_min_us:g}..{spec.tau_max_us:g}")
        if not spec.i0_min <= layer.i0 <= spec.i0_max:
            raise ConfigInvalid("i0-range", f"layer {i} I0 {layer.i0:g} outside {spec.i0_min:g}..{spec.i0_max:g}")
        if not math.isfinite(layer.v0) or abs(layer.v0) > 16:
            raise ConfigInvalid("v0-range", f"layer {i} v0 {layer.v0:g} outside -16..16")
        n_prev = n_out


@dataclass
class Mismatch:
    """Fixed-pattern deviations of one die, as standard normals scaled by sigma."""

    tau_gain: np.ndarray  # (max_neurons,)
    i0_gain: np.ndarray
    c: np.ndarray  # critical voltage (nominal 1)
    v0_offset: np.ndarray
    col_gain: np.ndarray  # synaptic gain per neuron (column)
    row_gain: np.ndarray  # (max_layers, max_fanin) gain per presynaptic line (row)

    @classmethod
    def for_chip(cls, chip_id: int, sigma: float, spec: ChipSpec) -> "Mismatch":
        # the pattern depends on the chip id only; sigma scales it (0 = ideal die)
        rng = np.random.default_rng([chip_id & 0xFFFFFFFF, chip_id >> 32, 0x51F])
        n = spec.max_neurons
        z = rng.standard_normal((5, n))
        zr = rng.standard_normal((spec.max_layers, spec.max_fanin))

        def gain(x):
            return np.clip(1.0 + sigma * x, 0.2, None)

        return cls(
            tau_gain=gain(z[0]), i0_gain=gain(z[1]), c=1.0 + sigma * z[2], v0_offset=sigma * z[3],
            col_gain=gain(z[4]), row_gain=gain(zr),
        )


class AnalogCore:
    """Runs batches on one configured die. ``noise`` = temporal noise strength."""

    BLOCK = 256  # samples integrated together; noise is drawn per aligned block of this size

    def __init__(self, spec: ChipSpec, chip_id: int, mismatch: float, noise: float, engine: str = "auto"):
        kernel = _load_kernel(engine)
        if kernel is not None:
            kernel.warm()  # compiled (or loaded from the cache) now, not in the first RUN
        self.engine = engine
        self.spec = spec
        self.chip_id = int(chip_id)
        self.noise = float(noise)
        self.mm = Mismatch.for_chip(self.chip_id, float(mismatch), spec)
        self.cfg: ChipConfig | None = None

    def configure(self, cfg: ChipConfig) -> None:
        validate_config(cfg, self.spec)
        self.cfg = cfg
        self._noise_cache = {}
        self._spare = []
        self._layers = []
        first = 0
        lsb = self.spec.tdc_lsb_us
        for li, layer in enumerate(cfg.layers):
            n_src, n_out = layer.codes.shape
            sl = slice(first, first + n_out)
            w = layer.codes.astype(np.float64) / self.spec.max_code * self.spec.w_full_scale(layer.w_range)
            w = w * self.mm.row_gain[li, :n_src, None] * self.mm.col_gain[None, sl]
            r = math.sqrt(layer.i0 - 0.25)
            self._layers.append(
                dict(
                    w=w, r=r, tau_cfg=layer.tau_us, tau=layer.tau_us * self.mm.tau_gain[sl],
                    i0=layer.i0 * self.mm.i0_gain[sl], c=self.mm.c[sl], v0=layer.v0 + self.mm.v0_offset[sl],
                    bias_t=np.asarray(layer.bias_ticks, dtype=np.float64) * lsb,
                )
            )
            first += n_out

    # ------------------------------------------------------------------ run
    def run(self, in_ticks: np.ndarray, seed: int, first_sample: int, inject: np.ndarray | None = None) -> np.ndarray:
        """(n, n_inputs) input ticks -> (n, n_neurons) TDC ticks of every neuron,
        layer after layer; samples are numbered from ``first_sample`` for the noise.

        ``inject`` (n, n_neurons), optional: a constant current added to each
        neuron's drive for the whole trial of each sample (protocol 1.2,
        ``RUN_INJECT``): ``tau_k dV/dt = V (V - c_k) + I0_k + inject[s, k] + ...``."""
        assert self.cfg is not None
        lsb = self.spec.tdc_lsb_us
        t_end = self.cfg.trial_ticks * lsb
        t = np.where(in_ticks == NO_SPIKE, np.inf, in_ticks.astype(np.float64) * lsb)
        t = np.where(t < t_end, t, np.inf)
        out = []
        for li, L in enumerate(self._layers):
            src = np.concatenate([t, np.broadcast_to(L["bias_t"], (t.shape[0], L["bias_t"].size))], axis=1)
            src = np.where(src < t_end, src, np.inf)
            inj = None
            if inject is not None:
                a = sum(o.shape[1] for o in out)
                inj = np.asarray(inject[:, a : a + L["w"].shape[1]], dtype=np.float64)
            t = self.integrate_layer(src, L, t_end, seed, first_sample, li, inject=inj)
            out.append(t)
        times = np.concatenate(out, axis=1)
        ticks = np.floor(times / lsb)
        return np.where(np.isfinite(times), np.minimum(ticks, NO_SPIKE - 1), NO_SPIKE).astype(np.uint16)

    #: integrator steps of noise drawn per call (a layer often ends early, when all fired)
    NOISE_STEPS = 16
    #: bytes of drawn noise kept for the later chunks of the same run (one seed at a time)
    NOISE_CACHE_BYTES = 64 << 20

    def _block_noise(self, seed: int, layer: int, block: int, n_out: int, n_steps: int, first_block: int | None = None):
        """[generator, float32 buffer (steps, BLOCK, n_out), steps drawn, first step
        in the buffer, steps of the layer] of one block: kept while the run (its seed) lasts, so that
        the chunks a RUN is computed in draw a block's noise once, not once per
        chunk (unless it exceeds ``NOISE_CACHE_BYTES``: then the buffer holds one
        segment, and every chunk draws the stream again). A RUN's chunks move forward
        through the blocks, so to make room the blocks before this one go first
        (a sample re-run later draws its block again, the same numbers); the buffer
        of one before ``first_block`` (the first block of the request: not in use)
        is kept for the next block, which then costs no fresh pages (a quarter of
        a block's drawing time, measured)."""
        first_block = block if first_block is None else first_block
        key = (seed, layer, block, n_out, n_steps)
        ent = self._noise_cache.get(key)
        if ent is None:
            if any(k[0] != seed for k in self._noise_cache):  # a new run: forget the last one's
                self._spare_buffers(e[1] for e in self._noise_cache.values())
                self._noise_cache.clear()
            size = n_steps * self.BLOCK * n_out * 4
            gen = np.random.default_rng([self.chip_id & 0xFFFFFFFF, seed, layer, block])
            held = sum(e[1].nbytes for e in self._noise_cache.values())
            for old in sorted((k for k in self._noise_cache if k[2] < block), key=lambda k: k[2]):
                if size + held <= self.NOISE_CACHE_BYTES:
                    break
                buf = self._noise_cache.pop(old)[1]
                held -= buf.nbytes
                if old[2] < first_block:
                    self._spare_buffers([buf])
            if size + held <= self.NOISE_CACHE_BYTES:
                ent = self._noise_cache[key] = [gen, self._buffer((n_steps, self.BLOCK, n_out)), 0, 0, n_steps]
            else:  # too big to keep: one segment at a time, drawn again by a later chunk
                ent = [gen, np.empty((self.NOISE_STEPS, self.BLOCK, n_out), dtype=np.float32), 0, 0, n_steps]
        return ent

    #: noise buffers of dropped blocks kept for reuse (at most this many)
    SPARE_BUFFERS = 1

    def _spare_buffers(self, bufs) -> None:
        spare = self.__dict__.setdefault("_spare", [])
        spare.extend(bufs)
        del spare[:-self.SPARE_BUFFERS or len(spare)]

    def _buffer(self, shape) -> np.ndarray:
        """A float32 array of ``shape``: a spare one of that shape if there is one (its
        contents are overwritten by the draws before they are read)."""
        spare = self.__dict__.setdefault("_spare", [])
        for i, b in enumerate(spare):
            if b.shape == shape:
                return spare.pop(i)
        return np.empty(shape, dtype=np.float32)

    def _noise_blocks(self, seed: int, first_sample: int, n: int, layer: int, n_out: int, n_steps: int):
        """The `_block_noise` entries of the blocks samples ``first_sample .. + n`` lie in,
        and the offset of the first sample in the first block."""
        B = self.BLOCK
        blocks = range(first_sample // B, (first_sample + n - 1) // B + 1)
        return [self._block_noise(seed, layer, k, n_out, n_steps, blocks[0]) for k in blocks], first_sample - blocks[0] * B

    def _noise_steps(self, ents, lo: int, n: int, k0: int, k1: int) -> np.ndarray:
        """(k1 - k0, n, n_out) float32 standard normals of steps ``k0 .. k1 - 1`` (a view
        where one block holds them all). Each block draws ``NOISE_STEPS`` steps per call,
        in order, as far as step ``k1``; a rolling block's segment must still hold ``k0``
        (callers ask for aligned segments of at most ``NOISE_STEPS`` steps, or step by step)."""
        for ent in ents:
            while ent[2] < k1:  # draw the next segment of this block's steps
                gen, buf, done, base, n_steps = ent
                if buf.shape[0] < n_steps:  # a rolling segment
                    base = ent[3] = done
                upto = min(n_steps, done + self.NOISE_STEPS)
                gen.standard_normal(dtype=np.float32, out=buf[done - base:upto - base])
                ent[2] = upto
            assert ent[3] <= k0, "a rolling noise segment no longer holds the step asked for"
        if len(ents) == 1:
            e = ents[0]
            return e[1][k0 - e[3]:k1 - e[3], lo:lo + n]
        return np.concatenate([e[1][k0 - e[3]:k1 - e[3]] for e in ents], axis=1)[:, lo:lo + n]

    def _noise_source(self, seed: int, first_sample: int, n: int, layer: int, n_out: int, n_steps: int):
        """Per step, an (n, n_out) array of standard normals that depends only on
        (chip, seed, layer, absolute sample index): blocks are aligned to BLOCK.

        Each block's generator draws ``NOISE_STEPS`` steps in one call, the
        same stream as one (BLOCK, n_out) draw per step (numpy fills arrays in
        order), so the noise is that of the per-step draws, without a Python
        call per block and step; what a block drew is kept for the run's next
        chunk (`_block_noise`)."""
        ents, lo = self._noise_blocks(seed, first_sample, n, layer, n_out, n_steps)
        for k in range(n_steps):
            yield self._noise_steps(ents, lo, n, k, k + 1)[0]

    def integrate_layer(self, src_t, L, t_end, seed=0, first_sample=0, layer=0, noise=None, inject=None, engine=None):
        """First spike times (chip us, inf = none before t_end) of one layer.

        ``src_t`` (n, n_src): arrival time of every source line, inf = none.
        ``inject`` (n, n_out) or None: injected current per sample and neuron.
        ``engine``: ``"numba"`` the fused kernel (`_kernel.py`), ``"numpy"`` the
        vectorised reference below, ``"auto"`` (None: the core's ``engine``) the
        kernel where numba imports."""
        engine = self.engine if engine is None else engine
        kernel = _load_kernel(engine)
        if src_t.shape[0] == 0:
            return np.empty((0, L["w"].shape[1]))
        noise = self.noise if noise is None else noise
        co = self._coefficients(L, t_end, noise, inject)
        if kernel is not None:
            return self._integrate_kernel(src_t, L, t_end, seed, first_sample, layer, noise, co)
        return self._integrate_numpy(src_t, L, t_end, seed, first_sample, layer, noise, co)

    def _coefficients(self, L, t_end, noise, inject):
        """The step, the step count and the drift / diffusion coefficients of one layer:
        drift = P + Q cos 2 psi + R sin 2 psi, diffusion = G (1 + cos 2 psi); P and Q
        are (n, n_out) with a per-sample injection, (n_out,) otherwise."""
        w, r = L["w"], L["r"]
        tau, i0, c = L["tau"], L["i0"], L["c"]
        if inject is not None and np.any(inject != 0):
            i0 = i0[None, :] + inject  # (n, n_out): every coefficient below becomes per sample
        dt = L["tau_cfg"] / self.spec.steps_per_tau
        n_steps = int(math.ceil(t_end / dt))
        h = 0.5
        # drift = A cos^2 + B sin cos + C sin^2 (expand the bracket above), written with
        # double angles so one cos and one sin of 2 psi serve both drift and diffusion
        A = (h * (h - c) + i0) / (r * tau)
        B = (2 * h - c) / tau
        C = r / tau
        P, Q, R = (A + C) / 2, (A - C) / 2, B / 2
        trig = bool(np.any(Q != 0) or np.any(R != 0))  # an ideal die has a constant drift
        G = noise / (r * np.sqrt(tau)) / 2  # diffusion = G (1 + cos 2 psi)
        return dict(dt=dt, n_steps=n_steps, P=P, Q=Q, R=R, G=G, trig=trig, per_sample=np.ndim(P) == 2,
                    psi0=np.arctan((L["v0"] - h) / r), w_r=w / r)

    def _integrate_kernel(self, src_t, L, t_end, seed, first_sample, layer, noise, co):
        """`integrate_layer` on the fused kernel, in segments of ``NOISE_STEPS`` steps
        (each draws its noise as the numpy path does, and the layer stops drawing
        once every neuron of every sample spiked, as there)."""
        kernel = _load_kernel("numba")
        n, n_src = src_t.shape
        w_r = np.array(co["w_r"], dtype=np.float64, order="C")
        n_out = w_r.shape[1]
        dt, n_steps = co["dt"], co["n_steps"]
        # every sample's events in time order (stable: equal times in source order), CSR
        order = np.argsort(src_t, axis=1, kind="stable")
        ev_t = np.take_along_axis(src_t, order, axis=1)
        fin = np.isfinite(ev_t)
        eb, ei = np.nonzero(fin)
        et = ev_t[eb, ei]
        ek = np.minimum((et // dt).astype(np.int64), n_steps - 1)
        es = np.array(et - ek * dt, dtype=np.float64)
        esrc = np.array(order[eb, ei], dtype=np.int64)
        ev_off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(fin.sum(axis=1), out=ev_off[1:])
        ev_ptr = ev_off[:-1].copy()

        def own(x, shape):  # a writable C-contiguous float64 copy: one compiled signature for every call
            return np.array(np.broadcast_to(x, shape), dtype=np.float64, order="C")

        rows = np.shape(co["P"])[0] if co["per_sample"] else 1
        P, Q = own(co["P"], (rows, n_out)), own(co["Q"], (rows, n_out))
        R, G = own(co["R"], (n_out,)), own(co["G"], (n_out,))
        psi = own(co["psi0"], (n, n_out))
        t_spk = np.full((n, n_out), np.inf)
        done = np.zeros((n, n_out), dtype=np.bool_)
        noisy = noise > 0
        if noisy:
            ents, lo = self._noise_blocks(seed, first_sample, n, layer, n_out, n_steps)
        z = np.zeros((1, 1, 1), dtype=np.float32)
        S = self.NOISE_STEPS
        for k0 in range(0, n_steps, S):
            k1 = min(n_steps, k0 + S)
            if noisy:
                z = np.ascontiguousarray(self._noise_steps(ents, lo, n, k0, k1))  # (a view of) the core's buffer
            left = kernel.integrate_segment(k0, k1, dt, math.sqrt(dt), HALF_PI - 1e-12, psi, t_spk, done, ev_off,
                                             ev_ptr, ek, es, esrc, w_r, P, Q, R, G, co["per_sample"], noisy, z)
            if left == 0:
                break
        return np.where(t_spk < t_end, t_spk, np.inf)

    def _integrate_numpy(self, src_t, L, t_end, seed, first_sample, layer, noise, co, trig_dtype=np.float32):
        """`integrate_layer` vectorised over the samples, one numpy operation per step:
        the reference the kernel is tested against. ``trig_dtype``: the precision of the
        double-angle sin/cos (float32 by default; the tests also run it in float64,
        as the kernel computes them, to tell the reference's own error from the kernel's)."""
        n, n_src = src_t.shape
        w = L["w"]
        n_out = w.shape[1]
        dt, n_steps = co["dt"], co["n_steps"]
        P, Q, R, G, trig, per_sample = co["P"], co["Q"], co["R"], co["G"], co["trig"], co["per_sample"]

        # the double-angle terms are small corrections (Q, R ~ mismatch x drift), so
        # single-precision trig (about 3x faster) costs ~1e-9 relative in spike time
        def drift(p, b=None):
            Pb, Qb = (P[b], Q[b]) if (per_sample and b is not None) else (P, Q)
            if not trig:
                return np.broadcast_to(Pb, p.shape)
            p2 = (2 * p).astype(trig_dtype)
            return Pb + Qb * np.cos(p2) + R * np.sin(p2)

        def drift_diff(p):
            p2 = (2 * p).astype(trig_dtype)
            c2 = np.cos(p2)
            f = P + Q * c2 + R * np.sin(p2) if trig else np.broadcast_to(P, p.shape)
            return f, G * (1 + c2)

        psi = np.broadcast_to(co["psi0"], (n, n_out)).copy()
        t_spk = np.full((n, n_out), np.inf)
        spiked = np.zeros((n, n_out), dtype=bool)

        # Input events, grouped for the step loop: group (k, j) holds, for every sample,
        # its j-th event inside step k. Applying groups in (k, j) order applies each
        # sample's events in time order, vectorised over the samples.
        order = np.argsort(src_t, axis=1, kind="stable")
        ev_t = np.take_along_axis(src_t, order, axis=1)
        eb, ei = np.nonzero(np.isfinite(ev_t))  # row-major: by sample, then time
        et = ev_t[eb, ei]
        ek = np.minimum((et // dt).astype(np.int64), n_steps - 1)
        new_run = np.ones(eb.size, bool)
        new_run[1:] = (eb[1:] != eb[:-1]) | (ek[1:] != ek[:-1])
        run_start = np.maximum.accumulate(np.where(new_run, np.arange(eb.size), 0))
        ej = np.arange(eb.size) - run_start
        perm = np.lexsort((eb, ej, ek))
        eb, ek, ej = eb[perm], ek[perm], ej[perm]
        es = et[perm] - ek * dt
        esrc = order[eb, ei[perm]]
        cut = np.flatnonzero(np.diff(ek * (n_src + 1) + ej)) + 1
        groups: dict[int, list[slice]] = {}
        for a, z in zip(np.r_[0, cut], np.r_[cut, eb.size]):
            if z > a:
                groups.setdefault(int(ek[a]), []).append(slice(int(a), int(z)))
        w_r = co["w_r"]
        zs = self._noise_source(seed, first_sample, n, layer, n_out, n_steps) if noise > 0 else None
        sq = math.sqrt(dt)
        lim = HALF_PI - 1e-12

        for k in range(n_steps):
            t0 = k * dt
            # inputs inside [t0, t0 + dt), applied at their exact times in order
            for sl in groups.get(k, ()):
                b = eb[sl]
                sv = es[sl][:, None]
                p0 = psi[b]
                pe = p0 + drift(p0, b) * sv
                hit = pe >= HALF_PI
                if hit.any():
                    hit &= ~spiked[b]
                    frac = (HALF_PI - p0) / np.where(pe > p0, pe - p0, 1.0)
                    tsb = t_spk[b]
                    tsb[hit] = (t0 + sv * frac)[hit]
                    t_spk[b] = tsb
                    spiked[b] |= hit
                pj = np.arctan(np.tan(np.clip(pe, -lim, lim)) + w_r[esrc[sl]])
                psi[b] = pj - drift(pj, b) * sv
            # one Heun step of the (stochastic) psi dynamics
            if zs is not None:
                dW = next(zs) * sq
                f0, g0 = drift_diff(psi)
                pp = psi + f0 * dt + g0 * dW
                f1, g1 = drift_diff(pp)
                new = psi + 0.5 * (f0 + f1) * dt + 0.5 * (g0 + g1) * dW
            else:
                f0 = drift(psi)
                pp = psi + f0 * dt
                new = psi + 0.5 * (f0 + drift(pp)) * dt
            hit = (new >= HALF_PI) & ~spiked
            if hit.any():
                frac = (HALF_PI - psi[hit]) / (new[hit] - psi[hit])
                t_spk[hit] = t0 + dt * frac
                spiked |= hit
            psi = new
            if spiked.all():
                break
        return np.where(t_spk < t_end, t_spk, np.inf)

