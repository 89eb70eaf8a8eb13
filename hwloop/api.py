"""The Python API: what the commands do, as functions.

Each function is a thin layer over the code the matching command uses, with
the command's defaults, so a script and the command line get the same
result for the same arguments (tested):

* `train` is ``hwloop train``: `hwloop.training.default_config` with the
  given overrides, then `hwloop.training.train`;
* `evaluate` is ``hwloop eval``: `hwloop.evaluation.evaluate_network`;
* `loop` is ``hwloop loop``: a `hwloop.session.LoopConfig` with the
  per-target settings of `hwloop.session.recommended_settings`, then
  `hwloop.session.run_session`;
* `load` is `hwloop.Network.load`, `open_target` is
  `hwloop.backends.open_target`.

Unlike the commands, nothing here prints or shows a progress bar unless
``progress=True`` is passed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import HwloopError

if TYPE_CHECKING:  # only for the annotations; importing them here would load torch
    from .backends.base import Backend
    from .network import Network
    from .training import TrainResult

__all__ = ["Session", "evaluate", "load", "loop", "open_target", "train"]


def open_target(url: str) -> "Backend":
    """Open a target by URL (``"software"``, ``"bitexact?steps=100"``,
    ``"qif-emu"``, ``"qif:///dev/ttyUSB0"``, ...) and return its backend.

    The backend is a context manager: ``with hwloop.open_target("bitexact")
    as be: be.load(net); m = be.run(t_in)``. ``hwloop devices`` lists the
    targets this installation can reach. Raises `hwloop.TargetError` for an
    unknown or unreachable target."""
    from .backends import open_target as _open

    return _open(url)


def load(path: str | os.PathLike) -> "Network":
    """Read a ``.hwnet`` file (the same as `hwloop.Network.load`). Raises
    `hwloop.NetworkFileError` naming the file and what is wrong with it."""
    from .network import Network

    return Network.load(path)


def _as_network(net: "Network | str | os.PathLike") -> "Network":
    from .network import Network

    if isinstance(net, Network):
        return net
    if isinstance(net, (str, os.PathLike)):
        return Network.load(net)
    raise HwloopError(f"expected a Network or the path of a .hwnet file, got {type(net).__name__}")


def train(model: str = "lif", dataset: str = "yinyang", *, out: str | os.PathLike | None = None,
          progress: bool = False, threads: int = 1, **options: Any) -> "TrainResult":
    """Train a first-spike-time network in software with exact gradients
    (what ``hwloop train`` does, with its defaults).

    ``model``: ``"lif"``, ``"qif"`` or ``"nlif"``; ``dataset``: ``"yinyang"``,
    ``"digits"`` or ``"mnist"`` (then ``data_root=`` names the folder with its
    IDX files). ``options`` are `hwloop.TrainConfig` fields and override the
    per-model, per-data-set defaults of `hwloop.training.default_config`
    (docs/training.md): e.g. ``epochs=20``, ``hidden=(60,)`` (an int is one
    hidden layer), ``lr=0.01``, ``seed=1``, ``bias_time=-1`` (no bias spikes).
    An unknown option raises `hwloop.HwloopError`.

    ``threads``: torch threads while training; 1 (the command's default)
    makes the result bit-reproducible for a seed. The process's previous
    thread count is restored afterwards. ``out``: also save the network there.

    Returns a `hwloop.TrainResult`: ``.network`` (the weights of the best
    validation epoch), ``.metrics`` (accuracy per split, best epoch,
    seconds, silent hidden neurons at initialisation) and ``.history`` (one
    dict per epoch)."""
    import torch

    from .training import default_config
    from .training import train as _train

    hidden = options.get("hidden")
    if isinstance(hidden, int):
        options["hidden"] = (hidden,)
    elif hidden is not None:
        options["hidden"] = tuple(int(h) for h in hidden)
    cfg = default_config(model, dataset, threads=threads, **options)
    before = torch.get_num_threads()
    try:
        result = _train(cfg, progress=progress)
    finally:
        torch.set_num_threads(before)
    if out is not None:
        result.network.save(out)
    return result


def evaluate(network: "Network | str | os.PathLike", dataset: str | None = None, *, split: str = "test",
             target: str = "software", limit: int | None = None, data_root: str | None = None,
             batch_size: int = 1000, progress: bool = False) -> dict:
    """Run a network on a target over one split of a data set and report
    what came back (what ``hwloop eval`` does, with its defaults).

    ``network``: a `hwloop.Network` or the path of a ``.hwnet`` file.
    ``dataset``: default, the data set the network was trained on (its
    provenance). ``target``: a target URL. ``limit``: the first N samples
    only.

    Returns a dict: ``accuracy``, ``n``, ``n_correct``, ``n_tie``,
    ``n_silent``, ``confusion``, ``spikes`` (silent fraction per layer,
    spikes per hidden neuron), seconds on the target and on the host, and on
    Loihi targets ``mapping`` (registers and weight error per layer)."""
    from .evaluation import evaluate_network

    net = _as_network(network)
    if dataset is None:
        dataset = net.provenance.dataset or None
        if dataset is None:
            raise HwloopError("the network does not record the data set it was trained on; pass dataset=")
    return evaluate_network(net, dataset, split, target, limit, data_root, batch_size, progress=progress)


@dataclass(frozen=True)
class Session:
    """An in-the-loop session directory and the result of running it.

    ``result`` is what `hwloop.session.run_session` returned (``ok``,
    ``interrupted``, ``steps``, ``best_val_accuracy``, ``seconds``). The
    properties read the session's files (docs/in-the-loop.md lists them)."""

    directory: Path
    result: dict

    @property
    def config(self) -> dict:
        """``config.json``: every setting the session ran with, per-target defaults resolved."""
        return json.loads((self.directory / "config.json").read_text())

    @property
    def best(self) -> "Network":
        """The network with the best validation accuracy on the target (``best.hwnet``)."""
        return load(self.directory / "best.hwnet")

    @property
    def final(self) -> "Network":
        """The network the session ended with (``network.hwnet``; the weight
        average when the session used ``ema``)."""
        return load(self.directory / "network.hwnet")

    @property
    def log(self) -> list[dict]:
        """Every row of ``log.jsonl``: ``kind`` ``"train"`` (one per step:
        loss, batch accuracy, silent fractions, timings) or ``"eval"``
        (validation accuracy on the target and in software)."""
        from .session import SessionDir

        return SessionDir(self.directory).read_log()

    def evaluations(self) -> list[dict]:
        """The ``"eval"`` rows of the log: step, ``val_accuracy`` on the
        target, ``software_val_accuracy`` of the same weights."""
        return [r for r in self.log if r.get("kind") == "eval"]

    def report(self, out: str | os.PathLike | None = None, **options: Any) -> dict:
        """Write the session's Markdown report with plots (``hwloop report``);
        ``options`` as for `hwloop.report.write_report`. Returns its result."""
        from .report import write_report

        return write_report(str(self.directory), None if out is None else str(out), **options)


def _loop_fields() -> set[str]:
    from .session import LoopConfig

    return {f.name for f in dataclasses.fields(LoopConfig)}


def loop(init: "Network | str | os.PathLike | None" = None, target: str | None = None,
         directory: str | os.PathLike | None = None, *, resume: bool = False, progress: bool = False,
         **options: Any) -> Session:
    """Train a network in the loop on a target (what ``hwloop loop`` does,
    with its defaults): each step runs a batch on the target and updates the
    weights with the model's exact gradient at the measured spike times.

    ``init``: the network to start from (a `hwloop.Network` or a ``.hwnet``
    path). ``target``: a target URL (default ``"software"``).
    ``directory``: the session directory (required; it must not exist or be
    empty). ``options``: `hwloop.session.LoopConfig` fields, e.g.
    ``epochs=3``, ``lr=0.002``, ``train_limit=500``, ``ema=0.95``.
    Options that depend on the target and are not given take the target's
    recommended values (`hwloop.session.recommended_settings`: on Loihi
    targets ``grad_at="model"``, ``loss_times="worst"``,
    ``max_missing=(0.3, 1.0)``), exactly as on the command line.
    ``dataset`` defaults to the one the network was trained on.

    ``resume=True`` continues the session in ``directory`` (after an
    interruption or a crash) with the settings it was started with; then
    ``init``, ``target`` and ``options`` must not be given.

    Returns a `Session`: ``.result``, ``.best``, ``.final``, ``.log``,
    ``.report()``. Raises `hwloop.HwloopError` subclasses for bad settings,
    before anything is written."""
    from .session import LoopConfig, recommended_settings, run_session

    if directory is None:
        raise HwloopError("loop() needs directory= (the session directory to create, or to resume)")
    directory = Path(directory)
    if resume:
        given = [k for k, v in (("init", init), ("target", target)) if v is not None] + sorted(options)
        if given:
            raise HwloopError(f"resume takes its configuration from the session; drop {', '.join(given)}")
        res = run_session(directory, resume=True, progress=progress)
        return Session(directory, res)
    if init is None:
        raise HwloopError("loop() needs init= (a network to start from)")
    unknown = sorted(set(options) - _loop_fields())
    if unknown:
        raise HwloopError(f"unknown session option(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(_loop_fields()))}")
    if "max_missing" in options and options["max_missing"] is not None:
        options["max_missing"] = tuple(float(v) for v in options["max_missing"])
    cfg = LoopConfig()
    if target is not None:
        cfg.target = target
    net = _as_network(init)
    if options.get("dataset") is None and net.provenance.dataset:
        options["dataset"] = net.provenance.dataset
    for key, value in options.items():
        if value is not None:
            setattr(cfg, key, value)
    for key, value in recommended_settings(cfg.target).items():
        if options.get(key) is None:
            setattr(cfg, key, value)
    with tempfile.TemporaryDirectory(prefix="hwloop-init-") as tmp:
        if isinstance(init, (str, os.PathLike)):
            cfg.init = str(init)
        else:  # a Network in memory: the session copies this file into init.hwnet
            cfg.init = str(net.save(Path(tmp) / "init.hwnet"))
        res = run_session(directory, cfg, progress=progress)
    return Session(directory, res)
