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

The parts: `config` (LoopConfig, per-target defaults), `files` (the
directory), `checkpoint` (the checkpoint store), `estimators` (gradient
estimators), `parts` (loss, data, master weights, revival, evaluator,
selection), `runner` (the loop).
"""

from .checkpoint import CheckpointStore
from .config import GRID_SETTINGS, GRID_TARGETS, LoopConfig, recommended_settings
from .errors import SessionError
from .estimators import Estimate, GradientEstimator, ModelGradient, SpsaGradient
from .files import SessionDir
from .runner import Session, run_session

__all__ = ["LoopConfig", "run_session", "SessionError", "recommended_settings", "GRID_SETTINGS", "GRID_TARGETS",
           "SessionDir", "CheckpointStore", "Session", "Estimate", "GradientEstimator", "ModelGradient",
           "SpsaGradient"]
