"""The analog core in spike-train mode (protocol 1.4): QIF neurons that fire,
reset and fire again, with recurrent synapses and a membrane ADC.

Dynamics of neuron k of a layer (chip microseconds, V dimensionless)::

    tau_k dV/dt = V (V - c_k) + I0_k + I_syn(t) + noise
    tau_s dI_syn/dt = -I_syn,    I_syn += w at each input spike

``I0 < 1/4`` is the excitable regime: V rests at the stable root of
V (V - c) + I0 = 0 until driven; ``I0 > 1/4`` oscillates. When V crosses
``v_peak`` the neuron spikes, V is reset to ``v_reset`` and held there for
``refractory`` network steps. V is clamped at -1 from below (as the
discrete model is). A non-spiking layer (the readout) switches the neuron to
its linear mode, ``tau_k dV/dt = I_syn - V`` (+ noise), a leaky integrator
saturating at +-``spec.v_rail``; its ``v_peak`` sets only the ADC range.

Time runs on the network's step clock: a step of ``dt_us = step_ticks *
tdc_lsb`` is integrated in ``substeps`` Heun substeps of ``h = dt_us /
substeps``, with the synaptic current decaying exactly (``exp(-h / tau_s)``
per substep) and the temporal noise an additive white current (V diffuses by
``noise`` per sqrt(tau), band-limited to the step clock: one draw per neuron and
step, constant over its substeps). Input spikes of step t arrive at the start of that
step; a spike of layer l in substep j is layer l+1's input in the same
substep j (the layers are integrated in order within each substep), and, when
the layer is recurrent, its own input in substep j+1. Every spike is
delivered and counted; the chip reports each one with its step index.

Fixed-pattern mismatch: the first-spike core's pattern (`Mismatch`: tau,
I0 gain, c, v0, row and column synaptic gains) plus, drawn from the chip id on
a stream of its own (`TrainsMismatch`), an additive I0 offset (so excitable
neurons with I0 = 0 differ too), a synaptic time-constant gain, a
recurrent-row gain and the ADC's per-channel offset and gain.

The membrane ADC (the chip's CADC) samples, when asked, every neuron of the
probed layers at the end of steps 0, p, 2p, ... (p = ``probe_period``),
before a reset in that substep, over [-1, v_peak] of the layer ([-v_peak,
v_peak] for a readout) at
``spec.adc_bits`` bits, with its own noise (``spec.adc_noise_lsb`` rms at the
default temporal noise, scaled with it).

Noise is drawn per aligned block of `BLOCK` samples from (chip id, run
seed, layer, block), so re-running a sample in the same run reproduces it
exactly, however the run is chunked (the firmware computes whole blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..wire.messages import TrainsConfig
from .core import ConfigInvalid, Mismatch
from .spec import DEFAULT_MISMATCH, DEFAULT_NOISE, ChipSpec


def validate_trains_config(cfg: TrainsConfig, spec: ChipSpec) -> None:
    """The chip's own design-rule check for a spike-train configuration (named rules)."""
    if not 1 <= len(cfg.layers) <= spec.max_layers:
        raise ConfigInvalid("layer-count", f"{len(cfg.layers)} layers, chip has 1..{spec.max_layers}")
    if not 1 <= cfg.n_inputs <= spec.max_inputs:
        raise ConfigInvalid("input-count", f"{cfg.n_inputs} inputs, chip has 1..{spec.max_inputs}")
    if cfg.n_neurons > spec.max_neurons:
        raise ConfigInvalid("neuron-count", f"{cfg.n_neurons} neurons, chip has {spec.max_neurons}")
    if not 1 <= cfg.n_steps <= spec.train_max_steps:
        raise ConfigInvalid("step-count", f"{cfg.n_steps} steps, chip runs 1..{spec.train_max_steps}")
    if not 1 <= cfg.step_ticks <= spec.train_max_step_ticks:
        raise ConfigInvalid("dt-grid", f"step of {cfg.step_ticks} ticks, the step clock takes 1..{spec.train_max_step_ticks}")
    if not 1 <= cfg.substeps <= spec.train_max_substeps:
        raise ConfigInvalid("substeps", f"{cfg.substeps} substeps, chip integrates 1..{spec.train_max_substeps} per step")
    if not 1 <= cfg.probe_period <= min(spec.max_probe_period, cfg.n_steps):
        raise ConfigInvalid("probe-period", f"period {cfg.probe_period} steps, chip takes 1..{min(spec.max_probe_period, cfg.n_steps)}")
    h = cfg.step_ticks * spec.tdc_lsb_us / cfg.substeps
    n_prev = cfg.n_inputs
    for i, L in enumerate(cfg.layers):
        n_src, n_out = L.codes.shape
        nb = len(L.bias_steps)
        if n_out < 1:
            raise ConfigInvalid("layer-shape", f"layer {i} has no neurons")
        if n_src - nb != n_prev:
            raise ConfigInvalid("layer-shape", f"layer {i} has {n_src - nb} source rows, previous stage has {n_prev}")
        if n_src > spec.max_fanin:
            raise ConfigInvalid("fan-in", f"layer {i} has {n_src} synapse rows, chip has {spec.max_fanin}")
        if L.rec_codes is not None:
            if L.rec_codes.shape != (n_out, n_out):
                raise ConfigInvalid("layer-shape", f"layer {i} recurrent codes {L.rec_codes.shape}, expected {(n_out, n_out)}")
            if n_src + n_out > spec.max_fanin:
                raise ConfigInvalid("fan-in", f"layer {i} has {n_src} + {n_out} recurrent synapse rows, chip has {spec.max_fanin}")
            if np.abs(L.rec_codes.astype(int)).max(initial=0) > spec.max_code:
                raise ConfigInvalid("weight-code", f"layer {i} has a recurrent DAC code beyond +-{spec.max_code}")
            if not 0 <= L.rec_range < spec.n_ranges:
                raise ConfigInvalid("weight-range", f"layer {i} recurrent range {L.rec_range}, chip has 0..{spec.n_ranges - 1}")
        if nb > spec.max_bias:
            raise ConfigInvalid("bias-count", f"layer {i} has {nb} bias lines, chip has {spec.max_bias}")
        if any(b >= cfg.n_steps for b in L.bias_steps):
            raise ConfigInvalid("bias-time", f"layer {i} has a bias step past the trial's {cfg.n_steps} steps")
        if np.abs(L.codes.astype(int)).max(initial=0) > spec.max_code:
            raise ConfigInvalid("weight-code", f"layer {i} has a DAC code beyond +-{spec.max_code}")
        if not 0 <= L.w_range < spec.n_ranges:
            raise ConfigInvalid("weight-range", f"layer {i} range {L.w_range}, chip has 0..{spec.n_ranges - 1}")
        if not spec.tau_min_us <= L.tau_us <= spec.tau_max_us:
            raise ConfigInvalid("tau-range", f"layer {i} tau {L.tau_us:g} us outside {spec.tau_min_us:g}..{spec.tau_max_us:g}")
        if h > L.tau_us / 4:
            raise ConfigInvalid("substep-size", f"layer {i}: substep {h:g} us is more than tau/4 = {L.tau_us / 4:g} us")
        if not (L.syn_tau_us == math.inf or spec.syn_tau_min_us <= L.syn_tau_us <= spec.syn_tau_max_us):
            raise ConfigInvalid("syn-tau-range", f"layer {i} synaptic tau {L.syn_tau_us:g} us outside "
                                                 f"{spec.syn_tau_min_us:g}..{spec.syn_tau_max_us:g} (or inf)")
        if not spec.train_i0_min <= L.i0 <= spec.train_i0_max:
            raise ConfigInvalid("i0-range", f"layer {i} I0 {L.i0:g} outside {spec.train_i0_min:g}..{spec.train_i0_max:g}")
        if not (math.isfinite(L.v_peak) and 0 < L.v_peak <= spec.v_peak_max):
            raise ConfigInvalid("v-peak-range", f"layer {i} v_peak {L.v_peak:g} outside (0, {spec.v_peak_max:g}]")
        if not (math.isfinite(L.v_reset) and -1 <= L.v_reset < L.v_peak):
            raise ConfigInvalid("v-reset-range", f"layer {i} v_reset {L.v_reset:g} outside [-1, v_peak)")
        if not (math.isfinite(L.v_init) and -1 <= L.v_init <= spec.v_rail):
            raise ConfigInvalid("v-init-range", f"layer {i} initial V {L.v_init:g} outside [-1, {spec.v_rail:g}]")
        if not 0 <= L.refractory <= spec.max_refractory:
            raise ConfigInvalid("refractory-range", f"layer {i} refractory {L.refractory} steps, chip has 0..{spec.max_refractory}")
        n_prev = n_out


