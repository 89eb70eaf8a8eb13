"""Compile a spike-train ``"qif-trains"`` `Network` into the chip's spike-train
configuration (protocol 1.4, docs/qif-chip-trains.md).

1. **Time mapping.** The network step ``dt`` becomes a whole number of the
   chip's step-clock ticks (the TDC tick): ``dt_us = step_ticks * lsb``; one
   scale factor (chip us per network time unit) maps every time constant. By
   default the smallest step that keeps every ``tau_mem`` at or above the
   chip's ``tau_min``; a ``scale`` given by the caller must put ``dt`` on the
   grid (rule ``dt-grid``). The synaptic decay per step becomes the chip's
   synaptic time constant ``tau_s = -dt / ln(1 - current_decay)`` (``inf``
   for no decay; ``current_decay = 1`` has none: rule ``syn-tau-range``).
2. **Charge matching.** A jump ``w`` of a current decaying with ``tau_s``
   moves V by ``w tau_s / tau``; the discrete model moves it by
   ``(dt / tau) w / current_decay``. Weights are scaled by
   ``g = -ln(1 - cd) / cd`` before quantisation so that every input spike
   delivers the charge it has in the model (``g = 1`` at ``cd -> 0``).
3. **DAC quantisation** as for first-spike networks (`choose_range`), the
   recurrent matrix with a range of its own. A non-spiking readout is linear
   in its input, so it may run scaled: weights / sigma on the chip, the
   membrane read back x sigma, sigma the smallest power of two that brings
   its weights into the DAC's range (``TrainsProgram.readout_scale``).
4. **Design-rule checks**, each a `DesignRuleError(rule, layer, limit)`:
   neuron-model, layer-count, input-count, neuron-count, fan-in, bias-count,
   step-count, dt-grid, tau-range, syn-tau-range, substeps, probe-period,
   i0-range, v-peak-range, v-reset-range, refractory-range, weight-range.

``TrainsProgram.effective`` is the network the chip runs if ideal
(quantised weights back in model units, ``g`` undone).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from hwloop.errors import DesignRuleError
from hwloop.firmware_models.wire.messages import ChipInfo, TrainLayerConfig, TrainsConfig
from hwloop.network import Network

from .compiler import choose_range

#: integrator substeps per network step (URL option ``substeps``)
DEFAULT_SUBSTEPS = 8


def _f32(x: float) -> float:
    return float(np.float32(x))


def _neuron(layer, name: str, default):
    """A field of the layer's neuron record (read with getattr: the record's own fields
    or, for older records, its options)."""
    n = layer.neuron
    v = getattr(n, name, None)
    if v is None:
        v = dict(getattr(n, "options", {}) or {}).get(name, default)
    return v


def _rest_point(i0: float) -> float:
    return (1.0 - math.sqrt(1.0 - 4.0 * i0)) / 2.0 if i0 < 0.25 else 0.5


@dataclass(frozen=True)
class TrainsProgram:
    config: TrainsConfig
    scale: float  # chip microseconds per network time unit
    lsb_us: float
    sizes: tuple[int, ...]
    dt: float  # network units
    effective: Network
    adc_bits: int
    adc_ranges: tuple[tuple[float, float], ...]  # per layer: the ADC's [lo, hi] in model units
    charge_gain: tuple[float, ...]  # per layer: the weight scaling g
    #: per layer: model membrane units per chip volt (1, or a power of two for a linear readout)
    readout_scale: tuple[float, ...] = ()

    @property
    def n_steps(self) -> int:
        return self.config.n_steps

    @property
    def probe_period(self) -> int:
        return self.config.probe_period

    @property
    def probe_steps(self) -> np.ndarray:
        """The steps whose end the ADC samples."""
        return np.arange(self.config.n_probe_steps) * self.config.probe_period

    def codes_to_v(self, codes: np.ndarray, layers: list[int]) -> list[np.ndarray]:
        """ADC codes (n, n_probe_steps, neurons of ``layers``) -> one (n_probe_steps, n, n_l)
        membrane array per layer in model units."""
        full = (1 << self.adc_bits) - 1
        out, a = [], 0
        for li in layers:
            m = self.sizes[li]
            lo, hi = self.adc_ranges[li]
            v = lo + codes[:, :, a:a + m].astype(np.float64) * ((hi - lo) / full)
            out.append(np.ascontiguousarray(np.moveaxis(v, 1, 0)))
            a += m
        return out

    def lsb(self, layer: int) -> float:
        """One ADC code of ``layer`` in model units."""
        lo, hi = self.adc_ranges[layer]
        return (hi - lo) / ((1 << self.adc_bits) - 1)


def compile_trains(net: Network, info: ChipInfo, scale: float | None = None, dac: str = "mse",
                   substeps: int = DEFAULT_SUBSTEPS, probe_period: int = 1,
                   readout_range: float | None = None) -> TrainsProgram:
    """Design-rule check and configuration of a qif-trains network (module docstring).
    ``readout_range``: the ADC range +-r (model units) of a non-spiking readout (default
    ``info.v_peak_max``, 8; the model's readout membrane is unbounded, and a clipped
    decision costs more than a coarser code)."""
    lsb = float(f"{info.tdc_lsb_us:.7g}")
    max_code = (1 << (info.dac_bits - 1)) - 1
    for i, layer in enumerate(net.layers):
        if layer.neuron.model != "qif-trains":
            raise DesignRuleError(
                "neuron-model", i, "qif-trains",
                f"layer uses the {layer.neuron.model!r} model; the chip's spike-train mode runs discrete-time "
                f"QIF neurons (train one with --model qif-trains)")
    if len(net.layers) > info.max_layers:
        raise DesignRuleError("layer-count", None, info.max_layers, f"network has {len(net.layers)} layers")
    n_in = net.encoding.n_features
    if n_in > info.max_inputs:
        raise DesignRuleError("input-count", 0, info.max_inputs, f"network has {n_in} inputs")
    total = sum(layer.n_out for layer in net.layers)
    if total > info.max_neurons:
        raise DesignRuleError("neuron-count", None, info.max_neurons, f"network has {total} neurons")
    dt = float(net.layers[0].neuron.dt)
    n_steps = int(round(net.t_max / dt))
    if not 1 <= n_steps <= info.train_max_steps:
        raise DesignRuleError("step-count", None, info.train_max_steps, f"trial of {n_steps} steps")
    if not 1 <= int(substeps) <= info.train_max_substeps:
        raise DesignRuleError("substeps", None, f"1..{info.train_max_substeps}", f"{substeps} substeps per step")
    if not 1 <= int(probe_period) <= min(info.max_probe_period, n_steps):
        raise DesignRuleError("probe-period", None, f"1..{min(info.max_probe_period, n_steps)} steps",
                              f"probe period {probe_period}")
    for i, layer in enumerate(net.layers):
        rows = layer.weight.shape[0] + (layer.n_out if layer.recurrent is not None else 0)
        if rows > info.max_fanin:
            raise DesignRuleError("fan-in", i, info.max_fanin,
                                  f"{rows} synapse rows ({layer.n_in} sources"
                                  f"{f' + {layer.n_out} recurrent' if layer.recurrent is not None else ''})")
        if layer.bias_times:
            raise DesignRuleError("bias-count", i, 0, "a spike-train layer takes no bias spikes")

    # ---- time mapping
    taus = [float(layer.neuron.tau_mem) for layer in net.layers]
    if scale is None:
        step_ticks = max(1, math.ceil(info.tau_min_us * dt / (min(taus) * lsb) - 1e-9))
        scale = step_ticks * lsb / dt
    else:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise DesignRuleError("time-scale", None, "> 0", f"scale {scale!r} chip us per {net.time_unit}")
        ticks = dt * scale / lsb
        step_ticks = int(round(ticks))
        if step_ticks < 1 or abs(ticks - step_ticks) > 1e-6 * max(1.0, ticks):
            raise DesignRuleError("dt-grid", None, f"multiples of the {lsb:g} us step clock",
                                  f"dt = {dt:g} {net.time_unit} maps to {dt * scale:.6g} us at {scale:.6g} us/{net.time_unit}")
    if step_ticks > info.train_max_step_ticks:
        raise DesignRuleError("dt-grid", None, f"{info.train_max_step_ticks} ticks of {lsb:g} us",
                              f"dt = {dt:g} {net.time_unit} is {step_ticks} ticks")
    dt_us = step_ticks * lsb

    layers, eff_layers, ranges, gains, sigmas = [], [], [], [], []
    for i, layer in enumerate(net.layers):
        tau_us = taus[i] * scale
        if not info.tau_min_us * (1 - 1e-6) <= tau_us <= info.tau_max_us * (1 + 1e-6):
            raise DesignRuleError("tau-range", i, f"{info.tau_min_us:g}..{info.tau_max_us:g} us",
                                  f"tau_mem = {taus[i]:g} {net.time_unit} maps to {tau_us:.4g} us")
        if dt_us / substeps > tau_us / 4:
            raise DesignRuleError("substeps", i, f"substep <= tau / 4",
                                  f"{substeps} substeps of {dt_us / substeps:g} us, tau {tau_us:g} us")
        cd = float(layer.neuron.current_decay)
        if cd <= 0:
            syn_tau, g = math.inf, 1.0
        elif cd >= 1:
            raise DesignRuleError("syn-tau-range", i, f">= {info.syn_tau_min_us:g} us",
                                  "current_decay = 1 (no synaptic memory) has no continuous-time synapse")
        else:
            syn_tau = -dt_us / math.log1p(-cd)
            g = -math.log1p(-cd) / cd
            if not info.syn_tau_min_us <= syn_tau <= info.syn_tau_max_us:
                raise DesignRuleError("syn-tau-range", i, f"{info.syn_tau_min_us:g}..{info.syn_tau_max_us:g} us",
                                      f"current_decay = {cd:g} is a synaptic tau of {syn_tau:.4g} us")
        spiking = bool(_neuron(layer, "spiking", True))
        i0 = float(_neuron(layer, "i0", 0.0))
        v_peak = float(_neuron(layer, "v_peak", None) or layer.neuron.threshold)
        v_reset = float(_neuron(layer, "v_reset", 0.0))
        refr = int(_neuron(layer, "refractory", 0))
        if spiking:
            if not info.train_i0_min <= i0 <= info.train_i0_max:
                raise DesignRuleError("i0-range", i, f"{info.train_i0_min:g}..{info.train_i0_max:g}", f"i0 = {i0:g}")
            if not 0 < v_peak <= info.v_peak_max:
                raise DesignRuleError("v-peak-range", i, f"(0, {info.v_peak_max:g}]", f"v_peak = {v_peak:g}")
            if not -1 <= v_reset < v_peak:
                raise DesignRuleError("v-reset-range", i, "[-1, v_peak)", f"v_reset = {v_reset:g}")
            if refr > info.max_refractory:
                raise DesignRuleError("refractory-range", i, info.max_refractory, f"refractory = {refr} steps")
            v_init = _rest_point(i0)
        fs_top = info.w_fs_min * 2.0 ** (info.n_ranges - 1)
        sigma = 1.0  # model membrane units per chip volt: 1 but for a readout (below)
        if not spiking:
            # the linear readout: V is linear in its input, so the chip may run it scaled by
            # 1/sigma (weights / sigma, V / sigma) and the host reads sigma x the ADC's value; sigma
            # is the smallest power of two that brings its weights into the DAC's range (the
            # model's readout weights are 1/k larger than a hidden layer's)
            wmax = max(float(np.abs(layer.weight).max(initial=0.0)),
                       float(np.abs(layer.recurrent).max(initial=0.0)) if layer.recurrent is not None else 0.0) * g
            while wmax / sigma > fs_top * (1 + 1e-9) and sigma < 2.0**20:
                sigma *= 2.0
            # v_peak sets only its ADC range [-v_peak, v_peak] (chip units)
            v_peak = float(info.v_peak_max if readout_range is None else readout_range) / sigma
            if not 0 < v_peak <= info.v_peak_max:
                raise DesignRuleError("v-peak-range", i, f"(0, {info.v_peak_max * sigma:g}]",
                                      f"readout ADC range +-{v_peak * sigma:g} (x{sigma:g} on this readout)")
            i0, v_reset, refr, v_init = 0.0, -1.0, 0, 0.0

        def quantise(w, what):
            wc = w * g / sigma
            wmax = float(np.abs(wc).max(initial=0.0))
            if wmax > fs_top * (1 + 1e-9):
                raise DesignRuleError("weight-range", i, f"|w| <= {fs_top / g:.4g} ({fs_top:g} on chip)",
                                      f"largest |{what}| is {wmax * sigma / g:.4g}")
            k = choose_range(wc, info, dac)
            fs = info.w_fs_min * 2.0 ** k
            codes = np.clip(np.round(wc / fs * max_code), -max_code, max_code).astype(np.int8)
            return codes, k, codes.astype(np.float64) / max_code * fs * sigma / g

        codes, k, w_eff = quantise(layer.weight, "w")
        rec_codes, rec_k, rec_eff = None, 0, None
        if layer.recurrent is not None:
            rec_codes, rec_k, rec_eff = quantise(layer.recurrent, "recurrent w")
        layers.append(TrainLayerConfig(
            codes=codes, w_range=k, tau_us=_f32(tau_us), syn_tau_us=_f32(syn_tau), i0=_f32(i0), v_peak=_f32(v_peak),
            v_reset=_f32(v_reset), v_init=_f32(v_init), refractory=refr, spiking=spiking, rec_codes=rec_codes,
            rec_range=rec_k))
        vp = float(_f32(v_peak))
        ranges.append((-1.0, vp) if spiking else (-vp * sigma, vp * sigma))
        sigmas.append(sigma)
        gains.append(g)
        eff_layers.append(dataclasses.replace(layer, weight=w_eff, recurrent=rec_eff))
    config = TrainsConfig(n_inputs=n_in, n_steps=n_steps, step_ticks=step_ticks, substeps=int(substeps),
                          probe_period=int(probe_period), layers=tuple(layers))
    effective = dataclasses.replace(net, layers=tuple(eff_layers))
    return TrainsProgram(config=config, scale=scale, lsb_us=lsb, sizes=tuple(l.n_out for l in net.layers), dt=dt,
                         effective=effective, adc_bits=int(info.adc_bits), adc_ranges=tuple(ranges),
                         charge_gain=tuple(gains), readout_scale=tuple(sigmas))
