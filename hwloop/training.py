"""Software training of first-spike-time networks with exact gradients.

The forward pass is `hwloop.models.network_forward` (the closed-form spike
times); the backward pass is each model's exact derivative at those times.
The in-the-loop trainer reuses `ttfs_loss`, `revive_silent` and the optimiser
set-up, substituting measured times for the closed form.

Loss (Göltz et al. 2021): cross-entropy on negative output times with
temperature ``xi`` (in units of tau_syn), plus ``alpha * (exp(t_label /
(beta * tau_syn)) - 1)`` pulling the correct spike early. A silent output is
given the constant time ``t_max`` in the loss (it has no gradient: the
revival rule below is what brings it back).

Reviving silent neurons (LIF, documented in docs/training.md): after the
forward pass, every neuron of layer ``l`` that missed its spike in more than
a fraction ``max_missing[l]`` of the batch's samples has all its incoming
weights raised by ``bump`` (Göltz et al.'s weight bumping); the gradient step
is taken as usual.
A silent LIF neuron has no gradient, so without this it could never return.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from . import __version__
from .errors import HwloopError
from .losses import ttfs_loss  # noqa: F401  (re-exported: the trainers' loss)
from .models import get_model, network_forward
from .network import Layer, Network, NeuronParams, OutputDecoding, Provenance, now_iso


@dataclass
class TrainConfig:
    """Everything that defines a training run. Times are in units of
    ``tau_syn`` unless the name says otherwise; ``time_unit`` names the unit of
    the resulting Network's times (tau_syn is ``tau`` of that unit)."""

    model: str = "lif"
    dataset: str = "yinyang"
    data_root: str | None = None
    hidden: tuple[int, ...] = (120,)
    epochs: int = 300
    batch_size: int = 150
    lr: float = 0.005
    lr_step: int = 20
    lr_gamma: float = 0.95
    seed: int = 0
    tau: float = 1.0  # tau_syn in time_unit
    tau_ratio: float = 1.0  # tau_mem / tau_syn (LIF: 1 or 2)
    threshold: float = 1.0
    t_max: float = 4.0  # trial length, units of tau
    bias_time: float = 0.9  # one bias spike per layer at this time (units of tau); <0: none
    xi: float = 0.2
    alpha: float = 0.005
    beta: float = 2.6
    weight_mean: tuple[float, ...] = (1.5, 0.5)  # per layer; last value repeats
    weight_std: tuple[float, ...] = (0.8, 0.8)
    max_missing: tuple[float, ...] = (0.3, 0.0)  # per layer, revival threshold; last value repeats
    bump: float = 0.005
    max_grad_norm: float = 1.0
    input_jitter: float = 0.0  # std of Gaussian noise on input spike times while training (units of tau)
    dtype: str = "float64"
    time_unit: str = "ms"
    model_options: dict = field(default_factory=dict)
    threads: int = 0  # 0: leave torch's default
    # the trial end T competes as an extra softmax "class" in the loss, so the
    # label output must spike inside the trial, not just before the others
    # (matters when silent outputs carry pseudospike times > T, as for QIF)
    end_logit: bool = False
    # curriculum for end_logit: the trial-end competitor joins the loss only
    # after an epoch in which the label output came first (on the times the
    # loss sees: extended times for QIF) for at least this fraction of the
    # training samples; 0: from the start. An initially silent deep QIF net
    # collapses into input-independent firing when the term is on from the
    # start (docs/results-qif.md), but not once the classes are ordered.
    end_logit_after: float = 0.0
    # override the data set's input spike-time range (units of tau): the
    # earliest (most salient value) and latest input time; None: the default
    input_t_early: float | None = None
    input_t_late: float | None = None

    def per_layer(self, values: Sequence[float], n: int) -> list[float]:
        """``values`` stretched to ``n`` layers: the last value repeats for the layers it does not name."""
        values = list(values)
        if not values:
            raise HwloopError("empty per-layer parameter list")
        return [values[i] if i < len(values) else values[-1] for i in range(n)]

    def validate(self) -> None:
        """Raise `HwloopError` naming the first setting that cannot be trained with."""
        if self.epochs < 0 or self.batch_size < 1:
            raise HwloopError("epochs must be >= 0 and batch_size >= 1")
        if any(h < 1 for h in self.hidden):
            raise HwloopError(f"hidden sizes must be positive, got {self.hidden}")
        if not (self.lr > 0 and self.tau > 0 and self.t_max > 0):
            raise HwloopError("lr, tau and t_max must be > 0")
        if self.dtype not in ("float32", "float64"):
            raise HwloopError(f"dtype must be float32 or float64, got {self.dtype}")
        if not 0.0 <= self.end_logit_after <= 1.0:
            raise HwloopError(f"end_logit_after is a fraction of the training set in [0, 1], got {self.end_logit_after}")


