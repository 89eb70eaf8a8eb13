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
#: the newest manifest ``format_version`` this module writes and reads;
#: a network without spike-train parts is still written as version 1
FORMAT_VERSION = 2
#: every version this module reads
FORMAT_VERSIONS = (1, 2)
#: name of the manifest member in the archive
MANIFEST = "manifest.json"

#: neuron models a Network may name; each lives in `hwloop.models`
KNOWN_MODELS = ("lif", "qif", "nlif", "cuba", "qif-trains")
#: discrete-time models (spike trains, format version 2)
DISCRETE_MODELS = ("cuba", "qif-trains")
#: reset rules of a discrete-time neuron
RESET_RULES = ("zero", "subtract")
#: units a network's times may be expressed in
TIME_UNITS = ("s", "ms", "us", "ns")
#: input encodings (`InputEncoding.kind`)
ENCODING_KINDS = ("linear-latency",)
#: output decodings (`OutputDecoding.kind`)
DECODING_KINDS = ("first-spike", "max-membrane", "spike-count")
#: decodings that need format version 2 (spike-train networks)
DECODING_KINDS_V2 = ("max-membrane", "spike-count")

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

    The discrete-time model ``"cuba"`` (format version 2; the Loihi neuron,
    docs/models-cuba.md) uses ``dt`` (the time step, > 0, in the network's
    unit), ``current_decay`` and ``voltage_decay`` (fractions lost per step,
    in [0, 1]), ``threshold`` (> 0), ``reset`` (``"zero"`` or
    ``"subtract"``), ``refractory`` (steps, >= 0) and ``spiking`` (False: a
    leaky integrator without threshold, a readout); ``tau_syn`` and
    ``tau_mem`` are not used by it. Build one with `NeuronParams.cuba`.

    The discrete-time QIF model ``"qif-trains"`` (format version 2;
    docs/models-qif-trains.md) uses ``dt`` (> 0), ``current_decay`` (in
    [0, 1]), ``tau_mem`` (> 0, same unit as dt, dt / tau_mem <= 0.5), ``i0``
    (constant drive; < 1/4 excitable), ``threshold`` (the spike threshold
    v_peak, above the unstable point; also readable as ``v_peak``),
    ``v_reset`` (< v_peak), ``refractory`` and ``spiking`` (False: a leaky
    integrator readout); ``tau_syn``, ``voltage_decay`` and ``reset`` are not
    used by it. Build one with `NeuronParams.qif_trains`.
    """

    model: str = "lif"
    tau_syn: float = 1.0
    tau_mem: float = 1.0
    threshold: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)
    dt: float | None = None
    current_decay: float = 0.0
    voltage_decay: float = 0.0
    reset: str = "zero"
    refractory: int = 0
    spiking: bool = True
    i0: float = 0.0
    v_reset: float = 0.0

    @classmethod
    def cuba(cls, dt: float, current_decay: float, voltage_decay: float, threshold: float = 1.0,
             reset: str = "zero", refractory: int = 0, spiking: bool = True) -> "NeuronParams":
        """A discrete-time CUBA LIF neuron record (see the class docstring)."""
        return cls(model="cuba", threshold=threshold, dt=dt, current_decay=current_decay,
                   voltage_decay=voltage_decay, reset=reset, refractory=refractory, spiking=spiking)

    @classmethod
    def from_cuba_params(cls, p: Any) -> "NeuronParams":
        """The record of a `hwloop.models.trains.CubaParams`."""
        return cls.cuba(dt=float(p.dt), current_decay=float(p.current_decay), voltage_decay=float(p.voltage_decay),
                        threshold=float(p.threshold), reset=p.reset, refractory=int(p.refractory),
                        spiking=bool(p.spiking))

    @classmethod
    def qif_trains(cls, dt: float, current_decay: float, tau_mem: float, i0: float = 0.0, v_peak: float = 4.0,
                   v_reset: float = 0.0, refractory: int = 0, spiking: bool = True) -> "NeuronParams":
        """A discrete-time QIF neuron record (``"qif-trains"``; see the class docstring)."""
        return cls(model="qif-trains", tau_mem=tau_mem, threshold=v_peak, dt=dt, current_decay=current_decay,
                   i0=i0, v_reset=v_reset, refractory=refractory, spiking=spiking)

    @classmethod
    def from_qif_trains_params(cls, p: Any) -> "NeuronParams":
        """The record of a `hwloop.models.trains.QifTrainsParams`."""
        return cls.qif_trains(dt=float(p.dt), current_decay=float(p.current_decay), tau_mem=float(p.tau_mem),
                              i0=float(p.i0), v_peak=float(p.v_peak), v_reset=float(p.v_reset),
                              refractory=int(p.refractory), spiking=bool(p.spiking))

    @property
    def v_peak(self) -> float:
        """The spike threshold of a ``"qif-trains"`` neuron (the same value as ``threshold``)."""
        return self.threshold

    @property
    def discrete(self) -> bool:
        """Whether this is a discrete-time (spike-train) neuron."""
        return self.model in DISCRETE_MODELS

    def cuba_params(self) -> Any:
        """This record as a `hwloop.models.trains.CubaParams` (``"cuba"`` only)."""
        if self.model != "cuba":
            raise NetworkSpecError(f"neuron model {self.model!r} is not the cuba model")
        from .models.trains import CubaParams

        return CubaParams(dt=float(self.dt), current_decay=float(self.current_decay),
                          voltage_decay=float(self.voltage_decay), threshold=float(self.threshold),
                          reset=self.reset, refractory=int(self.refractory), spiking=bool(self.spiking))

    def qif_trains_params(self) -> Any:
        """This record as a `hwloop.models.trains.QifTrainsParams` (``"qif-trains"`` only)."""
        if self.model != "qif-trains":
            raise NetworkSpecError(f"neuron model {self.model!r} is not the qif-trains model")
        from .models.trains.qif_trains import QifTrainsParams

        return QifTrainsParams(dt=float(self.dt), current_decay=float(self.current_decay), tau_mem=float(self.tau_mem),
                               i0=float(self.i0), v_peak=float(self.threshold), v_reset=float(self.v_reset),
                               refractory=int(self.refractory), spiking=bool(self.spiking))

    def trains_params(self) -> Any:
        """The model record of a discrete-time neuron: `CubaParams` or `QifTrainsParams`."""
        return self.qif_trains_params() if self.model == "qif-trains" else self.cuba_params()

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
        if self.model == "qif-trains":
            self._validate_qif_trains(where)
        elif self.discrete:
            if self.dt is None:
                raise NetworkSpecError(f"{where}: a {self.model} neuron needs dt (the time step)")
            _check_positive("dt", self.dt, where)
            _check_positive("threshold", self.threshold, where)
            for name in ("current_decay", "voltage_decay"):
                v = getattr(self, name)
                if not (_is_real(v) and 0.0 <= v <= 1.0):
                    raise NetworkSpecError(f"{where}: {name} must lie in [0, 1], got {v!r}")
            if self.reset not in RESET_RULES:
                raise NetworkSpecError(f"{where}: unknown reset rule {self.reset!r}; known: {', '.join(RESET_RULES)}")
            if isinstance(self.refractory, bool) or not isinstance(self.refractory, int) or self.refractory < 0:
                raise NetworkSpecError(f"{where}: refractory must be an integer >= 0 (steps), got {self.refractory!r}")
            if not isinstance(self.spiking, bool):
                raise NetworkSpecError(f"{where}: spiking must be true or false, got {self.spiking!r}")

    def _validate_qif_trains(self, where: str) -> None:
        if self.dt is None:
            raise NetworkSpecError(f"{where}: a {self.model} neuron needs dt (the time step)")
        if not (_is_real(self.current_decay) and 0.0 <= self.current_decay <= 1.0):
            raise NetworkSpecError(f"{where}: current_decay must lie in [0, 1], got {self.current_decay!r}")
        for name in ("i0", "v_reset"):
            v = getattr(self, name)
            if not (_is_real(v) and math.isfinite(v)):
                raise NetworkSpecError(f"{where}: {name} must be a finite number, got {v!r}")
        from .models.trains.qif_trains import check_fields

        check_fields(where, self.dt, self.current_decay, self.tau_mem, self.i0, self.threshold, self.v_reset,
                     self.refractory, self.spiking)

    def to_json(self) -> dict:
        """The manifest's ``neuron`` object."""
        if self.model == "qif-trains":
            return {
                "model": self.model,
                "dt": float(self.dt),
                "current_decay": float(self.current_decay),
                "tau_mem": float(self.tau_mem),
                "i0": float(self.i0),
                "v_peak": float(self.threshold),
                "v_reset": float(self.v_reset),
                "refractory": int(self.refractory),
                "spiking": bool(self.spiking),
                "options": dict(self.options),
            }
        if self.discrete:
            return {
                "model": self.model,
                "dt": float(self.dt),
                "current_decay": float(self.current_decay),
                "voltage_decay": float(self.voltage_decay),
                "threshold": float(self.threshold),
                "reset": self.reset,
                "refractory": int(self.refractory),
                "spiking": bool(self.spiking),
                "options": dict(self.options),
            }
        return {
            "model": self.model,
            "tau_syn": float(self.tau_syn),
            "tau_mem": float(self.tau_mem),
            "threshold": float(self.threshold),
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, d: Any, where: str = "neuron", version: int = FORMAT_VERSION) -> "NeuronParams":
        """Read a manifest ``neuron`` object, every field type-checked; raises
        `hwloop.netfile.FieldError` (a ``ValueError``) naming the field.
        ``version`` is the file's format version (version 1 knows no
        discrete-time model)."""
        j = netfile.join
        if isinstance(d, dict) and d.get("model") == "qif-trains":
            return cls._qif_trains_from_json(d, where, version)
        if isinstance(d, dict) and d.get("model") in DISCRETE_MODELS:
            if version < 2:
                raise FieldError(j(where, "model"), f"{d['model']!r} needs format_version 2 (this file is version {version})")
            d = netfile.obj(d, where, required=("model", "dt", "current_decay", "voltage_decay", "threshold", "reset"),
                            optional=("refractory", "spiking", "options"))
            model = d["model"]
            options = netfile.mapping(d.get("options", {}), j(where, "options"))
            for key, value in options.items():
                netfile.plain_json(value, j(j(where, "options"), key))
            decays = {}
            for name in ("current_decay", "voltage_decay"):
                v = netfile.number(d[name], j(where, name), ge=0)
                if v > 1:
                    raise FieldError(j(where, name), f"must be <= 1 (a fraction lost per step), got {netfile.describe(d[name])}")
                decays[name] = v
            return cls(
                model=model,
                threshold=netfile.number(d["threshold"], j(where, "threshold"), gt=0),
                options=dict(options),
                dt=netfile.number(d["dt"], j(where, "dt"), gt=0),
                reset=netfile.string(d["reset"], j(where, "reset"), RESET_RULES),
                refractory=netfile.integer(d.get("refractory", 0), j(where, "refractory"), ge=0, le=2**31 - 1),
                spiking=netfile.boolean(d.get("spiking", True), j(where, "spiking")),
                **decays,
            )
        d = netfile.obj(d, where, required=("model", "tau_syn", "tau_mem", "threshold"), optional=("options",))
        model = netfile.string(d["model"], j(where, "model"), KNOWN_MODELS)
        options = netfile.mapping(d.get("options", {}), j(where, "options"))
        for key, value in options.items():
            path = j(j(where, "options"), key)
            netfile.plain_json(value, path)
            problem = _option_problem(model, key, value)
            if problem:
                raise FieldError(path, problem)
        return cls(
            model=model,
            tau_syn=netfile.number(d["tau_syn"], j(where, "tau_syn"), gt=0),
            tau_mem=netfile.number(d["tau_mem"], j(where, "tau_mem"), gt=0),
            threshold=netfile.number(d["threshold"], j(where, "threshold")),
            options=dict(options),
        )


    @classmethod
    def _qif_trains_from_json(cls, d: dict, where: str, version: int) -> "NeuronParams":
        j = netfile.join
        if version < 2:
            raise FieldError(j(where, "model"), f"{d['model']!r} needs format_version 2 (this file is version {version})")
        d = netfile.obj(d, where, required=("model", "dt", "current_decay", "tau_mem"),
                        optional=("i0", "v_peak", "v_reset", "refractory", "spiking", "options"))
        options = netfile.mapping(d.get("options", {}), j(where, "options"))
        for key, value in options.items():
            netfile.plain_json(value, j(j(where, "options"), key))
        dt = netfile.number(d["dt"], j(where, "dt"), gt=0)
        cd = netfile.number(d["current_decay"], j(where, "current_decay"), ge=0)
        if cd > 1:
            raise FieldError(j(where, "current_decay"),
                             f"must be <= 1 (a fraction lost per step), got {netfile.describe(d['current_decay'])}")
        tau = netfile.number(d["tau_mem"], j(where, "tau_mem"), gt=0)
        if dt / tau > 0.5:
            raise FieldError(j(where, "tau_mem"), f"must be >= 2 dt (dt / tau_mem <= 0.5 for the Euler step), "
                                                  f"got {netfile.describe(d['tau_mem'])} with dt {dt:g}")
        i0 = netfile.number(d.get("i0", 0.0), j(where, "i0"))
        v_peak = netfile.number(d.get("v_peak", 4.0), j(where, "v_peak"))
        v_reset = netfile.number(d.get("v_reset", 0.0), j(where, "v_reset"))
        refractory = netfile.integer(d.get("refractory", 0), j(where, "refractory"), ge=0, le=2**31 - 1)
        spiking = netfile.boolean(d.get("spiking", True), j(where, "spiking"))
        if spiking:
            from .models.trains.qif_trains import unstable_point

            u = unstable_point(i0)
            if not v_peak > u:
                raise FieldError(j(where, "v_peak"), f"must exceed the unstable point {u:g} (i0 = {i0:g}), "
                                                     f"got {netfile.describe(d.get('v_peak', 4.0))}")
            if not v_reset < v_peak:
                raise FieldError(j(where, "v_reset"), f"must be < v_peak ({v_peak:g}), "
                                                      f"got {netfile.describe(d.get('v_reset', 0.0))}")
        return cls.qif_trains(dt=dt, current_decay=cd, tau_mem=tau, i0=i0, v_peak=v_peak, v_reset=v_reset,
                              refractory=refractory, spiking=spiking)._with_options(options)

    def _with_options(self, options: Mapping[str, Any]) -> "NeuronParams":
        return dataclasses.replace(self, options=dict(options)) if options else self


