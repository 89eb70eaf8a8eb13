"""The named parts a session is built from (besides the gradient estimator
and the checkpoint store): the loss, the training data in its per-step
order, the master weights with their optimiser, the LIF revival rule, the
evaluator and the selection of the best network."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from hwloop.network import Network

from .config import LoopConfig

DTYPE = torch.float64


class SessionLoss:
    """The first-spike-time loss (`hwloop.training.ttfs_loss`) with the
    session's parameters: those given in the config, else those the initial
    network was trained with (its provenance), else the trainer's defaults."""

    def __init__(self, cfg: LoopConfig, template: Network):
        from hwloop.training import default_config

        trained = dict(template.provenance.extra.get("train_config", {}) or {})
        defaults = default_config(template.model if template.model != "mixed" else "lif", cfg.dataset)
        values = []
        for key in ("xi", "alpha", "beta", "end_logit"):
            v = getattr(cfg, key)
            if v is None:
                v = trained.get(key, getattr(defaults, key))
            values.append(v)
        self.xi, self.alpha, self.beta = float(values[0]), float(values[1]), float(values[2])
        self.end_logit = bool(values[3])
        self.t_max = template.t_max
        self.tau = template.layers[-1].neuron.tau_syn

    def __call__(self, t_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from hwloop.training import ttfs_loss

        return ttfs_loss(t_out, y, self.t_max, self.tau, self.xi, self.alpha, self.beta, self.end_logit)


class TrainingData:
    """The training and validation samples, encoded as spike times. The
    samples of a step are a function of (seed, epoch, step), never of
    process state, so a resumed session sees what the uninterrupted one saw."""

    def __init__(self, cfg: LoopConfig, template: Network):
        from hwloop.data import load_dataset

        train = load_dataset(cfg.dataset, "train", root=cfg.data_root)
        val = load_dataset(cfg.dataset, "val", root=cfg.data_root)
        x_tr, y_tr = train.x, train.y
        if cfg.train_limit:
            x_tr, y_tr = x_tr[: cfg.train_limit], y_tr[: cfg.train_limit]
        x_val, y_val = val.x, val.y
        if cfg.eval_limit:
            x_val, y_val = x_val[: cfg.eval_limit], y_val[: cfg.eval_limit]
        self.t_train = torch.as_tensor(template.encoding.encode(x_tr), dtype=DTYPE)
        self.y_train = torch.as_tensor(y_tr, dtype=torch.long)
        self.t_val = template.encoding.encode(x_val)
        self.y_val = y_val
        self.seed, self.batch_size = cfg.seed, cfg.batch_size
        self.jitter, self.tau = cfg.input_jitter, template.layers[-1].neuron.tau_syn
        self.steps_per_epoch = (len(self.t_train) + cfg.batch_size - 1) // cfg.batch_size

    def batch(self, step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(epoch, input times, labels) of training step ``step`` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.t_train))
        idx = torch.as_tensor(order[k * self.batch_size:(k + 1) * self.batch_size])
        xb, yb = self.t_train[idx], self.y_train[idx]
        if self.jitter > 0:  # keyed on (seed, step): resume replays it exactly
            from hwloop.training import jitter_times

            noise = np.random.default_rng([self.seed, step, 2]).standard_normal(tuple(xb.shape))
            xb = jitter_times(xb, torch.as_tensor(noise * self.jitter * self.tau, dtype=xb.dtype))
        return epoch, xb, yb


