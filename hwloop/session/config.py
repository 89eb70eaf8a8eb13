"""What defines a session: `LoopConfig`, its validation, and the per-target defaults.

A field left unset (``None``) where the target has a default means "the
target's default": `LoopConfig.resolved` fills it in, and the session records
the resolved configuration in ``config.json``, so a session started from
Python and one started by ``hwloop loop`` get the same settings.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from .errors import SessionError

#: upper bound on counts (epochs, batch size, limits, pairs): far above any
#: real session, low enough that nothing downstream overflows
MAX_COUNT = 10 ** 9


@dataclass
class LoopConfig:
    """Every setting of an in-the-loop session, as stored in its ``config.json``.

    Fields left at ``None`` that depend on the target (``grad_at``, ``loss_times``,
    ``max_missing``) take the target's recommended value when the session starts
    (`recommended_settings`); ``config.json`` records the resolved values."""
    target: str = "software"
    dataset: str = "yinyang"
    data_root: str | None = None
    init: str | None = None  # .hwnet to start from (copied into the session)
    epochs: int = 3
    batch_size: int = 150
    lr: float = 0.001
    lr_gamma: float = 1.0  # learning rate x gamma after every epoch (or stall, below), in (0, 1]
    # when lr_gamma applies: "epoch" (after every epoch), or "plateau" (after
    # every evaluation that did not raise the best validation accuracy so far;
    # the validation split is the selection split, the test split never enters)
    lr_schedule: str = "epoch"
    # stop after this many evaluations in a row without a new best validation
    # accuracy (0: never; run all epochs)
    patience: int = 0
    seed: int = 0
    gradient: str = "model"  # "model": exact gradient at measured times; "spsa": model-free
    # model gradient evaluated at the "measured" or the "model" output times;
    # None: the target's default (recommended_settings)
    grad_at: str | None = None
    # output times the loss sees: "measured", or "worst" of measured and the
    # model's for the measured inputs (label: the later, others: the earlier);
    # None: the target's default
    loss_times: str | None = None
    spsa_pairs: int = 4
    spsa_sigma: float = 0.02
    train_limit: int | None = None  # use only the first N training samples
    eval_limit: int | None = None  # validation samples evaluated per epoch
    eval_every: int = 0  # steps between evaluations; 0: once per epoch
    checkpoint_every: int = 1
    max_grad_norm: float = 1.0  # 0: no clipping
    # loss parameters; None: those the initial network was trained with
    # (its provenance), else the trainer's defaults for its model and data set
    xi: float | None = None
    alpha: float | None = None
    beta: float | None = None
    end_logit: bool | None = None
    # LIF weight bumping: per layer, the fraction of a batch a neuron may miss
    # (last value repeats); None: the target's default
    max_missing: tuple[float, ...] | None = None
    bump: float = 0.005
    compare_software: bool = True  # also evaluate the current weights on the float model
    # at the end, measure the start and the selected network on the target on
    # the held-out test split (never used for selection), into summary.json
    final_test: bool = True
    # exponential moving average of the weights (Polyak averaging), 0 = off;
    # when on, evaluation, best.hwnet and the final network use the average,
    # which smooths the step-to-step jitter that measurement noise adds
    ema: float = 0.0
    # Gaussian jitter (std, in units of the last layer's tau_syn) added to the
    # training inputs' spike times on every step: on a coarse time grid a
    # sample whose outputs race within a few steps flips class; training on
    # jittered inputs asks for margins that survive a step either way
    input_jitter: float = 0.0
    # spike-train networks (surrogate gradients in the loop, docs/in-the-loop.md):
    # the neuron model of the network ("cuba"; None: a first-spike-time session,
    # or the init network's own model, filled in when the session starts)
    model: str | None = None
    # what replaces the simulation in the forward pass: "spikes", or
    # "spikes+membranes" (needs a target with membrane probes); None: the
    # latter where the target has probes, else spikes
    signal: str | None = None
    # the surrogate derivative's shape and scale; None: the network's training's
    surrogate: str | None = None
    surrogate_beta: float | None = None
    # train the recurrent matrices of a spike-train network's recurrent layers
    # too (False: they stay those of the start network); no effect elsewhere
    train_recurrent: bool = True

    def resolved(self) -> "LoopConfig":
        """A copy with every target-dependent field left unset filled in
        with the target's default (`recommended_settings`)."""
        _check_str(self, "target")
        out = dataclasses.replace(self)
        for key, value in target_defaults(self.target).items():
            if getattr(out, key) is None:
                setattr(out, key, value)
        return out

    def validate(self) -> None:
        """Every field: type, finiteness, range. Raises `SessionError` naming the field."""
        _check_str(self, "target")
        _check_str(self, "dataset")
        _check_str(self, "data_root", optional=True)
        if self.init is None:
            raise SessionError("a session needs --init NET (a network to start from)")
        _check_str(self, "init")
        for key, low in (("epochs", 1), ("batch_size", 1), ("spsa_pairs", 1), ("eval_every", 0),
                         ("checkpoint_every", 1), ("patience", 0)):
            _check_int(self, key, low, MAX_COUNT)
        _check_int(self, "seed", 0, 2 ** 63 - 1)
        for key in ("train_limit", "eval_limit"):
            _check_int(self, key, 1, MAX_COUNT, optional=True)
        _check_float(self, "lr", 0.0, math.inf, low_open=True)
        _check_float(self, "lr_gamma", 0.0, 1.0, low_open=True)
        _check_float(self, "spsa_sigma", 0.0, math.inf, low_open=True)
        _check_float(self, "max_grad_norm", 0.0, math.inf)
        _check_float(self, "bump", 0.0, math.inf)
        _check_float(self, "ema", 0.0, 1.0, high_open=True)
        _check_float(self, "input_jitter", 0.0, math.inf)
        _check_float(self, "xi", 0.0, math.inf, low_open=True, optional=True)
        _check_float(self, "alpha", 0.0, math.inf, optional=True)
        _check_float(self, "beta", 0.0, math.inf, low_open=True, optional=True)
        _check_bool(self, "end_logit", optional=True)
        _check_bool(self, "compare_software")
        _check_bool(self, "final_test")
        _check_bool(self, "train_recurrent")
        _check_choice(self, "gradient", ("model", "spsa", "node-perturbation", "surrogate"))
        from .trains_forward import FORWARDS

        _check_choice(self, "model", (*sorted(FORWARDS), None))
        _check_choice(self, "signal", (*SIGNALS, None))
        from hwloop.models.trains.functional import SHAPES

        _check_choice(self, "surrogate", (*SHAPES, None))
        _check_float(self, "surrogate_beta", 0.0, math.inf, low_open=True, optional=True)
        _check_choice(self, "lr_schedule", ("epoch", "plateau"))
        # the target-dependent fields may be unset: "the target's default" (resolved())
        _check_choice(self, "grad_at", ("measured", "model", None))
        _check_choice(self, "loss_times", ("measured", "worst", None))
        mm = self.max_missing
        if mm is not None and (not isinstance(mm, (tuple, list)) or not 1 <= len(mm) <= 10_000
                or not all(_is_number(v) and 0.0 <= v <= 1.0 for v in mm)):
            raise SessionError(f"max_missing must be a non-empty list of fractions in [0, 1], got {_show(mm)}")

    def to_json(self) -> dict:
        """The configuration as plain JSON values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=list, allow_nan=False))

    @classmethod
    def from_json(cls, d) -> "LoopConfig":
        """Rebuild from ``config.json``; unknown keys or a non-object raise `SessionError`."""
        if not isinstance(d, dict):
            raise SessionError(f"config.json must hold a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SessionError(f"config.json has unknown keys: {sorted(unknown)[:10]}")
        d = fill_missing(d)
        if isinstance(d.get("max_missing"), list):
            d["max_missing"] = tuple(d["max_missing"])
        return cls(**d)


#: The value a field that an older hwloop did not write takes when its
#: ``config.json`` (or checkpoint) is read: the behaviour that session had.
#: A field missing here takes the dataclass default. ``final_test`` only adds
#: figures to summary.json at the end, so old sessions get it too.
LEGACY_VALUES: dict = {"final_test": True, "lr_schedule": "epoch", "patience": 0, "model": None, "signal": None,
                       "surrogate": None, "surrogate_beta": None,
                       "train_recurrent": False}

#: what a spike-train session can substitute in the forward pass
SIGNALS = ("spikes", "spikes+membranes", "spikes+readout")
#: targets whose spike-train runs record membrane probes (``run_raster(probe=True)``);
#: a backend class may also say so itself with ``MEMBRANE_PROBES = True``
PROBE_TARGETS = ("software", "bitexact", "lava-sim")


def target_has_probes(target: str) -> bool:
    from hwloop.backends import backend_class, parse_target

    scheme = parse_target(target).scheme
    flag = getattr(backend_class(scheme), "MEMBRANE_PROBES", None)
    return bool(flag) if flag is not None else scheme in PROBE_TARGETS


def default_signal(target: str) -> str:
    """The signal of a spike-train session on a target with probes: the backend
    class's ``DEFAULT_SIGNAL`` (a serial chip says ``spikes+readout``: every hidden
    membrane would multiply the link's traffic), else ``spikes+membranes``."""
    from hwloop.backends import backend_class, parse_target

    return getattr(backend_class(parse_target(target).scheme), "DEFAULT_SIGNAL", None) or "spikes+membranes"


