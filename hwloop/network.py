"""`hwloop.Network`: what a trained first-spike-time network *is*.

A network leaves training as one of these and every backend starts from one.
It holds everything a target needs and nothing about how it was simulated:

* layers: a weight matrix each, the neuron model and its parameters, and the
  times of the layer's bias spikes (extra presynaptic inputs firing at fixed
  times, appended after the previous layer's neurons);
* the trial length and the time unit every time in the file is expressed in;
* the input encoding (feature value -> input spike time) and the output
  decoding (first output spike wins);
* provenance: model, data set, seed, accuracies, package version.

The file format (``.hwnet``) is a zip archive holding ``manifest.json`` and one
``.npy`` file per weight matrix; `docs/network-format.md` specifies it well
enough to read without this code. Saving writes a temporary file and renames
it, so a crash never leaves half a file under the target name. Loading checks
everything (resource limits before allocation, zip structure, version, every
manifest field's type, checksums, shapes, finiteness; `hwloop.netfile`) and
raises one `NetworkFileError` naming the file and the problem.

``Network.run(target, x)`` runs a network on a target (a URL or an open
backend) and returns the `Measurement`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from . import netfile
from .errors import NetworkFileError, NetworkSpecError, TargetError
from .fileio import atomic_path
from .netfile import FieldError, LoadLimits

if TYPE_CHECKING:  # backends import this module; only the type checker needs them here
    from hwloop.backends import Backend, Measurement

#: the manifest's ``format`` value
FORMAT_NAME = "hwloop-network"
#: the manifest's ``format_version`` this module writes and reads
FORMAT_VERSION = 1
#: name of the manifest member in the archive
MANIFEST = "manifest.json"

#: neuron models a Network may name; each lives in `hwloop.models`
KNOWN_MODELS = ("lif", "qif", "nlif")
#: units a network's times may be expressed in
TIME_UNITS = ("s", "ms", "us", "ns")
#: input encodings (`InputEncoding.kind`)
ENCODING_KINDS = ("linear-latency",)
#: output decodings (`OutputDecoding.kind`)
DECODING_KINDS = ("first-spike",)

#: options a model defines, each with its rule (a description and a test of a
#: finite float); other option names are kept as plain JSON values (scalars or
#: lists of scalars) for the model to accept or refuse when it runs
MODEL_OPTIONS: dict[str, dict[str, tuple[str, Any]]] = {
    "qif": {
        "i0": ("a number > 0.25 (oscillatory regime)", lambda v: v > 0.25),
        "v0": ("a finite number", lambda v: True),
    },
}


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive(name: str, value: float, where: str) -> None:
    if not (_is_real(value) and math.isfinite(value) and value > 0):
        raise NetworkSpecError(f"{where}: {name} must be a finite number > 0, got {value!r}")


def _option_problem(model: str, key: Any, value: Any) -> str | None:
    """Why option ``key=value`` is not acceptable for ``model``, or None."""
    if not isinstance(key, str):
        return f"name must be a string, got {key!r}"
    rule = MODEL_OPTIONS.get(model, {}).get(key)
    if rule is not None:
        desc, ok = rule
        if not (_is_real(value) and math.isfinite(value) and ok(float(value))):
            return f"must be {desc}, got {netfile.describe(value)}"
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if item is None or isinstance(item, (str, bool)):
            continue
        if _is_real(item) and math.isfinite(item):
            continue
        return f"must be a JSON scalar (string, finite number, true/false, null) or a list of them, got {netfile.describe(value)}"
    return None


@dataclass(frozen=True)
class NeuronParams:
    """Neuron model and parameters of one layer, times in the network's unit.

    ``options`` holds model-specific extras: the options a model defines are
    checked by `MODEL_OPTIONS` (a QIF layer's ``i0`` and ``v0``); any other
    value must be a JSON scalar or a list of scalars.
    """

    model: str = "lif"
    tau_syn: float = 1.0
    tau_mem: float = 1.0
    threshold: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def validate(self, where: str = "neuron") -> None:
        """Raise `NetworkSpecError` (prefixed with ``where``) if a parameter is unusable."""
        if self.model not in KNOWN_MODELS:
            raise NetworkSpecError(f"{where}: unknown neuron model {self.model!r}; known: {', '.join(KNOWN_MODELS)}")
        _check_positive("tau_syn", self.tau_syn, where)
        _check_positive("tau_mem", self.tau_mem, where)
        if not (_is_real(self.threshold) and math.isfinite(self.threshold)):
            raise NetworkSpecError(f"{where}: threshold must be finite, got {self.threshold!r}")
        if not isinstance(self.options, Mapping):
            raise NetworkSpecError(f"{where}: options must be a mapping, got {type(self.options).__name__}")
        for key, value in self.options.items():
            problem = _option_problem(self.model, key, value)
            if problem:
                raise NetworkSpecError(f"{where}: option {key!r} {problem}")

    def to_json(self) -> dict:
        """The manifest's ``neuron`` object."""
        return {
            "model": self.model,
            "tau_syn": float(self.tau_syn),
            "tau_mem": float(self.tau_mem),
            "threshold": float(self.threshold),
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, d: Any, where: str = "neuron") -> "NeuronParams":
        """Read a manifest ``neuron`` object, every field type-checked; raises
        `hwloop.netfile.FieldError` (a ``ValueError``) naming the field."""
        d = netfile.obj(d, where, required=("model", "tau_syn", "tau_mem", "threshold"), optional=("options",))
        model = netfile.string(d["model"], netfile.join(where, "model"), KNOWN_MODELS)
        options = netfile.mapping(d.get("options", {}), netfile.join(where, "options"))
        for key, value in options.items():
            path = netfile.join(netfile.join(where, "options"), key)
            netfile.plain_json(value, path)
            problem = _option_problem(model, key, value)
            if problem:
                raise FieldError(path, problem)
        return cls(
            model=model,
            tau_syn=netfile.number(d["tau_syn"], netfile.join(where, "tau_syn"), gt=0),
            tau_mem=netfile.number(d["tau_mem"], netfile.join(where, "tau_mem"), gt=0),
            threshold=netfile.number(d["threshold"], netfile.join(where, "threshold")),
            options=dict(options),
        )


@dataclass(frozen=True, repr=False, eq=False)  # __eq__ below: weights compare by value
class Layer:
    """One feed-forward layer.

    ``weight[i, j]`` connects presynaptic source ``i`` to neuron ``j``. The
    sources are the previous layer's neurons (or the input features), then one
    row per entry of ``bias_times``: a bias source that spikes at that time in
    every trial. So ``weight.shape == (n_prev + len(bias_times), n_out)``.
    The weight is stored as a read-only float64 copy.
    """

    weight: np.ndarray
    neuron: NeuronParams = field(default_factory=NeuronParams)
    bias_times: tuple[float, ...] = ()

    def __post_init__(self):
        w = np.array(self.weight, dtype=np.float64, copy=True)
        w.setflags(write=False)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias_times", tuple(float(t) for t in self.bias_times))

    def __eq__(self, other: object) -> bool:
        # dataclass equality would ask numpy for the truth value of an array
        if not isinstance(other, Layer):
            return NotImplemented
        return (self.neuron == other.neuron and self.bias_times == other.bias_times
                and self.weight.shape == other.weight.shape and bool(np.array_equal(self.weight, other.weight)))

    __hash__ = None  # weights are arrays: a Layer is compared by value, not hashed

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.weight.shape)
        n = self.neuron
        bias = f", bias_times={self.bias_times}" if self.bias_times else ""
        return (f"Layer({shape}: {self.n_in} sources + {len(self.bias_times)} bias -> {self.n_out} {n.model}, "
                f"tau_syn={n.tau_syn:g} tau_mem={n.tau_mem:g} threshold={n.threshold:g}{bias})")

    @property
    def n_out(self) -> int:
        """Number of neurons in this layer."""
        return int(self.weight.shape[1])

    @property
    def n_in(self) -> int:
        """Number of non-bias sources (previous layer size)."""
        return int(self.weight.shape[0]) - len(self.bias_times)

    def validate(self, where: str) -> None:
        """Raise `NetworkSpecError` (prefixed with ``where``) if the layer is unusable."""
        if self.weight.ndim != 2 or 0 in self.weight.shape:
            raise NetworkSpecError(f"{where}: weight must be a non-empty 2-D matrix, got shape {self.weight.shape}")
        if not np.all(np.isfinite(self.weight)):
            bad = int(np.size(self.weight) - np.count_nonzero(np.isfinite(self.weight)))
            raise NetworkSpecError(f"{where}: weight has {bad} non-finite value(s)")
        if any(not math.isfinite(t) or t < 0 for t in self.bias_times):
            raise NetworkSpecError(f"{where}: bias_times must be finite and >= 0, got {self.bias_times}")
        if self.n_in < 1:
            raise NetworkSpecError(f"{where}: weight has {self.weight.shape[0]} rows but {len(self.bias_times)} bias times")
        self.neuron.validate(where)


