"""Compile a spike-train (CUBA) `Network` into integer layers for Lava's
standard fixed-point LIF + Dense (`firmware_models.loihi.trains.TrainLayer`).

The float model (docs/models-cuba.md), per step and neuron::

    i' = (1 - du) i + x          v~ = (1 - dv) v + i'          spike if v~ > threshold, then v = 0

and Lava's fixed-point LIF (``PyLifModelBitAcc``)::

    u' = trunc(u (4096 - (DU + 1)) / 4096) + 64 a      v' = trunc(v (4096 - DV) / 4096) + u'      spike if v' > 64 VTH

agree when ``u = c i`` and ``v = c v~`` for one *scale* ``c`` per layer
(integer membrane units per model unit):

* decays: ``DU + 1 = round(4096 du)``, ``DV = round(4096 dv)`` (Lava adds 1
  to ``DU``, so a current decay below 1/8192 per step is refused, and a
  voltage decay of 1 becomes 4095/4096);
* spiking layer: ``c = 64 VTH / threshold``; a weight ``w`` becomes the
  stored mantissa ``W`` (even, -256..254) with ``64 W 2^e = c w``, i.e.
  ``W 2^e = VTH w / threshold``. ``VTH`` (17 bits) and the feed-forward
  exponent ``e`` are chosen as for first-spike-time networks (mapping.py):
  the largest weight of the layer fills the top of the mantissa, ``VTH``
  near 2^11 (`VTH_TRAINS`: range for membranes that integrate the whole trial), a negative exponent (which floors every synaptic sum) only
  when the weights are too small for a larger ``VTH``; the recurrent matrix
  gets its own exponent on the same ``VTH``;
* non-spiking readout (``spiking=False``): a LIF that cannot fire in its
  range (``VTH = 2^17 - 1``, so it would need ``v >= 2^23 - 63``), read
  through its membrane; ``c = 64 * 254 / max|w|`` (largest weight at the top
  of the mantissa, exponent 0), which leaves the membrane ``(2^23 - 1) / c``
  model units of range (reported as ``v_range``);
* what Lava's standard LIF cannot do is refused with `DesignRuleError`
  naming the rule, the layer and the limit: ``reset="subtract"``
  (rule ``reset-rule``), ``refractory > 0`` (``refractory``), other neuron
  models, and the register limits (``neurons-per-core``, ``fan-in``,
  ``current-decay``, ``decay-resolution``, ``current-range``,
  ``weight-exponent``).

Time: the network's own steps of ``dt``; layer ``l`` at local step ``k`` is the
software model's step ``k`` (Lava's one-step delay per Dense is undone by the
runner, see lava_trains.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwloop.errors import DesignRuleError
from hwloop.firmware_models.loihi import core as fw
from hwloop.firmware_models.loihi.trains import TrainLayer
from hwloop.network import Network

from .mapping import MAX_FAN_IN, MAX_NEURONS_PER_LAYER, MIN_DECAY_UNITS, VTH_MIN

W_TOP = 254  # the largest stored mixed-sign mantissa
#: a spiking layer's preferred threshold register. Smaller than a first-spike-time
#: layer's 2^13: a neuron of a spike-train network integrates for the whole trial,
#: inhibited membranes and currents run far below zero, and u and v hold only
#: +-2^23 = 64 vth * (2^17 / vth) thresholds; at vth ~ 2^11..2^12 that is 32..64
#: thresholds of range, while the state's resolution (1/(64 vth) of a threshold per
#: step of truncation) stays far below the weights' (1/127 of the largest)
VTH_TRAINS = 1 << 11
#: the readout's threshold: the largest, so that it fires only at the top of v's 24-bit range
READOUT_VTH = fw.VTH_MAX


@dataclass
class TrainsReport:
    """What the mapping did, per layer: registers, scale and quantisation errors.

    ``layers[l]`` holds ``layer, n_src, n_out, recurrent, spiking, du, dv,
    vth, weight_exp, rec_exp, scale`` (integer membrane units per model unit:
    ``v_int = scale * v``), ``v_range`` (model units the membrane spans before
    it saturates), ``w_max``, ``weight_err_rms``, ``weight_err_max``,
    ``rec_err_rms``, ``rec_err_max`` (model units, after quantisation),
    ``current_decay`` / ``voltage_decay`` (requested) and
    ``current_decay_q`` / ``voltage_decay_q`` (what the registers do)."""

    layers: list[dict]
    dt: float
    n_steps: int
    time_unit: str
    #: the float weights the integer registers stand for, per layer (feed-forward, recurrent or None)
    effective_weights: list[tuple[np.ndarray, np.ndarray | None]] = field(default_factory=list)

    @property
    def scales(self) -> list[float]:
        """Per layer: integer membrane (and current) units per model unit."""
        return [r["scale"] for r in self.layers]

    def format(self) -> str:
        lines = [f"Loihi spike-train mapping: {self.n_steps} steps of dt = {self.dt:.6g} {self.time_unit}"]
        for r in self.layers:
            rec = f" rec_exp={r['rec_exp']:+d} rec error rms={r['rec_err_rms']:.3g} max={r['rec_err_max']:.3g}" \
                if r["recurrent"] else ""
            kind = "spiking" if r["spiking"] else f"readout (range +-{r['v_range']:.4g})"
            lines.append(
                f"  layer {r['layer']}: {r['n_src']}->{r['n_out']} {kind}  du={r['du']} dv={r['dv']} vth={r['vth']} "
                f"weight_exp={r['weight_exp']:+d} scale={r['scale']:.6g}  weight error rms={r['weight_err_rms']:.3g} "
                f"max={r['weight_err_max']:.3g} (of max |w|={r['w_max']:.3g}){rec}  decays "
                f"{r['current_decay']:.5g}->{r['current_decay_q']:.5g}, {r['voltage_decay']:.5g}->"
                f"{r['voltage_decay_q']:.5g}")
        return "\n".join(lines)


def _quantise(w_units: np.ndarray, e: int, bits: int = 8) -> np.ndarray:
    """Ideal mantissa units ``W 2^e`` -> stored mixed-sign mantissas (even, -256..254);
    with ``bits`` < 8 (Lava's ``num_weight_bits``), multiples of 2^(9 - bits) in
    -256..256 - 2^(9 - bits), the values a Dense with that many weight bits keeps."""
    step = 2.0 ** (9 - bits)
    m = step * np.round(np.asarray(w_units, dtype=np.float64) / (2.0 ** e) / step)
    return np.clip(m, -256, 256 - step).astype(np.int32)


def _exponent_filling(per_unit_max: float, vth: float) -> int:
    """The smallest exponent at which ``vth * per_unit_max`` fits the mantissa."""
    biggest = vth * per_unit_max
    return 0 if biggest == 0 else int(math.ceil(math.log2(biggest / W_TOP)))


def _decays(li: int, p) -> tuple[int, int]:
    cd, vd = float(p.current_decay), float(p.voltage_decay)
    cu, vu = 4096.0 * cd, 4096.0 * vd
    if round(cu) < 1:
        raise DesignRuleError(
            "current-decay", li, ">= 1/4096 per step",
            f"current_decay={cd:g}: Lava's LIF always decays its current by (du + 1)/4096 >= 1/4096 per step")
    for name, units in (("current_decay", cu), ("voltage_decay", vu)):
        if 0 < units < MIN_DECAY_UNITS:
            raise DesignRuleError(
                "decay-resolution", li, f"0 or >= {MIN_DECAY_UNITS}/4096 per step",
                f"{name}={units / 4096:g} is {units:.2f}/4096: the 12-bit decay would be off by "
                f"{50 / units:.0f}% or more (use a longer dt)")
    du = min(int(round(cu)) - 1, fw.DU_MAX)
    dv = min(int(round(vu)), fw.DV_MAX)
    return du, dv


def _single_step_jump(W: np.ndarray, e: int, R: np.ndarray | None, e_rec: int) -> float:
    """The largest |a << 6| one step can add to a neuron's current (all its
    same-sign sources firing at once), in integer units."""
    def side(M, ex, sign):
        return np.clip(sign * M.astype(np.float64), 0, None).sum(axis=0) * 2.0 ** ex
    worst = 0.0
    for sign in (1, -1):
        tot = side(W, e, sign)
        if R is not None:
            tot = tot + side(R, e_rec, sign)
        worst = max(worst, float(tot.max(initial=0.0)))
    return 64.0 * worst


def _check_lava_lif(li: int, p) -> None:
    """What Lava's standard LIF cannot do in either precision."""
    if p.model != "cuba":
        raise DesignRuleError("neuron-model", li, "cuba", f"layer has {p.model!r}")
    if p.reset != "zero":
        raise DesignRuleError(
            "reset-rule", li, "zero",
            f"reset={p.reset!r}: Lava's standard fixed-point LIF resets v to 0 after a spike; train the "
            f"network with reset='zero' to run it on Loihi")
    if p.refractory:
        raise DesignRuleError(
            "refractory", li, 0,
            f"refractory={p.refractory} steps: Lava's standard fixed-point LIF has no refractory period; "
            f"train the network with refractory=0 to run it on Loihi")


