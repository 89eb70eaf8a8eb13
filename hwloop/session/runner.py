"""`run_session`: a short loop over the session's named parts.

Per step: the training data gives the batch of the step, the gradient
estimator runs it on the target and returns a gradient, the master weights
take the optimiser step, the revival rule bumps LIF neurons the target left
silent, the log gets a row; every epoch (or ``eval_every`` steps) the
evaluator measures the deployed weights and the selection keeps the best;
the checkpoint store saves what a resume needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time

from pathlib import Path

import numpy as np
import torch

from hwloop.errors import HwloopError
from hwloop.network import Network, now_iso

from .checkpoint import MAX_HEADER, CheckpointDamaged, CheckpointStore, file_sha256
from .config import LoopConfig
from .errors import SessionError, SessionWriteError
from .estimators import make_estimator
from .files import SessionDir
from .parts import MAX_PAIRED_SAMPLES, Evaluator, MasterWeights, Revival, SessionLoss, Selection, TrainingData, Trend


class _StopRequested(Exception):
    pass


#: what a session checkpoint's state says it is. Format 1 (hwloop before the
#: start-network selection) had no ``selection`` entry; it is still read
#: (`Session._upgrade_selection` rebuilds the selection from the log).
STATE_FORMAT = "hwloop-session-2"
LEGACY_FORMAT = "hwloop-session-1"
#: network.hwnet as the next checkpoint will record it, before it is renamed into place
PENDING_NETWORK = ".network.hwnet.pending"


def backend_state(backend) -> dict:
    """What the target needs to continue exactly where it was (e.g. the QIF
    chip's noise-seed counter); {} for a target without such state."""
    state = getattr(backend, "state", None)
    return dict(state()) if callable(state) else {}


def restore_backend_state(backend, state: dict) -> None:
    from hwloop.errors import TargetError

    restore = getattr(backend, "restore_state", None)
    try:
        if callable(restore):
            restore(state)
        elif state:
            raise TargetError(f"{backend.url.raw}: cannot restore target state {sorted(state)[:5]}")
    except TargetError as exc:
        raise SessionError(f"the checkpoint's target state does not fit: {exc}") from None


def _check_same_config(sd: SessionDir, saved: dict, cfg: LoopConfig) -> None:
    """config.json must be the configuration the checkpoint was written with
    (``epochs`` aside: a session may be extended)."""
    from .config import fill_missing

    now = cfg.to_json()
    if isinstance(saved, dict):  # fields an older hwloop did not write: what that session ran with
        saved = json.loads(json.dumps(fill_missing(saved), default=list))
    diff = sorted(k for k in set(saved) | set(now) if k != "epochs" and saved.get(k) != now.get(k))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in diff[:3])
        raise SessionError(f"{sd.config}: differs from the configuration the checkpoint was written with "
                           f"({shown}); put it back, or start a new session")