@dataclass(frozen=True, repr=False, eq=False)  # __eq__ below: weights compare by value
class Layer:
    """One feed-forward layer.

    ``weight[i, j]`` connects presynaptic source ``i`` to neuron ``j``. The
    sources are the previous layer's neurons (or the input features), then one
    row per entry of ``bias_times``: a bias source that spikes at that time in
    every trial. So ``weight.shape == (n_prev + len(bias_times), n_out)``.
    The weight is stored as a read-only float64 copy.

    ``recurrent`` (format version 2, discrete-time layers only), if given, is
    ``(n_out, n_out)``: ``recurrent[k, j]`` connects the layer's neuron ``k``
    to its neuron ``j``; a spike at step t arrives at step t + 1.
    """

    weight: np.ndarray
    neuron: NeuronParams = field(default_factory=NeuronParams)
    bias_times: tuple[float, ...] = ()
    recurrent: np.ndarray | None = None

    def __post_init__(self):
        w = np.array(self.weight, dtype=np.float64, copy=True)
        w.setflags(write=False)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias_times", tuple(float(t) for t in self.bias_times))
        if self.recurrent is not None:
            r = np.array(self.recurrent, dtype=np.float64, copy=True)
            r.setflags(write=False)
            object.__setattr__(self, "recurrent", r)

    def __eq__(self, other: object) -> bool:
        # dataclass equality would ask numpy for the truth value of an array
        if not isinstance(other, Layer):
            return NotImplemented
        if (self.recurrent is None) != (other.recurrent is None):
            return False
        if self.recurrent is not None and not (self.recurrent.shape == other.recurrent.shape
                                               and bool(np.array_equal(self.recurrent, other.recurrent))):
            return False
        return (self.neuron == other.neuron and self.bias_times == other.bias_times
                and self.weight.shape == other.weight.shape and bool(np.array_equal(self.weight, other.weight)))

    __hash__ = None  # weights are arrays: a Layer is compared by value, not hashed

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.weight.shape)
        n = self.neuron
        bias = f", bias_times={self.bias_times}" if self.bias_times else ""
        if n.model == "qif-trains":
            rec = ", recurrent" if self.recurrent is not None else ""
            return (f"Layer({shape}: {self.n_in} sources -> {self.n_out} {n.model}, dt={n.dt:g} "
                    f"tau_mem={n.tau_mem:g} current_decay={n.current_decay:g} i0={n.i0:g} v_peak={n.threshold:g} "
                    f"v_reset={n.v_reset:g}{rec})")
        if n.discrete:
            rec = ", recurrent" if self.recurrent is not None else ""
            return (f"Layer({shape}: {self.n_in} sources -> {self.n_out} {n.model}, dt={n.dt:g} "
                    f"decays={n.current_decay:g}/{n.voltage_decay:g} threshold={n.threshold:g} reset={n.reset}{rec})")
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
        if self.neuron.discrete and self.bias_times:
            raise NetworkSpecError(f"{where}: a {self.neuron.model} layer takes no bias spikes")
        if self.recurrent is not None:
            if not self.neuron.discrete:
                raise NetworkSpecError(f"{where}: recurrent weights need a discrete-time neuron model "
                                       f"({', '.join(DISCRETE_MODELS)}), not {self.neuron.model!r}")
            n = self.n_out
            if self.recurrent.shape != (n, n):
                raise NetworkSpecError(f"{where}: recurrent weight must be ({n}, {n}) for {n} neurons, "
                                       f"got shape {self.recurrent.shape}")
            if not np.all(np.isfinite(self.recurrent)):
                raise NetworkSpecError(f"{where}: recurrent weight has non-finite value(s)")


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
    #: spike-train decodings only: the steps [start, stop) the decision is read in (None: the whole trial)
    window: tuple[int, int] | None = None

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.window is not None:
            object.__setattr__(self, "window", tuple(self.window))

    def validate(self) -> None:
        """Raise `NetworkSpecError` if the decoding is unusable."""
        if self.kind not in DECODING_KINDS:
            raise NetworkSpecError(f"decoding: unknown kind {self.kind!r}")
        if len(self.classes) < 2:
            raise NetworkSpecError("decoding: need at least 2 classes")
        if self.window is not None:
            w = self.window
            if (len(w) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in w)
                    or not 0 <= w[0] < w[1]):
                raise NetworkSpecError(f"decoding: window must be two step indices 0 <= start < stop, got {w!r}")

    def to_json(self) -> dict:
        """The manifest's ``decoding`` object."""
        d = {"kind": self.kind, "classes": list(self.classes)}
        if self.window is not None:
            d["window"] = list(self.window)
        return d

    @classmethod
    def from_json(cls, d: Any, where: str = "decoding", version: int = FORMAT_VERSION) -> "OutputDecoding":
        """Read a manifest ``decoding`` object, every field type-checked."""
        j = netfile.join
        d = netfile.obj(d, where, required=("kind", "classes"), optional=("window",) if version >= 2 else ())
        path = j(where, "classes")
        classes = netfile.array(d["classes"], path, min_len=2)
        kind = netfile.string(d["kind"], j(where, "kind"), DECODING_KINDS if version >= 2 else ("first-spike",))
        window = None
        if d.get("window") is not None:
            wl = netfile.array(d["window"], j(where, "window"), min_len=2, max_len=2)
            window = tuple(netfile.integer(v, j(j(where, "window"), k), ge=0, le=2**31 - 1) for k, v in enumerate(wl))
            if window[1] <= window[0]:
                raise FieldError(j(where, "window"), f"must be [start, stop) with stop > start, got {list(window)}")
        return cls(classes=tuple(netfile.string(c, j(path, i)) for i, c in enumerate(classes)), kind=kind,
                   window=window)


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


