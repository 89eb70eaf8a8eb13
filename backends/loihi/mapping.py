"""Compile a LIF first-spike-time `Network` for a Loihi core.

The float network (model units) becomes integer registers on a time grid of
``steps`` steps per trial, ``dt = t_max / steps``. The mapping, per layer
(derivation in docs/loihi.md):

* decays: ``du + 1 = round(4096 (1 - exp(-dt/tau_syn)))``,
  ``dv = round(4096 (1 - exp(-dt/tau_mem)))`` (Lava adds 1 to ``du``);
* scale: the membrane ``v`` holds ``c V`` with ``c = 64 vth / threshold``;
  an input spike of weight ``w`` adds ``64 W 2^e = c w g`` to ``u``, where
  ``g = tau_s (b - a) / (tau_m - tau_s)`` (``a``, ``b`` the per-step decay
  factors of I and V) makes the discrete response equal the continuous PSP
  at every grid point;
* weights: 8-bit mixed-sign mantissa ``W`` (even, -256..254) and one
  exponent ``e`` per layer. The threshold ``vth`` (a free 17-bit integer)
  is chosen with ``e`` so that the largest weight sits at the top of the
  mantissa (|W| = 252..254): the quantisation step is then 1/127 of the
  largest weight at every ``dt``, where a power-of-two exponent alone
  would leave up to half the mantissa unused. ``vth`` starts near 2^13,
  is raised before a negative ``e`` is used (that floors every synaptic
  sum), and is lowered (with ``e``) until ``u`` can never wrap (each
  source fires once, so the worst case is the sum of a neuron's positive,
  or negative, weights);
* time: input and bias spikes at ``round(t/dt)``; a spike at local step
  ``k`` is reported at ``(k + 1/2) dt`` (the grid puts the crossing in
  ``(k dt, (k+1) dt]``); one spike per neuron via the ``TTFSLif`` process.

Anything the core cannot represent raises `DesignRuleError(rule, layer,
limit, detail)`. Every layer's quantisation error is kept in the compiled
configuration (`LoihiCompiled.report`, printable with `format_report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwloop.firmware_models.loihi import CoreConfig, CoreLayer
from hwloop.firmware_models.loihi import core as fw
from hwloop.errors import DesignRuleError, TargetError
from hwloop.network import Network

from .lava_runner import LavaLayer

DEFAULT_STEPS = 100
MAX_STEPS = 1 << 16
#: one layer maps to one core; conservative Loihi 2 per-core limits we enforce
MAX_NEURONS_PER_LAYER = 8192
MAX_FAN_IN = 8192
#: a decay constant below this many 1/4096ths is too coarse (>12% rounding)
MIN_DECAY_UNITS = 4
VTH_PREFERRED = 1 << 13  # v spans +-16 thresholds before it saturates
VTH_MIN = 16  # below this the threshold itself is too coarse


@dataclass
class LoihiCompiled:
    """A network on the Loihi grid: integer core config, float twin, time map."""

    core: CoreConfig
    float_layers: list[LavaLayer]
    dt: float
    steps: int
    time_unit: str
    report: list[dict] = field(default_factory=list)
    #: the float weights the integer registers stand for (bias rows included)
    effective_weights: list[np.ndarray] = field(default_factory=list)

    def to_steps(self, t: np.ndarray) -> np.ndarray:
        """Model-unit spike times -> local steps; ``steps`` means no spike."""
        t = np.asarray(t, dtype=np.float64)
        if (t < 0).any():
            raise TargetError(f"input spike times must be >= 0, got min {t.min():g}")
        with np.errstate(invalid="ignore", over="ignore"):
            k = np.where(np.isfinite(t), np.floor(t / self.dt + 0.5), self.steps)
        return np.minimum(k, self.steps).astype(np.int64)

    def to_times(self, k: np.ndarray) -> np.ndarray:
        """Local spike steps (-1 silent) -> model-unit times (inf silent)."""
        k = np.asarray(k)
        if k.ndim and k.size and k.dtype.kind in "iu" and k.min() >= -1 and k.max() < self.steps:
            # the same values looked up (a tenth of the time of np.where on a batch):
            # entry i is (i + 0.5) * dt, the last one (index -1) inf
            return np.append((np.arange(self.steps) + 0.5) * self.dt, np.inf)[k]
        return np.where(k >= 0, (k + 0.5) * self.dt, np.inf)

    def format_report(self) -> str:
        lines = [f"Loihi mapping: {self.steps} steps of dt = {self.dt:.6g} {self.time_unit}"]
        for r in self.report:
            lines.append(
                f"  layer {r['layer']}: {r['n_src']}+{r['n_bias']}->{r['n_out']}  weight_exp={r['weight_exp']:+d} "
                f"vth={r['vth']} du={r['du']} dv={r['dv']}  weight error rms={r['weight_err_rms']:.3g} "
                f"max={r['weight_err_max']:.3g} (of max |w|={r['w_max']:.3g}), "
                f"tau_syn err={100 * r['tau_syn_rel_err']:.2f}%, tau_mem err={100 * r['tau_mem_rel_err']:.2f}%"
            )
        return "\n".join(lines)


def _decay_units(dt: float, tau: float) -> float:
    return 4096.0 * (1.0 - math.exp(-dt / tau))


def _psp_gain(dt: float, tau_s: float, tau_m: float) -> float:
    """Input gain g making v_k = c V((k+1) dt) for a jump at step 0."""
    a, b = math.exp(-dt / tau_s), math.exp(-dt / tau_m)
    if abs(tau_m - tau_s) <= 1e-9 * max(tau_m, tau_s):
        return dt / tau_m * b
    return tau_s * (b - a) / (tau_m - tau_s)


def _quantise(w_units: np.ndarray, e: int) -> np.ndarray:
    """Ideal integer-unit weights -> stored mixed-sign mantissas (even, -256..254)."""
    m = 2.0 * np.round(w_units / (2.0 ** e) / 2.0)
    return np.clip(m, -256, 254).astype(np.int32)


def compile_network(net: Network, steps: int = DEFAULT_STEPS) -> LoihiCompiled:
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise DesignRuleError("trial-steps", None, f"1..{MAX_STEPS}", f"steps={steps!r}")
    dt = net.t_max / steps
    layers, floats, report, effective = [], [], [], []
    for li, layer in enumerate(net.layers):
        p = layer.neuron
        if p.model != "lif":
            raise DesignRuleError("neuron-model", li, "lif", f"Loihi runs LIF neurons, layer has {p.model!r}")
        if layer.n_out > MAX_NEURONS_PER_LAYER:
            raise DesignRuleError("neurons-per-core", li, MAX_NEURONS_PER_LAYER, f"layer has {layer.n_out} neurons")
        fan_in = layer.weight.shape[0]
        if fan_in > MAX_FAN_IN:
            raise DesignRuleError("fan-in", li, MAX_FAN_IN, f"layer has {fan_in} sources (incl. bias)")
        if not p.threshold > 0:
            raise DesignRuleError("threshold-sign", li, "> 0", f"threshold {p.threshold:g}")
        for name, tau in (("tau_syn", p.tau_syn), ("tau_mem", p.tau_mem)):
            units = _decay_units(dt, tau)
            if units < MIN_DECAY_UNITS:
                raise DesignRuleError(
                    "decay-resolution", li, f"{name} <= {dt * 4096 / MIN_DECAY_UNITS:.4g} {net.time_unit}",
                    f"{name}={tau:g} {net.time_unit} is {tau / dt:.0f} steps of dt={dt:.4g}; "
                    f"its 12-bit decay would be {units:.2f}/4096 (use fewer steps)")
            if tau < dt:
                raise DesignRuleError(
                    "time-step", li, f"{name} >= dt = {dt:.4g} {net.time_unit}",
                    f"{name}={tau:g} is shorter than one step (use more steps)")
        du = int(round(_decay_units(dt, p.tau_syn))) - 1
        dv = int(round(_decay_units(dt, p.tau_mem)))
        du, dv = min(max(du, 0), fw.DU_MAX), min(max(dv, 0), fw.DV_MAX)
        g = _psp_gain(dt, p.tau_syn, p.tau_mem)
        w = np.asarray(layer.weight, dtype=np.float64)
        per_unit = w * g / p.threshold  # weight in units of vth (times 2^e W / vth)
        w_max = float(np.abs(w).max())
        pos = np.clip(per_unit, 0, None).sum(axis=0).max()
        neg = np.clip(-per_unit, 0, None).sum(axis=0).max()
        worst = float(max(pos, neg))  # worst |sum of jumps| into u, per unit vth

        pu_max = float(np.abs(per_unit).max())

        def exponent_for(vth: int) -> int:
            biggest = vth * pu_max
            return 0 if biggest == 0 else int(math.ceil(math.log2(biggest / 254.0)))

        def filling(e: int) -> int:
            """The threshold that puts the largest weight at the top of the mantissa."""
            return VTH_PREFERRED if pu_max == 0 else int(min(fw.VTH_MAX, math.floor(254.0 * 2.0 ** e / pu_max)))

        def wraps(vth: int, e: int) -> bool:
            return 64 * (vth * worst + slack * 2.0 ** e) >= fw.UV_MAX

        # u may not wrap: 64 * 2^e * (worst sum in mantissa units + flooring slack) < 2^23
        slack = fan_in
        # a negative exponent floors every synaptic sum, so small weights get a
        # larger threshold at exponent 0 first, and only below that a negative one
        e = max(exponent_for(VTH_PREFERRED), 0)
        if pu_max > 0 and 254.0 * 2.0 ** e / pu_max > fw.VTH_MAX:
            e = max(int(math.floor(math.log2(fw.VTH_MAX * pu_max / 254.0))), fw.WEIGHT_EXP_RANGE[0])
        vth = filling(e)
        while vth > VTH_MIN and (e > fw.WEIGHT_EXP_RANGE[1] or wraps(vth, e)):
            e -= 1
            vth = filling(e)
        if vth < VTH_MIN or not fw.WEIGHT_EXP_RANGE[0] <= e <= fw.WEIGHT_EXP_RANGE[1] or wraps(vth, e):
            raise DesignRuleError(
                "current-range", li, "sum of a neuron's same-sign input jumps < 2^23 at vth >= 16",
                f"weights up to {w_max:.3g} against threshold {p.threshold:g} need more than the 24-bit current")
        if pu_max > 0 and vth * pu_max / 2.0 ** e < 127:
            raise DesignRuleError(
                "weight-exponent", li, f"{fw.WEIGHT_EXP_RANGE[0]}..{fw.WEIGHT_EXP_RANGE[1]}",
                f"largest weight {w_max:.3g} is too small against threshold {p.threshold:g}: it fills less than "
                f"half of the 8-bit mantissa at the largest threshold and the finest exponent")
        W = _quantise(vth * per_unit, e)
        w_eff = W.astype(np.float64) * 2.0 ** e / vth * p.threshold / g
        err = w_eff - w
        effective.append(w_eff)
        n_in = layer.n_in
        bias_steps = np.array([min(int(math.floor(t / dt + 0.5)), steps) for t in layer.bias_times], np.int64)
        layers.append(CoreLayer(weight=W[:n_in], weight_exp=e, du=du, dv=dv, vth=vth,
                                bias_weight=W[n_in:], bias_steps=bias_steps))
        floats.append(LavaLayer(weight=w[:n_in] * g, bias_weight=w[n_in:] * g, bias_steps=bias_steps,
                                weight_exp=0, du=1 - math.exp(-dt / p.tau_syn), dv=1 - math.exp(-dt / p.tau_mem),
                                vth=float(p.threshold), bias_mant=np.zeros(layer.n_out),
                                bias_exp=np.zeros(layer.n_out)))
        tau_s_q = -dt / math.log((4095 - du) / 4096) if du < 4095 else 0.0
        tau_m_q = -dt / math.log((4096 - dv) / 4096) if dv > 0 else math.inf
        report.append({
            "layer": li, "n_src": n_in, "n_bias": len(layer.bias_times), "n_out": layer.n_out,
            "weight_exp": e, "vth": vth, "du": du, "dv": dv, "w_max": w_max,
            "weight_err_rms": float(np.sqrt(np.mean(err ** 2))), "weight_err_max": float(np.abs(err).max()),
            "tau_syn_rel_err": abs(tau_s_q - p.tau_syn) / p.tau_syn,
            "tau_mem_rel_err": abs(tau_m_q - p.tau_mem) / p.tau_mem,
        })
    return LoihiCompiled(core=CoreConfig(tuple(layers), steps), float_layers=floats, dt=dt, steps=steps,
                         time_unit=net.time_unit, report=report, effective_weights=effective)


def core_as_lava_layers(core: CoreConfig) -> list[LavaLayer]:
    """The integer config in the runner's plain form (fixed-point Lava)."""
    return [LavaLayer(weight=l.weight, bias_weight=l.bias_weight, bias_steps=l.bias_steps, weight_exp=l.weight_exp,
                      du=l.du, dv=l.dv, vth=l.vth, bias_mant=l.bias_mant, bias_exp=l.bias_exp)
            for l in core.layers]
