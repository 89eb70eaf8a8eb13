"""`Network` <-> NIR graph (Neuromorphic Intermediate Representation).

NIR describes neurons as continuous-time ODEs. Its ``CubaLIF`` node is

    tau_syn dI/dt = -I + w_in * S(t)            S = sum of unit-area Dirac spikes,
                                                   already weighted by the Affine/Linear node
    tau_mem dv/dt = (v_leak - v) + r * I
    spike when v > v_threshold, then v <- v_reset

and our LIF (docs/models-lif.md) is

    dI/dt = -I / tau_s,  I jumps by w at an input spike through weight w
    tau_m dV/dt = -V + I,  first spike when V crosses theta, nothing after.

Starting both at rest (I = 0, v = v_leak) and writing u = v - v_leak, one
NIR spike through weight W makes ``r * I`` jump by ``r * w_in * W * a / tau_syn``
(``a`` = the area of one spike: 1 for NIR's Dirac spikes, ``dt`` for
discrete-time exporters whose spike is a one-step pulse of height 1), and u
obeys our V equation with theta = v_threshold - v_leak. So, per neuron j:

    w[i, j] = W[j, i] * r_j * w_in_j * a / tau_syn_j ,   theta = v_threshold - v_leak.

The plain export (``consumer="nir"``) writes ``r = 1``, ``v_leak = 0``,
``w_in = tau_syn``: the factor is ``tau_syn / tau_syn == 1.0`` exactly, so
the NIR weight matrices hold our weights bit for bit (transposed: NIR maps
``y = W x``). ``consumer="snntorch" | "norse" | "rockpool"`` writes the
parameters under which that tool's own time grid reproduces our membrane
(`conventions`); the weights stay ours bit for bit there too.

What NIR cannot say (one spike per neuron, trial length, time unit, input
encoding, class names, bias spike times) travels in ``metadata``. Bias spikes
are channels of the one ``Input`` node (after the features): layer 0 reads
its own from the input through ``fc0``, later layers through a ``Linear``
``fc{i}_bias`` from the input (NIR sums a node's inputs) or, for Norse and
Rockpool, through relay neurons appended to layer 0 (see `network_to_nir`).
Neuron models with no NIR primitive (QIF, non-leaky IF) are exported as
``CubaLIF`` placeholders flagged ``hwloop_model`` + ``hwloop_warning``, and
import refuses them. Reading checks a file's declared structure first
(`nir_guard`). `docs/interop.md` is the user-facing version of this.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import HwloopError, NetworkFileError, NetworkSpecError
from ..fileio import atomic_path
from . import conventions
from .conventions import CONSUMERS, DEFAULT_STEPS
from .nir_guard import check_nir_file
from ..network import (
    TIME_UNITS,
    InputEncoding,
    Layer,
    Network,
    NeuronParams,
    OutputDecoding,
    Provenance,
    now_iso,
)

NIR_FORMAT = "hwloop-nir"
NIR_FORMAT_VERSION = 2
#: version 1 (bias sources as separate Input nodes) is still read
NIR_READ_VERSIONS = (1, 2)
#: ratios tau_mem / tau_syn the LIF model has a closed form for
SUPPORTED_TAU_RATIOS = (1.0, 2.0)
_RATIO_RTOL = 1e-6  # foreign exporters compute tau from decay factors in float
_UNIFORM_RTOL = 1e-9

#: consumers whose graph executor needs layer 1's bias sources relayed through layer 0 (see network_to_nir)
RELAY_CONSUMERS = ("norse", "rockpool")

_NO_PRIMITIVE = {
    "qif": "quadratic integrate-and-fire (theta) neurons have no NIR primitive",
    "nlif": "non-leaky integrate-and-fire neurons with exponential synapses have no NIR primitive",
}


def _nir():
    try:
        import nir  # noqa: PLC0415
    except ImportError:
        raise HwloopError("NIR support needs the 'nir' package: pip install 'nir>=1.0,<2'") from None
    return nir


# ======================================================================= export
def _input_channels(net: Network) -> tuple[int, list[tuple[int, float]]]:
    """The one Input's channels: the features, then every layer's bias sources in order."""
    bias = [(i, float(t)) for i, layer in enumerate(net.layers) for t in layer.bias_times]
    return net.encoding.n_features, bias


def _consumer_step(net: Network, consumer: str, dt: float | None) -> float | None:
    if consumer not in CONSUMERS:
        raise NetworkSpecError(f"unknown NIR consumer {consumer!r}; choose one of {', '.join(CONSUMERS)}")
    if consumer == "nir":
        if dt is not None:
            raise NetworkSpecError("dt applies to the discrete-time consumers (snntorch, norse, rockpool); "
                                   "a plain NIR graph is continuous-time")
        return None
    h = net.t_max / DEFAULT_STEPS if dt is None else dt
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise NetworkSpecError(f"dt must be a finite number > 0, got {dt!r}")
    h = float(h)
    if net.t_max / h > 1e6:
        raise NetworkSpecError(f"dt={h:g} {net.time_unit} gives {net.t_max / h:.3g} steps per trial "
                               f"(t_max={net.t_max:g}); at most 1e6")
    tau_min = min(min(layer.neuron.tau_syn, layer.neuron.tau_mem) for layer in net.layers)
    if h > tau_min:
        raise NetworkSpecError(f"dt={h:g} {net.time_unit} is longer than the shortest time constant "
                               f"({tau_min:g} {net.time_unit}); use a smaller dt")
    return h


def _cubalif_params(p: NeuronParams, consumer: str, h: float | None) -> dict[str, float]:
    """Scalar CubaLIF parameters that make ``consumer`` run a layer of neuron ``p`` (see conventions)."""
    ts, tm, theta = p.tau_syn, p.tau_mem, p.threshold
    if consumer == "nir":  # NIR's own ODE, Dirac spikes: a jump of exactly W in I per spike
        return dict(tau_syn=ts, tau_mem=tm, r=1.0, v_leak=0.0, v_threshold=theta, w_in=ts)
    a, b = conventions.decays(h, ts, tm)
    if consumer in ("snntorch", "norse"):
        gdt = conventions.SNNTORCH_DT if consumer == "snntorch" else h
        ts_n, tm_n = gdt / (1.0 - a), gdt / (1.0 - b)
        c = conventions.euler_gain(h, ts, tm)
        return dict(tau_syn=ts_n, tau_mem=tm_n, r=tm_n / gdt, v_leak=0.0, v_threshold=c * theta, w_in=ts_n / gdt)
    # rockpool: continuous taus, dt = tau_mem / (1 + r); w_in keeps NIR's ODE consistent (Rockpool ignores it)
    c = conventions.rockpool_gain(h, ts, tm)
    r = tm / h - 1.0
    return dict(tau_syn=ts, tau_mem=tm, r=r, v_leak=0.0, v_threshold=c * theta, w_in=c * ts / (r * h))


def network_to_nir(net: Network, *, consumer: str = "nir", dt: float | None = None):
    """The NIR graph of ``net`` (a ``nir.NIRGraph``) with hwloop metadata.

    ``consumer``: ``"nir"`` (default) writes NIR's continuous-time ODE with
    unit-area Dirac spikes; ``"snntorch"``, ``"norse"``, ``"rockpool"``
    write the parameters under which that tool, running its own time grid of
    step ``dt`` (network time units, default ``t_max / 1000``), reproduces our
    spike times up to the grid (`hwloop.interop.conventions`). Every variant
    has one ``Input`` node: the features, then each layer's bias sources as
    further channels (`docs/interop.md`).
    """
    nir = _nir()
    h = _consumer_step(net, consumer, dt)
    n_features, bias_channels = _input_channels(net)
    n_bias = len(bias_channels)
    # Norse and Rockpool run graphs with nirtorch's older GraphExecutor, which executes nodes in
    # depth-first order from the input: a Linear from the input into layer 1 runs *after* layer 1
    # (Norse: one step late; Rockpool, which runs whole sequences: never). For them, layer 1's bias
    # sources reach it through relay neurons appended to layer 0, each driven by its bias channel
    # (weight R: exactly one spike in the bias step) and a cancel channel one step later (weight
    # -a R: the synaptic current returns to 0, so the relay never fires again).
    relayed = [j for j, (li, _) in enumerate(bias_channels) if li == 1] if consumer in RELAY_CONSUMERS else []
    cancel = [(j, (math.floor(bias_channels[j][1] / h + 0.5) + 1) * h) for j in relayed]
    n_channels = n_features + n_bias + len(cancel)
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    nodes["input"] = nir.Input(input_type={"input": np.array([n_channels])},
                               metadata={"hwloop_role": "features+bias"})
    prev = "input"
    warnings = []
    for i, layer in enumerate(net.layers):
        p = layer.neuron
        n_out, n_in = layer.n_out, layer.n_in
        n_relay = len(relayed) if i == 0 else 0
        n_node = n_out + n_relay
        ones = np.ones(n_node)
        own = [n_features + j for j, (li, _) in enumerate(bias_channels) if li == i]
        meta: dict[str, Any] = {
            "hwloop_model": p.model,
            "hwloop_layer": i,
            "hwloop_first_spike_only": True,
            "hwloop_options": json.dumps(dict(p.options), sort_keys=True),
            "hwloop_neuron": json.dumps({"tau_syn": p.tau_syn, "tau_mem": p.tau_mem, "threshold": p.threshold}),
        }
        if n_relay:
            meta["hwloop_relays"] = json.dumps([[n_out + r, j] for r, j in enumerate(relayed)])
        if p.model in _NO_PRIMITIVE:
            warning = (
                f"NOT a CubaLIF neuron: hwloop layer {i} is a {p.model!r} layer ({_NO_PRIMITIVE[p.model]}); "
                "these CubaLIF parameters are placeholders carrying tau_syn, tau_mem and threshold only, "
                "and running this node as CubaLIF gives different spike times"
            )
            meta["hwloop_warning"] = warning
            warnings.append(warning)
        q = _cubalif_params(p, consumer, h)
        fc, lif = f"fc{i}", f"lif{i}"
        w_main = np.ascontiguousarray(layer.weight[:n_in].T)  # NIR maps y = W x: (n_out, n_in)
        w_bias = np.ascontiguousarray(layer.weight[n_in:].T)
        if i == 0:  # the first layer reads the features and its own bias channels from the one input
            full = np.zeros((n_node, n_channels))
            full[:n_out, :n_features] = w_main
            full[:n_out, own] = w_bias
            if n_relay:
                a = math.exp(-h / p.tau_syn)
                big = 1.5 * q["v_threshold"] / (a if consumer == "rockpool" else 1.0)
                for r, j in enumerate(relayed):
                    full[n_out + r, n_features + j] = big
                    full[n_out + r, n_features + n_bias + r] = -a * big
            nodes[fc] = nir.Linear(weight=full)
        else:
            direct = [c for c in own if c - n_features not in relayed]
            if i == 1 and relayed:  # the relays' spikes carry layer 1's bias sources
                w_rel = np.stack([w_bias[:, own.index(n_features + j)] for j in relayed], axis=1)
                w_main = np.concatenate([w_main, w_rel], axis=1)
            nodes[fc] = nir.Linear(weight=np.ascontiguousarray(w_main))
            if direct:  # later layers' bias channels come straight from the input, through their own Linear
                b_fc = f"fc{i}_bias"
                full = np.zeros((n_out, n_channels))
                for c in direct:
                    full[:, c] = w_bias[:, own.index(c)]
                nodes[b_fc] = nir.Linear(weight=full, metadata={"hwloop_role": "bias", "hwloop_layer": i})
                edges += [("input", b_fc), (b_fc, lif)]
        nodes[lif] = nir.CubaLIF(
            tau_syn=ones * q["tau_syn"], tau_mem=ones * q["tau_mem"], r=ones * q["r"],
            v_leak=ones * q["v_leak"], v_threshold=ones * q["v_threshold"], v_reset=np.zeros(n_node),
            w_in=ones * q["w_in"], metadata=meta)
        edges += [(prev, fc), (fc, lif)]
        prev = lif
    nodes["output"] = nir.Output(output_type={"output": np.array([net.layers[-1].n_out])})
    edges.append((prev, "output"))

    enc = dataclasses.asdict(net.encoding)
    meta = {
        "hwloop_format": NIR_FORMAT,
        "hwloop_format_version": NIR_FORMAT_VERSION,
        "hwloop_spikes_per_neuron": 1,
        "hwloop_consumer": consumer,
        "hwloop_spike_convention": "dirac" if consumer == "nir" else "step-pulse",
        "hwloop_time_unit": net.time_unit,
        "hwloop_t_max": float(net.t_max),
        "hwloop_input_channels": json.dumps({"features": n_features,
                                             "bias": [[li, t] for li, t in bias_channels],
                                             "cancel": [[j, t] for j, t in cancel]}),
        "hwloop_encoding": json.dumps(enc, sort_keys=True),
        "hwloop_decoding": json.dumps({"kind": net.decoding.kind, "classes": list(net.decoding.classes)}),
        "hwloop_provenance": json.dumps(net.provenance.to_json(), sort_keys=True, allow_nan=False),
    }
    if h is not None:
        gdt = {"snntorch": conventions.SNNTORCH_DT, "norse": h, "rockpool": h}[consumer]
        meta.update({"hwloop_dt": h, "hwloop_graph_dt": gdt})
    if warnings:
        meta["hwloop_warning"] = " | ".join(warnings)
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)
    except (ValueError, AssertionError) as exc:  # would be our bug, say so plainly
        raise NetworkSpecError(f"cannot build a NIR graph of this network: {exc}") from None


def export_nir(net: Network, path: str | os.PathLike, *, consumer: str = "nir", dt: float | None = None) -> Path:
    """Write ``net`` as a NIR file (see `network_to_nir`), atomically (temporary file, then rename)."""
    nir = _nir()
    graph = network_to_nir(net, consumer=consumer, dt=dt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return path


# ======================================================================= import
@dataclass
class ImportedNetwork:
    """An imported network and what the importer had to assume or change."""

    network: Network
    notes: list[str] = field(default_factory=list)
    foreign: bool = True  # False when the graph carries hwloop metadata


SOURCES = ("nir", "snntorch", "norse", "rockpool")


def import_nir(
    path: str | os.PathLike,
    *,
    t_max: float | None = None,
    time_unit: str | None = None,
    dt: float | None = None,
    classes: Sequence[str] | None = None,
    encoding: InputEncoding | Mapping[str, Any] | None = None,
    source: str = "nir",
) -> ImportedNetwork:
    """Read a NIR file and turn it into a `Network` (see `nir_to_network`).

    The file's declared structure is checked first (`nir_guard`: sizes,
    nesting depth, dtypes), so nothing is allocated for a file that breaks a
    limit. A file that is not a readable NIR graph raises `NetworkFileError`;
    a graph hwloop cannot run raises `NetworkSpecError` naming the node and
    the problem.
    """
    nir = _nir()
    path = Path(path)
    if not path.exists():
        raise NetworkFileError(f"{path}: no such file")
    if not path.is_file():
        raise NetworkFileError(f"{path}: not a regular file")
    check_nir_file(path)
    try:
        graph = nir.read(str(path), type_check=False)  # shapes are checked below, with node names
    except OSError as exc:
        raise NetworkFileError(f"{path}: not a NIR file (not HDF5, or truncated: {exc})") from None
    except (KeyError, ValueError, TypeError, AssertionError, AttributeError, IndexError) as exc:
        raise NetworkFileError(f"{path}: {_which_node_is_malformed(path) or 'not a valid NIR graph'} "
                               f"({type(exc).__name__}: {exc})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NetworkFileError(f"{path}: holds a single {type(graph).__name__} node, not a NIRGraph")
    return nir_to_network(graph, t_max=t_max, time_unit=time_unit, dt=dt, classes=classes,
                          encoding=encoding, source=source, name=str(path))


def _which_node_is_malformed(path: Path) -> str | None:
    """nir.read fails on the first bad node without naming it; find its name."""
    nir = _nir()
    try:
        import h5py  # noqa: PLC0415
        from nir.serialization import hdf2dict  # noqa: PLC0415

        with h5py.File(path, "r") as f:
            d = hdf2dict(f["node"])
        for name, node in dict(d.get("nodes", {})).items():
            try:
                nir.dict2NIRNode(dict(node))
            except Exception:  # noqa: BLE001 - any failure here is "this node is malformed"
                return f"node {name!r} ({node.get('type', '?')}) is malformed"
    except Exception:  # noqa: BLE001 - diagnosis only; the caller reports the original error
        return None
    return None


def nir_to_network(
    graph,
    *,
    t_max: float | None = None,
    time_unit: str | None = None,
    dt: float | None = None,
    classes: Sequence[str] | None = None,
    encoding: InputEncoding | Mapping[str, Any] | None = None,
    source: str = "nir",
    name: str = "NIR graph",
) -> ImportedNetwork:
    """Map a NIR graph onto a LIF `Network`.

    Runnable graphs are layered feed-forward chains
    ``Input [-> Flatten] -> (Affine|Linear) -> CubaLIF -> ... -> CubaLIF -> Output``
    with uniform time constants per layer and tau_mem / tau_syn = 1 or 2,
    plus, for graphs we exported, bias channels of the input.

    ``source`` says whose conventions a foreign graph follows (``"nir"``:
    NIR's ODE as written; ``"snntorch"``, ``"norse"``, ``"rockpool"``: as
    that tool's exporter writes it, `docs/interop.md`). Graphs written by
    hwloop carry their convention in their metadata and ignore ``source``.

    Arguments fill in what NIR does not store and override the graph's hwloop
    metadata where given: ``t_max`` and ``time_unit`` (required for foreign
    graphs: every NIR time is taken to be in ``time_unit``), ``dt`` (the
    exporter's step: for ``source="nir"`` when its spikes are one-step
    pulses of height 1; for snntorch its fixed step 1e-4 and for norse its
    ``dt`` 1e-3 are the defaults), ``classes`` and ``encoding`` (an
    `InputEncoding`, or a mapping of some of its fields).

    Every imported layer passes a sanity check on magnitudes (time constants
    against the trial length and the exporter's step, weights against the
    threshold); a value off by orders of magnitude (a unit mix-up) raises
    `NetworkSpecError` naming the node, the attribute and the value.
    """
    if source not in SOURCES:
        raise NetworkSpecError(f"{name}: unknown source convention {source!r}; choose one of {', '.join(SOURCES)}")
    try:
        return _Importer(graph, name).run(t_max, time_unit, dt, classes, encoding, source)
    except HwloopError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, ZeroDivisionError) as exc:
        # nir's dataclasses take any Python value: a malformed in-memory graph lands here
        raise NetworkSpecError(f"{name}: malformed NIR graph ({type(exc).__name__}: {exc})") from None


def _meta_value(v):
    """HDF5 gives back bytes and numpy scalars; normalise to Python values."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


class _Importer:
    """One import: graph checks in the order a user would want to hear them."""

    def __init__(self, graph, source: str):
        self.nir = _nir()
        self.g = graph
        self.src = source
        self.meta = {k: _meta_value(v) for k, v in dict(getattr(graph, "metadata", None) or {}).items()}
        self.notes: list[str] = []
        self.node_sizes: dict[str, int] = {}
        self.node_keep: dict[str, np.ndarray] = {}

    def fail(self, msg: str) -> NetworkSpecError:
        return NetworkSpecError(f"{self.src}: {msg}")

    def node_fail(self, name: str, msg: str) -> NetworkSpecError:
        return self.fail(f"node {name!r} ({type(self.g.nodes[name]).__name__}): {msg}")

    def node_meta(self, name: str) -> dict:
        return {k: _meta_value(v) for k, v in dict(getattr(self.g.nodes[name], "metadata", None) or {}).items()}

    # ------------------------------------------------------------------ run
    def run(self, t_max, time_unit, dt, classes, encoding, source="nir") -> ImportedNetwork:
        ours = self.meta.get("hwloop_format") == NIR_FORMAT
        self.version = None
        if ours:
            version = self.meta.get("hwloop_format_version")
            if version not in NIR_READ_VERSIONS:
                raise self.fail(f"hwloop NIR metadata version {version!r} is not supported "
                                f"(this hwloop reads versions {', '.join(map(str, NIR_READ_VERSIONS))})")
            self.version = version
        self._refuse_unrunnable_models()
        self._check_node_types()
        self._check_edges()
        chain, inputs, out_name = self._layer_chain()

        if dt is not None and not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise self.fail(f"dt must be a finite number > 0, got {dt!r}")
        if ours:
            self.convention = ("ours", self.meta.get("hwloop_consumer", "nir"), None)
        else:
            self.convention = self._foreign_convention(source, dt)
            self.notes.append("graph carries no hwloop metadata: its neurons now fire at most once per trial "
                              "(first spike only), whatever they did in the exporting framework")

        t_max = self._trial_length(t_max, ours)
        time_unit = self._time_unit(time_unit, ours, source)
        n_features = inputs["n_features"]
        layers = [self._layer(k, stage) for k, stage in enumerate(chain)]
        if not ours:
            self._sanity(chain, layers, t_max, time_unit)
        encoding = self._encoding(encoding, ours, n_features, t_max)
        decoding = self._decoding(classes, ours, layers[-1].n_out, out_name)
        provenance = self._provenance(ours)
        try:
            net = Network(layers=tuple(layers), encoding=encoding, decoding=decoding, t_max=t_max,
                          time_unit=time_unit, provenance=provenance)
        except NetworkSpecError as exc:
            raise self.fail(f"the imported network is inconsistent: {exc}") from None
        return ImportedNetwork(network=net, notes=self.notes, foreign=not ours)

    def _foreign_convention(self, source: str, dt):
        """(kind, source, step) for a graph from another tool."""
        if source == "nir":
            if dt is None:
                self.notes.append("no dt given: spikes taken as NIR's unit-area Dirac impulses; graphs from "
                                  "discrete-time frameworks need --from snntorch|norse|rockpool (or dt = "
                                  "their time step)")
            return ("nir", "nir", None if dt is None else float(dt))
        if source == "snntorch":
            step = conventions.SNNTORCH_DT if dt is None else float(dt)
        elif source == "norse":
            step = 1e-3 if dt is None else float(dt)  # Norse's default dt
        else:
            step = None if dt is None else float(dt)  # Rockpool: from each node's r unless given
        self.notes.append(f"read with {source}'s conventions" + ("" if step is None else f" (step {step:g})"))
        return ("preset", source, step)

    # --------------------------------------------------------------- checks
    def _refuse_unrunnable_models(self) -> None:
        for name in self.g.nodes:
            model = self.node_meta(name).get("hwloop_model")
            if model is not None and model != "lif":
                why = _NO_PRIMITIVE.get(model, "it is not a model hwloop can import from NIR")
                raise self.node_fail(
                    name, f"is marked hwloop_model={model!r}: an hwloop {model} layer exported as a CubaLIF "
                          f"placeholder ({why}); it cannot be imported as a runnable network. "
                          "Exchange the .hwnet file instead")

    def _check_node_types(self) -> None:
        nir = self.nir
        supported = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.CubaLIF, nir.Flatten)
        hints = {
            "LIF": "it has no synaptic current (tau_syn = 0); hwloop's LIF needs tau_mem/tau_syn = 1 or 2",
            "IF": "it has no leak and no synaptic current; hwloop's LIF needs tau_mem/tau_syn = 1 or 2",
            "CubaLI": "it never spikes (a readout integrator); hwloop needs spiking output neurons",
            "LI": "it never spikes (a readout integrator); hwloop needs spiking output neurons",
            "NIRGraph": "nested subgraphs (e.g. recurrent layers) are not supported; hwloop runs flat "
                        "feed-forward chains",
        }
        for name, node in self.g.nodes.items():
            if not isinstance(node, supported):
                kind = type(node).__name__
                hint = hints.get(kind, "hwloop imports Input, Affine, Linear, CubaLIF, Flatten and Output nodes")
                raise self.node_fail(name, f"unsupported node type {kind}: {hint}")

    def _check_edges(self) -> None:
        names = set(self.g.nodes)
        self.succ: dict[str, list[str]] = {n: [] for n in names}
        self.pred: dict[str, list[str]] = {n: [] for n in names}
        for edge in self.g.edges:
            a, b = edge
            for end in (a, b):
                if end not in names:
                    raise self.fail(f"edge ({a!r} -> {b!r}) names a node {end!r} the graph does not have")
            if b in self.succ[a]:
                raise self.fail(f"duplicate edge ({a!r} -> {b!r})")
            self.succ[a].append(b)
            self.pred[b].append(a)
        # depth-first search; an edge back to a node still on the stack closes a cycle
        state = {n: 0 for n in names}  # 0 new, 1 on stack, 2 done
        for root in sorted(names):
            if state[root]:
                continue
            stack = [(root, iter(self.succ[root]))]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                elif state[nxt] == 1:
                    raise self.fail(f"recurrent edge ({node!r} -> {nxt!r}) closes a cycle; hwloop runs "
                                    "feed-forward networks only")
                elif state[nxt] == 0:
                    state[nxt] = 1
                    stack.append((nxt, iter(self.succ[nxt])))

    def _layer_chain(self):
        """Walk input -> ... -> output; returns (stages, input info, output name).

        A stage is a dict: ``lif`` (CubaLIF name), ``main`` (weight node from
        the previous stage), ``bias`` (list of (bias Input, weight node)).
        """
        nir = self.nir
        nodes = self.g.nodes
        outputs = [n for n, v in nodes.items() if isinstance(v, nir.Output)]
        if len(outputs) != 1:
            raise self.fail(f"graph has {len(outputs)} Output nodes ({', '.join(outputs) or 'none'}); "
                            "hwloop networks have exactly one output layer")
        feature_inputs, bias_inputs = [], []
        for n, v in nodes.items():
            if isinstance(v, nir.Input):
                (bias_inputs if self.node_meta(n).get("hwloop_role") == "bias" else feature_inputs).append(n)
        if len(feature_inputs) != 1:
            raise self.fail(f"graph has {len(feature_inputs)} Input nodes without hwloop bias metadata "
                            f"({', '.join(feature_inputs) or 'none'}); hwloop networks take one input vector")
        start = feature_inputs[0]
        n_features = self._input_size(start)
        # version-2 files: later layers' bias channels leave the input through Linear nodes marked as bias
        bias_weights = set()
        if self.version == 2:
            bias_weights = {n for n in self.succ[start] if isinstance(nodes[n], (nir.Linear, nir.Affine))
                            and self.node_meta(n).get("hwloop_role") == "bias" and self.pred[n] == [start]}
        # skip Flatten nodes right after the input: our input is a flat vector anyway
        head = start
        while True:
            nxt = self.succ[head]
            if len(nxt) == 1 and isinstance(nodes[nxt[0]], nir.Flatten):
                fl = nxt[0]
                if len(self.pred[fl]) != 1:
                    raise self.node_fail(fl, "a Flatten after the input must have exactly one source")
                head = fl
                continue
            break
        for n, v in nodes.items():
            if isinstance(v, nir.Flatten) and n not in self._flatten_after(start):
                raise self.node_fail(n, "Flatten is supported only between the Input and the first weight node")

        stages = []
        visited = {start, *self._flatten_after(start)}
        cur, n_cur = head, n_features
        while True:
            succ = [n for n in self.succ[cur] if not (cur == start and n in bias_weights)]
            if not succ:
                raise self.node_fail(cur, "leads nowhere: the chain from the input must end in the Output node")
            if len(succ) > 1:
                raise self.node_fail(cur, f"feeds {len(succ)} nodes ({', '.join(succ)}); hwloop runs "
                                          "layered chains without branches or skip connections")
            nxt = succ[0]
            if isinstance(nodes[nxt], nir.Output):
                if not stages:
                    raise self.fail("the input is connected straight to the output; no neuron layer")
                if not isinstance(nodes[cur], nir.CubaLIF):
                    raise self.node_fail(nxt, "Output must be fed by a CubaLIF layer")
                if len(self.pred[nxt]) != 1:
                    raise self.node_fail(nxt, f"has {len(self.pred[nxt])} sources; expected the last layer only")
                self._check_output_shape(nxt, n_cur)
                visited.add(nxt)
                break
            if not isinstance(nodes[nxt], (nir.Affine, nir.Linear)):
                raise self.node_fail(nxt, f"follows {cur!r}, but every neuron layer must be reached through a "
                                          "weight node (Affine or Linear)")
            fc = nxt
            w_succ = self.succ[fc]
            if len(w_succ) != 1 or not isinstance(nodes[w_succ[0]], nir.CubaLIF):
                raise self.node_fail(fc, "a weight node must feed exactly one CubaLIF node")
            if len(self.pred[fc]) != 1:
                raise self.node_fail(fc, f"has {len(self.pred[fc])} sources; expected one")
            lif = w_succ[0]
            stage = {"lif": lif, "main": fc, "n_src": n_cur, "src": cur, "bias": []}
            for fc_in in self.pred[lif]:
                if fc_in == fc:
                    continue
                if not isinstance(nodes[fc_in], (nir.Affine, nir.Linear)):
                    raise self.node_fail(lif, f"receives directly from {fc_in!r}; every input of a neuron "
                                              "layer must come through a weight node")
                srcs = self.pred[fc_in]
                if fc_in in bias_weights:
                    if len(self.succ[fc_in]) != 1:
                        raise self.node_fail(fc_in, "a weight node must feed exactly one CubaLIF node")
                    stage["bias"].append((start, fc_in))
                    visited.add(fc_in)
                    continue
                if len(srcs) != 1 or srcs[0] not in bias_inputs:
                    raise self.node_fail(lif, f"receives from {', '.join(srcs) or 'nothing'} via {fc_in!r} as "
                                              f"well as from {cur!r}; hwloop layers take one previous layer "
                                              "(plus hwloop bias inputs), no skip connections")
                if len(self.succ[fc_in]) != 1:
                    raise self.node_fail(fc_in, "a weight node must feed exactly one CubaLIF node")
                stage["bias"].append((srcs[0], fc_in))
                visited.update((srcs[0], fc_in))
            stages.append(stage)
            visited.update((fc, lif))
            n_cur = self._weight(fc, stage["n_src"], cur).shape[0]
            cur = lif
        stray = sorted(set(nodes) - visited)
        if stray:
            raise self.node_fail(stray[0], "is not on the chain from the input to the output")
        for b in bias_inputs:
            if len(self.succ[b]) != 1:
                raise self.node_fail(b, "a bias input must feed exactly one weight node")
        if self.version == 2:
            n_features = self._channel_map(start, n_features, len(stages))
        return stages, {"n_features": n_features, "name": start}, outputs[0]

    def _channel_map(self, start: str, n_channels: int, n_layers: int) -> int:
        """Version 2: which input channels are features and which are whose bias sources."""
        d = self._json_meta("hwloop_input_channels")
        try:
            n_feat = int(d["features"])
            bias = [(int(li), float(t)) for li, t in d["bias"]]
            n_cancel = len(d.get("cancel", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise self.fail(f"hwloop_input_channels metadata is malformed ({type(exc).__name__}: {exc})") from None
        if n_feat < 1 or n_feat + len(bias) + n_cancel != n_channels:
            raise self.node_fail(start, f"has {n_channels} channels but hwloop_input_channels lists {n_feat} "
                                        f"features, {len(bias)} bias sources and {n_cancel} relay cancels")
        if any(not 0 <= li < n_layers or not (math.isfinite(t) and t >= 0) for li, t in bias):
            raise self.fail("hwloop_input_channels names a bias source of a layer that does not exist, or a "
                            "bias time that is not finite and >= 0")
        self.channels = (n_feat, bias)
        self.n_channels = n_channels
        return n_feat

    def _flatten_after(self, start: str) -> list[str]:
        out, head = [], start
        while len(self.succ[head]) == 1 and isinstance(self.g.nodes[self.succ[head][0]], self.nir.Flatten):
            head = self.succ[head][0]
            out.append(head)
        return out

    # --------------------------------------------------------------- shapes
    def _input_size(self, name: str) -> int:
        shape = np.asarray(self.g.nodes[name].input_type.get("input", []), dtype=np.int64).reshape(-1)
        if shape.size == 0 or np.any(shape < 1):
            raise self.node_fail(name, f"input shape {shape.tolist()} is not a positive size")
        if shape.size > 1 and np.count_nonzero(shape > 1) > 1 and not self._flatten_after(name):
            # leading/trailing 1s (Rockpool's (batch, time, channels) = [1, 1, n]) are flat enough
            raise self.node_fail(name, f"input shape {shape.tolist()} is not flat; add a Flatten node or export "
                                       "a 1-D input")
        return int(np.prod(shape))

    def _check_output_shape(self, name: str, n: int) -> None:
        shape = np.asarray(self.g.nodes[name].output_type.get("output", []), dtype=np.int64).reshape(-1)
        if shape.size and int(np.prod(shape)) != n:
            raise self.node_fail(name, f"output shape {shape.tolist()} but the last layer has {n} neurons")

    def _weight(self, name: str, n_src: int, src: str) -> np.ndarray:
        node = self.g.nodes[name]
        w = np.asarray(node.weight, dtype=np.float64)
        if w.ndim != 2:
            raise self.node_fail(name, f"weight must be a 2-D matrix (n_out, n_in), got shape {w.shape}")
        if w.shape[1] != n_src:
            raise self.node_fail(name, f"weight has {w.shape[1]} columns but its source {src!r} has "
                                       f"{n_src} outputs (shape mismatch)")
        if not np.all(np.isfinite(w)):
            raise self.node_fail(name, "weight has non-finite values")
        if isinstance(node, self.nir.Affine):
            b = np.asarray(node.bias, dtype=np.float64).reshape(-1)
            if b.size not in (1, w.shape[0]):
                raise self.node_fail(name, f"bias has {b.size} entries but the weight has {w.shape[0]} rows")
            if np.any(b != 0):
                raise self.node_fail(
                    name, "has a nonzero bias, i.e. a constant input current, which hwloop's LIF cannot "
                          "represent (its biases are spikes at fixed times); export without bias "
                          "(e.g. nn.Linear(..., bias=False)) or zero it")
        return w

    def _param(self, lif: str, key: str, n: int) -> np.ndarray:
        node = self.g.nodes[lif]
        raw = getattr(node, key, None)
        if raw is None:
            raise self.node_fail(lif, f"has no {key}")
        v = np.asarray(raw, dtype=np.float64).reshape(-1)
        if v.size == 1:
            v = np.full(n, v[0])
        elif v.size != n:
            raise self.node_fail(lif, f"{key} has {v.size} entries but the layer has {n} neurons (shape mismatch)")
        if not np.all(np.isfinite(v)):
            raise self.node_fail(lif, f"{key} has non-finite values")
        return v

    def _uniform(self, lif: str, key: str, v: np.ndarray) -> float:
        if np.any(np.abs(v - v[0]) > _UNIFORM_RTOL * abs(v[0])):
            raise self.node_fail(lif, f"{key} differs between neurons ({v.min():g} .. {v.max():g}); "
                                      "hwloop layers share one value")
        return float(v[0])

    # ---------------------------------------------------------------- layers
    def _relays(self, lif: str, n_node: int) -> dict[int, int]:
        """Version 2: relay neurons of a layer (see network_to_nir): neuron index -> bias channel index."""
        raw = self.node_meta(lif).get("hwloop_relays")
        if raw is None:
            return {}
        try:
            rel = {int(i): int(j) for i, j in json.loads(raw)}
        except (TypeError, ValueError, json.JSONDecodeError) as exc:
            raise self.node_fail(lif, f"hwloop_relays metadata is malformed ({type(exc).__name__}: {exc})") from None
        n_bias = len(self.channels[1])
        if any(not 0 <= i < n_node for i in rel) or any(not 0 <= j < n_bias for j in rel.values()):
            raise self.node_fail(lif, "hwloop_relays names a neuron or bias channel that does not exist")
        return rel

    def _weights(self, k: int, stage: dict) -> tuple[np.ndarray, list[float]]:
        """The layer's NIR weights (n, n_src + n_bias) and its bias times (relay neurons removed)."""
        lif = stage["lif"]
        if self.version == 2:
            n_feat, bias = self.channels
            own = [n_feat + j for j, (li, _) in enumerate(bias) if li == k]
            times = [t for li, t in bias if li == k]
            w = self._weight(stage["main"], stage["n_src"], stage["src"])
            relays = self._relays(lif, w.shape[0])
            keep = np.array([r for r in range(w.shape[0]) if r not in relays], dtype=np.int64)
            cols = {}  # bias channel -> (n,) weights into this layer
            if k == 0:  # features and this layer's bias channels; any other channel must stay unused
                used = list(range(n_feat)) + own
                other = np.setdiff1d(np.arange(w.shape[1]), used)
                if other.size and np.any(w[np.ix_(keep, other)] != 0):
                    raise self.node_fail(stage["main"], "has nonzero weights from input channels that "
                                                        "hwloop_input_channels assigns to other layers' bias")
                w_main = w[keep][:, :n_feat]
                cols = {c: w[keep, c] for c in own}
            else:
                prev_relays = self._relays(stage["src"], stage["n_src"])
                src_keep = [c for c in range(w.shape[1]) if c not in prev_relays]
                w_main = w[keep][:, src_keep]
                for r, j in prev_relays.items():
                    if bias[j][0] != k:
                        raise self.node_fail(stage["src"], f"relay neuron {r} carries a bias source of layer "
                                                           f"{bias[j][0]}, not of layer {k}")
                    cols[n_feat + j] = w[keep, r]
                for _, b_fc in stage["bias"]:
                    wb = self._weight(b_fc, self.n_channels, "input")
                    if wb.shape[0] != w_main.shape[0]:
                        raise self.node_fail(b_fc, f"weight has {wb.shape[0]} rows but layer {lif!r} has "
                                                   f"{w_main.shape[0]} neurons")
                    other = np.setdiff1d(np.arange(wb.shape[1]), own)
                    if other.size and np.any(wb[:, other] != 0):
                        raise self.node_fail(b_fc, "has nonzero weights from input channels that are not "
                                                   f"bias sources of layer {k}")
                    for c in own:
                        if np.any(wb[:, c] != 0) or c not in cols:
                            cols[c] = cols.get(c, 0) + wb[:, c]
            w_b = np.stack([cols.get(c, np.zeros(w_main.shape[0])) for c in own], axis=1) if own else \
                np.zeros((w_main.shape[0], 0))
            self.node_sizes[lif] = w.shape[0]
            self.node_keep[lif] = keep
            return np.concatenate([w_main, w_b], axis=1), times
        w_main = self._weight(stage["main"], stage["n_src"], stage["src"])
        n = w_main.shape[0]
        blocks = [w_main]
        bias_times: list[float] = []
        for b_in, b_fc in stage["bias"]:
            n_b = self._input_size(b_in)
            w_b = self._weight(b_fc, n_b, b_in)
            if w_b.shape[0] != n:
                raise self.node_fail(b_fc, f"weight has {w_b.shape[0]} rows but layer {lif!r} has {n} neurons")
            times = np.asarray(self.node_meta(b_in).get("hwloop_bias_times", []), dtype=np.float64).reshape(-1)
            if times.size != n_b:
                raise self.node_fail(b_in, f"hwloop_bias_times has {times.size} entries for {n_b} bias sources")
            blocks.append(w_b)
            bias_times += times.tolist()
        return np.concatenate(blocks, axis=1), bias_times

    def _taus(self, lif: str, n: int) -> tuple[float, float]:
        tau_syn = self._uniform(lif, "tau_syn", self._param(lif, "tau_syn", n))
        tau_mem = self._uniform(lif, "tau_mem", self._param(lif, "tau_mem", n))
        if not (tau_syn > 0 and tau_mem > 0):
            raise self.node_fail(lif, f"time constants must be > 0 (tau_syn={tau_syn:g}, tau_mem={tau_mem:g})")
        return tau_syn, tau_mem

    def _snap_ratio(self, lif: str, tau_syn: float, tau_mem: float, rtol: float = _RATIO_RTOL) -> float:
        ratio = tau_mem / tau_syn
        match = [q for q in SUPPORTED_TAU_RATIOS if abs(ratio - q) <= max(rtol, _RATIO_RTOL) * q]
        if not match:
            raise self.node_fail(lif, f"tau_mem/tau_syn = {ratio:.6g} (tau_mem={tau_mem:g}, tau_syn={tau_syn:g}) "
                                      "is not supported; hwloop's LIF model has closed forms for ratios 1 and 2")
        if tau_mem != match[0] * tau_syn:
            self.notes.append(f"{lif}: tau_mem snapped from {tau_mem!r} to {match[0]:g} * tau_syn")
            tau_mem = match[0] * tau_syn
        return tau_mem

    def _ours_v2(self, lif: str, n: int) -> tuple[float, float, float]:
        """Neuron parameters of a layer we exported (version 2), checked against the node."""
        raw = self.node_meta(lif).get("hwloop_neuron")
        try:
            d = json.loads(raw)
            p = NeuronParams(model="lif", tau_syn=float(d["tau_syn"]), tau_mem=float(d["tau_mem"]),
                             threshold=float(d["threshold"]))
        except (TypeError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise self.node_fail(lif, f"hwloop_neuron metadata is malformed ({type(exc).__name__}: {exc})") from None
        if not all(math.isfinite(v) and v > 0 for v in (p.tau_syn, p.tau_mem, p.threshold)):
            raise self.node_fail(lif, f"hwloop_neuron metadata has non-positive or non-finite values ({d})")
        consumer = self.convention[1]
        h = self.meta.get("hwloop_dt")
        if consumer not in CONSUMERS or (consumer != "nir" and not (isinstance(h, (int, float)) and h > 0)):
            raise self.fail(f"hwloop_consumer {consumer!r} / hwloop_dt {h!r} metadata is malformed")
        expect = _cubalif_params(p, consumer, None if consumer == "nir" else float(h))
        for key, value in expect.items():
            got = self._param(lif, key, n)
            if np.any(np.abs(got - value) > 1e-9 * max(abs(value), 1e-300)):
                raise self.node_fail(lif, f"{key} = {got[0]:.10g} does not match the hwloop_neuron metadata "
                                          f"(expected {value:.10g} for consumer {consumer!r}); the file was edited")
        return p.tau_syn, p.tau_mem, p.threshold

    def _layer(self, k: int, stage: dict) -> Layer:
        lif = stage["lif"]
        w_nir, bias_times = self._weights(k, stage)
        n = self.node_sizes.get(lif, w_nir.shape[0])  # relay neurons share the layer's parameters
        kind, source, step = self.convention
        theta = None
        if kind == "ours" and self.version == 2:
            tau_syn, tau_mem, threshold = self._ours_v2(lif, n)
            scale, theta = np.ones(n), np.full(n, threshold)  # the weights are ours, bit for bit
        else:
            tau_syn, tau_mem = self._taus(lif, n)
            r = self._param(lif, "r", n)
            w_in = self._param(lif, "w_in", n)
            v_leak = self._param(lif, "v_leak", n)
            theta = self._param(lif, "v_threshold", n) - v_leak
            if kind == "preset" and source in ("snntorch", "norse", "rockpool") and np.any(v_leak != 0):
                raise self.node_fail(lif, f"v_leak = {v_leak[v_leak != 0][0]:g}: {source} reads v_leak as a "
                                          "constant input (snnTorch refuses it); hwloop needs v_leak = 0")
            if kind in ("ours", "nir"):  # NIR's ODE as written: a spike of area a jumps r*I by r w_in W a / tau_syn
                area = 1.0 if step is None else step
                scale = r * w_in * area / tau_syn
            elif source == "snntorch":
                # snnTorch: alpha = 1 - dt/tau, syn += W per spike, threshold divided by w_in dt / tau_syn
                tau_syn_raw = tau_syn
                tau_syn_c = conventions.tau_from_euler(step, tau_syn)
                tau_mem_c = conventions.tau_from_euler(step, tau_mem)
                for key, v, raw in (("tau_syn", tau_syn_c, tau_syn), ("tau_mem", tau_mem_c, tau_mem)):
                    if not math.isfinite(v):
                        raise self.node_fail(lif, f"{key} = {raw:g} is not longer than snnTorch's step "
                                                  f"{step:g}: its decay 1 - dt/tau would not lie in (0, 1)")
                # its membrane is c times ours at every grid point (conventions): threshold / c, weights as they are
                tau_syn, tau_mem = tau_syn_c, self._snap_ratio(lif, tau_syn_c, tau_mem_c)
                theta = theta / (w_in * step / tau_syn_raw) / conventions.euler_gain(step, tau_syn, tau_mem)
                scale = np.ones(n)
            elif source == "norse":
                # Norse 1.1.0's to_nir writes tau = dt / tau_inv = dt * tau (not 1 / tau_inv). Its LIFCell
                # integrates forward Euler: i += W per spike, v += dt/tau_mem (i - v), i -= dt/tau_syn i.
                # That is exactly a continuous LIF with the decays' equivalent taus, read at the grid points,
                # with its membrane c times ours (c below); the threshold absorbs c.
                ts, tm = tau_syn / step, tau_mem / step
                ts_eq, tm_eq = conventions.tau_from_euler(step, ts), conventions.tau_from_euler(step, tm)
                if not (math.isfinite(ts_eq) and math.isfinite(tm_eq)):
                    raise self.node_fail(lif, f"tau_syn = {ts:g}, tau_mem = {tm:g} (NIR tau / dt) are not longer "
                                              f"than Norse's step dt = {step:g}")
                a_e, b_e = 1.0 - step / ts, 1.0 - step / tm
                if abs(tm - ts) <= 1e-12 * tm:
                    c = ts_eq / (tm * b_e)
                else:
                    c = (step / tm) * (tm_eq - ts_eq) / (ts_eq * (b_e - a_e))
                self.notes.append(f"{lif}: Norse taus {ts:g}, {tm:g} (NIR tau / dt); forward-Euler decays "
                                  f"equivalent to tau_syn={ts_eq:.6g}, tau_mem={tm_eq:.6g}")
                tau_syn, tau_mem = ts_eq, self._snap_ratio(lif, ts_eq, tm_eq, rtol=2 * step / ts)
                theta, scale = theta / c, r * 1.0
            else:  # rockpool: exact decays; r = tau_mem exp(-dt/tau_mem) / dt gives its dt
                h = step if step is not None else conventions.rockpool_dt_of_export(tau_mem, float(r[0]))
                if not (math.isfinite(h) and 0 < h < min(tau_syn, tau_mem)):
                    raise self.node_fail(lif, f"r = {float(r[0]):g} gives Rockpool's step dt = {h:g}, not between "
                                              f"0 and the time constants ({tau_syn:g}, {tau_mem:g})")
                self._rockpool_dt = h
                theta, scale = theta / conventions.rockpool_gain(h, tau_syn, tau_mem), np.ones(n)
            if kind != "preset" or source == "rockpool":
                tau_mem = self._snap_ratio(lif, tau_syn, tau_mem)
        keep = self.node_keep.get(lif)
        if keep is not None:  # drop relay neurons (their parameters are the layer's)
            scale, theta = np.broadcast_to(scale, (n,))[keep], np.broadcast_to(theta, (n,))[keep]
        if np.any(theta <= 0):
            j = int(np.argmin(theta))
            raise self.node_fail(lif, f"neuron {j}: v_threshold - v_leak = {theta[j]:g} <= 0, it would fire "
                                      "at rest")
        if np.any(scale == 0):
            raise self.node_fail(lif, "r * w_in is zero for some neuron: its input can never reach it")
        if np.all(np.abs(theta - theta[0]) <= _UNIFORM_RTOL * theta[0]):
            threshold = float(theta[0])
        else:
            # thresholds differ per neuron: V is linear in the weights, so divide each
            # neuron's incoming weights by its threshold and use threshold 1
            scale = scale / theta
            threshold = 1.0
            self.notes.append(f"{lif}: per-neuron thresholds folded into the weights (threshold 1)")
        weight = w_nir.T * scale[None, :]
        options: Mapping[str, Any] = {}
        opt_json = self.node_meta(lif).get("hwloop_options")
        if opt_json is not None and not isinstance(opt_json, str):
            raise self.node_fail(lif, f"hwloop_options must be a JSON string, got {type(opt_json).__name__}")
        if opt_json:
            try:
                options = json.loads(opt_json)
            except (TypeError, json.JSONDecodeError) as exc:
                raise self.node_fail(lif, f"hwloop_options is not valid JSON ({exc})") from None
            if not isinstance(options, dict):
                raise self.node_fail(lif, "hwloop_options is not a JSON object")
        try:
            neuron = NeuronParams(model="lif", tau_syn=tau_syn, tau_mem=tau_mem, threshold=threshold,
                                  options=options)
            return Layer(weight=weight, neuron=neuron, bias_times=tuple(bias_times))
        except NetworkSpecError as exc:
            raise self.node_fail(lif, str(exc)) from None

    def _sanity(self, chain, layers, t_max: float, unit: str) -> None:
        """Magnitudes a real network cannot have, named (a unit mix-up is the usual cause)."""
        step = self.convention[2] or getattr(self, "_rockpool_dt", None)
        for stage, layer in zip(chain, layers):
            lif, p = stage["lif"], layer.neuron
            for key, tau in (("tau_syn", p.tau_syn), ("tau_mem", p.tau_mem)):
                if not (t_max * 1e-4 <= tau <= t_max * 1e4):
                    raise self.node_fail(
                        lif, f"{key} = {tau:g} {unit} is {tau / t_max:.3g} times the trial length t_max = "
                             f"{t_max:g} {unit}: implausible (allowed 1e-4 .. 1e4 times t_max). Check --time-unit, "
                             "--t-max and the exporter's convention (--from snntorch|norse|rockpool)")
                if step is not None and tau < step:
                    raise self.node_fail(lif, f"{key} = {tau:g} {unit} is shorter than the exporter's step "
                                              f"dt = {step:g} {unit}")
            w = np.abs(layer.weight)
            top = float(w.max()) if w.size else 0.0
            ratio = top / p.threshold
            if top > 0 and not (1e-6 <= ratio <= 1e6):
                raise self.node_fail(stage["main"], f"largest weight {top:g} is {ratio:.3g} times the layer's "
                                                    f"threshold {p.threshold:g}: implausible (allowed 1e-6 .. 1e6); "
                                                    "check --dt and the exporter's convention")

    # ----------------------------------------------------- network metadata
    def _json_meta(self, key: str):
        raw = self.meta.get(key)
        if raw is None:
            raise self.fail(f"hwloop metadata lacks {key}")
        try:
            return json.loads(raw)
        except (TypeError, json.JSONDecodeError) as exc:
            raise self.fail(f"hwloop metadata {key} is not valid JSON ({exc})") from None

    def _trial_length(self, t_max, ours: bool) -> float:
        if t_max is None:
            if not ours:
                raise self.fail("the graph carries no hwloop metadata and NIR stores no trial length: "
                                "pass t_max (CLI: --t-max) and time_unit (--time-unit)")
            t_max = self.meta.get("hwloop_t_max")
        try:
            t_max = float(t_max)
        except (TypeError, ValueError):
            raise self.fail(f"t_max must be a number, got {t_max!r}") from None
        if not (math.isfinite(t_max) and t_max > 0):
            raise self.fail(f"t_max must be a finite number > 0, got {t_max!r}")
        return t_max

    def _time_unit(self, unit, ours: bool, source: str = "nir") -> str:
        if unit is None and not ours and source != "nir":
            self.notes.append(f"no time unit given: {source}'s taus taken in seconds")
            unit = "s"
        if unit is None:
            if not ours:
                raise self.fail("the graph carries no hwloop metadata and NIR stores no time unit: pass "
                                f"time_unit (CLI: --time-unit, one of {', '.join(TIME_UNITS)}): the unit every "
                                "tau in the graph is in")
            unit = self.meta.get("hwloop_time_unit")
        if unit not in TIME_UNITS:
            raise self.fail(f"time unit must be one of {', '.join(TIME_UNITS)}, got {unit!r}")
        return unit

    def _encoding(self, enc, ours: bool, n_features: int, t_max: float) -> InputEncoding:
        """``enc``: an `InputEncoding`, or a mapping of fields overriding the
        graph's (or the default) encoding, or None."""
        if isinstance(enc, InputEncoding):
            if enc.n_features != n_features:
                raise self.fail(f"the given encoding has {enc.n_features} features but the graph's input has "
                                f"{n_features}")
            return enc
        overrides = dict(enc or {})
        if ours:
            d = self._json_meta("hwloop_encoding")
            if not isinstance(d, dict):
                raise self.fail("hwloop_encoding metadata is malformed (not an object)")
        else:
            d = {"kind": "linear-latency", "value_min": 0.0, "value_max": 1.0, "t_at_min": 0.0,
                 "t_at_max": t_max / 2, "silent_at_min": False}
            if not overrides:
                self.notes.append(f"no input encoding given: features in [0, 1] map linearly to spike times "
                                  f"0 .. {t_max / 2:g}")
        d = {**d, **overrides, "n_features": n_features}
        try:
            enc = InputEncoding(
                n_features=int(d["n_features"]), kind=str(d["kind"]), value_min=float(d["value_min"]),
                value_max=float(d["value_max"]), t_at_min=float(d["t_at_min"]),
                t_at_max=float(d["t_at_max"]), silent_at_min=bool(d.get("silent_at_min", False)))
            enc.validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise self.fail(f"input encoding is malformed ({type(exc).__name__}: {exc})") from None
        except NetworkSpecError as exc:
            raise self.fail(f"input encoding is invalid: {exc}") from None
        return enc

    def _decoding(self, classes, ours: bool, n_out: int, out_name: str) -> OutputDecoding:
        if classes is None and ours:
            d = self._json_meta("hwloop_decoding")
            if not isinstance(d, dict) or "classes" not in d:
                raise self.fail("hwloop_decoding metadata is malformed (no classes)")
            return OutputDecoding(classes=tuple(d["classes"]), kind=str(d.get("kind", "first-spike")))
        if classes is None:
            classes = [str(i) for i in range(n_out)]
        if len(classes) != n_out:
            raise self.fail(f"{len(classes)} class names given but {out_name!r} has {n_out} neurons")
        return OutputDecoding(classes=tuple(classes))

    def _provenance(self, ours: bool) -> Provenance:
        if ours and self.meta.get("hwloop_provenance"):
            try:
                return Provenance.from_json(self._json_meta("hwloop_provenance"))
            except (KeyError, TypeError, ValueError) as exc:
                raise self.fail(f"hwloop_provenance metadata is malformed ({exc})") from None
        from .. import __version__  # noqa: PLC0415

        return Provenance(model="lif", hwloop_version=__version__, created=now_iso(),
                          extra={"imported_from": self.src, "format": "nir"})
