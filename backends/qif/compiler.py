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
    #: chip input line -> network input feature (`compile_calibrated` spreads each feature over
    #: several lines); None = line i carries feature i
    input_map: np.ndarray | None = None
    #: chip neuron -> network neuron (all layers, in order; `compile_calibrated` runs a neuron on
    #: several chip neurons, read back as the mean of their spike times); None = one each
    neuron_map: np.ndarray | None = None

    @property
    def chip_neurons(self) -> int:
        """Neurons the configuration occupies on the die."""
        return sum(self.sizes) if self.neuron_map is None else int(self.neuron_map.size)

    def per_chip_neuron(self, x: np.ndarray | None) -> np.ndarray | None:
        """A per-network-neuron array (last axis) -> the same value on each of its chip neurons."""
        if x is None or self.neuron_map is None:
            return x
        return np.asarray(x, dtype=np.float64)[..., self.neuron_map]

    @property
    def tick(self) -> float:
        """One TDC tick in network time units."""
        return self.lsb_us / self.scale

    @property
    def trial_ticks(self) -> int:
        return self.config.trial_ticks

    def _feature_ticks(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        ticks = np.round(np.where(np.isfinite(t), t, 0.0) / self.tick)
        ok = np.isfinite(t) & (ticks < self.trial_ticks)
        return np.where(ok, ticks, NO_SPIKE).astype(np.uint16)

    def input_ticks(self, t: np.ndarray) -> np.ndarray:
        """Input spike times (network units, one column per feature) -> the ticks of every chip
        input line; inf or past the trial -> no spike."""
        ticks = self._feature_ticks(t)
        return ticks if self.input_map is None else ticks[:, self.input_map]

    def quantized_inputs(self, t: np.ndarray) -> np.ndarray:
        """The input times the chip actually applies, per feature, in network units (inf = none)."""
        ticks = self._feature_ticks(t)
        return np.where(ticks == NO_SPIKE, np.inf, ticks * self.tick)

    def decode(self, ticks: np.ndarray) -> list[np.ndarray]:
        """(batch, all neurons) TDC ticks -> one array per layer in network units (bin centres)."""
        t = np.where(ticks == NO_SPIKE, np.inf, (ticks.astype(np.float64) + 0.5) * self.tick)
        if self.neuron_map is not None:  # copies: the mean of those that spiked (silent if none did)
            ok = np.isfinite(t)
            m = np.zeros((self.neuron_map.size, sum(self.sizes)))
            m[np.arange(self.neuron_map.size), self.neuron_map] = 1.0
            cnt = ok @ m
            tot = np.where(ok, t, 0.0) @ m
            with np.errstate(invalid="ignore", divide="ignore"):
                t = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.inf)
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


#: most chip lines one network source row is spread over by `compile_calibrated` (input lines
#: for the first layer, bias lines for every layer)
SPLIT_MAX = 8


def _split_codes(target: np.ndarray, gains: np.ndarray, max_code: int) -> np.ndarray:
    """Integer codes (lines, n_out) of one source row spread over ``lines`` chip lines whose
    row gains are ``gains`` (lines,), such that ``sum_l codes[l] * gains[l]`` is as close to
    ``target`` (n_out,) as the codes allow: each line takes its share of what is left, rounded,
    the last rounds the rest (error feedback), so the sum is accurate to one code of one line
    whatever the number of lines, i.e. a line count times finer than a single row."""
    k = gains.size
    codes = np.zeros((k, target.size), dtype=np.int64)
    left = np.asarray(target, dtype=np.float64).copy()
    for i in range(k):
        q = np.clip(np.round(left / (gains[i] * (k - i))), -max_code, max_code)
        codes[i] = q
        left -= q * gains[i]
    return codes