def jitter_times(t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Input spike times moved by ``noise``, kept >= 0; silent inputs (inf) stay silent."""
    return torch.where(torch.isfinite(t), (t + noise).clamp_min(0.0), t)


def revive_silent(weights: Sequence[torch.Tensor], times: Sequence[torch.Tensor],
                  max_missing: Sequence[float], bump: float) -> list[int]:
    """Weight bumping (see module doc). Returns the indices of bumped layers."""
    bumped = []
    with torch.no_grad():
        for i, (w, t) in enumerate(zip(weights, times)):
            missing = (~torch.isfinite(t)).to(w.dtype).mean(dim=0)
            low = missing > max_missing[i]
            if bool(low.any()):
                w[:, low] += bump
                bumped.append(i)
    return bumped


def _accuracy(t_out: torch.Tensor, y: torch.Tensor) -> float:
    from .data.decoding import classification_report

    return classification_report(t_out.detach().cpu().numpy(), y.cpu().numpy())["accuracy"]


def default_config(model: str, dataset: str, **overrides) -> TrainConfig:
    """Per model and data set defaults (documented in docs/training.md)."""
    cfg = TrainConfig(model=model, dataset=dataset)
    if dataset == "digits":
        cfg.hidden = (100,)
        cfg.weight_mean = (0.3, 0.5)
        cfg.weight_std = (0.4, 0.8)
        cfg.batch_size = 100
        cfg.epochs = 150
    elif dataset == "mnist":
        cfg.hidden = (350,)
        cfg.weight_mean = (0.05, 0.5)
        cfg.weight_std = (0.1, 0.8)
        cfg.batch_size = 100
        cfg.epochs = 50
    if model == "lif" and dataset == "digits":
        # tuned on the validation split (docs/training.md): wider hidden layer,
        # input-time jitter against over-fitting the 1077 training images, and
        # revival only for hidden neurons that almost never fire
        cfg.hidden = (200,)
        cfg.weight_mean = (0.1, 0.3)
        cfg.weight_std = (0.3, 0.5)
        cfg.input_jitter = 0.2
        cfg.max_missing = (0.95, 0.5)
    # a model may carry its own defaults (QIF does: trial length, loss, init)
    model_defaults = getattr(get_model(model), "default_train_overrides", None)
    if model_defaults is not None:
        # the hidden sizes asked for, so that a model can pick depth-specific defaults
        for k, v in model_defaults(dataset, hidden=overrides.get("hidden")).items():
            setattr(cfg, k, v)
    for k, v in overrides.items():
        if v is None:
            continue
        if not hasattr(cfg, k):
            raise HwloopError(f"unknown training option {k!r}")
        setattr(cfg, k, v)
    return cfg


def encoding_for(cfg: TrainConfig):
    """The data set's default encoding, with its time range replaced by
    ``cfg.input_t_early`` / ``cfg.input_t_late`` where those are set."""
    from .data import default_encoding

    enc = default_encoding(cfg.dataset, tau=cfg.tau)
    if cfg.input_t_early is None and cfg.input_t_late is None:
        return enc
    early_is_max = enc.t_at_max < enc.t_at_min  # e.g. pixels: bright = early
    t_early = min(enc.t_at_min, enc.t_at_max) if cfg.input_t_early is None else cfg.input_t_early * cfg.tau
    t_late = max(enc.t_at_min, enc.t_at_max) if cfg.input_t_late is None else cfg.input_t_late * cfg.tau
    if not (0 <= t_early <= t_late):
        raise HwloopError(f"need 0 <= input_t_early <= input_t_late, got {t_early / cfg.tau}, {t_late / cfg.tau}")
    if early_is_max:
        enc = dataclasses.replace(enc, t_at_max=t_early, t_at_min=t_late)
    else:
        enc = dataclasses.replace(enc, t_at_min=t_early, t_at_max=t_late)
    enc.validate()
    return enc


def build_layers(cfg: TrainConfig, n_features: int, n_classes: int) -> list[Layer]:
    """Layer specs (weights zero; initialised by `init_weights`)."""
    sizes = [n_features, *cfg.hidden, n_classes]
    tau = cfg.tau
    neuron = NeuronParams(
        model=cfg.model,
        tau_syn=tau,
        tau_mem=tau * cfg.tau_ratio,
        threshold=cfg.threshold,
        options=dict(cfg.model_options),
    )
    bias = (cfg.bias_time * tau,) if cfg.bias_time >= 0 else ()
    return [
        Layer(weight=np.zeros((sizes[i] + len(bias), sizes[i + 1])), neuron=neuron, bias_times=bias)
        for i in range(len(sizes) - 1)
    ]


def init_weights(cfg: TrainConfig, layers: Sequence[Layer], gen: torch.Generator) -> list[torch.Tensor]:
    dtype = getattr(torch, cfg.dtype)
    n = len(layers)
    means, stds = cfg.per_layer(cfg.weight_mean, n), cfg.per_layer(cfg.weight_std, n)
    ws = []
    for layer, m, s in zip(layers, means, stds):
        w = torch.randn(layer.weight.shape, generator=gen, dtype=dtype) * s + m
        ws.append(w.requires_grad_(True))
    return ws


def silent_hidden_fraction(layers: Sequence[Layer], weights: Sequence[torch.Tensor], x: torch.Tensor,
                           t_max: float) -> dict:
    """Fraction of hidden neurons that spike for *no* sample of ``x``
    (ordinary times), per hidden layer and over all hidden neurons: the
    "initially silent" figure of a deep network at initialisation."""
    with torch.no_grad():
        hidden = network_forward(layers, [w.detach() for w in weights], x, t_max)[:-1]
    never = [int((~torch.isfinite(t)).all(0).sum()) for t in hidden]
    sizes = [t.shape[1] for t in hidden]
    return {"layers": [n / s for n, s in zip(never, sizes)],
            "hidden": sum(never) / sum(sizes) if sizes else 0.0}


@dataclass
class TrainResult:
    """What `train` returns: the trained `Network` (best validation epoch), one history row per
    epoch, and the final metrics (accuracies per split, spike statistics, timing)."""
    network: Network
    history: list[dict]
    metrics: dict


def train(cfg: TrainConfig, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a network in software; returns the network with the best
    validation accuracy, evaluated on the test split."""
    from .data import load_dataset

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dtype = getattr(torch, cfg.dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    splits = {s: load_dataset(cfg.dataset, s, root=cfg.data_root) for s in ("train", "val", "test")}
    enc = encoding_for(cfg)
    data = {s: (torch.as_tensor(enc.encode(d.x), dtype=dtype), torch.as_tensor(d.y, dtype=torch.long))
            for s, d in splits.items()}
    classes = splits["train"].classes
    layers = build_layers(cfg, enc.n_features, len(classes))
    weights = init_weights(cfg, layers, gen)
    t_max = cfg.t_max * cfg.tau
    opt = torch.optim.Adam(weights, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.lr_step), gamma=cfg.lr_gamma)
    max_missing = cfg.per_layer(cfg.max_missing, len(layers))
    if cfg.model == "qif":
        # QIF trains on extended times: silent neurons carry pseudospikes (> t_max)
        from .models.ttfs.qif import pseudo_network_forward as train_forward
    else:
        train_forward = network_forward

    def forward(x):
        return train_forward(layers, weights, x, t_max)

    def evaluate(split: str) -> float:
        """Accuracy on ordinary times (what a target would measure)."""
        x, y = data[split]
        with torch.no_grad():
            out = network_forward(layers, weights, x, t_max)[-1]
        return _accuracy(out, y)

    x_tr, y_tr = data["train"]
    n = x_tr.shape[0]
    silent_at_init = silent_hidden_fraction(layers, weights, x_tr, t_max)
    end_logit_on = cfg.end_logit and cfg.end_logit_after <= 0.0
    history: list[dict] = []
    best = (-1.0, [w.detach().clone() for w in weights], 0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, desc=f"train {cfg.model}/{cfg.dataset}", unit="ep", file=sys.stderr,
                   dynamic_ncols=True)
    t_start = time.perf_counter()
    for epoch in range(cfg.epochs):
        perm = torch.as_tensor(rng.permutation(n))
        tot_loss, n_steps, n_bumped, n_first = 0.0, 0, 0, 0
        t0 = time.perf_counter()
        for b in range(0, n, cfg.batch_size):
            idx = perm[b:b + cfg.batch_size]
            xb, yb = x_tr[idx], y_tr[idx]
            if cfg.input_jitter > 0:
                noise = torch.randn(xb.shape, generator=gen, dtype=xb.dtype) * (cfg.input_jitter * cfg.tau)
                xb = jitter_times(xb, noise)
            times = forward(xb)
            loss = ttfs_loss(times[-1], yb, t_max, cfg.tau, cfg.xi, cfg.alpha, cfg.beta, end_logit_on)
            with torch.no_grad():  # label output first on the times the loss saw (extended for QIF)
                t_seen = torch.where(torch.isfinite(times[-1]), times[-1], torch.full_like(times[-1], t_max))
                n_first += int((t_seen.argmin(1) == yb).sum())
            if not torch.isfinite(loss):
                raise HwloopError(f"loss became {loss.item()} at epoch {epoch}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(weights, cfg.max_grad_norm)
            opt.step()
            # after the step: bumping in place before backward would corrupt saved tensors
            if cfg.model == "lif" and revive_silent(weights, times, max_missing, cfg.bump):
                n_bumped += 1
            tot_loss += loss.item()
            n_steps += 1
        sched.step()
        val_acc = evaluate("val")
        label_first = n_first / max(1, n)
        row = {
            "epoch": epoch + 1,
            "loss": tot_loss / max(1, n_steps),
            "val_accuracy": val_acc,
            "train_label_first": label_first,
            "end_logit": end_logit_on,
            "bumped_batches": n_bumped,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if cfg.end_logit and not end_logit_on and label_first >= cfg.end_logit_after:
            end_logit_on = True  # from the next epoch on
        if val_acc > best[0]:
            best = (val_acc, [w.detach().clone() for w in weights], epoch + 1)
        if on_epoch:
            on_epoch(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{val_acc:.3f}", best=f"{best[0]:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - t_start

    with torch.no_grad():
        for w, wb in zip(weights, best[1]):
            w.copy_(wb)
    acc = {s: evaluate(s) for s in ("train", "val", "test")}
    trained_layers = tuple(
        dataclasses.replace(layer, weight=w.detach().to(torch.float64).numpy())
        for layer, w in zip(layers, weights)
    )
    net = Network(
        layers=trained_layers,
        encoding=enc,
        decoding=OutputDecoding(classes=classes),
        t_max=t_max,
        time_unit=cfg.time_unit,
        provenance=Provenance(
            model=cfg.model,
            dataset=cfg.dataset,
            seed=cfg.seed,
            accuracy=acc,
            hwloop_version=__version__,
            created=now_iso(),
            extra={"train_config": json.loads(json.dumps(dataclasses.asdict(cfg), default=list)),
                   "best_epoch": best[2]},
        ),
    )
    metrics = {"accuracy": acc, "best_epoch": best[2], "train_seconds": train_seconds,
               "epochs": cfg.epochs, "silent_at_init": silent_at_init}
    return TrainResult(network=net, history=history, metrics=metrics)
