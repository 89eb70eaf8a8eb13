"""Write (and read back) the HDF5 network layout lava-dl's ``netx`` loads.

The integers come from the Loihi compiler (`hwloop.backends.loihi.mapping`), the
same ones the ``bitexact`` and ``lava-sim`` targets run, adapted to what
netx reads (`netx_core`: weight exponent 0 with the threshold scaled by
``2^-e``, layer 0's bias sources as input channels).

Layout (written with h5py; lava-dl is not needed to write it)::

    simulation/Ts, simulation/tSample     time step (network time unit), steps per trial
    layer/0/  type="input", shape=[n_in]  n_in = features + layer 0's bias sources; no neuron
                                          group, so netx connects Network.inp to layer 1 directly
    layer/k/  type="dense", shape=[n_out]                          (k = 1 .. n_layers)
              weight        int (n_out, n_in): the 8-bit synaptic mantissas
              neuron/type   "CUBA"
              neuron/iDecay du + 1   (netx hands Lava's LIF du = iDecay - 1; Lava decays u by du + 1)
              neuron/vDecay dv
              neuron/vThMant vth     (the neuron fires when v > vth << 6)
              neuron/refDelay steps  (not read by netx; hwloop's one spike per trial)
              neuron/wgtExp  0       (netx derives the exponent itself; see netx_core)
              hwlBiasWeight int (n_out, n_bias), hwlBiasStep int (n_bias,)   [hwloop extension:
                                     hidden layers' bias sources, which netx cannot express]
    hwloop/   format, format_version, time_unit, t_max, dt, steps, encoding, classes,
              input_channels, compiled_weight_exp                              [hwloop extension]

A ``bias`` dataset (netx: a constant bias current ``bias << 6``) is written
only where the compiled layer has a nonzero constant bias; layers compiled
from a `Network` never do (our biases are spikes). See `docs/interop.md`
for what lava-dl does with the file, measured.

`read_netx` is a small independent reader of this layout, used by the tests
to run an exported file on the bit-accurate core model.

Spike-train (CUBA) networks have their own writer and reader below
(`export_netx_trains`, `read_netx_trains`, `run_netx_trains`): multi-spike
``dense`` / ``dense_rec`` layers that stock netx runs as they are, marked
``hwloop/family = "trains"``; `read_netx` refuses those files and names the
reader to use.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from ..errors import HwloopError, NetworkFileError
from ..network import Network

NETX_FORMAT = "hwloop-netx"
NETX_FORMAT_VERSION = 2
BIAS_SHIFT = 6  # netx's Dense passes bias_exp=6: a bias entry b adds b << 6 to v each step


def _h5py():
    try:
        import h5py  # noqa: PLC0415
    except ImportError:
        raise HwloopError("netx export needs the 'h5py' package: pip install 'h5py>=3.9,<4'") from None
    return h5py


def _str(group, key: str, value: str) -> None:
    # netx reads 'type' as bytes and decodes ASCII; a fixed-length ASCII string is what it expects
    group.create_dataset(key, data=np.bytes_(value.encode("ascii")))


def netx_core(net: Network, steps: int | None = None):
    """The compiled network as netx will run it: ``(compiled, core, n_input_channels)``.

    lava-dl's netx derives every layer's weight exponent itself from the
    stored integers (``optimize_weight_bits``); for our mantissas, whose
    largest entry is 252..254 by construction, it always derives exponent 0,
    and it ignores ``neuron/wgtExp``. A layer the Loihi compiler gave exponent
    ``e`` is therefore written with the same mantissas, exponent 0 and the
    threshold ``round(vth * 2^-e)``: ``v`` then holds ``2^-e`` times the
    compiled layer's value and crosses the scaled threshold at the same step
    up to the rounding of ``vth`` (relative ``<= 2^(e-14)``) and the
    truncation of the decays, which now acts on ``2^-e`` times smaller
    numbers. Layer 0's bias sources become extra input channels (netx has no
    spike sources of its own); later layers' bias sources stay in the
    ``hwlBias*`` keys, which netx ignores.
    """
    import dataclasses  # noqa: PLC0415

    from hwloop.backends.loihi.mapping import DEFAULT_STEPS, VTH_MIN, compile_network  # noqa: PLC0415
    from hwloop.firmware_models.loihi import CoreConfig  # noqa: PLC0415
    from hwloop.firmware_models.loihi.core import VTH_MAX  # noqa: PLC0415

    from ..errors import DesignRuleError  # noqa: PLC0415

    compiled = compile_network(net, DEFAULT_STEPS if steps is None else steps)
    layers = []
    for k, layer in enumerate(compiled.core.layers):
        e = layer.weight_exp
        vth = int(round(layer.vth * 2.0 ** -e))
        if not VTH_MIN <= vth <= VTH_MAX:
            raise DesignRuleError("netx-weight-exponent", k, f"{VTH_MIN} <= vth * 2^-weight_exp <= {VTH_MAX}",
                                  f"netx reads weight exponent 0; this layer's exponent {e} would need threshold "
                                  f"{vth} (try another --steps)")
        change = {"weight_exp": 0, "vth": vth}
        if k == 0 and layer.bias_steps.size:
            change.update(weight=np.vstack([layer.weight, layer.bias_weight]),
                          bias_weight=np.zeros((0, layer.n_out), np.int32), bias_steps=np.zeros(0, np.int64))
        layers.append(dataclasses.replace(layer, **change))
    n_channels = net.encoding.n_features + len(net.layers[0].bias_times)
    return compiled, CoreConfig(tuple(layers), compiled.steps), n_channels


def export_netx(net: Network, path: str | os.PathLike, steps: int | None = None) -> tuple[Path, dict]:
    """Compile ``net`` for Loihi (``steps`` per trial) and write the netx file atomically.

    Returns the path and a summary (steps, dt, per-layer quantisation report,
    the exponent each layer was compiled with and the threshold netx gets).
    Raises `DesignRuleError` when the network does not fit Loihi (e.g. a QIF
    network), before anything is written. A spike-train (CUBA) network goes
    to `export_netx_cuba`.
    """
    if net.is_spike_train:
        return export_netx_cuba(net, path, steps=steps)
    h5py = _h5py()
    compiled, core, n_channels = netx_core(net, steps)
    bias0 = [int(s) for s in compiled.core.layers[0].bias_steps]
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            sim = f.create_group("simulation")
            sim.create_dataset("Ts", data=float(compiled.dt))
            sim.create_dataset("tSample", data=int(compiled.steps))
            layers = f.create_group("layer")
            g = layers.create_group("0")
            # no neuron group: netx then builds no input neurons and connects Network.inp straight
            # to the first dense layer's synapses (no relay layer, no extra step of latency)
            _str(g, "type", "input")
            g.create_dataset("shape", data=np.array([n_channels], dtype=np.int64))
            for k, layer in enumerate(core.layers, start=1):
                g = layers.create_group(str(k))
                _str(g, "type", "dense")
                g.create_dataset("shape", data=np.array([layer.n_out], dtype=np.int64))
                g.create_dataset("weight", data=np.ascontiguousarray(layer.weight.T, dtype=np.int64))
                neuron = g.create_group("neuron")
                _str(neuron, "type", "CUBA")
                for key, value in (("iDecay", layer.du + 1), ("vDecay", layer.dv), ("vThMant", layer.vth),
                                   ("refDelay", compiled.steps), ("wgtExp", layer.weight_exp)):
                    neuron.create_dataset(key, data=np.int64(value))
                bias = _constant_bias(layer, k)
                if bias is not None:
                    g.create_dataset("bias", data=bias)
                if layer.bias_steps.size:
                    g.create_dataset("hwlBiasWeight", data=np.ascontiguousarray(layer.bias_weight.T, dtype=np.int64))
                    g.create_dataset("hwlBiasStep", data=layer.bias_steps.astype(np.int64))
            meta = f.create_group("hwloop")
            channels = {"features": net.encoding.n_features, "bias_steps": bias0}
            for key, value in (("format", NETX_FORMAT), ("time_unit", net.time_unit),
                               ("encoding", json.dumps(asdict(net.encoding), sort_keys=True)),
                               ("classes", json.dumps(list(net.decoding.classes))),
                               ("input_channels", json.dumps(channels)),
                               ("compiled_weight_exp", json.dumps([l.weight_exp for l in compiled.core.layers])),
                               ("spike_time", "(k + 1/2) * dt for a spike at local step k")):
                meta.create_dataset(key, data=value, dtype=h5py.string_dtype())
            meta.create_dataset("format_version", data=np.int64(NETX_FORMAT_VERSION))
            meta.create_dataset("t_max", data=float(net.t_max))
            meta.create_dataset("dt", data=float(compiled.dt))
            meta.create_dataset("steps", data=np.int64(compiled.steps))
    info = {"steps": compiled.steps, "dt": compiled.dt, "time_unit": compiled.time_unit,
            "weight_exp": [layer.weight_exp for layer in compiled.core.layers],
            "netx_vth": [layer.vth for layer in core.layers], "input_channels": n_channels,
            "hidden_bias_ignored": [k for k, layer in enumerate(net.layers) if k > 0 and layer.bias_times],
            "report": compiled.report}
    return path, info


def _constant_bias(layer, k: int) -> np.ndarray | None:
    """The layer's constant bias register as netx's ``bias`` (added as ``bias << 6``)."""
    full = np.asarray(layer.bias_mant, np.int64) << np.asarray(layer.bias_exp, np.int64)
    if not full.any():
        return None
    if np.any(full % (1 << BIAS_SHIFT)):
        raise NetworkFileError(f"layer {k}: constant bias {full.tolist()} is not a multiple of 2^{BIAS_SHIFT}; "
                               "netx's fixed bias exponent cannot express it")
    return full >> BIAS_SHIFT


def read_netx(path: str | os.PathLike):
    """Read a netx file of the layout above into a core configuration.

    Returns ``(CoreConfig, info)``; ``info`` has ``steps``, ``dt`` and the
    hwloop metadata when present. Raises `NetworkFileError` naming the layer
    and key on anything missing or out of range.
    """
    from hwloop.firmware_models.loihi import CoreConfig, CoreLayer  # noqa: PLC0415

    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise NetworkFileError(f"{path}: no such file")

    def fail(msg: str) -> NetworkFileError:
        return NetworkFileError(f"{path}: {msg}")

    text = _text

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise fail(f"not an HDF5 file, or truncated ({exc})") from None
    with f:
        try:
            if is_trains_file(f):
                raise fail("a spike-train (multi-spike, CUBA) netx file: read it with read_netx_trains")
            steps, dt, lg, names, n_prev = _netx_grid(f, fail)
            layers = []
            for name in names[1:]:
                g = lg[name]
                kind = text(g["type"])
                if kind != "dense":
                    raise fail(f"layer {name}: type {kind!r}; this reader handles dense layers only")
                w = np.asarray(g["weight"][()], dtype=np.int64)
                n_out = int(np.prod(g["shape"][()]))
                if w.shape != (n_out, n_prev):
                    raise fail(f"layer {name}: weight shape {w.shape} != (shape {n_out}, previous layer {n_prev})")
                nrn = g["neuron"]
                if text(nrn["type"]) not in ("CUBA", "LOIHI"):
                    raise fail(f"layer {name}: neuron type {text(nrn['type'])!r} is not a CUBA LIF")
                exp = int(nrn["wgtExp"][()]) if "wgtExp" in nrn else 0
                bias = np.asarray(g["bias"][()], np.int64) if "bias" in g else np.zeros(n_out, np.int64)
                if "hwlBiasWeight" in g:
                    bw = np.asarray(g["hwlBiasWeight"][()], np.int64).T
                    bs = np.asarray(g["hwlBiasStep"][()], np.int64)
                else:
                    bw, bs = np.zeros((0, n_out), np.int64), np.zeros(0, np.int64)
                layers.append(CoreLayer(weight=w.T, weight_exp=exp, du=int(nrn["iDecay"][()]) - 1,
                                        dv=int(nrn["vDecay"][()]), vth=int(nrn["vThMant"][()]),
                                        bias_weight=bw, bias_steps=bs, bias_mant=bias, bias_exp=BIAS_SHIFT))
                n_prev = n_out
            info = {"steps": steps, "dt": dt, "n_inputs": int(np.prod(lg[names[0]]["shape"][()]))}
            if "hwloop" in f:
                m = f["hwloop"]
                info.update({k: (m[k][()].decode() if isinstance(m[k][()], bytes) else m[k][()]) for k in m})
                if "input_channels" in info:
                    info["input_channels"] = json.loads(info["input_channels"])
        except NetworkFileError:
            raise
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise fail(f"not a readable netx network ({type(exc).__name__}: {exc})") from None
    if not layers:
        raise fail("no dense layers")
    return CoreConfig(tuple(layers), steps), info


# --------------------------------------------------------------------------------------------------
# Spike-train (CUBA) networks: multi-spike LIF layers, optionally recurrent, as stock netx runs them.
#
# What lava-dl 0.6.0 builds from a layer (read in netx/hdf5.py, netx/utils.py, netx/blocks/process.py
# and lava's proc/dense and proc/lif models):
#   type "dense"      -> Dense block: lava Dense synapse -> LIF (or LIFReset when reset_interval is set)
#   type "dense_rec"  -> RecurrentDense block: the same, plus a second lava Dense from the LIF's own spikes
#                        (`weight_rec`) into the same LIF input; netx derives ONE weight exponent for the
#                        concatenation [weight, weight_rec] and gives it to both synapses
#   neuron CUBA       -> LIF(du = iDecay - 1, dv = vDecay, vth = vThMant, bias_mant = bias, bias_exp = 6);
#                        refDelay and wgtExp are not read
# A stored integer matrix w is rescaled by netx (w << sb, exponent -sb, sb from w's extremes) and by
# Lava's Dense (clip to 8 bits, truncate the low bits by num_weight_bits, shift the sum back by sb), which
# gives back exactly s @ w when nothing is clipped or truncated (`netx_weight_problem` checks that):
# whatever wgtExp says, netx runs every layer at weight exponent 0.

TRAINS_FAMILY = "trains"


def netx_weight_problem(parts) -> str | None:
    """Why netx + Lava's fixed-point Dense would not deliver ``s @ w`` exactly for the stored integer
    matrices ``parts`` (the layer's feed-forward and, for a recurrent layer, recurrent weights, each
    ``(n_out, n_src)`` as stored), or None when every part is delivered exactly.

    Mirrors ``lava.lib.dl.netx.utils.optimize_weight_bits`` (run on the concatenation of the parts)
    and, per part, lava's ``Dense`` fixed-point weight handling (sign mode from that part, 8-bit clip,
    truncation by ``num_weight_bits``); tests/test_netx_trains_lava.py checks this against the real
    functions."""
    parts = [np.asarray(p, np.int64) for p in parts]
    cat = np.hstack([p.reshape(p.shape[0], -1) for p in parts])
    mx, mn = int(cat.max()), int(cat.min())
    if mx == 0 and mn == 0:
        return "every weight is 0: netx cannot derive a weight exponent for it (a division by zero)"
    netx_signed = not (mx < 0 or mn >= 0)
    if netx_signed and mx > 254:
        return f"largest weight {mx} > 254 in a mixed-sign matrix: netx clips it to 254"
    if mn < -256 or mx > 255:
        return f"weights {mn}..{mx} outside -256..255"
    if mx < 0:
        scale = -256.0 / mn
    elif mn >= 0:
        scale = 255.0 / mx
    else:
        scale = min(127.0 / mx if mx > 0 else np.inf, -128.0 / mn)
    sb = int(np.floor(np.log2(scale))) + int(netx_signed)
    n = next(b for b in range(8, -1, -1) if not np.any(cat % (1 << b)))
    n_weight_bits = 8 - sb - (n - int(netx_signed))
    for part in parts:
        w = part << sb
        lava_mixed = w.size and w.min() < 0 < w.max()
        inhibitory = w.size and not lava_mixed and w.max() <= 0 and w.min() < 0
        if inhibitory and w.min() < -255:
            return f"an inhibitory-only matrix reaching {int(part.min())} (scaled {int(w.min())}): lava clips it to -255"
        drop = 8 - n_weight_bits + int(bool(lava_mixed))
        if drop < 0:
            return ("the recurrent and feed-forward weights together need more than 8 bits while one of them "
                    f"is single-signed: lava would shift its weights by {drop} (undefined)")
        if np.any(w % (1 << drop)):
            return f"lava would truncate the low {drop} bits of the weights"
    return None


def netx_train_layers(layers, *, strict: bool = False):
    """The layers as netx runs them: ``(netx_layers, notes)``.

    netx runs every layer at weight exponent 0 (see the module comment above).
    A layer with exponents 0 is kept as it is. A layer with exponents ``e >= 0``
    whose mantissas shifted left by ``e`` still fit is rewritten exactly.
    Otherwise the layer is rewritten approximately, as `netx_core` does for
    first-spike networks: one exponent ``m`` (the smallest of ``weight_exp``..
    ``rec_exp`` at which the matrix of larger exponent still fits, shifted
    left), the other matrix's mantissas rounded to even ``w * 2^(exp - m)``,
    threshold ``round(vth * 2^-m)`` (``v`` then holds ``2^-m`` times the
    layer's value; rounding and the decays' truncation differ);
    ``strict=True`` refuses that instead. ``notes`` has one dict per layer:
    ``exact`` and, for approximate ones, what was done.

    Raises `DesignRuleError` naming the rule (``netx-weight-exponent``,
    ``netx-weights``) for a layer netx cannot run.
    """
    import dataclasses  # noqa: PLC0415

    from hwloop.firmware_models.loihi.core import VTH_MAX  # noqa: PLC0415

    from ..errors import DesignRuleError  # noqa: PLC0415

    out, notes = [], []
    for k, layer in enumerate(layers):
        rec = layer.recurrent
        exps = [layer.weight_exp] + ([layer.rec_exp] if rec is not None else [])
        mats = [layer.weight] + ([rec] if rec is not None else [])
        change, note = {}, {"exact": True, "weight_exp": exps}
        if any(exps):
            shifted = [np.asarray(w, np.int64) << e for w, e in zip(mats, exps)] if min(exps) >= 0 else None
            if shifted is not None and netx_weight_problem([w.T for w in shifted]) is None:
                change = {"weight": shifted[0], "weight_exp": 0}
                if rec is not None:
                    change.update(recurrent=shifted[1], rec_exp=0)
                note["how"] = "mantissas shifted left by their exponents (exact)"
            else:
                if strict:
                    raise DesignRuleError("netx-weight-exponent", k, "weight exponent 0",
                                          f"netx runs every layer at weight exponent 0; this layer has {exps}, "
                                          "which cannot be rewritten exactly")
                # the finest common exponent m at which the matrices of larger exponent, shifted left, still
                # fit the 8-bit mantissa (m = max(exps) always does: nothing is shifted left there); those of
                # smaller exponent are rounded to even mantissas, as Lava keeps mixed-sign weights
                def fits(m_):
                    return all(int(np.abs(np.asarray(w, np.int64) << (e - m_)).max(initial=0)) <= 254
                               for w, e in zip(mats, exps) if e > m_)

                m = next(m_ for m_ in range(min(exps), max(exps) + 1) if fits(m_))
                scaled = [np.clip(2 * np.rint(np.asarray(w, np.float64) * 2.0 ** (e - m) / 2), -256, 254).astype(np.int64)
                          for w, e in zip(mats, exps)]
                vth = int(round(layer.vth * 2.0 ** -m))
                if not 1 <= vth <= VTH_MAX:
                    raise DesignRuleError("netx-weight-exponent", k, f"1 <= vth * 2^-exp <= {VTH_MAX}",
                                          f"netx runs weight exponent 0; exponent {m} would need threshold {vth}")
                change = {"weight": scaled[0], "weight_exp": 0, "vth": vth}
                if rec is not None:
                    change.update(recurrent=scaled[1], rec_exp=0)
                rounded = [e for e in exps if e < m]
                note.update(exact=False, how=f"exponent {m} moved into the threshold: vth {layer.vth} -> {vth}"
                            + (f", mantissas of exponent {min(rounded)} rounded by 2^{min(rounded) - m}"
                               if rounded else ""))
        new = dataclasses.replace(layer, **change) if change else layer
        problem = netx_weight_problem([new.weight.T] + ([new.recurrent.T] if rec is not None else []))
        if problem:
            raise DesignRuleError("netx-weights", k, "integers netx and Lava's Dense pass on unchanged", problem)
        out.append(new)
        notes.append(note)
    return out, notes


def export_netx_trains(layers, path: str | os.PathLike, *, steps: int, dt: float = 1.0, time_unit: str = "ms",
                       meta: dict | None = None, strict: bool = False) -> tuple[Path, dict]:
    """Write integer multi-spike CUBA layers (`TrainLayer`, as `simulate_trains` runs them) as the netx
    file stock lava-dl loads, atomically.

    Each layer becomes a netx ``dense`` block (``dense_rec`` with ``weight_rec`` when it has recurrent
    weights) of ``CUBA`` neurons; layer 0 is an input layer without neurons, so ``Network.inp`` feeds
    the first block's synapses directly. Layers are first put in the form netx runs
    (`netx_train_layers`: weight exponent 0); the file's integers are exactly those layers.
    ``meta`` (optional) goes into the ``hwloop`` group: ``encoding`` (dict), ``classes``, ``decoding``
    (dict), ``t_max``. Returns the path and a summary (``notes`` per layer, ``exact``).
    """
    from ..errors import DesignRuleError  # noqa: PLC0415

    h5py = _h5py()
    layers = list(layers)
    if not layers:
        raise DesignRuleError("netx-layers", None, ">= 1 layer", "no layers to export")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise HwloopError(f"export_netx_trains: steps must be a positive int, got {steps!r}")
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise HwloopError(f"export_netx_trains: dt must be a positive number, got {dt!r}")
    n_prev = layers[0].weight.shape[0]
    for k, layer in enumerate(layers):
        if layer.weight.shape[0] != n_prev:
            raise DesignRuleError("netx-layers", k, f"{n_prev} sources (the previous layer's neurons)",
                                  f"weight has {layer.weight.shape[0]} rows")
        n_prev = layer.n_out
    netx_layers, notes = netx_train_layers(layers, strict=strict)
    meta = dict(meta or {})
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            sim = f.create_group("simulation")
            sim.create_dataset("Ts", data=float(dt))
            sim.create_dataset("tSample", data=int(steps))
            lg = f.create_group("layer")
            g = lg.create_group("0")
            _str(g, "type", "input")
            g.create_dataset("shape", data=np.array([layers[0].weight.shape[0]], dtype=np.int64))
            for k, layer in enumerate(netx_layers, start=1):
                g = lg.create_group(str(k))
                _str(g, "type", "dense" if layer.recurrent is None else "dense_rec")
                g.create_dataset("shape", data=np.array([layer.n_out], dtype=np.int64))
                g.create_dataset("weight", data=np.ascontiguousarray(layer.weight.T, dtype=np.int64))
                if layer.recurrent is not None:
                    # lava Dense convention (to, from); TrainLayer's recurrent is (from, to)
                    g.create_dataset("weight_rec", data=np.ascontiguousarray(layer.recurrent.T, dtype=np.int64))
                neuron = g.create_group("neuron")
                _str(neuron, "type", "CUBA")
                # refDelay 1: no refractory period (Lava's LIF has none; netx does not read it)
                for key, value in (("iDecay", layer.du + 1), ("vDecay", layer.dv), ("vThMant", layer.vth),
                                   ("refDelay", 1), ("wgtExp", 0)):
                    neuron.create_dataset(key, data=np.int64(value))
            m = f.create_group("hwloop")
            texts = {"format": NETX_FORMAT, "family": TRAINS_FAMILY, "time_unit": time_unit,
                     "compiled_weight_exp": json.dumps([[l.weight_exp, l.rec_exp] for l in layers]),
                     "netx_exact": json.dumps([n["exact"] for n in notes]),
                     "alignment": "layer j's local step k is Lava step k + j + 1 after the input's step 0"}
            for key in ("encoding", "decoding"):
                if key in meta:
                    texts[key] = json.dumps(meta[key], sort_keys=True)
            if "classes" in meta:
                texts["classes"] = json.dumps(list(meta["classes"]))
            for key, value in texts.items():
                m.create_dataset(key, data=value, dtype=h5py.string_dtype())
            m.create_dataset("format_version", data=np.int64(NETX_FORMAT_VERSION))
            m.create_dataset("steps", data=np.int64(steps))
            m.create_dataset("dt", data=float(dt))
            if "t_max" in meta:
                m.create_dataset("t_max", data=float(meta["t_max"]))
    info = {"steps": int(steps), "dt": float(dt), "time_unit": time_unit, "notes": notes,
            "exact": all(n["exact"] for n in notes), "weight_exp": [[l.weight_exp, l.rec_exp] for l in layers],
            "netx_vth": [l.vth for l in netx_layers], "recurrent": [l.recurrent is not None for l in layers]}
    return path, info


def export_netx_cuba(net: Network, path: str | os.PathLike, *, steps: int | None = None,
                     strict: bool = False, weight_exp: int | None = 0) -> tuple[Path, dict]:
    """Compile a spike-train (CUBA) `Network` for Loihi's standard LIF + Dense
    (`hwloop.backends.loihi.trains_mapping.compile_trains`, the integers the ``bitexact`` and
    ``lava-sim`` targets run) and write them with `export_netx_trains`, the network's
    encoding, decoding and classes in the ``hwloop`` group.

    netx runs every layer at weight exponent 0, so by default (``weight_exp=0``) the network is
    compiled at exponent 0, as the targets ``bitexact?weight_exp=0`` and ``lava-sim?weight_exp=0``
    compile it: the file holds exactly their integers (``info["target"]`` names that target) and
    lava-dl runs it spike for spike like them. ``weight_exp=None`` compiles with the mapping's own
    exponents (the default targets' integers, finer weights) and writes each layer with another
    exponent as `netx_train_layers` rewrites it (``info["exact"]`` says whether every layer is the
    compiled one unchanged; ``strict=True`` refuses the rewrite). ``steps``, if given, must be the
    network's own ``n_steps`` (a spike-train network carries its time grid). Raises
    `DesignRuleError` for what Loihi or netx cannot represent, before anything is written.
    """
    from hwloop.backends.loihi.trains_mapping import compile_trains  # noqa: PLC0415

    if steps is not None and steps != net.n_steps:
        raise HwloopError(f"a spike-train network runs its own {net.n_steps} steps of dt = {net.dt:g} "
                          f"{net.time_unit}; --steps {steps} does not apply (leave it out)")
    layers, report = compile_trains(net, weight_exp=weight_exp)
    meta = {"encoding": asdict(net.encoding), "decoding": net.decoding.to_json(),
            "classes": list(net.decoding.classes), "t_max": float(net.t_max)}
    path, info = export_netx_trains(layers, path, steps=int(net.n_steps), dt=float(net.dt),
                                    time_unit=net.time_unit, meta=meta, strict=strict)
    info["spiking"] = [bool(layer.neuron.spiking) for layer in net.layers]
    info["report"] = report.layers
    if info.get("exact"):
        info["target"] = "bitexact" if weight_exp is None else f"bitexact?weight_exp={weight_exp}"
    return path, info


def _open_netx(path):
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise NetworkFileError(f"{path}: no such file")
    try:
        return path, h5py.File(path, "r")
    except OSError as exc:
        raise NetworkFileError(f"{path}: not an HDF5 file, or truncated ({exc})") from None


def _netx_grid(f, fail):
    """What every netx reader reads first: ``(steps, dt, layer group, layer names in order, input
    width)``, the first layer checked to be the input layer (``fail(msg)`` makes the error)."""
    steps = int(f["simulation/tSample"][()])
    dt = float(f["simulation/Ts"][()])
    lg = f["layer"]
    names = sorted(lg.keys(), key=int)
    if _text(lg[names[0]]["type"]) != "input":
        raise fail("layer 0 is not an input layer")
    return steps, dt, lg, names, int(np.prod(lg[names[0]]["shape"][()]))


def _text(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def is_trains_file(f) -> bool:
    """Whether an open netx file holds multi-spike layers: hwloop wrote it as such, or it has netx
    ``dense_rec`` layers (recurrent, so not a first-spike network)."""
    if "hwloop" in f and "family" in f["hwloop"]:
        return _text(f["hwloop/family"]) == TRAINS_FAMILY
    return "layer" in f and any(_text(f["layer"][k]["type"]) == "dense_rec"
                                for k in f["layer"] if "type" in f["layer"][k])


def read_netx_trains(path: str | os.PathLike):
    """Read a netx file of ``dense`` / ``dense_rec`` CUBA layers as netx runs them: plain Lava LIF
    neurons that fire again, reset to 0, weight exponent 0 (whatever ``wgtExp`` says; see above).

    Returns ``(layers, info)``: a list of `TrainLayer` for `simulate_trains` and ``info`` with
    ``steps``, ``dt``, ``n_inputs`` and the hwloop metadata when present. Raises `NetworkFileError`
    naming the layer and key for anything missing, out of range or not expressible (a constant
    ``bias``, a ``delay``, graded spikes, a neuron type other than CUBA)."""
    from hwloop.firmware_models.loihi.trains import TrainLayer  # noqa: PLC0415

    path, f = _open_netx(path)

    def fail(msg: str) -> NetworkFileError:
        return NetworkFileError(f"{path}: {msg}")

    with f:
        try:
            steps, dt, lg, names, n_prev = _netx_grid(f, fail)
            if "neuron" in lg[names[0]]:
                raise fail("layer 0 has input neurons; this reader handles input layers without neurons only")
            n_inputs = n_prev
            layers = []
            for name in names[1:]:
                g = lg[name]
                kind = _text(g["type"])
                if kind not in ("dense", "dense_rec"):
                    raise fail(f"layer {name}: type {kind!r}; this reader handles dense and dense_rec layers only")
                for key in ("bias", "delay"):
                    if key in g and np.any(np.asarray(g[key][()]) != 0):
                        raise fail(f"layer {name}: a nonzero {key!r}; multi-spike layers here have none")
                n_out = int(np.prod(g["shape"][()]))
                w = np.asarray(g["weight"][()], dtype=np.int64)
                if w.shape != (n_out, n_prev):
                    raise fail(f"layer {name}: weight shape {w.shape} != (shape {n_out}, previous layer {n_prev})")
                rec = None
                if kind == "dense_rec":
                    rec = np.asarray(g["weight_rec"][()], dtype=np.int64)
                    if rec.shape != (n_out, n_out):
                        raise fail(f"layer {name}: weight_rec shape {rec.shape} != ({n_out}, {n_out})")
                problem = netx_weight_problem([w] + ([rec] if rec is not None else []))
                if problem:
                    raise fail(f"layer {name}: {problem}")
                nrn = g["neuron"]
                if _text(nrn["type"]) not in ("CUBA", "LOIHI"):
                    raise fail(f"layer {name}: neuron type {_text(nrn['type'])!r} is not a CUBA LIF")
                if "messageBits" in nrn and int(nrn["messageBits"][()]) != 0:
                    raise fail(f"layer {name}: graded spikes (messageBits) are not read here")
                try:
                    layer = TrainLayer(weight=w.T, weight_exp=0, du=int(nrn["iDecay"][()]) - 1,
                                       dv=int(nrn["vDecay"][()]), vth=int(nrn["vThMant"][()]),
                                       recurrent=None if rec is None else rec.T, rec_exp=0)
                except ValueError as exc:
                    raise fail(f"layer {name}: {exc}") from None
                layers.append(layer)
                n_prev = n_out
            info = {"steps": steps, "dt": dt, "n_inputs": n_inputs}
            if "hwloop" in f:
                m = f["hwloop"]
                for k in m:
                    v = m[k][()]
                    info[k] = v.decode() if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v)
                for k in ("encoding", "decoding", "classes", "compiled_weight_exp", "netx_exact"):
                    if isinstance(info.get(k), str):
                        info[k] = json.loads(info[k])
        except NetworkFileError:
            raise
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise fail(f"not a readable netx network ({type(exc).__name__}: {exc})") from None
    if not layers:
        raise fail("no dense layers")
    return layers, info


def run_netx_trains(path: str | os.PathLike, raster: np.ndarray, *, tail: int = 0, probe: bool = False,
                    separate: bool = False):
    """Load ``path`` with lava-dl's ``netx.hdf5.Network`` and run a batch of spike rasters on Lava's CPU
    simulator (``Loihi2SimCfg``, fixed point). Returns ``(spikes, volts)`` as `simulate_trains` does:
    per layer ``(T + tail, B, n)`` uint8 spikes in each layer's local steps, and with ``probe`` the
    ``(T + tail, B, n)`` int32 membranes ``v`` after each step (a Lava ``Monitor`` on each block's
    LIF), else None: what `simulate_trains` gives for each sample on its own, on the raster padded
    with ``tail`` silent steps.

    ``raster`` is ``(T, B, n_in)`` 0/1. One Lava run: input spikes from a ``RingBuffer`` into
    ``Network.inp``, a ``RingBuffer`` sink on every layer's output. Lava's dense synapses delay by one
    step, so layer ``j``'s local step ``k`` is read at Lava step ``k + j + 1`` of its window. One
    sample runs without resets (netx's plain ``LIF``). ``B > 1`` samples run one after another in
    windows of ``T + tail + 1`` steps with netx's ``reset_interval``: netx staggers the resets by one
    step per layer, so every layer's ``u`` and ``v`` are zeroed at the window's extra last local step,
    which is not returned. A recurrent layer that spikes in its last returned step would carry that
    spike across the reset into the next window: that raises `HwloopError` (lengthen ``tail``, or
    pass ``separate=True``: one Lava run per sample, slower).
    """
    from .lava_dl_compat import import_netx  # noqa: PLC0415

    layers, info = read_netx_trains(path)
    x = np.asarray(raster)
    if x.ndim != 3 or x.shape[2] != info["n_inputs"] or x.shape[0] < 1 or x.shape[1] < 1:
        raise HwloopError(f"run_netx_trains: raster must be (T, B, {info['n_inputs']}), got {x.shape}")
    if isinstance(tail, bool) or not isinstance(tail, (int, np.integer)) or tail < 0:
        raise HwloopError(f"run_netx_trains: tail must be an int >= 0, got {tail!r}")
    if separate and x.shape[1] > 1:
        runs = [run_netx_trains(path, x[:, b:b + 1], tail=tail, probe=probe) for b in range(x.shape[1])]
        spikes = [np.concatenate([r[0][j] for r in runs], axis=1) for j in range(len(layers))]
        volts = [np.concatenate([r[1][j] for r in runs], axis=1) for j in range(len(layers))] if probe else None
        return spikes, volts
    netx = import_netx()
    from lava.magma.core.run_conditions import RunSteps  # noqa: PLC0415
    from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: PLC0415
    from lava.proc import io  # noqa: PLC0415

    T, B, n_in = x.shape
    K, L = T + tail, len(layers)  # K steps returned per sample
    W = K + 1 if B > 1 else K  # window: the returned steps and the reset step
    n_steps = B * W + L
    data = np.zeros((n_in, n_steps), dtype=np.int32)
    for b in range(B):
        data[:, b * W:b * W + T] = (x[:, b, :] != 0).T
    kw = {"reset_interval": W, "reset_offset": 0} if B > 1 else {}
    net = netx.hdf5.Network(net_config=str(path), **kw)
    src = io.source.RingBuffer(data=data)
    src.s_out.connect(net.inp)
    sinks, monitors = [], []
    for block in net.layers:
        sink = io.sink.RingBuffer(shape=block.out.shape, buffer=n_steps)
        block.out.connect(sink.a_in)
        sinks.append(sink)
        if probe:
            from lava.proc.monitor.process import Monitor  # noqa: PLC0415

            mon = Monitor()
            mon.probe(block.neuron.v, n_steps)
            monitors.append((mon, block.neuron))
    try:
        net.run(condition=RunSteps(num_steps=n_steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        recs = [np.asarray(s.data.get()) for s in sinks]
        vrecs = [np.asarray(mon.get_data()[lif.name]["v"]) for mon, lif in monitors]  # (n_steps, n)
    finally:
        net.stop()
    out, volts = [], []
    for j, rec in enumerate(recs):
        idx = (np.arange(B)[None, :] * W + np.arange(K)[:, None]) + j + 1  # (K, B): Lava step of local k
        out.append((rec[:, idx] != 0).transpose(1, 2, 0).astype(np.uint8))
        if probe:
            volts.append(vrecs[j].reshape(n_steps, -1)[idx].astype(np.int32))
    if B > 1:
        for j, (layer, s) in enumerate(zip(layers, out)):
            if layer.recurrent is not None and s[-1, :-1].any():
                raise HwloopError(f"run_netx_trains: recurrent layer {j} spikes in the last step of a sample, "
                                  "a spike that would reach the next sample across netx's reset; run with a "
                                  "longer tail (or one sample at a time)")
    return out, (volts if probe else None)
