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
    network), before anything is written.
    """
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

    def text(ds) -> str:
        v = ds[()]
        if isinstance(v, np.ndarray):
            v = v.reshape(-1)[0]
        return v.decode("ascii") if isinstance(v, bytes) else str(v)

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise fail(f"not an HDF5 file, or truncated ({exc})") from None
    with f:
        try:
            steps = int(f["simulation/tSample"][()])
            dt = float(f["simulation/Ts"][()])
            lg = f["layer"]
            names = sorted(lg.keys(), key=int)
            if text(lg[names[0]]["type"]) != "input":
                raise fail("layer 0 is not an input layer")
            n_prev = int(np.prod(lg[names[0]]["shape"][()]))
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
