"""`run_session`: a short loop over the session's named parts.

Per step: the training data gives the batch of the step, the gradient
estimator runs it on the target and returns a gradient, the master weights
take the optimiser step, the revival rule bumps LIF neurons the target left
silent, the log gets a row; every epoch (or ``eval_every`` steps) the
evaluator measures the deployed weights and the selection keeps the best;
the checkpoint store saves what a resume needs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np

from hwloop.network import Network, now_iso

from .checkpoint import CheckpointStore
from .config import LoopConfig
from .errors import SessionError
from .estimators import make_estimator
from .files import SessionDir
from .parts import Evaluator, MasterWeights, Revival, SessionLoss, Selection, TrainingData


class _StopRequested(Exception):
    pass


class Session:
    """One session's parts and position, built from its directory."""

    def __init__(self, sd: SessionDir, cfg: LoopConfig):
        self.sd, self.cfg = sd, cfg
        self.template = Network.load(sd.init_net)
        self.loss = SessionLoss(cfg, self.template)
        self.data = TrainingData(cfg, self.template)
        self.master = MasterWeights(cfg, self.template)
        self.estimator = make_estimator(cfg, self.template, self.loss)
        self.revival = Revival(cfg, self.template)
        self.evaluator = Evaluator(cfg, self.template, self.data)
        self.selection = Selection()
        self.store = CheckpointStore(sd)
        self.step = 0
        self.notices: list[str] = []
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = self.steps_per_epoch * cfg.epochs

    # ---- persistence
    def restore(self) -> None:
        """Continue from the last checkpoint (or from the start without one)."""
        if self.store.exists():
            ck = self.store.load()
            self.master.restore(ck)
            self.step, self.selection.best_acc = int(ck["step"]), float(ck["best_acc"])
            self.notify(self.sd.truncate_log(self.step))
        else:
            self.notify(self.sd.truncate_log(0))

    def notify(self, notices: list[str]) -> None:
        """Things the user should know about the session files (one line each, stderr)."""
        for text in notices:
            print(f"hwloop session: {text}", file=sys.stderr)
        self.notices.extend(notices)

    def checkpoint(self) -> None:
        self.store.save({"step": self.step, "best_acc": self.selection.best_acc, **self.master.state()})
        self.sd.save_network(self.deployed_network(), self.sd.latest)  # the same weights the session ends with

    def deployed_network(self) -> Network:
        from hwloop.inloop import network_with

        return network_with(self.template, self.master.deployed())

    # ---- the loop
    def evaluate(self, backend, epoch: int) -> dict:
        ev = self.evaluator(backend, self.master.deployed())
        self.sd.append_log({"step": self.step, "epoch": epoch, "kind": "eval", **ev})
        if self.selection.offer(ev):
            self.sd.save_network(self.deployed_network(), self.sd.best)
        return ev

    def train_step(self, backend) -> dict:
        from hwloop.data.decoding import classification_report

        epoch, xb, yb = self.data.batch(self.step)
        t0 = time.perf_counter()
        est = self.estimator.estimate(backend, self.master.weights, xb, yb, self.step)
        self.master.apply(est.grads)
        bumped = self.revival(self.master.weights, est.times)
        self.master.update_average()
        self.step += 1
        if self.step % self.steps_per_epoch == 0:
            self.master.end_epoch()
        m = est.measurement
        target_s = m.target_time_s
        row = {"step": self.step, "epoch": epoch + 1, "kind": "train", "loss": est.loss,
               "batch_accuracy": classification_report(m.times[-1], yb.numpy())["accuracy"],
               "silent": [float(np.mean(~np.isfinite(t))) for t in m.times], "bumped": bumped,
               "target_runs": est.target_runs, "samples": int(len(yb)), "target_seconds": target_s,
               "host_seconds": time.perf_counter() - t0 - target_s, "io_seconds": m.host_time_s,
               "deploy_seconds": float(m.info.get("deploy_s", 0.0)), "lr": self.master.lr}
        self.sd.append_log(row)
        return row

    def run(self, progress: bool = True, crash_after_step: int | None = None) -> dict:
        from hwloop.backends import open_target

        cfg, sd = self.cfg, self.sd
        stop = {"flag": False}

        def on_sigint(signum, frame):
            if stop["flag"]:
                raise KeyboardInterrupt
            stop["flag"] = True  # finish the step in flight, checkpoint, then stop

        in_main = threading.current_thread() is threading.main_thread()
        old_handler = signal.signal(signal.SIGINT, on_sigint) if in_main else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=f"loop {cfg.target}", unit="step",
                       file=sys.stderr, dynamic_ncols=True)
        backend = open_target(cfg.target)
        t_session = time.perf_counter()
        try:
            if self.step == 0:
                self.evaluate(backend, epoch=0)
                self.checkpoint()
            while self.step < self.total_steps:
                row = self.train_step(backend)
                if crash_after_step is not None and self.step == crash_after_step:
                    os._exit(3)  # test hook: die before this step's checkpoint
                step = self.step
                eval_now = (cfg.eval_every and step % cfg.eval_every == 0) or step % self.steps_per_epoch == 0
                if eval_now:
                    ev = self.evaluate(backend, epoch=row["epoch"])
                    if bar is not None:
                        bar.set_postfix(val=f"{ev['val_accuracy']:.3f}", best=f"{self.selection.best_acc:.3f}")
                if step % cfg.checkpoint_every == 0 or step == self.total_steps or stop["flag"]:
                    self.checkpoint()
                if bar is not None:
                    bar.update(1)
                    if not eval_now:
                        bar.set_postfix(loss=f"{row['loss']:.3f}", batch=f"{row['batch_accuracy']:.2f}",
                                        best=f"{self.selection.best_acc:.3f}")
                if stop["flag"]:
                    raise _StopRequested()
        except _StopRequested:
            if bar is not None:
                bar.close()
            print(f"interrupted at step {self.step}; resume with: hwloop loop --resume {sd.path}", file=sys.stderr)
            return {"ok": True, "interrupted": True, "step": self.step, "session": str(sd.path)}
        finally:
            backend.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if bar is not None:
            bar.close()
        sd.save_network(self.deployed_network(), sd.latest)
        summary = {"steps": self.step, "best_val_accuracy": self.selection.best_acc,
                   "seconds": time.perf_counter() - t_session, "finished": now_iso()}
        sd.write_summary(summary)
        res = {"ok": True, "interrupted": False, "session": str(sd.path), **summary}
        if self.notices:
            res["notices"] = list(self.notices)
        return res


def run_session(directory: str | os.PathLike, cfg: LoopConfig | None = None, resume: bool = False,
                progress: bool = True, crash_after_step: int | None = None) -> dict:
    """Create (``cfg``) or resume (``resume=True``) a session and run it to the end.

    ``crash_after_step`` is a test hook: the process exits abruptly right
    after that step's weight update, before its checkpoint."""
    sd = SessionDir(directory)
    if resume:
        cfg = sd.load_config()
        if sd.summary.exists():
            raise SessionError(f"{sd.path}: session already complete (see summary.json)")
    else:
        if not isinstance(cfg, LoopConfig):
            raise SessionError("no configuration given (a LoopConfig)")
        cfg = cfg.resolved()
        cfg.validate()
        from hwloop.backends import backend_class, parse_target

        backend_class(parse_target(cfg.target).scheme)  # an unknown target fails before anything is written
        sd.create(cfg)
    session = Session(sd, cfg)
    if resume:
        session.restore()
    return session.run(progress, crash_after_step)