@dataclass
class TrainsMismatch:
    """The fixed pattern that only spike-train mode sees (a stream of its own, so the
    first-spike pattern, which calibrations measure, is unchanged)."""

    i0_offset: np.ndarray  # (max_neurons,) added to I0
    syn_tau_gain: np.ndarray
    rec_gain: np.ndarray  # (max_layers, max_neurons): gain of the recurrent row of each neuron
    adc_offset_lsb: np.ndarray  # (max_neurons,)
    adc_gain: np.ndarray

    @classmethod
    def for_chip(cls, chip_id: int, sigma: float, spec: ChipSpec) -> "TrainsMismatch":
        rng = np.random.default_rng([chip_id & 0xFFFFFFFF, chip_id >> 32, 0x7A1])
        n = spec.max_neurons
        z = rng.standard_normal((4, n))
        zr = rng.standard_normal((spec.max_layers, n))
        rel = sigma / DEFAULT_MISMATCH
        return cls(i0_offset=0.2 * sigma * z[0], syn_tau_gain=np.clip(1 + sigma * z[1], 0.2, None),
                   rec_gain=np.clip(1 + sigma * zr, 0.2, None), adc_offset_lsb=rel * spec.adc_offset_lsb * z[2],
                   adc_gain=1 + rel * spec.adc_gain_sigma * z[3])