class Session:
    """One session's parts and position, built from its directory."""

    def __init__(self, sd: SessionDir, cfg: LoopConfig, resume: bool = False):
        """``resume``: the session's files are checked against its checkpoint
        (`restore`) before the data are loaded, so that a damaged config.json
        is named as such, not as a data set that does not exist."""
        self.sd, self.cfg = sd, cfg
        self.init_sha = file_sha256(sd.init_net)
        if self.init_sha is None:
            raise SessionError(f"{sd.path}: {sd.init_net.name} is missing")
        try:
            self.template = Network.load(sd.init_net)
        except HwloopError as exc:
            raise SessionError(f"{sd.init_net}: {exc}") from None
        self.trains = self.template.is_spike_train
        if self.trains:
            from .trains_parts import TrainsLoss

            self.loss = TrainsLoss(cfg, self.template)
        else:
            self.loss = SessionLoss(cfg, self.template)
        self.master = MasterWeights(cfg, self.template)
        self.estimator = make_estimator(cfg, self.template, self.loss)
        self.revival = Revival(cfg, self.template)
        self.selection = Selection()
        self.trend = Trend()
        self.store = CheckpointStore(sd)
        self.step = 0
        self.started = False  # the start network has been evaluated (a checkpoint exists)
        self.saved_step: int | None = None  # step of the last checkpoint on disk
        self.network_sha: str | None = None  # digest of network.hwnet as the last checkpoint wrote it
        self.notices: list[str] = []
        self.legacy_pending = None  # (format 1, no start evaluation in the log) see _upgrade_selection
        if not resume:
            self._load_data()

    def _load_data(self) -> None:
        if self.template.is_spike_train:
            from .trains_parts import TrainsData, TrainsEvaluator

            self.data = TrainsData(self.cfg, self.template)
            self.evaluator = TrainsEvaluator(self.cfg, self.template, self.data)
        else:
            self.data = TrainingData(self.cfg, self.template)
            self.evaluator = Evaluator(self.cfg, self.template, self.data)
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = self.steps_per_epoch * self.cfg.epochs

    def notify(self, notices: list[str]) -> None:
        """Things the user should know about the session files (one line each, stderr)."""
        for text in notices:
            print(f"hwloop session: {text}", file=sys.stderr)
        self.notices.extend(notices)

    # ---- persistence
    STATE_KEYS = {"format", "step", "best_acc", "config", "backend", "files", "weights", "averaged", "lr", "adam",
                  "selection", "trend"}
    FILE_KEYS = {"init.hwnet", "network.hwnet", "network.hwnet.before"}

    def _check_state(self, st) -> tuple[dict, MasterWeights]:
        """A checkpoint's state checked against this session (`CheckpointDamaged`
        on anything that does not fit), with master weights built from it."""
        if (isinstance(st, dict) and st.get("format") == LEGACY_FORMAT and "selection" not in st
                and set(st) == self.STATE_KEYS - {"selection", "trend"}):
            st = {**st, "selection": None, "trend": None}  # format 1: rebuilt from the log once the data are loaded
        elif not isinstance(st, dict) or set(st) != self.STATE_KEYS or st["format"] != STATE_FORMAT:
            raise CheckpointDamaged("not a session checkpoint (unexpected contents)")
        step, best, sel = st["step"], st["best_acc"], st["selection"]
        if st["format"] == STATE_FORMAT and (sel is None or st["trend"] is None):
            raise CheckpointDamaged("selection or trend missing")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise CheckpointDamaged(f"step {step!r} is not a step count")
        if not isinstance(best, float) or not -1.0 <= best <= 1.0:
            raise CheckpointDamaged(f"best_acc {best!r} is not an accuracy")
        if sel is not None and (not isinstance(sel, dict) or set(sel) - {"start_correct"} != {"start_acc", "best_step"}
                or not isinstance(sel["start_acc"], float) or not -1.0 <= sel["start_acc"] <= 1.0
                or not isinstance(sel["best_step"], int) or isinstance(sel["best_step"], bool)
                or not 0 <= sel["best_step"] <= step):
            raise CheckpointDamaged("selection: not the start accuracy and the selected step")
        sc = sel.get("start_correct") if sel is not None else None
        if sc is not None and not (isinstance(sc, torch.Tensor) and sc.dtype == torch.int64 and sc.ndim == 1
                                   and bool(((sc == 0) | (sc == 1)).all())):
            raise CheckpointDamaged("selection.start_correct: not one 0/1 integer per validation sample")
        trend = st["trend"]
        if trend is not None and (not isinstance(trend, dict) or set(trend) != {"best_val", "stale"}
                                  or not isinstance(trend["best_val"], float) or not -1.0 <= trend["best_val"] <= 1.0
                                  or not isinstance(trend["stale"], int) or isinstance(trend["stale"], bool)
                                  or not 0 <= trend["stale"] <= step + 1):
            raise CheckpointDamaged("trend: not the best validation accuracy and the evaluations since")
        files = st["files"]
        if (not isinstance(files, dict) or set(files) != self.FILE_KEYS or not isinstance(files["init.hwnet"], str)
                or not all(v is None or (isinstance(v, str) and len(v) == 64) for v in files.values())):
            raise CheckpointDamaged("files: not the digests of the session's networks")
        if not isinstance(st["config"], dict) or not isinstance(st["backend"], dict):
            raise CheckpointDamaged("config or backend state missing")
        self._check_recurrent_layout(st["config"])
        master = MasterWeights(self.cfg, self.template)
        master.restore(st)
        return st, master

    def _check_recurrent_layout(self, saved: dict) -> None:
        """A checkpoint written with the recurrent matrices trained (or frozen)
        holds that many master weights: one with the other setting in config.json
        is named as a changed configuration (`SessionError`), not as damage."""
        from .config import fill_missing
        from .parts import trains_recurrent

        then = bool(fill_missing(saved).get("train_recurrent"))
        if trains_recurrent(dataclasses.replace(self.cfg, train_recurrent=then), self.template) \
                != trains_recurrent(self.cfg, self.template):
            raise SessionError(f"{self.sd.config}: differs from the configuration the checkpoint was written with "
                               f"(train_recurrent: {then!r} in the checkpoint, {self.cfg.train_recurrent!r} now); "
                               "put it back, or start a new session")

    def _load_data_named(self, source: Path) -> None:
        try:
            self._load_data()
        except HwloopError as exc:  # e.g. a data set that is no longer where config.json says
            raise SessionError(f"{source}: {exc}") from None

    def max_checkpoint_bytes(self) -> int:
        n = sum(int(w.numel()) for w in self.master.weights)
        # weights, average, Adam's two moments, header, the start's per-sample validation figures
        return 4 * 8 * n + MAX_HEADER + 1024 + 8 * MAX_PAIRED_SAMPLES

    def restore(self) -> None:
        """Continue from the last usable checkpoint (or from the start without
        one), after checking that the session's files and configuration are
        the ones it was written with."""
        try:
            self._restore()
        except SessionWriteError as exc:
            raise self.write_failed(exc) from None

    def _restore(self) -> None:
        sd = self.sd
        pending = sd.path / PENDING_NETWORK
        pending.unlink(missing_ok=True)  # a checkpoint that a crash interrupted before it was taken
        loaded = self.store.load(self._check_state, self.max_checkpoint_bytes())
        if loaded is None:  # killed before its first checkpoint: it starts again, with an empty log
            self._load_data_named(sd.config)
            self.notify(sd.truncate_log(-1))
            return
        (st, master), path, notices = loaded
        self.notify(notices)
        files = st["files"]
        if files["init.hwnet"] != self.init_sha:
            raise SessionError(f"{sd.init_net}: not the network this session started from (sha256 "
                               f"{self.init_sha[:12]}..., the checkpoint records {files['init.hwnet'][:12]}...); "
                               "put the original back")
        if path == self.store.latest:  # (after a fallback the file is newer than the checkpoint: rewritten below)
            on_disk = file_sha256(sd.latest)
            if on_disk is not None and on_disk not in (files["network.hwnet"], files["network.hwnet.before"]):
                raise SessionError(f"{sd.latest}: changed outside the session (sha256 {on_disk[:12]}... is not "
                                   f"what the checkpoint wrote); move it away and resume again to have it "
                                   "rewritten from the checkpoint")
        _check_same_config(sd, st["config"], self.cfg)
        self._load_data_named(sd.config)
        if st["step"] > self.total_steps:
            raise SessionError(f"{path}: at step {st['step']}, past the end of the session ({self.total_steps} "
                               f"steps in {self.cfg.epochs} epochs); a damaged or foreign checkpoint")
        self.master = master
        self.step, self.selection.best_acc = st["step"], st["best_acc"]
        self.backend_state = st["backend"]
        self.started, self.saved_step, self.network_sha = True, st["step"], files["network.hwnet"]
        self.notify(sd.truncate_log(self.step))
        if st["selection"] is None:
            self._upgrade_selection(st["best_acc"])
        else:
            self.selection.start_acc = st["selection"]["start_acc"]
            self.selection.best_step = st["selection"]["best_step"]
            sc = st["selection"].get("start_correct")
            if sc is not None:
                if len(sc) != len(self.data.y_val):
                    raise SessionError(f"{path}: the checkpoint's start figures are for {len(sc)} validation "
                                       f"samples, the session has {len(self.data.y_val)}; a foreign checkpoint")
                self.selection.start_correct = sc.numpy().astype(bool)
            self.trend = Trend(**st["trend"])

    def _upgrade_selection(self, old_best: float) -> None:
        """A format-1 checkpoint (written before the start network was a
        candidate): the selection is what this version would have made of
        the same evaluations, replayed from the log's eval rows up to the
        checkpoint (the step-0 row is the start's accuracy). Without a
        step-0 row the start is measured again when the target opens
        (`_measure_legacy_start`). best.hwnet, which the old rule may have
        taken from a rise within the noise, is put back to the start network
        when the replay keeps the start; the old file is kept beside it."""
        evals = [r for r in self.sd.read_log() if r["kind"] == "eval" and r["step"] <= self.step]
        n_val = len(self.data.y_val)
        self.selection = Selection()
        if not evals or evals[0]["step"] != 0:
            self.legacy_pending = (old_best, evals, n_val)
            return
        self._replay_selection(old_best, evals, n_val)

    def _replay_selection(self, old_best: float, evals: list[dict], n_val: int) -> None:
        from .parts import accuracy_figure

        self.trend = Trend()
        for row in evals:
            self.trend.update(row)
            n = row.get("val_n") if isinstance(row.get("val_n"), int) and row.get("val_n", 0) > 0 else n_val
            fig = accuracy_figure(float(row["val_accuracy"]), n)
            self.selection.offer({"val_accuracy": fig["accuracy"], "val_n": n, "val_ci": fig["ci"]}, row["step"])
        sel = self.selection
        notes = [f"{self.sd.path}: checkpoint of an older hwloop (format {LEGACY_FORMAT}); start accuracy "
                 f"{sel.start_acc:.4f} taken from the log, selected step {sel.best_step}"]
        if sel.best_step == 0 and old_best > sel.start_acc:
            kept = self.sd.path / "best.hwnet.v1"
            try:  # (a resume that crashed before its first checkpoint comes here again: the first copy stays)
                if self.sd.best.exists() and not kept.exists():
                    os.replace(self.sd.best, kept)
            except OSError as exc:
                raise SessionError(f"{self.sd.best}: cannot set aside ({exc.strerror or exc})") from None
            from hwloop.inloop import network_with

            self.sd.save_network(network_with(self.template, self.start_weights()), self.sd.best)
            notes.append(f"best.hwnet (validation {old_best:.4f}) is not better than the start beyond the "
                         f"noise of {evals[0].get('val_n', len(self.data.y_val))} samples: best.hwnet is the "
                         f"start network again, the old one kept as {kept.name}")
        self.notify(notes)

    def _measure_legacy_start(self, backend) -> None:
        """Format 1 without the start's evaluation in the log: measure the
        start network now, then put the target's state back (the session
        continues as it would have)."""
        old_best, evals, n_val = self.legacy_pending
        ev = self.evaluator(backend, self.start_weights())
        restore_backend_state(backend, self.backend_state)
        start = {"step": 0, "val_accuracy": ev["val_accuracy"], "val_n": ev["val_n"]}
        self._replay_selection(old_best, [start, *[r for r in evals if r["step"] > 0]], n_val)
        self.notify([f"{self.sd.path}: the log has no evaluation of the start network; measured it again "
                     f"({ev['val_accuracy']:.4f})"])
        self.legacy_pending = None

    def checkpoint(self, backend) -> None:
        """Save what a resume needs, then network.hwnet. The network is written
        first under a temporary name so that the checkpoint can record its
        digest, and renamed after the checkpoint is safe."""
        sd = self.sd
        pending = sd.path / PENDING_NETWORK
        sd.save_network(self.deployed_network(), pending)
        digest = file_sha256(pending)
        state = {"format": STATE_FORMAT, "step": self.step, "best_acc": float(self.selection.best_acc),
                 "selection": self.selection.state(), "trend": self.trend.state(),
                 "config": self.cfg.to_json(), "backend": backend_state(backend),
                 "files": {"init.hwnet": self.init_sha, "network.hwnet": digest,
                           "network.hwnet.before": self.network_sha},
                 **self.master.state()}
        self.store.save(state)
        self.saved_step = self.step
        try:
            os.replace(pending, sd.latest)
        except OSError as exc:
            raise SessionWriteError(sd.latest, exc) from None
        self.network_sha = digest
        self.started = True

    def start_weights(self) -> list[torch.Tensor]:
        """The start network's weights, laid out as the master weights."""
        from hwloop.inloop import trainable_weights

        return trainable_weights(self.template, self.master.recurrent)

    #: `Calibration.identity` of the calibration a calib=on target deploys through (set when it opens)
    trained_calibration: dict | None = None

    def deployed_network(self) -> Network:
        from hwloop.inloop import network_with

        net = network_with(self.template, self.master.deployed())
        if self.trained_calibration is not None:  # its weights are for that deployment: `hwloop eval` reads this
            prov = net.provenance
            extra = {**dict(prov.extra), "trained_on": {"target": self.cfg.target,
                                                        "calibration": dict(self.trained_calibration)}}
            net = dataclasses.replace(net, provenance=dataclasses.replace(prov, extra=extra))
        return net

    # ---- the loop
    def evaluate(self, backend, epoch: int) -> dict:
        ev = self.evaluator(backend, self.master.deployed())
        self.selection.compare(ev)
        self.sd.append_log({"step": self.step, "epoch": epoch, "kind": "eval",
                            **{k: v for k, v in ev.items() if not k.startswith("_")}})
        if self.selection.offer(ev, self.step):
            self.sd.save_network(self.deployed_network(), self.sd.best)
        if not self.trend.update(ev) and self.cfg.lr_schedule == "plateau":
            self.master.decay()  # a stall on the validation split: a smaller step from the next one on
        return ev

    def stop_now(self) -> bool:
        """Early stopping: ``patience`` evaluations in a row without a new best validation accuracy."""
        return bool(self.cfg.patience) and self.trend.stale >= self.cfg.patience

    def final_test(self, backend) -> dict:
        """The start and the selected network measured on the target on the
        held-out test split (the figure to report; selection never saw it)."""
        from hwloop.network import Network

        from hwloop.inloop import trainable_weights

        start = self.evaluator.test(backend, self.start_weights())
        best_path = self.sd.best
        if self.selection.best_step == 0 or not best_path.exists():
            selected = dict(start)
        else:
            selected = self.evaluator.test(backend, trainable_weights(Network.load(best_path),
                                                                      self.master.recurrent))
        return {"test_start": start, "test_selected": selected}

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
        if m.scores is not None:  # a spike-train decoding: the target's per-class scores
            batch_acc = float(np.mean(m.predictions() == yb.numpy()))
        else:
            batch_acc = classification_report(m.times[-1], yb.numpy())["accuracy"]
        row = {"step": self.step, "epoch": epoch + 1, "kind": "train", "loss": est.loss,
               "batch_accuracy": batch_acc,
               "silent": [float(np.mean(~np.isfinite(t))) for t in m.times], "bumped": bumped,
               "target_runs": est.target_runs, "samples": int(len(yb)), "target_seconds": target_s,
               "host_seconds": time.perf_counter() - t0 - target_s, "io_seconds": m.host_time_s,
               "deploy_seconds": float(m.info.get("deploy_s", 0.0)), "lr": self.master.lr}
        self.sd.append_log(row)
        return row

    def run(self, progress: bool = True, crash_after_step: int | None = None) -> dict:
        from hwloop.backends import open_target

        cfg = self.cfg
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
        backend = None
        try:
            backend = open_target(cfg.target)
            identity = getattr(backend, "calibration_identity", None)
            self.trained_calibration = identity() if callable(identity) else None
            return self._run(backend, stop, bar, time.perf_counter(), crash_after_step)
        except SessionWriteError as exc:
            raise self.write_failed(exc) from None
        finally:
            if bar is not None:
                bar.close()
            if backend is not None:
                backend.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)

    def write_failed(self, exc: SessionWriteError) -> SessionError:
        """The one-line error for a failed write (a full disk): what failed,
        and that the last checkpoint survived (every file is replaced atomically)."""
        if self.saved_step is None:
            kept = "no checkpoint was written yet"
        else:
            kept = f"the last checkpoint (step {self.saved_step}) is intact"
        return SessionError(f"{exc}; {kept}: make room, then resume with: hwloop loop --resume {self.sd.path}")

    def _run(self, backend, stop, bar, t_session, crash_after_step) -> dict:
        cfg, sd = self.cfg, self.sd
        try:
            if self.started:
                restore_backend_state(backend, self.backend_state)
                if self.legacy_pending is not None:
                    self._measure_legacy_start(backend)
            else:
                self.evaluate(backend, epoch=0)
                self.checkpoint(backend)
            while self.step < self.total_steps and not self.stop_now():
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
                    self.checkpoint(backend)
                if bar is not None:
                    bar.update(1)
                    if not eval_now:
                        bar.set_postfix(loss=f"{row['loss']:.3f}", batch=f"{row['batch_accuracy']:.2f}",
                                        best=f"{self.selection.best_acc:.3f}")
                if stop["flag"]:
                    raise _StopRequested()
            if self.saved_step != self.step or file_sha256(sd.latest) != self.network_sha:
                self.checkpoint(backend)  # network.hwnet as the last checkpoint recorded it
        except _StopRequested:
            if bar is not None:
                bar.close()
            print(f"interrupted at step {self.step}; resume with: hwloop loop --resume {sd.path}", file=sys.stderr)
            return {"ok": True, "interrupted": True, "step": self.step, "session": str(sd.path)}
        if bar is not None:
            bar.close()
        sel = self.selection
        summary = {"steps": self.step, "best_val_accuracy": sel.best_acc, "start_val_accuracy": sel.start_acc,
                   "selected_step": sel.best_step, "selected": "start" if sel.best_step == 0 else "trained",
                   "stopped_early": self.step < self.total_steps}
        if cfg.final_test:
            summary.update(self.final_test(backend))
        summary.update({"seconds": time.perf_counter() - t_session, "finished": now_iso()})
        sd.write_summary(summary)
        res = {"ok": True, "interrupted": False, "session": str(sd.path), **summary}
        if self.notices:
            res["notices"] = list(self.notices)
        return res


