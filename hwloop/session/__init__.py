"""In-the-loop training sessions that never lose work.

A session is a directory::

    config.json           the resolved LoopConfig (read again, and checked, on --resume)
    init.hwnet            the network the session started from
    log.jsonl             one JSON object per step (and per evaluation)
    checkpoint.ckpt       what a resume needs (weights, average, Adam, learning
                          rate, step, the target's state, digests of config
                          and networks): our own format, plain arrays and
                          numbers, SHA-256; replaced atomically
    checkpoint.prev.ckpt  the checkpoint before it (the fallback)
    network.hwnet         the latest weights as a Network (atomic)
    best.hwnet            the weights with the best validation accuracy on the target
    summary.json          written when the session completes

Determinism: the order of training samples is a function of (seed, epoch),
the perturbations and input jitter of (seed, step), and the target's own
state (the QIF chip's noise-seed counter) is checkpointed. So a session
killed at any point and resumed from its last checkpoint ends with the same
weights, log and best network as an uninterrupted run, on the noisy chip
too (tested by SIGKILL at random moments). A crash loses at most the steps
since the last checkpoint; the log is truncated back to the checkpoint on
resume so every step appears exactly once. docs/in-the-loop.md lists what
resume checks.

The parts: `config` (LoopConfig, its validation, per-target defaults),
`files` (the directory, the log reader), `checkpoint` (the format and the
store), `estimators` (gradient estimators), `parts` (loss, data, master
weights, revival, evaluator, selection), `runner` (the loop).
"""

from .checkpoint import CheckpointStore
from .config import GRID_SETTINGS, GRID_TARGETS, LoopConfig, recommended_settings
from .errors import SessionError
from .estimators import Estimate, GradientEstimator, ModelGradient, SpsaGradient, SurrogateGradient
from .files import SessionDir
from .runner import Session, run_session

__all__ = ["LoopConfig", "run_session", "SessionError", "recommended_settings", "GRID_SETTINGS", "GRID_TARGETS",
           "SessionDir", "CheckpointStore", "Session", "Estimate", "GradientEstimator", "ModelGradient",
           "SpsaGradient", "SurrogateGradient"]