#: effective weights are held on a grid of 2**-GRID_BITS: sums of spikes times weights are then
#: exact in float64, whatever the order (BLAS blocking, batch size), so a sample's result never
#: depends on which other samples share its chunk (a re-run after a link failure is identical)
GRID_BITS = 24


def _on_grid(w: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(w, dtype=np.float64) * 2.0**GRID_BITS) / 2.0**GRID_BITS


def _add_spikes(I: np.ndarray, spk: np.ndarray, w: np.ndarray) -> None:
    """``I += spk @ w`` (``w`` float64 on the grid: exact) for a sparse boolean ``spk``:
    only the samples that spiked."""
    rows = np.flatnonzero(spk.any(axis=1))
    if rows.size == 0:
        return
    if 2 * rows.size > spk.shape[0]:
        I += (spk.astype(np.float64) @ w).astype(I.dtype)
    else:
        I[rows] += (spk[rows].astype(np.float64) @ w).astype(I.dtype)


@dataclass
class TrainsResult:
    """One run: ``counts`` (n_steps, n, n_neurons) spikes per step (all layers' neurons in
    order), ``codes`` (n, n_probe_steps, n_probed) ADC codes or None, ``v_true`` the
    sampled membranes before the ADC (same shape, model units; for tests)."""

    counts: np.ndarray
    codes: np.ndarray | None = None
    v_true: np.ndarray | None = None