def resolve_family(cfg: "LoopConfig", net) -> "LoopConfig":
    """A new session's configuration with the spike-train fields filled in from
    its start network ``net`` (and refused where they do not fit it)."""
    out = dataclasses.replace(cfg)
    if not net.is_spike_train:
        given = [k for k in ("model", "signal", "surrogate", "surrogate_beta") if getattr(cfg, k) is not None]
        if given or cfg.gradient == "surrogate":
            what = ", ".join(f"{k}={getattr(cfg, k)!r}" for k in given) or "gradient='surrogate'"
            raise SessionError(f"{what}: for spike-train networks; {cfg.init} is a first-spike-time "
                               f"{net.model} network")
        return out
    if cfg.model is not None and cfg.model != net.model:
        raise SessionError(f"model={cfg.model!r}, but {cfg.init} is a {net.model} network")
    if cfg.gradient not in ("model", "surrogate"):
        raise SessionError(f"gradient={cfg.gradient!r}: a spike-train session trains with surrogate gradients "
                           f"at the measured spikes (leave --gradient out)")
    if cfg.input_jitter:
        raise SessionError("input_jitter: for first-spike-time networks only")
    trained_on = net.provenance.dataset
    if trained_on and cfg.dataset != trained_on:
        raise SessionError(f"dataset {cfg.dataset!r}: the start network was trained on {trained_on!r} "
                           f"(pass --dataset {trained_on})")
    out.model, out.gradient = net.model, "surrogate"
    probes = target_has_probes(cfg.target)
    if out.signal is None:
        out.signal = default_signal(cfg.target) if probes else "spikes"
    elif out.signal in ("spikes+membranes", "spikes+readout") and not probes:
        raise SessionError(f"signal={out.signal!r}: target {cfg.target} records no membranes (no probes); "
                           f"use --signal spikes, or a target with probes ({', '.join(PROBE_TARGETS)}, qif-emu)")
    if out.surrogate is None or out.surrogate_beta is None:
        from hwloop.errors import HwloopError
        from hwloop.trains_training import config_from_network

        try:
            tc = config_from_network(net)
        except HwloopError:  # a network built in code: the trainer's defaults
            from hwloop.trains_training import TrainsConfig as tc
        out.surrogate = out.surrogate if out.surrogate is not None else tc.surrogate
        out.surrogate_beta = out.surrogate_beta if out.surrogate_beta is not None else float(tc.beta)
    return out


