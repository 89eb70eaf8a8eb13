"""In-the-loop training sessions that never lose work.

A session is a directory::

    config.json        the LoopConfig (written once, read on --resume)
    init.hwnet         the network the session started from
    log.jsonl          one JSON object per step (and per evaluation)
    checkpoint.pt      weights, optimiser, scheduler, position; written
                       atomically (temporary file, fsync, rename) after every
                       `checkpoint_every` steps
    network.hwnet      the latest weights as a Network (atomic)
    best.hwnet         the weights with the best validation accuracy on the target
    summary.json       written when the session completes

Determinism: the order of training samples is a function of (seed, epoch)
and the perturbations of (seed, step), never of process state, and a
deterministic target returns the same times for the same inputs. So a session
killed at any point and resumed from its last checkpoint ends with the same
weights as an uninterrupted run (tested by killing a session). A crash loses
at most the steps since the last checkpoint (one step with the default
``checkpoint_every=1``); the log is truncated back to the checkpoint on resume
so every step appears exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import HwloopError
from .fileio import atomic_write_bytes
from .network import Network, now_iso


class SessionError(HwloopError):
    """A session directory is missing, inconsistent or already complete."""


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


def atomic_torch_save(obj: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class SessionDir:
    """File layout and atomic persistence of one session."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    init_net = property(lambda self: self.path / "init.hwnet")
    log = property(lambda self: self.path / "log.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    latest = property(lambda self: self.path / "network.hwnet")
    best = property(lambda self: self.path / "best.hwnet")
    summary = property(lambda self: self.path / "summary.json")

    def create(self, cfg: LoopConfig) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise SessionError(f"{self.path} exists and is not empty (use --resume to continue it)")
        self.path.mkdir(parents=True, exist_ok=True)
        src = Path(cfg.init)
        Network.load(src)  # fail early on a bad file, before anything is written
        shutil.copyfile(src, self.init_net)
        atomic_write_bytes(self.config, json.dumps(cfg.to_json(), indent=2).encode())

    def load_config(self) -> LoopConfig:
        if not self.config.exists():
            raise SessionError(f"{self.path}: not a session directory (no config.json)")
        try:
            return LoopConfig.from_json(json.loads(self.config.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise SessionError(f"{self.config}: unreadable ({exc})") from None

    def append_log(self, row: dict) -> None:
        with open(self.log, "a") as fh:
            fh.write(json.dumps(row, allow_nan=False, default=float) + "\n")
            fh.flush()

    def read_log(self) -> list[dict]:
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash
        return rows

    def truncate_log(self, step: int) -> None:
        """Keep only rows up to ``step`` (rows after the checkpoint are redone)."""
        rows = [r for r in self.read_log() if r.get("step", 0) <= step]
        atomic_write_bytes(self.log, "".join(json.dumps(r) + "\n" for r in rows).encode())


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0]).permutation(n)


class _StopRequested(Exception):
    pass


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


def run_session(directory: str | os.PathLike, cfg: LoopConfig | None = None, resume: bool = False,
                progress: bool = True, crash_after_step: int | None = None) -> dict:
    """Create (``cfg``) or resume (``resume=True``) a session and run it to the end.

    ``crash_after_step`` is a test hook: the process exits abruptly right
    after that step's weight update, before its checkpoint."""
    from hwloop.backends import open_target

    from .data import load_dataset
    from .data.decoding import classification_report
    from .evaluation import run_batches, spike_statistics
    from .inloop import measured_forward, network_with, spsa_gradient, worst_case_output
    from .models import network_forward
    from .training import jitter_times, revive_silent, ttfs_loss

    sd = SessionDir(directory)
    if resume:
        cfg = sd.load_config()
        if sd.summary.exists():
            raise SessionError(f"{sd.path}: session already complete (see summary.json)")
    else:
        if cfg is None:
            raise SessionError("no configuration given")
        cfg.validate()
        from hwloop.backends import backend_class, parse_target

        backend_class(parse_target(cfg.target).scheme)  # an unknown target fails before anything is written
        sd.create(cfg)
    template = Network.load(sd.init_net)
    dtype = torch.float64
    t_max = template.t_max
    tau = template.layers[-1].neuron.tau_syn
    xi, alpha, beta, end_logit = _loss_params(cfg, template)

    def ttfs_loss_(t_out, y):
        return ttfs_loss(t_out, y, t_max, tau, xi, alpha, beta, end_logit)

    train = load_dataset(cfg.dataset, "train", root=cfg.data_root)
    val = load_dataset(cfg.dataset, "val", root=cfg.data_root)
    x_tr, y_tr = train.x, train.y
    if cfg.train_limit:
        x_tr, y_tr = x_tr[: cfg.train_limit], y_tr[: cfg.train_limit]
    x_val, y_val = val.x, val.y
    if cfg.eval_limit:
        x_val, y_val = x_val[: cfg.eval_limit], y_val[: cfg.eval_limit]
    t_tr = torch.as_tensor(template.encoding.encode(x_tr), dtype=dtype)
    yt_tr = torch.as_tensor(y_tr, dtype=torch.long)
    t_val = template.encoding.encode(x_val)

    weights = [torch.tensor(w, dtype=dtype).requires_grad_(True) for w in template.weights()]
    averaged = [w.detach().clone() for w in weights]  # the EMA (used when cfg.ema > 0)

    def deployed():
        """The weights that are evaluated and saved as the session's result."""
        return averaged if cfg.ema > 0 else weights
    opt = torch.optim.Adam(weights, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_gamma)
    n = len(t_tr)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    step = 0
    best_acc = -1.0
    if resume and sd.checkpoint.exists():
        ck = torch.load(sd.checkpoint, weights_only=False)
        with torch.no_grad():
            for w, saved in zip(weights, ck["weights"]):
                w.copy_(saved)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step, best_acc = int(ck["step"]), float(ck["best_acc"])
        if "averaged" in ck:
            averaged = [a.clone() for a in ck["averaged"]]
        sd.truncate_log(step)
    elif resume:
        sd.truncate_log(0)

    stop = {"flag": False}

    def on_sigint(signum, frame):
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True  # finish the step in flight, checkpoint, then stop

    old_handler = signal.signal(signal.SIGINT, on_sigint) if _in_main_thread() else None

    def loss_on_target(backend, ws, xb, yb) -> float:
        with torch.no_grad():
            times, _ = measured_forward(backend, template, ws, xb)
        return float(ttfs_loss_(times[-1], yb))

    def evaluate(backend) -> dict:
        t0 = time.perf_counter()
        backend.load(network_with(template, deployed()))
        times, _, _ = run_batches(backend, t_val)
        res = {"val_accuracy": classification_report(times[-1], y_val)["accuracy"],
               "val_silent": [s["silent_fraction"] for s in spike_statistics(times)["layers"]]}
        if cfg.compare_software:
            with torch.no_grad():
                sw = network_forward(template.layers, deployed(), torch.as_tensor(t_val, dtype=dtype), t_max)
            res["software_val_accuracy"] = classification_report(sw[-1].numpy(), y_val)["accuracy"]
        res["seconds"] = time.perf_counter() - t0
        return res

    def save_checkpoint() -> None:
        atomic_torch_save({"step": step, "best_acc": best_acc,
                           "weights": [w.detach().clone() for w in weights],
                           "averaged": [a.clone() for a in averaged],
                           "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, sd.checkpoint)
        network_with(template, deployed()).save(sd.latest)  # the same weights the session ends with

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=f"loop {cfg.target}", unit="step", file=sys.stderr,
                   dynamic_ncols=True)
    backend = open_target(cfg.target)
    t_session = time.perf_counter()
    try:
        if step == 0:
            ev = evaluate(backend)
            sd.append_log({"step": 0, "epoch": 0, "kind": "eval", **ev})
            best_acc = ev["val_accuracy"]
            network_with(template, deployed()).save(sd.best)
            save_checkpoint()
        while step < total_steps:
            epoch, k = divmod(step, steps_per_epoch)
            order = _epoch_order(cfg.seed, epoch, n)
            idx = torch.as_tensor(order[k * cfg.batch_size:(k + 1) * cfg.batch_size])
            xb, yb = t_tr[idx], yt_tr[idx]
            if cfg.input_jitter > 0:  # keyed on (seed, step): resume replays it exactly
                noise = np.random.default_rng([cfg.seed, step, 2]).standard_normal(tuple(xb.shape))
                xb = jitter_times(xb, torch.as_tensor(noise * cfg.input_jitter * tau, dtype=xb.dtype))
            t0 = time.perf_counter()
            target_s = 0.0
            runs = 1
            if cfg.gradient == "model":
                times, m = measured_forward(backend, template, weights, xb, grad_at=cfg.grad_at)
                target_s = m.target_time_s
                t_loss = times[-1]
                if cfg.loss_times == "worst":
                    t_loss = worst_case_output(template, weights, xb, times, yb)
                loss = ttfs_loss_(t_loss, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(weights, cfg.max_grad_norm)
                opt.step()
                bumped = []
                if template.model == "lif":
                    rates = [cfg.max_missing[min(i, len(cfg.max_missing) - 1)] for i in range(len(weights))]
                    bumped = revive_silent(weights, times, rates, cfg.bump)
                out = m.times[-1]  # measured (pseudospikes, if any, only feed the gradient)
                silent = [float(np.mean(~np.isfinite(t))) for t in m.times]
                loss_v = float(loss.detach())
            else:
                rng = np.random.default_rng([cfg.seed, step, 1])
                grads, runs = spsa_gradient(lambda ws: loss_on_target(backend, ws, xb, yb), weights,
                                            cfg.spsa_sigma, cfg.spsa_pairs, rng)
                with torch.no_grad():
                    times, m = measured_forward(backend, template, weights, xb)
                runs += 1
                target_s = m.target_time_s
                loss_v = float(ttfs_loss_(times[-1], yb))
                for w, g in zip(weights, grads):
                    w.grad = g
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(weights, cfg.max_grad_norm)
                opt.step()
                bumped = []
                out = m.times[-1]
                silent = [float(np.mean(~np.isfinite(t))) for t in m.times]
            if cfg.ema > 0:
                with torch.no_grad():
                    for a, w in zip(averaged, weights):
                        a.mul_(cfg.ema).add_(w.detach(), alpha=1.0 - cfg.ema)
            step += 1
            if step % steps_per_epoch == 0:
                sched.step()
            acc = classification_report(out, yb.numpy())["accuracy"]
            row = {"step": step, "epoch": epoch + 1, "kind": "train", "loss": loss_v, "batch_accuracy": acc,
                   "silent": silent, "bumped": bumped, "target_runs": runs, "samples": int(len(idx)),
                   "target_seconds": target_s, "host_seconds": time.perf_counter() - t0 - target_s,
                   "io_seconds": m.host_time_s, "deploy_seconds": float(m.info.get("deploy_s", 0.0)),
                   "lr": opt.param_groups[0]["lr"]}
            sd.append_log(row)
            if crash_after_step is not None and step == crash_after_step:
                os._exit(3)  # test hook: die before this step's checkpoint
            eval_now = (cfg.eval_every and step % cfg.eval_every == 0) or step % steps_per_epoch == 0
            if eval_now:
                ev = evaluate(backend)
                sd.append_log({"step": step, "epoch": epoch + 1, "kind": "eval", **ev})
                if ev["val_accuracy"] > best_acc:
                    best_acc = ev["val_accuracy"]
                    network_with(template, deployed()).save(sd.best)
                if bar is not None:
                    bar.set_postfix(val=f"{ev['val_accuracy']:.3f}", best=f"{best_acc:.3f}")
            if step % cfg.checkpoint_every == 0 or step == total_steps or stop["flag"]:
                save_checkpoint()
            if bar is not None:
                bar.update(1)
                if not eval_now:
                    bar.set_postfix(loss=f"{loss_v:.3f}", batch=f"{acc:.2f}", best=f"{best_acc:.3f}")
            if stop["flag"]:
                raise _StopRequested()
    except _StopRequested:
        if bar is not None:
            bar.close()
        print(f"interrupted at step {step}; resume with: hwloop loop --resume {sd.path}", file=sys.stderr)
        return {"ok": True, "interrupted": True, "step": step, "session": str(sd.path)}
    finally:
        backend.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    if bar is not None:
        bar.close()
    final = network_with(template, deployed())
    final.save(sd.latest)
    summary = {"steps": step, "best_val_accuracy": best_acc, "seconds": time.perf_counter() - t_session,
               "finished": now_iso()}
    atomic_write_bytes(sd.summary, json.dumps(summary, indent=2).encode())
    return {"ok": True, "interrupted": False, "session": str(sd.path), **summary}


def _loss_params(cfg: LoopConfig, net: Network) -> tuple[float, float, float, bool]:
    from .training import default_config

    trained = dict(net.provenance.extra.get("train_config", {}) or {})
    defaults = default_config(net.model if net.model != "mixed" else "lif", cfg.dataset)
    out = []
    for key in ("xi", "alpha", "beta", "end_logit"):
        v = getattr(cfg, key)
        if v is None:
            v = trained.get(key, getattr(defaults, key))
        out.append(v)
    return float(out[0]), float(out[1]), float(out[2]), bool(out[3])


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