@dataclass(frozen=True)
class InputEncoding:
    """Feature value -> input spike time, linear between two anchor points.

    A feature equal to ``value_min`` spikes at ``t_at_min``, one equal to
    ``value_max`` at ``t_at_max``; values outside are clipped. With
    ``silent_at_min`` a feature at (or below) ``value_min`` sends no spike
    (``inf``), e.g. black pixels. See `docs/encoding.md`.
    """

    n_features: int
    kind: str = "linear-latency"
    value_min: float = 0.0
    value_max: float = 1.0
    t_at_min: float = 0.0
    t_at_max: float = 1.0
    silent_at_min: bool = False

    def validate(self) -> None:
        """Raise `NetworkSpecError` if the encoding is unusable."""
        if self.kind not in ENCODING_KINDS:
            raise NetworkSpecError(f"encoding: unknown kind {self.kind!r}")
        if isinstance(self.n_features, bool) or not (isinstance(self.n_features, int) and self.n_features >= 1):
            raise NetworkSpecError(f"encoding: n_features must be a positive int, got {self.n_features!r}")
        vals = (self.value_min, self.value_max, self.t_at_min, self.t_at_max)
        if not all(_is_real(v) and math.isfinite(v) for v in vals):
            raise NetworkSpecError("encoding: values and times must be finite")
        if self.value_max <= self.value_min:
            raise NetworkSpecError("encoding: value_max must exceed value_min")
        if min(self.t_at_min, self.t_at_max) < 0:
            raise NetworkSpecError("encoding: spike times must be >= 0")

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Feature values (..., n_features) -> input spike times (same shape)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.n_features:
            raise NetworkSpecError(f"encoding: expected {self.n_features} features, got {x.shape[-1]}")
        u = (np.clip(x, self.value_min, self.value_max) - self.value_min) / (self.value_max - self.value_min)
        t = self.t_at_min + u * (self.t_at_max - self.t_at_min)
        if self.silent_at_min:
            t = np.where(x <= self.value_min, np.inf, t)
        return t

    @classmethod
    def from_json(cls, d: Any, where: str = "encoding") -> "InputEncoding":
        """Read a manifest ``encoding`` object, every field type-checked; raises
        `hwloop.netfile.FieldError` naming the field."""
        keys = ("n_features", "kind", "value_min", "value_max", "t_at_min", "t_at_max")
        d = netfile.obj(d, where, required=keys, optional=("silent_at_min",))
        return cls(
            n_features=netfile.integer(d["n_features"], netfile.join(where, "n_features"), ge=1),
            kind=netfile.string(d["kind"], netfile.join(where, "kind"), ENCODING_KINDS),
            value_min=netfile.number(d["value_min"], netfile.join(where, "value_min")),
            value_max=netfile.number(d["value_max"], netfile.join(where, "value_max")),
            t_at_min=netfile.number(d["t_at_min"], netfile.join(where, "t_at_min"), ge=0),
            t_at_max=netfile.number(d["t_at_max"], netfile.join(where, "t_at_max"), ge=0),
            silent_at_min=netfile.boolean(d.get("silent_at_min", False), netfile.join(where, "silent_at_min")),
        )