def float_trains_layers(net: Network) -> list:
    """The network for Lava's floating-point LIF + Dense (``lava-sim?precision=float``):
    its own weights, decays and thresholds, unquantised (a non-spiking layer gets
    an infinite threshold). The same refusals as `compile_trains` for what the
    standard LIF cannot do; no register limits."""
    from .lava_trains import FloatTrainLayer

    if not net.is_spike_train:
        raise DesignRuleError("network-family", None, "a spike-train (cuba) network",
                              f"this is a first-spike-time {net.model} network")
    out = []
    for li, layer in enumerate(net.layers):
        p = layer.neuron
        _check_lava_lif(li, p)
        out.append(FloatTrainLayer(weight=np.asarray(layer.weight, dtype=np.float64), du=float(p.current_decay),
                                   dv=float(p.voltage_decay), vth=float(p.threshold) if p.spiking else math.inf,
                                   recurrent=None if layer.recurrent is None else np.asarray(layer.recurrent,
                                                                                             dtype=np.float64)))
    return out


def compile_trains(net: Network, vth_preferred: int = VTH_TRAINS,
                   weight_exp: int | None = None, weight_bits: int = 8) -> tuple[list[TrainLayer], TrainsReport]:
    """A spike-train network -> integer `TrainLayer` records for Lava's LIF + Dense,
    and the `TrainsReport`. Raises `DesignRuleError` (rule, layer, limit) for
    anything the standard fixed-point LIF cannot represent; writes nothing.
    ``vth_preferred``: the threshold register a spiking layer's scale starts from
    (range against resolution, see `VTH_TRAINS`). ``weight_exp``: None chooses
    each matrix's exponent as above; an integer (0: what a netx file stores)
    fixes every matrix's exponent, and a spiking layer's threshold register then
    follows from it (``vth = floor(254 2^e / max|w / threshold|)``, at most
    2^17 - 1), as does a readout's scale. ``weight_bits`` (1..8, default 8):
    coarser stored weights, as Lava's ``num_weight_bits`` keeps them (every
    mantissa a multiple of 2^(9 - bits)); the registers are chosen as for 8
    bits, so only the weight step grows (for studies of coarse synapses)."""
    if not (isinstance(weight_bits, int) and 1 <= weight_bits <= 8):
        raise DesignRuleError("weight-bits", None, "1..8", f"weight_bits={weight_bits!r}")
    if weight_exp is not None and not (isinstance(weight_exp, int) and
                                       fw.WEIGHT_EXP_RANGE[0] <= weight_exp <= fw.WEIGHT_EXP_RANGE[1]):
        raise DesignRuleError("weight-exponent", None, f"{fw.WEIGHT_EXP_RANGE[0]}..{fw.WEIGHT_EXP_RANGE[1]}",
                              f"weight_exp={weight_exp!r}")
    if not net.is_spike_train:
        raise DesignRuleError("network-family", None, "a spike-train (cuba) network",
                              f"this is a first-spike-time {net.model} network: compile it with compile_network")
    out: list[TrainLayer] = []
    rows: list[dict] = []
    effective = []
    for li, layer in enumerate(net.layers):
        p = layer.neuron
        _check_lava_lif(li, p)
        n_out = layer.n_out
        if n_out > MAX_NEURONS_PER_LAYER:
            raise DesignRuleError("neurons-per-core", li, MAX_NEURONS_PER_LAYER, f"layer has {n_out} neurons")
        rec = layer.recurrent
        fan_in = layer.weight.shape[0] + (n_out if rec is not None else 0)
        if fan_in > MAX_FAN_IN:
            raise DesignRuleError("fan-in", li, MAX_FAN_IN, f"layer has {fan_in} sources (incl. recurrent)")
        du, dv = _decays(li, p)
        w = np.asarray(layer.weight, dtype=np.float64)
        r = None if rec is None else np.asarray(rec, dtype=np.float64)
        w_abs = float(np.abs(w).max())
        r_abs = 0.0 if r is None else float(np.abs(r).max())
        if p.spiking:
            theta = float(p.threshold)
            pu_w, pu_r = w_abs / theta, r_abs / theta
            pu = max(pu_w, pu_r)
            # as compile_network: exponent >= 0 first (a negative one floors every synaptic sum),
            # the threshold raised to fill the mantissa, a negative exponent only for tiny weights
            e_top = max(_exponent_filling(pu, vth_preferred), 0)
            if pu > 0 and W_TOP * 2.0 ** e_top / pu > fw.VTH_MAX:
                e_top = max(int(math.floor(math.log2(fw.VTH_MAX * pu / W_TOP))), fw.WEIGHT_EXP_RANGE[0])

            def fill(e_: int) -> int:
                return vth_preferred if pu == 0 else int(min(fw.VTH_MAX, math.floor(W_TOP * 2.0 ** e_ / pu)))

            def registers(e_: int):
                vth_ = fill(e_)
                ew = e_ if pu_w >= pu_r or weight_exp is not None else _exponent_filling(pu_w, vth_)
                er = e_ if pu_r > pu_w or weight_exp is not None else _exponent_filling(pu_r, vth_)
                ew = min(max(ew, fw.WEIGHT_EXP_RANGE[0]), fw.WEIGHT_EXP_RANGE[1])
                er = min(max(er, fw.WEIGHT_EXP_RANGE[0]), fw.WEIGHT_EXP_RANGE[1])
                W_ = _quantise(vth_ * w / theta, ew, weight_bits)
                R_ = None if r is None else _quantise(vth_ * r / theta, er, weight_bits)
                return vth_, ew, er, W_, R_

            e_cur = e_top if weight_exp is None else weight_exp
            vth, ew, er, W, R = registers(e_cur)
            while weight_exp is None and vth > VTH_MIN and (e_cur > fw.WEIGHT_EXP_RANGE[1] or
                                                            _single_step_jump(W, ew, R, er) >= fw.UV_MAX):
                e_cur -= 1
                vth, ew, er, W, R = registers(e_cur)
            if vth < VTH_MIN or e_cur > fw.WEIGHT_EXP_RANGE[1] or _single_step_jump(W, ew, R, er) >= fw.UV_MAX:
                raise DesignRuleError(
                    "current-range", li, "one step's same-sign input < 2^23 at vth >= 16",
                    f"weights up to {max(w_abs, r_abs):.3g} against threshold {theta:g} need more than the "
                    f"24-bit current in a single step")
            for name, m, ex in (("weight", pu_w, ew), ("recurrent weight", pu_r, er)):
                if weight_exp is not None and m < pu:
                    continue  # a fixed exponent: the smaller matrix is as coarse as it is (see the report)
                if m > 0 and vth * m / 2.0 ** ex < W_TOP / 2:
                    raise DesignRuleError(
                        "weight-exponent", li, f"{fw.WEIGHT_EXP_RANGE[0]}..{fw.WEIGHT_EXP_RANGE[1]}",
                        f"largest {name} {m * theta:.3g} is too small against threshold {theta:g} (or the "
                        f"layer's other matrix): it fills less than half of the 8-bit mantissa at the finest "
                        f"exponent")
            scale = 64.0 * vth / theta
        else:
            # the readout: largest weight at the top of the mantissa, exponent 0; it cannot fire in range
            vth = READOUT_VTH
            ew = 0 if weight_exp is None else weight_exp
            top = max(w_abs, r_abs)
            scale = 64.0 * W_TOP * 2.0 ** ew / top if top > 0 else 64.0
            er = 0 if r is None else min(max(_exponent_filling(r_abs * scale / 64.0, 1.0), 0), fw.WEIGHT_EXP_RANGE[1])
            if weight_exp is not None:
                er = weight_exp
            W = _quantise(w * scale / 64.0, ew, weight_bits)
            R = None if r is None else _quantise(r * scale / 64.0, er, weight_bits)
            if _single_step_jump(W, ew, R, er) >= fw.UV_MAX:
                raise DesignRuleError("current-range", li, "one step's same-sign input < 2^23",
                                      f"the readout's {fan_in} sources summed exceed the 24-bit current")
        tl = TrainLayer(weight=W, weight_exp=ew, du=du, dv=dv, vth=vth, recurrent=R, rec_exp=er if R is not None else 0)
        w_eff = W.astype(np.float64) * 2.0 ** ew * 64.0 / scale
        r_eff = None if R is None else R.astype(np.float64) * 2.0 ** er * 64.0 / scale
        effective.append((w_eff, r_eff))
        err = w_eff - w
        rerr = None if r is None else r_eff - r
        rows.append({
            "layer": li, "n_src": int(layer.weight.shape[0]), "n_out": n_out, "recurrent": r is not None,
            "spiking": bool(p.spiking), "du": du, "dv": dv, "vth": int(vth), "weight_exp": int(ew),
            "rec_exp": int(er) if R is not None else 0, "scale": float(scale),
            "v_range": float(fw.V_LIMIT / scale), "w_max": w_abs,
            "weight_err_rms": float(np.sqrt(np.mean(err ** 2))), "weight_err_max": float(np.abs(err).max()),
            "rec_err_rms": 0.0 if rerr is None else float(np.sqrt(np.mean(rerr ** 2))),
            "rec_err_max": 0.0 if rerr is None else float(np.abs(rerr).max()),
            "current_decay": float(p.current_decay), "voltage_decay": float(p.voltage_decay),
            "current_decay_q": (du + 1) / 4096.0, "voltage_decay_q": dv / 4096.0,
        })
        out.append(tl)
    report = TrainsReport(layers=rows, dt=float(net.dt), n_steps=int(net.n_steps), time_unit=net.time_unit,
                          effective_weights=effective)
    return out, report


__all__ = ["TrainsReport", "compile_trains", "float_trains_layers"]