def fill_missing(d: dict) -> dict:
    """``d`` (a stored configuration) with every field an older hwloop did
    not write filled in (`LEGACY_VALUES`, else the field's default), so
    that a session started before the field existed resumes as it ran."""
    out = dict(d)
    for f in dataclasses.fields(LoopConfig):
        if f.name not in out:
            default = LEGACY_VALUES.get(f.name, f.default)
            out[f.name] = list(default) if isinstance(default, tuple) else default
    return out


#: Settings a session on a Loihi time grid gets unless they are given
#: (docs/in-the-loop.md has the measurements): on the grid the gradient at
#: the measured output time is dominated by samples where the model's
#: membrane is past its peak, the measured loss cannot see outputs the
#: target narrowly missed, and bumping an output's weights shifts a whole
#: class by most of a step.
GRID_SETTINGS = {"grad_at": "model", "loss_times": "worst", "max_missing": (0.3, 1.0)}
GRID_TARGETS = ("bitexact", "lava-sim", "lava-hw")
#: what every other target gets
PLAIN_SETTINGS = {"grad_at": "measured", "loss_times": "measured", "max_missing": (0.3, 0.0)}


def target_defaults(target: str) -> dict:
    """The value of every target-dependent field on ``target``."""
    from hwloop.backends import parse_target

    return dict(GRID_SETTINGS if parse_target(target).scheme in GRID_TARGETS else PLAIN_SETTINGS)


def recommended_settings(target: str) -> dict:
    """The settings that ``target`` gets where they differ from other targets'
    (the grid settings on Loihi targets, nothing elsewhere)."""
    from hwloop.backends import parse_target

    return dict(GRID_SETTINGS) if parse_target(target).scheme in GRID_TARGETS else {}


# ---- field checks (each names the field and shows the bad value, shortened)
def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(v) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float range
        return False


def _check_str(cfg, key, optional=False):
    v = getattr(cfg, key)
    if v is None and optional:
        return
    if not isinstance(v, str) or not v.strip() or len(v) > 4096:
        raise SessionError(f"{key} must be a non-empty string, got {_show(v)}")


def _check_int(cfg, key, low, high, optional=False):
    v = getattr(cfg, key)
    if v is None and optional:
        return
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        what = f"an integer >= {low}" if high >= MAX_COUNT else f"an integer in [{low}, {high}]"
        raise SessionError(f"{key} must be {what}, got {_show(v)}")


def _check_float(cfg, key, low, high, low_open=False, high_open=False, optional=False):
    v = getattr(cfg, key)
    if v is None and optional:
        return
    ok = _is_number(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo = f"{'(' if low_open else '['}{low:g}"
        hi = f"{high:g}{')' if high_open or math.isinf(high) else ']'}"
        raise SessionError(f"{key} must be a finite number in {lo}, {hi}, got {_show(v)}")


def _check_bool(cfg, key, optional=False):
    v = getattr(cfg, key)
    if v is None and optional:
        return
    if not isinstance(v, bool):
        raise SessionError(f"{key} must be true or false, got {_show(v)}")


def _check_choice(cfg, key, choices):
    v = getattr(cfg, key)
    if not any(v is c or (isinstance(v, str) and v == c) for c in choices):
        named = [repr(c) for c in choices if c is not None]
        raise SessionError(f"{key} must be one of {', '.join(named)}, got {_show(v)}")
