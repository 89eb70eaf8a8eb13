"""The session directory: its files, and how each is written and read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hwloop.fileio import atomic_write_bytes
from hwloop.network import Network

from .config import LoopConfig
from .errors import SessionError


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

    def save_network(self, net: Network, path: Path) -> None:
        net.save(path)

    def write_summary(self, summary: dict) -> None:
        atomic_write_bytes(self.summary, json.dumps(summary, indent=2).encode())
