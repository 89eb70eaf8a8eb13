"""What defines a session: `LoopConfig`, and the per-target defaults."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from .errors import SessionError


@dataclass
class LoopConfig:
    target: str = "software"
    dataset: str = "yinyang"
    data_root: str | None = None
    init: str | None = None  # .hwnet to start from (copied into the session)
    epochs: int = 3
    batch_size: int = 150
    lr: float = 0.001
    lr_gamma: float = 1.0  # learning rate x gamma after every epoch
    seed: int = 0
    gradient: str = "model"  # "model": exact gradient at measured times; "spsa": model-free
    grad_at: str = "measured"  # model gradient evaluated at the "measured" or the "model" output times
    # output times the loss sees: "measured", or "worst" of measured and the
    # model's for the measured inputs (label: the later, others: the earlier)
    loss_times: str = "measured"
    spsa_pairs: int = 4
    spsa_sigma: float = 0.02
    train_limit: int | None = None  # use only the first N training samples
    eval_limit: int | None = None  # validation samples evaluated per epoch
    eval_every: int = 0  # steps between evaluations; 0: once per epoch
    checkpoint_every: int = 1
    max_grad_norm: float = 1.0
    # loss parameters; None: those the initial network was trained with
    # (its provenance), else the trainer's defaults for its model and data set
    xi: float | None = None
    alpha: float | None = None
    beta: float | None = None
    end_logit: bool | None = None
    max_missing: tuple[float, ...] = (0.3, 0.0)
    bump: float = 0.005
    compare_software: bool = True  # also evaluate the current weights on the float model
    # exponential moving average of the weights (Polyak averaging), 0 = off;
    # when on, evaluation, best.hwnet and the final network use the average,
    # which smooths the step-to-step jitter that measurement noise adds
    ema: float = 0.0
    # Gaussian jitter (std, in units of the last layer's tau_syn) added to the
    # training inputs' spike times on every step: on a coarse time grid a
    # sample whose outputs race within a few steps flips class; training on
    # jittered inputs asks for margins that survive a step either way
    input_jitter: float = 0.0

    def validate(self) -> None:
        if self.grad_at not in ("measured", "model"):
            raise SessionError(f"grad_at must be 'measured' or 'model', got {self.grad_at!r}")
        if self.loss_times not in ("measured", "worst"):
            raise SessionError(f"loss_times must be 'measured' or 'worst', got {self.loss_times!r}")
        if self.gradient not in ("model", "spsa"):
            raise SessionError(f"gradient must be 'model' or 'spsa', got {self.gradient!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise SessionError("epochs, batch_size and checkpoint_every must be >= 1")
        if not self.lr > 0:
            raise SessionError("lr must be > 0")
        if not (self.input_jitter >= 0.0 and math.isfinite(self.input_jitter)):
            raise SessionError(f"input_jitter must be >= 0, got {self.input_jitter}")
        if not 0.0 <= self.ema < 1.0:
            raise SessionError(f"ema must be in [0, 1), got {self.ema}")
        if self.init is None:
            raise SessionError("a session needs --init NET (a network to start from)")

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    @classmethod
    def from_json(cls, d: dict) -> "LoopConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SessionError(f"config.json has unknown keys: {sorted(unknown)}")
        d = dict(d)
        if "max_missing" in d:
            d["max_missing"] = tuple(d["max_missing"])
        return cls(**d)


#: Settings a session on a Loihi time grid gets unless they are given
#: (`hwloop loop` applies them; docs/in-the-loop.md has the measurements):
#: on the grid the gradient at the measured output time is dominated by
#: samples where the model's membrane is past its peak, the measured loss
#: cannot see outputs the target narrowly missed, and bumping an output's
#: weights shifts a whole class by most of a step.
GRID_SETTINGS = {"grad_at": "model", "loss_times": "worst", "max_missing": (0.3, 1.0)}
GRID_TARGETS = ("bitexact", "lava-sim", "lava-hw")


def recommended_settings(target: str) -> dict:
    """Per-target defaults for the session options that depend on the target."""
    from hwloop.backends import parse_target

    return dict(GRID_SETTINGS) if parse_target(target).scheme in GRID_TARGETS else {}