def _member_spec(d: dict, where: str, limits: LoadLimits) -> tuple[str, tuple[int, int], str]:
    """(member name, shape, sha256) of a matrix entry (a layer's weight or its recurrent weight)."""
    name = _weight_member_name(d["weight"], f"{where}.weight")
    shape_list = netfile.array(d["shape"], f"{where}.shape", min_len=2, max_len=2)
    shape = tuple(netfile.integer(s, f"{where}.shape[{k}]", ge=1, le=limits.max_parameters)
                  for k, s in enumerate(shape_list))
    digest = netfile.string(d["sha256"], f"{where}.sha256").lower()
    if len(digest) != 64 or not set(digest) <= _SHA256_HEX:
        raise FieldError(f"{where}.sha256", f"must be 64 hex digits, got {netfile.describe(d['sha256'])}")
    return name, shape, digest


def _read_matrix(archive: "netfile.Archive", i: int, what: str, name: str, shape: tuple[int, int],
                 digest: str) -> np.ndarray:
    if name not in archive.members:
        raise netfile.FormatProblem(f"layer {i}: {what} member {name!r} is missing")
    data = archive.read(name, netfile.MAX_NPY_HEADER + 8 * math.prod(shape), f"a .npy of shape {list(shape)}")
    if hashlib.sha256(data).hexdigest() != digest:
        raise netfile.FormatProblem(f"layer {i}: {what} checksum mismatch (file corrupt)")
    w = netfile.npy_array(data, shape, f"layer {i}: {what} member {name!r}")
    if not np.all(np.isfinite(w)):
        raise netfile.FormatProblem(f"layer {i}: {what} contains non-finite values")
    return w


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
        discrete = [layer.neuron.discrete for layer in self.layers]
        if any(discrete):
            if not all(discrete):
                raise NetworkSpecError("a network mixes discrete-time and first-spike-time layers; "
                                       "every layer must be of one family")
            dts = {layer.neuron.dt for layer in self.layers}
            if len(dts) != 1:
                raise NetworkSpecError(f"the layers have different time steps dt {sorted(dts)}; one dt per network")
            dt = dts.pop()
            steps = self.t_max / dt
            if abs(steps - round(steps)) > 1e-9 * max(1.0, steps) or round(steps) < 1:
                raise NetworkSpecError(f"t_max {self.t_max:g} is not a whole number of time steps dt {dt:g}")
            w = self.decoding.window
            if w is not None and w[1] > round(steps):
                raise NetworkSpecError(f"decoding: window {list(w)} reaches past the trial's {round(steps)} steps")
        else:
            if self.decoding.kind in DECODING_KINDS_V2:
                raise NetworkSpecError(f"decoding: {self.decoding.kind!r} needs a spike-train (discrete-time) network")
            if self.decoding.window is not None:
                raise NetworkSpecError("decoding: a window needs a spike-train (discrete-time) network")

    # ------------------------------------------------------------ conveniences
    @property
    def source(self) -> str | None:
        """The file this network was loaded from, or None (built in code, or a changed copy)."""
        return self._source

    @property
    def is_spike_train(self) -> bool:
        """Whether this is a discrete-time spike-train network (format version 2)."""
        return self.layers[0].neuron.discrete

    @property
    def dt(self) -> float | None:
        """The time step of a spike-train network (None for a first-spike-time one)."""
        return float(self.layers[0].neuron.dt) if self.is_spike_train else None

    @property
    def n_steps(self) -> int | None:
        """Time steps per trial of a spike-train network, ``t_max / dt`` (None otherwise)."""
        return int(round(self.t_max / self.dt)) if self.is_spike_train else None

    @property
    def format_version(self) -> int:
        """The ``.hwnet`` version `save` writes: 2 for a spike-train network, else 1."""
        return 2 if self.is_spike_train else 1

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
    def run(self, target: "str | Backend", x: Any = None, *, times: Any = None, raster: Any = None,
            probe: bool = False) -> "Measurement":
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

        A spike-train network (format version 2) takes the same inputs (a
        spike at time t falls in step floor(t / dt)) or ``raster=``, a
        (n_steps, batch, n_features) 0/1 array (any number of spikes per
        input); its measurement also holds every layer's spikes as events
        and, with ``probe=True``, every layer's membrane per step.
        """
        if raster is not None:
            if x is not None or times is not None:
                raise NetworkSpecError("Network.run: pass one of x, times= or raster=")
            if not self.is_spike_train:
                raise NetworkSpecError("Network.run: raster= is for spike-train networks; this one takes x or times=")
            raster = np.asarray(raster)
            if raster.ndim == 2:
                raster = raster[:, None, :]
            want = (self.n_steps, self.encoding.n_features)
            if raster.ndim != 3 or (raster.shape[0], raster.shape[2]) != want or raster.shape[1] == 0:
                raise NetworkSpecError(f"Network.run: raster must have shape ({want[0]}, batch, {want[1]}), "
                                       f"got {raster.shape}")

            def go(backend):
                return backend.run_raster(raster, probe=probe)
        else:
            t_in = self._input_times(x, times)

            def go(backend):
                return backend.run(t_in, probe=probe) if probe else backend.run(t_in)
        import hwloop.backends as backends  # backends import this module

        if isinstance(target, str):
            with backends.open_target(target) as backend:
                backend.load(self)
                return go(backend)
        if isinstance(target, backends.Backend):
            try:
                loaded = target.network
            except TargetError:
                loaded = None
            if loaded is not self:
                target.load(self)
            return go(target)
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
            "format_version": self.format_version,
            "time_unit": self.time_unit,
            "t_max": float(self.t_max),
            "encoding": dataclasses.asdict(self.encoding),
            "decoding": self.decoding.to_json(),
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
            entry = {
                "weight": name,
                "shape": list(layer.weight.shape),
                "sha256": hashlib.sha256(data).hexdigest(),
                "bias_times": list(layer.bias_times),
                "neuron": layer.neuron.to_json(),
            }
            if layer.recurrent is not None:
                rname = f"layers/{i}/recurrent.npy"
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(layer.recurrent, dtype="<f8"), allow_pickle=False)
                rdata = buf.getvalue()
                payload.append((rname, rdata))
                entry["recurrent"] = {"weight": rname, "shape": list(layer.recurrent.shape),
                                      "sha256": hashlib.sha256(rdata).hexdigest()}
            manifest["layers"].append(entry)
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
        if isinstance(version, bool) or not isinstance(version, int) or version not in FORMAT_VERSIONS:
            raise netfile.FormatProblem(f"unsupported format_version {netfile.describe(version)}; "
                                        f"this hwloop reads versions {', '.join(map(str, FORMAT_VERSIONS))}")
        netfile.obj(m, "", required=("format", "format_version", "time_unit", "t_max", "encoding", "decoding",
                                     "layers"), optional=("provenance",))
        time_unit = netfile.string(m["time_unit"], "time_unit", TIME_UNITS)
        t_max = netfile.number(m["t_max"], "t_max", gt=0)
        encoding = InputEncoding.from_json(m["encoding"])
        decoding = OutputDecoding.from_json(m["decoding"], version=version)
        provenance = Provenance.from_json(m.get("provenance", {}))
        entries = netfile.array(m["layers"], "layers", min_len=1, max_len=limits.max_layers)

        # every layer's description first: shapes add up against the parameter
        # limit, and the member set is checked, before any weight is read
        specs = []
        budget = limits.max_parameters
        for i, ld in enumerate(entries):
            where = f"layers[{i}]"
            ld = netfile.obj(ld, where, required=("weight", "shape", "sha256", "neuron"),
                             optional=("bias_times", "recurrent") if version >= 2 else ("bias_times",))
            name, shape, digest = _member_spec(ld, where, limits)
            bias = netfile.array(ld.get("bias_times", []), f"{where}.bias_times")
            bias_times = tuple(netfile.number(t, f"{where}.bias_times[{k}]", ge=0) for k, t in enumerate(bias))
            neuron = NeuronParams.from_json(ld["neuron"], f"{where}.neuron", version=version)
            rec = None
            if ld.get("recurrent") is not None:
                rwhere = f"{where}.recurrent"
                rd = netfile.obj(ld["recurrent"], rwhere, required=("weight", "shape", "sha256"))
                rec = _member_spec(rd, rwhere, limits)
                if not neuron.discrete:
                    raise FieldError(rwhere, f"recurrent weights need a discrete-time neuron model "
                                             f"({', '.join(DISCRETE_MODELS)}), not {neuron.model!r}")
                if rec[1] != (shape[1], shape[1]):
                    raise FieldError(f"{rwhere}.shape", f"must be [{shape[1]}, {shape[1]}] (the layer has "
                                                        f"{shape[1]} neurons), got {list(rec[1])}")
                if rec[0] == name:
                    raise FieldError(f"{rwhere}.weight", "must name a member of its own, not the layer's weight")
            specs.append((name, shape, digest, bias_times, neuron, rec))
        total = sum(math.prod(s[1]) + (math.prod(s[5][1]) if s[5] else 0) for s in specs)
        if total > budget:
            raise netfile.FormatProblem(f"the layers hold {total} parameters; the limit is {budget} "
                                        f"(LoadLimits.max_parameters)")
        expected = {MANIFEST} | {s[0] for s in specs} | {s[5][0] for s in specs if s[5]} | archive.folders()
        for member in archive.members:
            if member not in expected:
                raise netfile.FormatProblem(f"unexpected member {member!r} (not named by the manifest)")

        layers = []
        for i, (name, shape, digest, bias_times, neuron, rec) in enumerate(specs):
            w = _read_matrix(archive, i, "weight", name, shape, digest)
            r = None if rec is None else _read_matrix(archive, i, "recurrent weight", *rec)
            layers.append(Layer(weight=w, neuron=neuron, bias_times=bias_times, recurrent=r))
            del w, r
        return cls(layers=tuple(layers), encoding=encoding, decoding=decoding, t_max=t_max,
                   time_unit=time_unit, provenance=provenance)


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-01-31T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
