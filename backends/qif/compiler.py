"""Compile a QIF `Network` into the chip's configuration.

Three things happen, all on the host, before a byte goes to the device:

1. **Time mapping.** The chip runs in microseconds of its own, with a
   membrane time constant set by a bias DAC (``tau_min..tau_max``) and spike
   times read by a TDC (``lsb`` per tick, 16-bit counter). One scale factor
   ``scale`` (chip us per network time unit) maps every time of the network;
   by default the largest that keeps every tau within range and the trial
   within the counter, i.e. the finest TDC resolution the chip allows.
2. **DAC quantisation.** Each layer picks one of the chip's weight ranges
   and every weight becomes a signed code of ``dac_bits`` bits. Policy
   ``dac="mse"`` (default) picks the range with the smallest summed squared
   error, clipping included: a layer whose largest |w| sits just above a
   power of two keeps the finer range and clips a few weights, instead of
   halving the resolution of all of them. ``dac="cover"`` picks the smallest
   range whose full scale covers the largest |w| (nothing clips). Bias spike
   times and the trial length snap to ticks.
3. **Design-rule checks**, each raising `DesignRuleError(rule, layer, limit,
   detail)`: neuron model, layer count, input count, fan-in, bias lines,
   neuron count, weight range, tau range, I0 range, trial length.

The result, `QifProgram`, also carries ``effective``: the network the chip
would run if it were ideal (quantised weights, ticks-aligned times). The
zero-mismatch emulator must reproduce the QIF model on *that* network to
within the TDC resolution.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from hwloop.firmware_models.wire.messages import MAX_TICK, NO_SPIKE, ChipConfig, ChipInfo, LayerConfig
from hwloop.errors import DesignRuleError
from hwloop.network import Network

DEFAULT_I0 = 1.25
DEFAULT_V0 = 0.5


def _f32(x: float) -> float:
    return float(np.float32(x))


@dataclass(frozen=True)
class QifProgram:
    config: ChipConfig
    scale: float  # chip microseconds per network time unit
    lsb_us: float
    sizes: tuple[int, ...]  # neurons per layer
    effective: Network
    #: per-neuron DC current injected in every run (a calibration's offsets), None = none
    dc: np.ndarray | None = None
    #: what a calibration could not compensate (hwloop.calibration), None = uncalibrated
    calibration_report: dict | None = None

    @property
    def tick(self) -> float:
        """One TDC tick in network time units."""
        return self.lsb_us / self.scale

    @property
    def trial_ticks(self) -> int:
        return self.config.trial_ticks

    def input_ticks(self, t: np.ndarray) -> np.ndarray:
        """Input spike times (network units) -> chip input ticks; inf or past the trial -> no spike."""
        t = np.asarray(t, dtype=np.float64)
        ticks = np.round(np.where(np.isfinite(t), t, 0.0) / self.tick)
        ok = np.isfinite(t) & (ticks < self.trial_ticks)
        return np.where(ok, ticks, NO_SPIKE).astype(np.uint16)

    def quantized_inputs(self, t: np.ndarray) -> np.ndarray:
        """The input times the chip actually applies, in network units (inf = none)."""
        ticks = self.input_ticks(t)
        return np.where(ticks == NO_SPIKE, np.inf, ticks * self.tick)

    def decode(self, ticks: np.ndarray) -> list[np.ndarray]:
        """(batch, all neurons) TDC ticks -> one array per layer in network units (bin centres)."""
        t = np.where(ticks == NO_SPIKE, np.inf, (ticks.astype(np.float64) + 0.5) * self.tick)
        out, a = [], 0
        for n in self.sizes:
            out.append(t[:, a : a + n])
            a += n
        return out


DAC_POLICIES = ("mse", "cover")


def choose_range(w: np.ndarray, info: ChipInfo, policy: str = "mse") -> int:
    """Weight range index k (full scale ``w_fs_min * 2**k``) for one layer."""
    max_code = (1 << (info.dac_bits - 1)) - 1
    wmax = float(np.abs(w).max()) if w.size else 0.0
    cover = 0
    while cover < info.n_ranges - 1 and info.w_fs_min * 2.0**cover < wmax:
        cover += 1
    if policy == "cover":
        return cover
    if policy != "mse":
        raise ValueError(f"unknown DAC policy {policy!r}; choose one of {', '.join(DAC_POLICIES)}")
    best, best_err = cover, math.inf
    for k in range(cover + 1):  # a range above `cover` only loses resolution
        fs = info.w_fs_min * 2.0**k
        q = np.clip(np.round(w / fs * max_code), -max_code, max_code) / max_code * fs
        err = float(np.sum((q - w) ** 2))
        if err < best_err * (1 - 1e-12):
            best, best_err = k, err
    return best


def compile_network(net: Network, info: ChipInfo, scale: float | None = None, dac: str = "mse") -> QifProgram:
    lsb = float(f"{info.tdc_lsb_us:.7g}")  # undo the float32 of the wire
    max_code = (1 << (info.dac_bits - 1)) - 1
    n_layers = len(net.layers)
    # the neuron model first: a network of another model fails every later rule for no useful reason
    for i, layer in enumerate(net.layers):
        if layer.neuron.model != "qif":
            raise DesignRuleError(
                "neuron-model", i, "qif",
                f"layer uses the {layer.neuron.model!r} model, but the chip's neurons are quadratic "
                f"integrate-and-fire; train a QIF network for it (hwloop train --model qif ...) or start from "
                f"the shipped one (hwloop/pretrained/yinyang-qif.hwnet)")
    if n_layers > info.max_layers:
        raise DesignRuleError("layer-count", None, info.max_layers, f"network has {n_layers} layers")
    if net.encoding.n_features > info.max_inputs:
        raise DesignRuleError("input-count", 0, info.max_inputs, f"network has {net.encoding.n_features} inputs")
    total = sum(layer.n_out for layer in net.layers)
    if total > info.max_neurons:
        raise DesignRuleError("neuron-count", None, info.max_neurons, f"network has {total} neurons")
    for i, layer in enumerate(net.layers):
        rows = layer.weight.shape[0]
        if rows > info.max_fanin:
            raise DesignRuleError("fan-in", i, info.max_fanin, f"{rows} synapse rows ({layer.n_in} sources + {len(layer.bias_times)} bias)")
        if len(layer.bias_times) > info.max_bias:
            raise DesignRuleError("bias-count", i, info.max_bias, f"{len(layer.bias_times)} bias spikes")
        i0 = float(layer.neuron.options.get("i0", DEFAULT_I0))
        if not info.i0_min <= i0 <= info.i0_max:
            raise DesignRuleError("i0-range", i, f"{info.i0_min:g}..{info.i0_max:g}", f"I0 = {i0:g}")

    # ---- time mapping
    taus = [float(layer.neuron.tau_mem) for layer in net.layers]
    t_counter = (MAX_TICK - 1) * lsb  # longest trial the TDC can time
    if scale is None:
        scale = min(info.tau_max_us / max(taus), t_counter / net.t_max)
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise DesignRuleError("time-scale", None, "> 0", f"scale {scale!r} chip us per {net.time_unit}")
    for i, tau in enumerate(taus):
        tau_us = tau * scale
        if not info.tau_min_us * (1 - 1e-6) <= tau_us <= info.tau_max_us * (1 + 1e-6):
            raise DesignRuleError(
                "tau-range", i, f"{info.tau_min_us:g}..{info.tau_max_us:g} us",
                f"tau = {tau:g} {net.time_unit} maps to {tau_us:.4g} us at {scale:.4g} us/{net.time_unit}",
            )
    trial_ticks = int(round(net.t_max * scale / lsb))
    if not 1 <= trial_ticks <= MAX_TICK - 1:
        raise DesignRuleError("trial-length", None, f"{MAX_TICK - 1} ticks of {lsb:g} us",
                              f"t_max = {net.t_max:g} {net.time_unit} is {trial_ticks} ticks")
    tick = lsb / scale

    # ---- quantisation
    layers, eff_layers = [], []
    for i, layer in enumerate(net.layers):
        wmax = float(np.abs(layer.weight).max())
        fs_top = info.w_fs_min * 2.0 ** (info.n_ranges - 1)
        if wmax > fs_top * (1 + 1e-9):
            raise DesignRuleError("weight-range", i, f"|w| <= {fs_top:g}", f"largest |w| is {wmax:.4g}")
        k = choose_range(layer.weight, info, dac)
        fs = info.w_fs_min * 2.0**k
        codes = np.clip(np.round(layer.weight / fs * max_code), -max_code, max_code).astype(np.int8)
        bias_ticks = tuple(int(round(t / tick)) for t in layer.bias_times)
        if any(b > MAX_TICK for b in bias_ticks):
            raise DesignRuleError("bias-time", i, f"{MAX_TICK} ticks", f"bias times {layer.bias_times}")
        opts = dict(layer.neuron.options)
        i0 = _f32(opts.get("i0", DEFAULT_I0))
        v0 = _f32(opts.get("v0", DEFAULT_V0))
        tau_us = _f32(layer.neuron.tau_mem * scale)
        layers.append(LayerConfig(codes=codes, w_range=k, tau_us=tau_us, i0=i0, v0=v0, bias_ticks=bias_ticks))
        opts.update(i0=i0, v0=v0)
        eff_layers.append(dataclasses.replace(
            layer,
            weight=codes.astype(np.float64) / max_code * fs,
            bias_times=tuple(b * tick for b in bias_ticks),
            neuron=dataclasses.replace(layer.neuron, tau_mem=tau_us / scale, tau_syn=tau_us / scale, options=opts),
        ))
    config = ChipConfig(n_inputs=net.encoding.n_features, trial_ticks=trial_ticks, layers=tuple(layers))
    effective = dataclasses.replace(net, layers=tuple(eff_layers), t_max=trial_ticks * tick)
    return QifProgram(config=config, scale=scale, lsb_us=lsb, sizes=tuple(l.n_out for l in net.layers), effective=effective)