class MasterWeights:
    """The float master weights, their optimiser (Adam, gradient clipping,
    the learning rate times ``lr_gamma`` after every epoch) and their
    moving average."""

    def __init__(self, cfg: LoopConfig, template: Network):
        from hwloop.inloop import trainable_weights

        #: one matrix per layer, then (`trains_recurrent`) the recurrent matrices,
        #: as `hwloop.inloop.trainable_weights` lays them out
        self.recurrent = trains_recurrent(cfg, template)
        self.weights = [w.requires_grad_(True) for w in trainable_weights(template, self.recurrent)]
        self.averaged = [w.detach().clone() for w in self.weights]  # the EMA (used when cfg.ema > 0)
        self.ema, self.max_grad_norm, self.lr_gamma = cfg.ema, cfg.max_grad_norm, cfg.lr_gamma
        self.per_epoch = cfg.lr_schedule == "epoch"
        #: per weight tensor, the factor on the learning rate: 1, except for the
        #: layers of a spike-train neuron whose weights are in other units (a
        #: qif-trains layer: ``hwloop.trains_training.lr_scale``, as its software
        #: trainer does); one Adam group per tensor only where a factor is not 1
        self.lr_factors = _lr_factors(template, self.recurrent)
        if all(f == 1.0 for f in self.lr_factors):
            self.opt = torch.optim.Adam(self.weights, lr=cfg.lr)
        else:
            self.opt = torch.optim.Adam([{"params": [w], "lr": cfg.lr * f}
                                         for w, f in zip(self.weights, self.lr_factors)], lr=cfg.lr)

    def deployed(self) -> list[torch.Tensor]:
        """The weights that are evaluated and saved as the session's result."""
        return self.averaged if self.ema > 0 else self.weights

    @property
    def lr(self) -> float:
        """The session's learning rate (before any per-layer factor)."""
        g = self.opt.param_groups[0]
        return g["lr"] if len(self.opt.param_groups) == 1 else g["lr"] / self.lr_factors[0]

    def apply(self, grads: Sequence[torch.Tensor | None]) -> None:
        """One optimiser step along ``grads`` (clipped to ``max_grad_norm``)."""
        for w, g in zip(self.weights, grads):
            w.grad = g
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.weights, self.max_grad_norm)
        self.opt.step()

    def update_average(self) -> None:
        if self.ema > 0:
            with torch.no_grad():
                for a, w in zip(self.averaged, self.weights):
                    a.mul_(self.ema).add_(w.detach(), alpha=1.0 - self.ema)

    def end_epoch(self) -> None:
        if self.per_epoch:
            self.decay()

    def decay(self) -> None:
        """The learning rate times ``lr_gamma`` (what ExponentialLR does, as a plain number to checkpoint)."""
        for group in self.opt.param_groups:
            group["lr"] = group["lr"] * self.lr_gamma

    # ---- checkpointing: plain arrays and numbers
    def state(self) -> dict:
        adam = [self.opt.state.get(w, {}) for w in self.weights]
        return {"weights": [w.detach().clone() for w in self.weights],
                "averaged": [a.clone() for a in self.averaged],
                "lr": float(self.lr),
                "adam": [None if not st else {"step": float(st["step"]), "exp_avg": st["exp_avg"].clone(),
                                              "exp_avg_sq": st["exp_avg_sq"].clone()} for st in adam]}

    def restore(self, st: dict) -> None:
        """Take over a checkpoint's state, checked against this session's
        network first (`CheckpointDamaged` on any mismatch; nothing changes)."""
        from .checkpoint import CheckpointDamaged

        n = len(self.weights)
        shapes = [tuple(w.shape) for w in self.weights]

        def tensors(key, value):
            if (not isinstance(value, list) or len(value) != n
                    or not all(isinstance(t, torch.Tensor) and t.dtype == DTYPE and tuple(t.shape) == shape
                               and bool(torch.isfinite(t).all()) for t, shape in zip(value, shapes))):
                raise CheckpointDamaged(f"{key}: not {n} finite float64 arrays of shapes {shapes}")
            return value

        weights = tensors("weights", st.get("weights"))
        averaged = tensors("averaged", st.get("averaged"))
        lr = st.get("lr")
        if not isinstance(lr, float) or not (lr > 0 and np.isfinite(lr)):
            raise CheckpointDamaged(f"lr: {lr!r} is not a positive number")
        adam = st.get("adam")
        if not isinstance(adam, list) or len(adam) != n:
            raise CheckpointDamaged(f"adam: not a list of {n} optimiser states")
        state = {}
        for i, a in enumerate(adam):
            if a is None:
                continue
            if not isinstance(a, dict) or set(a) != {"step", "exp_avg", "exp_avg_sq"}:
                raise CheckpointDamaged(f"adam[{i}]: malformed")
            for key in ("exp_avg", "exp_avg_sq"):
                t = a[key]
                if not (isinstance(t, torch.Tensor) and t.dtype == DTYPE and tuple(t.shape) == shapes[i]
                        and bool(torch.isfinite(t).all())):
                    raise CheckpointDamaged(f"adam[{i}].{key}: not a finite float64 array of shape {shapes[i]}")
            step = a["step"]
            if not isinstance(step, float) or not (step >= 1 and step == int(step) and step < 2 ** 53):
                raise CheckpointDamaged(f"adam[{i}].step: {step!r} is not a step count")
            if bool((a["exp_avg_sq"] < 0).any()):
                raise CheckpointDamaged(f"adam[{i}].exp_avg_sq: negative")
            state[i] = {"step": torch.tensor(step, dtype=_adam_step_dtype()), "exp_avg": a["exp_avg"].clone(),
                        "exp_avg_sq": a["exp_avg_sq"].clone()}
        sd = self.opt.state_dict()
        sd["state"] = state
        groups = sd["param_groups"]
        for k, group in enumerate(groups):
            group["lr"] = lr if len(groups) == 1 else lr * self.lr_factors[k]
        with torch.no_grad():
            for w, saved in zip(self.weights, weights):
                w.copy_(saved)
        self.averaged = [a.clone() for a in averaged]
        self.opt.load_state_dict(sd)