class TrainsCore:
    BLOCK = 256  # samples whose noise one generator draws (aligned on the absolute sample index)

    def __init__(self, spec: ChipSpec, chip_id: int, mismatch: float, noise: float):
        self.spec = spec
        self.chip_id = int(chip_id)
        self.noise = float(noise)
        self.mm = Mismatch.for_chip(self.chip_id, float(mismatch), spec)
        self.tm = TrainsMismatch.for_chip(self.chip_id, float(mismatch), spec)
        self.adc_noise_lsb = spec.adc_noise_lsb * self.noise / DEFAULT_NOISE
        self.cfg: TrainsConfig | None = None

    def configure(self, cfg: TrainsConfig) -> None:
        validate_trains_config(cfg, self.spec)
        s, mm, tm = self.spec, self.mm, self.tm
        dt = cfg.step_ticks * s.tdc_lsb_us
        h = dt / cfg.substeps
        self.layers = []
        first = 0
        for li, L in enumerate(cfg.layers):
            n_src, n_out = L.codes.shape
            sl = slice(first, first + n_out)
            col = mm.col_gain[None, sl]
            w = L.codes.astype(np.float64) / s.max_code * s.w_full_scale(L.w_range)
            w = _on_grid(w * mm.row_gain[li, :n_src, None] * col)
            rec = None
            if L.rec_codes is not None:
                rec = L.rec_codes.astype(np.float64) / s.max_code * s.w_full_scale(L.rec_range)
                rec = _on_grid(rec * tm.rec_gain[li, :n_out, None] * col)
            tau = L.tau_us * mm.tau_gain[sl]
            stau = L.syn_tau_us * tm.syn_tau_gain[sl]
            self.layers.append(dict(
                n_in=n_src - len(L.bias_steps), n_out=n_out, sl=sl, w=w, rec=rec,
                a=h / tau,  # h / tau_k
                c=mm.c[sl], i0=L.i0 * mm.i0_gain[sl] + tm.i0_offset[sl],
                decay=np.exp(-h / stau),
                sig=self.noise * np.sqrt(h / tau),
                v_init=np.clip(L.v_init + mm.v0_offset[sl], -1.0, s.v_rail),
                v_peak=float(L.v_peak) if L.spiking else math.inf, spiking=bool(L.spiking),
                refr=int(L.refractory) * cfg.substeps, bias_steps=tuple(L.bias_steps),
                adc_lo=-1.0 if L.spiking else -float(L.v_peak), adc_hi=float(L.v_peak),
                adc_off=tm.adc_offset_lsb[sl], adc_gain=tm.adc_gain[sl],
            ))
            first += n_out
        self.cfg = cfg

    # ------------------------------------------------------------------ noise
    def _noise(self, seed: int, layer: int, first_sample: int, n: int, n_out: int, n_draws: int, kind: int = 0):
        """Per draw an (n, n_out) float32 array of standard normals that depends only on
        (chip, seed, layer, absolute sample index, draw index)."""
        B = self.BLOCK
        blocks = range(first_sample // B, (first_sample + n - 1) // B + 1)
        gens = [np.random.default_rng([self.chip_id & 0xFFFFFFFF, seed, layer, k, kind, 0x7A1]) for k in blocks]
        lo = first_sample - blocks[0] * B
        chunk = 16
        for k0 in range(0, n_draws, chunk):
            m = min(chunk, n_draws - k0)
            parts = [g.standard_normal((m, B, n_out), dtype=np.float32) for g in gens]
            buf = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            for j in range(m):
                yield buf[j, lo:lo + n]

    # ------------------------------------------------------------------ run
    def run(self, raster: np.ndarray, seed: int, first_sample: int, probe_mask: int = 0,
            keep_v: bool = False) -> TrainsResult:
        """``raster`` (n_steps, n, n_inputs) input spike counts -> every spike of every
        neuron, per step; with ``probe_mask`` (bit l = layer l) also the ADC codes.

        The state is float32 (the analog core's own precision is far coarser); the
        temporal noise current is band-limited to the step clock: one draw per
        neuron and step, constant over the step's substeps (V diffuses by ``noise``
        per sqrt(tau) all the same)."""
        cfg, s = self.cfg, self.spec
        assert cfg is not None
        T, n, k = raster.shape
        S = cfg.substeps
        n_all = cfg.n_neurons
        f32 = np.float32
        counts = np.zeros((T, n, n_all), dtype=np.uint8)
        probed = [li for li in range(len(self.layers)) if probe_mask >> li & 1]
        p = cfg.probe_period
        n_ps = cfg.n_probe_steps
        v_samp = {li: np.zeros((n_ps, n, self.layers[li]["n_out"]), dtype=f32) for li in probed}
        st = []
        raster64 = np.asarray(raster, dtype=np.float64)
        rail, lo = f32(s.v_rail), f32(-1.0)
        for li, L in enumerate(self.layers):
            ext = None  # (T, n, n_out) current jumps at step starts: the inputs (layer 0) and bias lines
            if li == 0:
                ext = (raster64 @ L["w"][:L["n_in"]]).astype(f32)
            if L["bias_steps"]:
                if ext is None:
                    ext = np.zeros((T, n, L["n_out"]), dtype=f32)
                for b, step in enumerate(L["bias_steps"]):
                    ext[step] += L["w"][L["n_in"] + b].astype(f32)
            m = L["n_out"]
            st.append(dict(
                V=np.broadcast_to(L["v_init"].astype(f32), (n, m)).copy(), I=np.zeros((n, m), f32),
                q=np.empty((n, m), f32), k1=np.empty((n, m), f32), vp=np.empty((n, m), f32),
                k2=np.empty((n, m), f32), dW=np.zeros((n, m), f32),
                ref=np.zeros((n, m), dtype=np.int32) if L["refr"] else None, ext=ext, spk=None,
                w=L["w"][:L["n_in"]], rec=L["rec"],
                a=L["a"].astype(f32), ha=(0.5 * L["a"]).astype(f32), c=L["c"].astype(f32), i0=L["i0"].astype(f32),
                vpk=f32(L["v_peak"]), decay=L["decay"].astype(f32), sig=(L["sig"] / math.sqrt(S)).astype(f32),
                z=self._noise(seed, li, first_sample, n, m, T) if self.noise > 0 else None,
            ))
        for t in range(T):
            for X in st:
                if X["z"] is not None:
                    np.multiply(next(X["z"]), X["sig"], out=X["dW"])  # this step's noise per substep
            for j in range(S):
                below = None  # spikes of the layer below in this substep
                for li, L in enumerate(self.layers):
                    X = st[li]
                    I, V, q, k1, vp, k2 = X["I"], X["V"], X["q"], X["k1"], X["vp"], X["k2"]
                    if j == 0 and X["ext"] is not None:
                        I += X["ext"][t]
                    if below is not None:
                        _add_spikes(I, below, X["w"])
                    if X["rec"] is not None and X["spk"] is not None:
                        _add_spikes(I, X["spk"], X["rec"])
                    # Heun over one substep, I decaying exactly from I to I * decay
                    if L["spiking"]:  # QIF: V (V - c) + I0 + I
                        c = X["c"]
                        np.add(I, X["i0"], out=q)  # (a broadcast add costs about two in-place ops)
                        np.subtract(V, c, out=k1)
                        k1 *= V
                        k1 += q
                    else:  # the linear readout: I - V
                        np.subtract(I, V, out=k1)
                    np.multiply(k1, X["a"], out=vp)
                    vp += V
                    if X["z"] is not None:
                        vp += X["dW"]
                    if L["spiking"]:
                        np.maximum(vp, lo, out=vp)
                    else:
                        np.clip(vp, -rail, rail, out=vp)
                    I *= X["decay"]
                    if L["spiking"]:
                        np.add(I, X["i0"], out=q)
                        np.subtract(vp, c, out=k2)
                        k2 *= vp
                        k2 += q
                    else:
                        np.subtract(I, vp, out=k2)
                    k2 += k1
                    k2 *= X["ha"]
                    k2 += V
                    if X["z"] is not None:
                        k2 += X["dW"]
                    if L["spiking"]:  # a spiking neuron resets below the rail
                        Vn = np.maximum(k2, lo, out=vp)  # vp is free again
                    else:
                        Vn = np.clip(k2, -rail, rail, out=vp)
                    if X["ref"] is not None:
                        held = X["ref"] > 0
                        if held.any():
                            Vn[held] = V[held]
                            X["ref"] -= held
                    if li in v_samp and j == S - 1 and t % p == 0:
                        v_samp[li][t // p] = Vn  # before the reset of this substep
                    spk = None
                    if L["spiking"]:
                        spk = Vn >= X["vpk"]
                        if spk.any():
                            Vn[spk] = cfg.layers[li].v_reset
                            counts[t][:, L["sl"]] += spk
                            if X["ref"] is not None:
                                X["ref"][spk] = L["refr"]
                        else:
                            spk = None
                    X["V"], X["vp"] = Vn, V  # swap buffers
                    X["spk"] = spk
                    below = spk
        if not probed:
            return TrainsResult(counts=counts)
        codes, vs = [], []
        for li in probed:
            L = self.layers[li]
            v = v_samp[li]  # (n_ps, n, n_out)
            full = (1 << s.adc_bits) - 1
            x = (v.astype(np.float64) * L["adc_gain"] - L["adc_lo"]) / (L["adc_hi"] - L["adc_lo"]) * full + L["adc_off"]
            if self.adc_noise_lsb > 0:
                g = self._noise(seed, 16 + li, first_sample, n, L["n_out"], n_ps, kind=1)
                x = x + self.adc_noise_lsb * np.stack([next(g) for _ in range(n_ps)])
            codes.append(np.clip(np.round(x), 0, full).astype(np.uint16))
            vs.append(v)
        codes = np.moveaxis(np.concatenate(codes, axis=2), 1, 0)
        v_true = np.moveaxis(np.concatenate(vs, axis=2), 1, 0) if keep_v else None
        return TrainsResult(counts=counts, codes=np.ascontiguousarray(codes), v_true=v_true)