def checked_config(cfg: LoopConfig) -> LoopConfig:
    """A new session's configuration, resolved for its target and validated
    (an unknown target too), before anything is written."""
    from hwloop.backends import backend_class, parse_target

    if not isinstance(cfg, LoopConfig):
        raise SessionError("no configuration given (a LoopConfig)")
    cfg = cfg.resolved()
    cfg.validate()
    backend_class(parse_target(cfg.target).scheme)
    if cfg.init is not None:
        from .config import resolve_family

        try:
            net = Network.load(cfg.init)
        except HwloopError:
            return cfg  # SessionDir.create names the bad file
        cfg = resolve_family(cfg, net)
        cfg.validate()
    return cfg


#: the chips that can be calibrated (`hwloop calibrate`) and deploy through it (``calib=on``)
CALIBRATABLE = ("qif-emu", "qif")


def calibrated_start(cfg: LoopConfig) -> tuple[LoopConfig, str | None]:
    """A new session's start on a calibratable chip: the calibrated deployment
    where the chip has a calibration in the store (`hwloop calibrate`).

    Applies to a first-spike-time QIF start network on a ``qif-emu`` / ``qif``
    target whose URL does not say ``calib=`` itself; the session then records
    ``calib=on`` in its target (``calib=off`` deploys as is). Returns the
    configuration and the one line that tells the user which start it is
    (None where the rule does not apply). A stored calibration that is
    damaged or for another chip is refused (`TargetError`), as ``calib=on`` is."""
    from hwloop.backends import open_target, parse_target
    from hwloop.calibration import Calibration, CalibrationError, store_dir, store_path
    from hwloop.errors import TargetError

    url = parse_target(cfg.target)
    if url.scheme not in CALIBRATABLE or "calib" in url.options or cfg.init is None:
        return cfg, None
    try:
        net = Network.load(cfg.init)
    except HwloopError:
        return cfg, None  # SessionDir.create names the bad file
    if net.is_spike_train or net.model != "qif":
        return cfg, None
    with open_target(cfg.target) as chip:
        info = chip.client.info
    path = store_path(info.chip_id, info.fw_version)
    if not path.exists():
        return cfg, (f"chip {info.chip_id:#x} (firmware {info.fw_version}) has no calibration in {store_dir()}: "
                     f"deploying the network as is; `hwloop calibrate \"{cfg.target}\"` first starts the session "
                     f"from the calibrated deployment (docs/calibration.md)")
    try:
        Calibration.load(path, info.chip_id, info.fw_version)
    except CalibrationError as exc:
        raise TargetError(f"{cfg.target}: {exc}; calibrate again (hwloop calibrate), or add calib=off to the "
                          f"target to deploy as is") from None
    target = cfg.target + ("&" if "?" in cfg.target else "?") + "calib=on"
    return dataclasses.replace(cfg, target=target), (
        f"starting from the calibrated deployment of chip {info.chip_id:#x} ({path}): target {target}; "
        f"add calib=off to the target to deploy as is")


