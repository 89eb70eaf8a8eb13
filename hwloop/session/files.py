"""The session directory: its files, and how each is written and read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hwloop.fileio import atomic_write_bytes
from hwloop.network import Network

from hwloop.errors import HwloopError

from .config import LoopConfig
from .errors import SessionError

#: config.json is a few hundred bytes; anything beyond this is not one
MAX_CONFIG_BYTES = 1 << 20


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, refusing (SessionError) a file larger than ``limit``
    before reading it."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise SessionError(f"{path}: {size} bytes, more than the {limit} a session file of its kind holds")
            return fh.read(limit + 1)[:limit]
    except OSError as exc:
        raise SessionError(f"{path}: cannot read ({exc.strerror or exc})") from None


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
        """The session's configuration, resolved and validated (`SessionError` naming the file)."""
        if not self.config.is_file():
            raise SessionError(f"{self.path}: not a session directory (no config.json)")
        try:
            data = read_bounded(self.config, MAX_CONFIG_BYTES)
            cfg = LoopConfig.from_json(json.loads(data.decode("utf-8")))
            cfg = cfg.resolved()
            cfg.validate()
        except SessionError as exc:
            raise SessionError(f"{self.config}: {exc}") from None
        except (ValueError, RecursionError, HwloopError) as exc:  # JSON, UTF-8, target URL
            raise SessionError(f"{self.config}: unreadable ({_short(exc)})") from None
        return cfg

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
