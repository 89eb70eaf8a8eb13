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
everything (zip integrity, version, checksums, shapes, finiteness) and raises
`NetworkFileError` naming the file and the problem.
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
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import NetworkFileError, NetworkSpecError
from .fileio import atomic_path

FORMAT_NAME = "hwloop-network"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

#: neuron models a Network may name; each lives in `hwloop.models`
KNOWN_MODELS = ("lif", "qif", "nlif")
TIME_UNITS = ("s", "ms", "us", "ns")


def _check_positive(name: str, value: float, where: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise NetworkSpecError(f"{where}: {name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class NeuronParams:
    """Neuron model and parameters of one layer, times in the network's unit.

    ``options`` holds model-specific extras (e.g. a QIF model's pseudospike
    settings); values must be JSON-serialisable scalars or lists.
    """

    model: str = "lif"
    tau_syn: float = 1.0
    tau_mem: float = 1.0
    threshold: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def validate(self, where: str = "neuron") -> None:
        if self.model not in KNOWN_MODELS:
            raise NetworkSpecError(f"{where}: unknown neuron model {self.model!r}; known: {', '.join(KNOWN_MODELS)}")
        _check_positive("tau_syn", self.tau_syn, where)
        _check_positive("tau_mem", self.tau_mem, where)
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise NetworkSpecError(f"{where}: threshold must be finite, got {self.threshold!r}")
        try:
            json.dumps(dict(self.options), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise NetworkSpecError(f"{where}: options must be finite JSON values ({exc})") from None

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "tau_syn": float(self.tau_syn),
            "tau_mem": float(self.tau_mem),
            "threshold": float(self.threshold),
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "NeuronParams":
        return cls(
            model=str(d["model"]),
            tau_syn=float(d["tau_syn"]),
            tau_mem=float(d["tau_mem"]),
            threshold=float(d["threshold"]),
            options=dict(d.get("options", {})),
        )


@dataclass(frozen=True)
class Layer:
    """One feed-forward layer.

    ``weight[i, j]`` connects presynaptic source ``i`` to neuron ``j``. The
    sources are the previous layer's neurons (or the input features), then one
    row per entry of ``bias_times``: a bias source that spikes at that time in
    every trial. So ``weight.shape == (n_prev + len(bias_times), n_out)``.
    """

    weight: np.ndarray
    neuron: NeuronParams = field(default_factory=NeuronParams)
    bias_times: tuple[float, ...] = ()

    def __post_init__(self):
        w = np.array(self.weight, dtype=np.float64, copy=True)
        w.setflags(write=False)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias_times", tuple(float(t) for t in self.bias_times))

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_in(self) -> int:
        """Number of non-bias sources (previous layer size)."""
        return int(self.weight.shape[0]) - len(self.bias_times)

    def validate(self, where: str) -> None:
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
        if self.kind != "linear-latency":
            raise NetworkSpecError(f"encoding: unknown kind {self.kind!r}")
        if not (isinstance(self.n_features, int) and self.n_features >= 1):
            raise NetworkSpecError(f"encoding: n_features must be a positive int, got {self.n_features!r}")
        vals = (self.value_min, self.value_max, self.t_at_min, self.t_at_max)
        if not all(math.isfinite(v) for v in vals):
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


@dataclass(frozen=True)
class OutputDecoding:
    """First output spike wins. Ties and all-silent outputs are undecided
    (counted as errors and reported separately); see `docs/encoding.md`."""

    classes: tuple[str, ...]
    kind: str = "first-spike"

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def validate(self) -> None:
        if self.kind != "first-spike":
            raise NetworkSpecError(f"decoding: unknown kind {self.kind!r}")
        if len(self.classes) < 2:
            raise NetworkSpecError("decoding: need at least 2 classes")


@dataclass(frozen=True)
class Provenance:
    model: str = ""
    dataset: str = ""
    seed: int | None = None
    accuracy: Mapping[str, float] = field(default_factory=dict)
    hwloop_version: str = ""
    created: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
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
    def from_json(cls, d: Mapping[str, Any]) -> "Provenance":
        return cls(
            model=str(d.get("model", "")),
            dataset=str(d.get("dataset", "")),
            seed=None if d.get("seed") is None else int(d["seed"]),
            accuracy={str(k): float(v) for k, v in dict(d.get("accuracy", {})).items()},
            hwloop_version=str(d.get("hwloop_version", "")),
            created=str(d.get("created", "")),
            extra=dict(d.get("extra", {})),
        )


@dataclass(frozen=True)
class Network:
    """A feed-forward first-spike-time network in model units.

    All times (``t_max``, time constants, bias times, encoding times) are in
    ``time_unit``. A neuron that has not spiked by ``t_max`` is silent.
    """

    layers: tuple[Layer, ...]
    encoding: InputEncoding
    decoding: OutputDecoding
    t_max: float
    time_unit: str = "ms"
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
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
    def sizes(self) -> tuple[int, ...]:
        """(n_features, n_hidden..., n_out), bias sources not counted."""
        return (self.encoding.n_features,) + tuple(layer.n_out for layer in self.layers)

    @property
    def model(self) -> str:
        models = {layer.neuron.model for layer in self.layers}
        return models.pop() if len(models) == 1 else "mixed"

    def weights(self) -> list[np.ndarray]:
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
        sizes = "-".join(str(s) for s in self.sizes)
        biases = sum(len(layer.bias_times) for layer in self.layers)
        return (
            f"{self.model} network {sizes} (+{biases} bias), t_max={self.t_max:g} {self.time_unit}, "
            f"classes={list(self.decoding.classes)}"
        )

    # ------------------------------------------------------------------- file
    def to_manifest(self) -> dict:
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
    def load(cls, path: str | os.PathLike) -> "Network":
        path = Path(path)

        def fail(msg: str) -> NetworkFileError:
            return NetworkFileError(f"{path}: {msg}")

        if not path.exists():
            raise fail("no such file")
        if not path.is_file():
            raise fail("not a regular file")
        try:
            zf = zipfile.ZipFile(path, "r")
        except zipfile.BadZipFile:
            raise fail("not an hwloop network file (not a zip archive, or truncated)") from None
        except OSError as exc:
            raise fail(f"cannot open: {exc}") from None
        with zf:
            try:
                bad = zf.testzip()
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise fail(f"archive is corrupt ({exc})") from None
            if bad is not None:
                raise fail(f"archive member {bad!r} is corrupt (CRC mismatch)")
            try:
                manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
            except KeyError:
                raise fail(f"missing {MANIFEST}") from None
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise fail(f"{MANIFEST} is not valid JSON ({exc})") from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
                raise fail(f"not an hwloop network file (format is not {FORMAT_NAME!r})")
            version = manifest.get("format_version")
            if version != FORMAT_VERSION:
                raise fail(
                    f"unsupported format_version {version!r}; this hwloop reads version {FORMAT_VERSION}"
                )
            try:
                layers = []
                for i, ld in enumerate(manifest["layers"]):
                    name = ld["weight"]
                    try:
                        data = zf.read(name)
                    except KeyError:
                        raise fail(f"layer {i}: weight member {name!r} is missing") from None
                    if hashlib.sha256(data).hexdigest() != ld["sha256"]:
                        raise fail(f"layer {i}: weight checksum mismatch (file corrupt)")
                    try:
                        w = np.load(io.BytesIO(data), allow_pickle=False)
                    except Exception as exc:  # numpy raises several types for bad .npy
                        raise fail(f"layer {i}: weight is not a valid .npy array ({exc})") from None
                    if list(w.shape) != list(ld["shape"]):
                        raise fail(f"layer {i}: weight shape {list(w.shape)} != manifest shape {ld['shape']}")
                    if w.dtype.kind != "f":
                        raise fail(f"layer {i}: weight dtype {w.dtype} is not floating point")
                    if not np.all(np.isfinite(w)):
                        raise fail(f"layer {i}: weight contains non-finite values")
                    layers.append(
                        Layer(
                            weight=w,
                            neuron=NeuronParams.from_json(ld["neuron"]),
                            bias_times=tuple(ld.get("bias_times", ())),
                        )
                    )
                enc = manifest["encoding"]
                net = cls(
                    layers=tuple(layers),
                    encoding=InputEncoding(
                        n_features=int(enc["n_features"]),
                        kind=str(enc["kind"]),
                        value_min=float(enc["value_min"]),
                        value_max=float(enc["value_max"]),
                        t_at_min=float(enc["t_at_min"]),
                        t_at_max=float(enc["t_at_max"]),
                        silent_at_min=bool(enc.get("silent_at_min", False)),
                    ),
                    decoding=OutputDecoding(
                        classes=tuple(manifest["decoding"]["classes"]),
                        kind=str(manifest["decoding"]["kind"]),
                    ),
                    t_max=float(manifest["t_max"]),
                    time_unit=str(manifest["time_unit"]),
                    provenance=Provenance.from_json(manifest.get("provenance", {})),
                )
            except NetworkFileError:
                raise
            except NetworkSpecError as exc:
                raise fail(f"inconsistent network: {exc}") from None
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise fail(f"manifest is malformed ({type(exc).__name__}: {exc})") from None
        return net


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