def run_session(directory: str | os.PathLike, cfg: LoopConfig | None = None, resume: bool = False,
                progress: bool = True, crash_after_step: int | None = None, epochs: int | None = None) -> dict:
    """Create (``cfg``) or resume (``resume=True``) a session and run it to the end.

    ``epochs`` (resume only): run the session to this many epochs instead of
    those in its config.json -- more extends a finished session; the result
    is the one a session asked for ``epochs`` from the start ends with.

    ``crash_after_step`` is a test hook: the process exits abruptly right
    after that step's weight update, before its checkpoint."""
    sd = SessionDir(directory)
    if not resume:
        if epochs is not None:
            raise SessionError("epochs= is for resume; a new session takes its epochs from its LoopConfig")
        cfg, notice = calibrated_start(checked_config(cfg))
        sd.create(cfg)
        session = Session(sd, cfg)
        if notice is not None:
            session.notify([notice])
        return session.run(progress, crash_after_step)

    cfg = sd.load_config()
    wanted = cfg if epochs is None or epochs == cfg.epochs else dataclasses.replace(cfg, epochs=epochs)
    wanted.validate()
    if sd.summary.exists() and not wanted.epochs > cfg.epochs:
        raise SessionError(f"{sd.path}: session already complete after {cfg.epochs} epochs (see summary.json); "
                           f"to train on, resume with more epochs (--epochs N > {cfg.epochs})")
    session = Session(sd, wanted, resume=True)
    session.restore()  # refuses a checkpoint past the end of the wanted epochs
    if wanted is not cfg:
        try:  # summary first: a crash in between leaves an unfinished session of the old length
            sd.summary.unlink(missing_ok=True)
        except OSError as exc:
            raise SessionError(f"{sd.summary}: cannot remove ({exc.strerror or exc})") from None
        sd.write_config(wanted)
        session.notify([f"{sd.path}: now {wanted.epochs} epochs (was {cfg.epochs})"])
    return session.run(progress, crash_after_step)
