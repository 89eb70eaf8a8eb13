"""The checkpoint store: the state a resume needs, written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from hwloop.fileio import atomic_write_bytes

from .files import SessionDir


def atomic_torch_save(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class CheckpointStore:
    """Where a session's resumable state lives (`SessionDir.checkpoint`)."""

    def __init__(self, sd: SessionDir):
        self.sd = sd

    def exists(self) -> bool:
        return self.sd.checkpoint.exists()

    def save(self, state: dict) -> None:
        atomic_torch_save(state, self.sd.checkpoint)

    def load(self) -> dict:
        return torch.load(self.sd.checkpoint, weights_only=False)