@dataclass(frozen=True)
class OutputDecoding:
    """First output spike wins. Ties and all-silent outputs are undecided
    (counted as errors and reported separately); see `docs/encoding.md`."""

    classes: tuple[str, ...]
    kind: str = "first-spike"

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def validate(self) -> None:
        """Raise `NetworkSpecError` if the decoding is unusable."""
        if self.kind not in DECODING_KINDS:
            raise NetworkSpecError(f"decoding: unknown kind {self.kind!r}")
        if len(self.classes) < 2:
            raise NetworkSpecError("decoding: need at least 2 classes")

    @classmethod
    def from_json(cls, d: Any, where: str = "decoding") -> "OutputDecoding":
        """Read a manifest ``decoding`` object, every field type-checked."""
        d = netfile.obj(d, where, required=("kind", "classes"))
        path = netfile.join(where, "classes")
        classes = netfile.array(d["classes"], path, min_len=2)
        return cls(
            classes=tuple(netfile.string(c, netfile.join(path, i)) for i, c in enumerate(classes)),
            kind=netfile.string(d["kind"], netfile.join(where, "kind"), DECODING_KINDS),
        )


@dataclass(frozen=True)
class Provenance:
    """Where a network came from: model and data set it was trained for, the
    seed, accuracies per split (fractions), the hwloop version, the creation
    time (ISO 8601 UTC) and free-form ``extra`` (e.g. the training configuration)."""

    model: str = ""
    dataset: str = ""
    seed: int | None = None
    accuracy: Mapping[str, float] = field(default_factory=dict)
    hwloop_version: str = ""
    created: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The manifest's ``provenance`` object."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "seed": self.seed,
            "accuracy": {k: float(v) for k, v in self.accuracy.items()},
            "hwloop_version": self.hwloop_version,
            "created": self.created,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, d: Any, where: str = "provenance") -> "Provenance":
        """Read a ``provenance`` object (every key optional), every field
        type-checked; raises `hwloop.netfile.FieldError` (a ``ValueError``) naming the field."""
        j = netfile.join
        d = netfile.obj(d, where, optional=("model", "dataset", "seed", "accuracy", "hwloop_version",
                                            "created", "extra"))
        seed = d.get("seed")
        accuracy = netfile.mapping(d.get("accuracy", {}), j(where, "accuracy"))
        extra = netfile.mapping(d.get("extra", {}), j(where, "extra"))
        return cls(
            model=netfile.string(d.get("model", ""), j(where, "model")),
            dataset=netfile.string(d.get("dataset", ""), j(where, "dataset")),
            seed=None if seed is None else netfile.integer(seed, j(where, "seed")),
            accuracy={k: netfile.number(v, j(j(where, "accuracy"), k)) for k, v in accuracy.items()},
            hwloop_version=netfile.string(d.get("hwloop_version", ""), j(where, "hwloop_version")),
            created=netfile.string(d.get("created", ""), j(where, "created")),
            extra=netfile.plain_json(dict(extra), j(where, "extra")),
        )

    def brief(self) -> str:
        """One short phrase for a repr: data set, seed and test accuracy where known."""
        parts = []
        if self.dataset:
            parts.append(self.dataset)
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if "test" in self.accuracy:
            parts.append(f"test {100 * float(self.accuracy['test']):.1f}%")
        return " ".join(parts)