def _copies(net: Network, info: ChipInfo, cal, split_max: int) -> list[int]:
    """Chip neurons per network neuron, per layer: the first layer's neurons are doubled
    when the die, the second layer's fan-in and its measured row gains hold two lines per
    source (each of its rows then spreads over the two copies' lines, as the first layer's
    rows over input lines); every other layer runs one chip neuron per neuron."""
    L = len(net.layers)
    copies = [1] * L
    if L >= 2 and cal.row1 is not None and split_max >= 2:
        l1 = net.layers[1]
        rows = 2 * l1.n_in + len(l1.bias_times)
        n = sum(layer.n_out for layer in net.layers) + net.layers[0].n_out
        if rows <= min(info.max_fanin, cal.row1.size) and n <= min(cal.g.size, info.max_neurons):
            copies[0] = 2
    return copies


def compile_calibrated(net: Network, info: ChipInfo, cal, scale: float | None = None,
                       dac: str = "mse", split_max: int = SPLIT_MAX, copies: bool = True) -> QifProgram:
    """Compile ``net`` for the chip that calibration ``cal`` (`hwloop.calibration.Calibration`)
    describes. Per neuron, the tau gain and drive are compensated by a DC injection and
    every weight by its synaptic gains (the substitution of `hwloop.calibration.compensate`,
    per chip neuron); and

    * **finer weights**: every source row of the first layer is spread over up to
      ``split_max`` chip input lines (the same input spike on each, `QifProgram.input_map`)
      and every bias row of every layer over up to ``split_max`` bias lines, in a weight
      range that many times finer, the codes chosen per line with that line's measured
      row gain (`_split_codes`): the rounding of the 6-bit DAC, the largest loss of a
      deployed network (docs/calibration.md), shrinks by the line count;
    * **copies** (`QifProgram.neuron_map`): every neuron of the first layer runs on two
      chip neurons (each compensated for its own mismatch; the host reads the mean of
      their spike times), so that each source row of the second layer spreads over two
      lines as well, in a range twice as fine, where the die, the fan-in and the measured
      rows allow: the second layer's rounding halves (`_copies`; ``copies=False``: one
      chip neuron per neuron, as before, for comparisons);
    * **the initial voltage**: v0 is one setting per layer, but a bias spike at tick 0
      makes the u of every neuron jump at once by that neuron's own weight, so one more
      group of bias lines at tick 0 cancels each neuron's fitted initial-voltage offset
      u0, where the chip has bias lines to spare.

    Lines are only used where the calibration measured their row gains (the first two
    layers) and the chip's fan-in, input and bias counts allow. What is left
    uncompensated goes into ``calibration_report``. The time mapping is that of the
    plain compilation of ``net``, which also runs every design-rule check."""
    from hwloop.calibration import CAL_I0, CAL_V0, CalibrationError, compensate

    plain = compile_network(net, info, scale=scale, dac=dac)
    _, _, report = compensate(net, cal)  # the checks and notes; the offsets are computed per chip neuron here
    copies = _copies(net, info, cal, split_max) if copies else [1] * len(net.layers)
    n_chip = sum(c * layer.n_out for c, layer in zip(copies, net.layers))
    if n_chip > min(cal.g.size, info.max_neurons):
        raise CalibrationError(f"calibration covers {cal.g.size} neurons, the compiled network needs {n_chip}")
    max_code = (1 << (info.dac_bits - 1)) - 1
    n_feat = net.encoding.n_features
    layers, first, first_net, input_map, dc, neuron_map = [], 0, 0, None, [], []
    for li, layer in enumerate(net.layers):
        n_out, n_in, nb = layer.n_out, layer.n_in, len(layer.bias_times)
        c_out = copies[li]
        c_src = copies[li - 1] if li else 1  # lines a source neuron already drives (its copies)
        cols = np.repeat(np.arange(n_out), c_out)  # chip neuron of this layer -> network neuron
        m = n_out * c_out
        rows_net = layer.weight.shape[0]
        sl = slice(first, first + m)
        g, col, D, u0 = cal.g[sl], cal.col[sl], cal.D[sl], cal.u0[sl]
        opts = layer.neuron.options
        i0, v0 = float(opts.get("i0", DEFAULT_I0)), float(opts.get("v0", DEFAULT_V0))
        dc.append(g ** 2 * (i0 - 0.25) - (D + (i0 - CAL_I0)))
        neuron_map.append(first_net + cols)
        measured = cal.row0 if li == 0 else (cal.row1 if li == 1 else None)
        if measured is None or measured.size < n_in * c_src + nb:  # row gains unknown: no spreading
            k_in, k_b, k_u = c_src, 1 if nb else 0, 0
            row = np.ones(n_in * k_in + nb)
        else:
            limit = min(info.max_fanin, measured.size)
            k_in = max(1, min(split_max, info.max_inputs // n_feat)) if li == 0 else c_src
            k_b = max(1, min(split_max, info.max_bias // (nb + 1))) if nb else 0  # the bias lines shared
            k_u = max(0, min(split_max, info.max_bias - nb * k_b))  # between the network's rows and v0's
            while n_in * k_in + nb * k_b + k_u > limit:  # give up v0 lines first, then input, then bias lines
                if k_u > 0:
                    k_u -= 1
                elif k_in > 1 and li == 0:
                    k_in -= 1
                elif k_b > 1:
                    k_b -= 1
                else:
                    break
            row = measured[: n_in * k_in + nb * k_b + k_u]
        # what each source row must make u jump by (u = g u': a nominal jump w of u' is g w of u),
        # and for the tick-0 group the jump that takes u(0) to the nominal g (v0 - 1/2)
        targets = [layer.weight[i][cols] * g for i in range(rows_net)]
        counts = [k_in] * n_in + [k_b] * nb
        if k_u:
            targets.append(g * (v0 - 0.5) - (u0 + (v0 - CAL_V0)))
            counts.append(k_u)
        starts = np.cumsum([0] + counts)
        # the finest range that holds each line's share of its row
        share = np.concatenate([np.broadcast_to(t / k, (k, m)) / (row[a:a + k, None] * col[None, :])
                                for t, k, a in zip(targets, counts, starts)])
        w_range = choose_range(share, info, dac)
        L = info.w_fs_min * 2.0 ** w_range / max_code  # the jump of one code on a row and column of gain 1
        codes = np.concatenate([_split_codes(t / (L * col), row[a:a + k], max_code)
                                for t, k, a in zip(targets, counts, starts)])
        got = codes * L * row[:, None] * col[None, :]
        err = np.stack([got[a:a + k].sum(axis=0) - t for t, k, a in zip(targets, counts, starts)])
        pl = plain.config.layers[li]
        bias_ticks = tuple(b for b in pl.bias_ticks for _ in range(k_b)) + (0,) * k_u
        layers.append(LayerConfig(codes=codes.astype(np.int8), w_range=w_range, tau_us=pl.tau_us, i0=pl.i0,
                                  v0=pl.v0, bias_ticks=bias_ticks))
        if li == 0:
            input_map = np.repeat(np.arange(n_feat), k_in)
        lay = report["layers"][li]
        e = err[:rows_net] / g
        lay.update(chip_neurons_per_neuron=c_out, lines_per_input_row=k_in, lines_per_bias_row=k_b, v0_lines=k_u,
                   w_range=w_range, weight_rms_error=float(np.sqrt(np.mean(e ** 2))), dc_max=float(np.abs(dc[-1]).max()))
        if k_u:
            lay["uncompensated_v0_rms"] = float(np.sqrt(np.mean((err[rows_net] / g) ** 2)))
            lay["notes"].append("initial-voltage offset compensated by a tick-0 bias spike (fitted u0)")
        else:
            lay["uncompensated_v0_rms"] = float(np.sqrt(np.mean(((u0 + (v0 - CAL_V0)) / g - (v0 - 0.5)) ** 2)))
            lay["notes"].append("initial-voltage offset u0 not compensated (no bias line or row gain to spare)")
        if c_out > 1:
            lay["notes"].append(f"every neuron runs on {c_out} chip neurons (the next layer's rows spread over "
                                f"their lines; the host reads the mean of their spike times)")
        first += m
        first_net += n_out
    config = ChipConfig(n_inputs=int(input_map.size), trial_ticks=plain.trial_ticks, layers=tuple(layers))
    nmap = np.concatenate(neuron_map)
    return dataclasses.replace(plain, config=config, dc=np.concatenate(dc), calibration_report=report,
                               input_map=input_map,
                               neuron_map=None if nmap.size == first_net else nmap)