def trains_recurrent(cfg: LoopConfig, template: Network) -> bool:
    """Whether the session trains ``template``'s recurrent matrices: a spike-train
    network with recurrent layers, unless ``cfg.train_recurrent`` is off."""
    from hwloop.inloop import recurrent_layers

    return bool(template.is_spike_train and getattr(cfg, "train_recurrent", False) and recurrent_layers(template))


def _lr_factors(template: Network, recurrent: bool = False) -> list[float]:
    """One learning-rate factor per weight tensor of ``template`` (see `MasterWeights`);
    a recurrent matrix takes its layer's factor (as the software trainer's `lr_groups`)."""
    if not template.is_spike_train:
        return [1.0] * len(template.layers)
    from hwloop.inloop import recurrent_layers
    from hwloop.trains_training import lr_scale

    factors = [float(lr_scale(layer.neuron.trains_params())) for layer in template.layers]
    return factors + ([factors[i] for i in recurrent_layers(template)] if recurrent else [])


def _adam_step_dtype() -> torch.dtype:
    """The dtype Adam keeps its step count in (float32 unless the default dtype is float64)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class Revival:
    """Weight bumping of LIF neurons that stay silent on the target
    (`hwloop.training.revive_silent`, docs/training.md), on the measured times."""

    def __init__(self, cfg: LoopConfig, template: Network):
        self.on = template.model == "lif"
        n = len(template.layers)
        self.rates = [cfg.max_missing[min(i, len(cfg.max_missing) - 1)] for i in range(n)]
        self.bump = cfg.bump

    def __call__(self, weights, times) -> list[int]:
        from hwloop.training import revive_silent

        if not self.on or times is None:
            return []
        return revive_silent(weights, times, self.rates, self.bump)


class Evaluator:
    """Validation accuracy of the deployed weights on the target (and, when
    asked, of the same weights on the float model)."""

    def __init__(self, cfg: LoopConfig, template: Network, data: TrainingData):
        self.template, self.data, self.compare_software = template, data, cfg.compare_software
        self.cfg = cfg

    def test(self, backend, weights) -> dict:
        """Accuracy of ``weights`` on the target on the held-out test split
        (never used for selection, stopping or the schedule), with its sample
        count and Wilson interval (`accuracy_figure`)."""
        from hwloop.data import load_dataset
        from hwloop.data.decoding import classification_report
        from hwloop.evaluation import run_batches
        from hwloop.inloop import network_with

        test = load_dataset(self.cfg.dataset, "test", root=self.cfg.data_root)
        x, y = test.x, test.y
        if self.cfg.eval_limit:
            x, y = x[: self.cfg.eval_limit], y[: self.cfg.eval_limit]
        backend.load(network_with(self.template, weights))
        times, _, _ = run_batches(backend, self.template.encoding.encode(x))
        return accuracy_figure(classification_report(times[-1], y)["accuracy"], len(y))

    def __call__(self, backend, weights) -> dict:
        from hwloop.data.decoding import classification_report
        from hwloop.evaluation import run_batches, spike_statistics
        from hwloop.inloop import network_with
        from hwloop.models import network_forward

        t0 = time.perf_counter()
        backend.load(network_with(self.template, weights))
        times, _, _ = run_batches(backend, self.data.t_val)
        from hwloop.data.decoding import decode

        acc = classification_report(times[-1], self.data.y_val)["accuracy"]
        fig = accuracy_figure(acc, len(self.data.y_val))
        # per-sample correctness (undecided counts as wrong): the paired comparison with the start
        correct = decode(times[-1])[0] == np.asarray(self.data.y_val, dtype=np.int64)
        res = {"val_accuracy": acc, "val_n": fig["n"], "val_ci": fig["ci"], "_correct": correct,
               "val_silent": [s["silent_fraction"] for s in spike_statistics(times)["layers"]]}
        if self.compare_software:
            with torch.no_grad():
                sw = network_forward(self.template.layers, weights, torch.as_tensor(self.data.t_val, dtype=DTYPE),
                                     self.template.t_max)
            res["software_val_accuracy"] = classification_report(sw[-1].numpy(), self.data.y_val)["accuracy"]
        res["seconds"] = time.perf_counter() - t0
        return res


def wilson_interval(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % at ``z=1.96``) of a proportion of
    ``correct`` successes out of ``n`` trials; (0, 1) for ``n == 0``."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def accuracy_figure(accuracy: float, n: int) -> dict:
    """``{"accuracy", "n", "ci"}``: an accuracy with its sample count and Wilson 95 % interval."""
    lo, hi = wilson_interval(round(accuracy * n), n)
    return {"accuracy": float(accuracy), "n": int(n), "ci": [lo, hi]}


#: the paired test's threshold: McNemar's z above this (one-sided 2.5 %)
PAIRED_Z = 1.96
#: validation splits up to this size keep the start's per-sample figures (in
#: the checkpoint, 8 bytes each) for the paired test; larger ones use the Wilson rule
MAX_PAIRED_SAMPLES = 100_000


def paired_z(gained: int, lost: int) -> float:
    """McNemar's statistic of a candidate against the start on the same
    samples: ``gained`` samples the start got wrong and the candidate right,
    ``lost`` the other way; (gained - lost) / sqrt(gained + lost), 0 when
    the two agree on every sample."""
    return (gained - lost) / float(np.sqrt(gained + lost)) if gained + lost > 0 else 0.0


class Selection:
    """Which network the session returns (`best.hwnet`). The start network
    is the first candidate and stays selected unless a later one is better
    beyond the uncertainty of the measurement. Where the evaluation compared
    the candidate with the start sample by sample (``val_vs_start``:
    [gained, lost], on the same validation samples), a candidate qualifies
    when McNemar's paired statistic exceeds `PAIRED_Z`; without it (logs of
    older sessions), when the lower end of the Wilson 95 % interval of its
    validation accuracy lies above the start's accuracy. Among those that
    qualify the one with the highest validation accuracy is kept (the first
    of equals). A rise within the noise of ``n`` validation samples
    therefore never replaces the start (the case of issue 19: +0.8 points on
    1 000 samples), while a rise that the same samples confirm does, also on
    a small validation split where the unpaired interval is too wide."""

    def __init__(self, best_acc: float = -1.0, start_acc: float | None = None, best_step: int = 0):
        self.best_acc, self.start_acc, self.best_step = best_acc, start_acc, best_step
        self.start_correct: np.ndarray | None = None  # the start's per-sample correctness on validation

    def compare(self, ev: dict) -> None:
        """Add ``val_vs_start`` ([gained, lost] against the start) to ``ev``
        when it carries per-sample correctness (``_correct``) of the same samples."""
        c = ev.get("_correct")
        s = self.start_correct
        if c is not None and s is not None and len(c) == len(s):
            ev["val_vs_start"] = [int(np.sum(~s & c)), int(np.sum(s & ~c))]

    def qualifies(self, ev: dict) -> bool:
        """Whether ``ev`` is better than the start beyond its uncertainty."""
        if self.start_acc is None:
            return True
        if "val_vs_start" in ev:
            return paired_z(*ev["val_vs_start"]) > PAIRED_Z
        return ev["val_ci"][0] > self.start_acc

    def offer(self, ev: dict, step: int = 0) -> bool:
        """True when ``ev`` becomes the selected network (the caller saves it)."""
        if self.start_acc is None:  # the start network: always the first selected
            self.start_acc, self.best_acc, self.best_step = ev["val_accuracy"], ev["val_accuracy"], step
            if ev.get("_correct") is not None and len(ev["_correct"]) <= MAX_PAIRED_SAMPLES:
                self.start_correct = np.asarray(ev["_correct"], dtype=bool)
            return True
        if self.qualifies(ev) and ev["val_accuracy"] > self.best_acc:
            self.best_acc, self.best_step = ev["val_accuracy"], step
            return True
        return False

    def state(self) -> dict:
        out = {"start_acc": float(self.start_acc if self.start_acc is not None else -1.0),
               "best_step": int(self.best_step)}
        if self.start_correct is not None:
            out["start_correct"] = self.start_correct.astype(np.int64)
        return out


class Trend:
    """The validation trend that the ``plateau`` learning-rate schedule and
    early stopping (``patience``) read: the best validation accuracy so far
    and the evaluations since it last rose. It sees only the validation
    split (the one selection uses); the test split of `Evaluator.test` never
    enters the session's decisions."""

    def __init__(self, best_val: float = -1.0, stale: int = 0):
        self.best_val, self.stale = best_val, stale

    def update(self, ev: dict) -> bool:
        """True when ``ev`` raised the best validation accuracy."""
        if ev["val_accuracy"] > self.best_val:
            self.best_val, self.stale = float(ev["val_accuracy"]), 0
            return True
        self.stale += 1
        return False

    def state(self) -> dict:
        return {"best_val": float(self.best_val), "stale": int(self.stale)}