_SHA256_HEX = frozenset("0123456789abcdef")


def _weight_member_name(value: Any, path: str) -> str:
    name = netfile.string(value, path)
    bad = (not name or len(name) > 255 or name == MANIFEST or name.endswith("/") or name.startswith("/")
           or "\\" in name or "\0" in name or ".." in name.split("/"))
    if bad:
        raise FieldError(path, f"must name a member inside the archive (relative, no '..', not {MANIFEST!r}), "
                               f"got {netfile.describe(value)}")
    return name


@dataclass(frozen=True, repr=False)
class Network:
    """A feed-forward first-spike-time network in model units.

    All times (``t_max``, time constants, bias times, encoding times) are in
    ``time_unit``. A neuron that has not spiked by ``t_max`` is silent.
    Construct it in code (it is validated at once; `NetworkSpecError`), read
    it with `Network.load`, write it with `Network.save`, run it on a target
    with `Network.run`.
    """

    layers: tuple[Layer, ...]
    encoding: InputEncoding
    decoding: OutputDecoding
    t_max: float
    time_unit: str = "ms"
    provenance: Provenance = field(default_factory=Provenance)

    # the file this network was loaded from; deliberately not a dataclass field
    # (no annotation), so copies made with dataclasses.replace (with_weights,
    # training) do not claim to be that file
    _source = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        self.validate()

    def __repr__(self) -> str:
        sizes = "-".join(str(s) for s in self.sizes)
        biases = sum(len(layer.bias_times) for layer in self.layers)
        text = f"Network({self.model} {sizes} +{biases} bias, t_max={self.t_max:g} {self.time_unit}"
        brief = self.provenance.brief()
        if brief:
            text += f", {brief}"
        if self.source:
            text += f", from {self.source!r}"
        return text + ")"

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise `NetworkSpecError` if the parts do not fit together (layer
        chain, class count) or any part is unusable."""
        if not self.layers:
            raise NetworkSpecError("network has no layers")
        if self.time_unit not in TIME_UNITS:
            raise NetworkSpecError(f"time_unit must be one of {TIME_UNITS}, got {self.time_unit!r}")
        _check_positive("t_max", self.t_max, "network")
        self.encoding.validate()
        self.decoding.validate()
        n_prev = self.encoding.n_features
        for i, layer in enumerate(self.layers):
            where = f"layer {i}"
            layer.validate(where)
            if layer.n_in != n_prev:
                raise NetworkSpecError(
                    f"{where}: weight has {layer.weight.shape[0]} rows = {layer.n_in} sources + "
                    f"{len(layer.bias_times)} bias, but the previous stage has {n_prev} neurons"
                )
            n_prev = layer.n_out
        if n_prev != len(self.decoding.classes):
            raise NetworkSpecError(
                f"output layer has {n_prev} neurons but the decoding names {len(self.decoding.classes)} classes"
            )

    # ------------------------------------------------------------ conveniences
    @property
    def source(self) -> str | None:
        """The file this network was loaded from, or None (built in code, or a changed copy)."""
        return self._source

    @property
    def sizes(self) -> tuple[int, ...]:
        """(n_features, n_hidden..., n_out), bias sources not counted."""
        return (self.encoding.n_features,) + tuple(layer.n_out for layer in self.layers)

    @property
    def model(self) -> str:
        """The neuron model of every layer, or ``"mixed"``."""
        models = {layer.neuron.model for layer in self.layers}
        return models.pop() if len(models) == 1 else "mixed"

    def weights(self) -> list[np.ndarray]:
        """The weight matrices, input side first (read-only float64)."""
        return [layer.weight for layer in self.layers]

    def with_weights(self, weights: Sequence[np.ndarray], **changes) -> "Network":
        """A copy with new weight matrices (same shapes) and optional field changes."""
        if len(weights) != len(self.layers):
            raise NetworkSpecError(f"expected {len(self.layers)} weight matrices, got {len(weights)}")
        layers = []
        for i, (layer, w) in enumerate(zip(self.layers, weights)):
            w = np.asarray(w, dtype=np.float64)
            if w.shape != layer.weight.shape:
                raise NetworkSpecError(f"layer {i}: new weight shape {w.shape} != {layer.weight.shape}")
            layers.append(dataclasses.replace(layer, weight=w))
        return dataclasses.replace(self, layers=tuple(layers), **changes)

    def summary(self) -> str:
        """One line for people: model, sizes, bias count, trial length, classes."""
        sizes = "-".join(str(s) for s in self.sizes)
        biases = sum(len(layer.bias_times) for layer in self.layers)
        return (
            f"{self.model} network {sizes} (+{biases} bias), t_max={self.t_max:g} {self.time_unit}, "
            f"classes={list(self.decoding.classes)}"
        )

    # -------------------------------------------------------------------- run
    def run(self, target: "str | Backend", x: Any = None, *, times: Any = None) -> "Measurement":
        """Run a batch on a target and return what it measured.

        ``target`` is a target URL (``"software"``, ``"bitexact?steps=100"``,
        ``"qif-emu"``, ...: opened, used and closed again) or a backend that
        is already open (`hwloop.backends.open_target`): the network is loaded
        onto it unless it is already the loaded one, and it stays open.

        The inputs are **either** ``x``, feature values of shape
        ``(batch, n_features)`` (or one sample, ``(n_features,)``) that this
        network's `InputEncoding` turns into input spike times, **or**
        ``times=``, the input spike times themselves in ``time_unit``
        (``inf`` = the input does not spike). The result is a
        `hwloop.backends.Measurement`: every layer's first-spike times in
        ``time_unit`` (``inf`` = silent), ``.output`` the last layer's.
        Bad inputs raise `NetworkSpecError` before the target is opened.
        """
        t_in = self._input_times(x, times)
        import hwloop.backends as backends  # backends import this module

        if isinstance(target, str):
            with backends.open_target(target) as backend:
                backend.load(self)
                return backend.run(t_in)
        if isinstance(target, backends.Backend):
            try:
                loaded = target.network
            except TargetError:
                loaded = None
            if loaded is not self:
                target.load(self)
            return target.run(t_in)
        raise TypeError(f"Network.run: target must be a target URL or an open backend "
                        f"(hwloop.backends.open_target), got {type(target).__name__}")

    def _input_times(self, x: Any, times: Any) -> np.ndarray:
        if x is None and times is None:
            raise NetworkSpecError("Network.run: no inputs; pass feature values x, or times= for input spike times")
        if x is not None and times is not None:
            raise NetworkSpecError("Network.run: pass feature values x or times=, not both")
        what = "x" if x is not None else "times"
        arr = np.asarray(x if x is not None else times)
        if arr.dtype.kind not in "fiu":
            raise NetworkSpecError(f"Network.run: {what} must hold numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        n = self.encoding.n_features
        if arr.ndim != 2:
            raise NetworkSpecError(f"Network.run: {what} must have shape (batch, {n}) or ({n},), got {arr.shape}")
        if arr.shape[1] != n:
            raise NetworkSpecError(f"Network.run: {what} has {arr.shape[1]} features per sample; "
                                   f"the network takes {n} features")
        if arr.shape[0] == 0:
            raise NetworkSpecError(f"Network.run: {what} holds no samples")
        if np.isnan(arr).any():
            raise NetworkSpecError(f"Network.run: {what} contains NaN")
        if x is not None:
            return self.encoding.encode(arr)
        if (arr < 0).any():
            raise NetworkSpecError("Network.run: input spike times must be >= 0 (inf = no spike)")
        return arr

    # ------------------------------------------------------------------- file
    def to_manifest(self) -> dict:
        """The manifest of this network without its ``layers`` (`save` fills them)."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "time_unit": self.time_unit,
            "t_max": float(self.t_max),
            "encoding": dataclasses.asdict(self.encoding),
            "decoding": {"kind": self.decoding.kind, "classes": list(self.decoding.classes)},
            "provenance": self.provenance.to_json(),
            "layers": [],  # filled by save()
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        manifest = self.to_manifest()
        payload: list[tuple[str, bytes]] = []
        for i, layer in enumerate(self.layers):
            name = f"layers/{i}/weight.npy"
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(layer.weight, dtype="<f8"), allow_pickle=False)
            data = buf.getvalue()
            payload.append((name, data))
            manifest["layers"].append(
                {
                    "weight": name,
                    "shape": list(layer.weight.shape),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "bias_times": list(layer.bias_times),
                    "neuron": layer.neuron.to_json(),
                }
            )
        try:
            text = json.dumps(manifest, indent=2, allow_nan=False)
        except ValueError as exc:
            raise NetworkSpecError(f"network metadata is not finite JSON: {exc}") from None
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(MANIFEST, text)
                for name, data in payload:
                    zf.writestr(name, data)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, limits: LoadLimits | None = None) -> "Network":
        """Read a ``.hwnet`` file; every problem is one `NetworkFileError`
        naming the file and what is wrong.

        Resource limits (`LoadLimits`; defaults in ``docs/network-format.md``)
        are checked before the memory they guard is allocated, so a small
        file can never make the loader allocate much more than it holds.
        """
        limits = LoadLimits() if limits is None else limits
        path = Path(path)
        if not path.exists():
            raise NetworkFileError(f"{path}: no such file")
        if not path.is_file():
            raise NetworkFileError(f"{path}: not a regular file")
        try:
            with netfile.Archive(path, limits) as archive:
                net = cls._from_archive(archive, limits)
        except netfile.FormatProblem as exc:
            raise NetworkFileError(f"{path}: {exc}") from None
        except FieldError as exc:
            raise NetworkFileError(f"{path}: manifest {exc}") from None
        except NetworkSpecError as exc:
            raise NetworkFileError(f"{path}: inconsistent network: {exc}") from None
        object.__setattr__(net, "_source", str(path))
        return net

    @classmethod
    def _from_archive(cls, archive: "netfile.Archive", limits: LoadLimits) -> "Network":
        raw = archive.read(MANIFEST, limits.max_manifest_bytes, "LoadLimits.max_manifest_bytes")
        m = netfile.parse_manifest(raw, limits)
        if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
            raise netfile.FormatProblem(f"not an hwloop network file (format is not {FORMAT_NAME!r})")
        version = m.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version != FORMAT_VERSION:
            raise netfile.FormatProblem(f"unsupported format_version {netfile.describe(version)}; "
                                        f"this hwloop reads version {FORMAT_VERSION}")
        netfile.obj(m, "", required=("format", "format_version", "time_unit", "t_max", "encoding", "decoding",
                                     "layers"), optional=("provenance",))
        time_unit = netfile.string(m["time_unit"], "time_unit", TIME_UNITS)
        t_max = netfile.number(m["t_max"], "t_max", gt=0)
        encoding = InputEncoding.from_json(m["encoding"])
        decoding = OutputDecoding.from_json(m["decoding"])
        provenance = Provenance.from_json(m.get("provenance", {}))
        entries = netfile.array(m["layers"], "layers", min_len=1, max_len=limits.max_layers)

        # every layer's description first: shapes add up against the parameter
        # limit, and the member set is checked, before any weight is read
        specs = []
        budget = limits.max_parameters
        for i, ld in enumerate(entries):
            where = f"layers[{i}]"
            ld = netfile.obj(ld, where, required=("weight", "shape", "sha256", "neuron"), optional=("bias_times",))
            name = _weight_member_name(ld["weight"], f"{where}.weight")
            shape_list = netfile.array(ld["shape"], f"{where}.shape", min_len=2, max_len=2)
            shape = tuple(netfile.integer(s, f"{where}.shape[{k}]", ge=1, le=limits.max_parameters)
                          for k, s in enumerate(shape_list))
            digest = netfile.string(ld["sha256"], f"{where}.sha256").lower()
            if len(digest) != 64 or not set(digest) <= _SHA256_HEX:
                raise FieldError(f"{where}.sha256", f"must be 64 hex digits, got {netfile.describe(ld['sha256'])}")
            bias = netfile.array(ld.get("bias_times", []), f"{where}.bias_times")
            bias_times = tuple(netfile.number(t, f"{where}.bias_times[{k}]", ge=0) for k, t in enumerate(bias))
            neuron = NeuronParams.from_json(ld["neuron"], f"{where}.neuron")
            specs.append((name, shape, digest, bias_times, neuron))
        total = sum(math.prod(s[1]) for s in specs)
        if total > budget:
            raise netfile.FormatProblem(f"the layers hold {total} parameters; the limit is {budget} "
                                        f"(LoadLimits.max_parameters)")
        expected = {MANIFEST} | {s[0] for s in specs} | archive.folders()
        for member in archive.members:
            if member not in expected:
                raise netfile.FormatProblem(f"unexpected member {member!r} (not named by the manifest)")

        layers = []
        for i, (name, shape, digest, bias_times, neuron) in enumerate(specs):
            what = f"layer {i}: weight member {name!r}"
            if name not in archive.members:
                raise netfile.FormatProblem(f"layer {i}: weight member {name!r} is missing")
            data = archive.read(name, netfile.MAX_NPY_HEADER + 8 * math.prod(shape),
                                f"a .npy of shape {list(shape)}")
            if hashlib.sha256(data).hexdigest() != digest:
                raise netfile.FormatProblem(f"layer {i}: weight checksum mismatch (file corrupt)")
            w = netfile.npy_array(data, shape, what)
            if not np.all(np.isfinite(w)):
                raise netfile.FormatProblem(f"layer {i}: weight contains non-finite values")
            layers.append(Layer(weight=w, neuron=neuron, bias_times=bias_times))
            del data, w
        return cls(layers=tuple(layers), encoding=encoding, decoding=decoding, t_max=t_max,
                   time_unit=time_unit, provenance=provenance)


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-01-31T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
