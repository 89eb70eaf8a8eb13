"""The session directory: its files, and how each is written and read."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hwloop.errors import HwloopError
from hwloop.fileio import atomic_write_bytes
from hwloop.network import Network

from .config import LoopConfig
from .errors import SessionError, SessionWriteError

#: config.json is a few hundred bytes; anything beyond this is not one
MAX_CONFIG_BYTES = 1 << 20


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (temporary file, fsync, rename)."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise SessionWriteError(path, exc) from None


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
    latest = property(lambda self: self.path / "network.hwnet")
    best = property(lambda self: self.path / "best.hwnet")
    summary = property(lambda self: self.path / "summary.json")
    rejected_log = property(lambda self: self.path / "log.rejected")

    def create(self, cfg: LoopConfig) -> None:
        """Start a session directory: init.hwnet, then config.json (the mark
        of a session). A directory that holds nothing but what an interrupted
        creation leaves (init.hwnet, temporary files) counts as empty."""
        if self.path.exists() and not self._empty_or_half_created():
            raise SessionError(f"{self.path} exists and is not empty (use --resume to continue it)")
        src = Path(cfg.init)
        Network.load(src)  # fail early on a bad file, before anything is written
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for stale in self.path.glob(".*.tmp"):
                stale.unlink()
            shutil.copyfile(src, self.init_net)
        except OSError as exc:
            raise SessionWriteError(self.init_net, exc) from None
        self.write_config(cfg)

    def _empty_or_half_created(self) -> bool:
        try:
            names = [p.name for p in self.path.iterdir()]
        except OSError as exc:
            raise SessionError(f"{self.path}: cannot list ({exc.strerror or exc})") from None
        return all(n == self.init_net.name or (n.startswith(".") and n.endswith(".tmp")) for n in names)

    def write_config(self, cfg: LoopConfig) -> None:
        write_file_atomic(self.config, json.dumps(cfg.to_json(), indent=2).encode())

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
        line = json.dumps(row, allow_nan=False, default=float) + "\n"
        try:
            with open(self.log, "a") as fh:
                fh.write(line)
                fh.flush()
        except OSError as exc:  # a partial line is a torn line: the reader drops it
            raise SessionWriteError(self.log, exc) from None

    def read_log(self) -> list[dict]:
        """Every valid row of log.jsonl, in order (bad lines skipped; see `scan_log`)."""
        return self.scan_log().rows

    def scan_log(self) -> "LogScan":
        if not self.log.exists():
            return LogScan([], [], [], False)
        try:
            with open(self.log, "rb") as fh:
                return scan_log_lines(fh)
        except OSError as exc:
            raise SessionError(f"{self.log}: cannot read ({exc.strerror or exc})") from None

    def truncate_log(self, step: int) -> list[str]:
        """Keep the valid rows up to ``step`` (rows after the checkpoint are
        redone), byte for byte. Unreadable lines are not dropped but appended
        to ``log.rejected``; a torn last line (the write a crash interrupted)
        is dropped. Returns the notices for the user (none for a torn line)."""
        scan = self.scan_log()
        keep = [raw for row, raw in zip(scan.rows, scan.raw) if row["step"] <= step]
        notices = []
        if scan.bad:
            try:
                with open(self.rejected_log, "ab") as fh:
                    for _, raw in scan.bad:
                        fh.write(raw + b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise SessionWriteError(self.rejected_log, exc) from None
            lines = ", ".join(str(n) for n, _ in scan.bad[:10]) + (", ..." if len(scan.bad) > 10 else "")
            notices.append(f"{self.log}: {len(scan.bad)} unreadable line(s) (line {lines}) moved to "
                           f"{self.rejected_log.name}; every valid row is kept")
        if scan.bad or scan.torn or len(keep) != len(scan.rows) or not self._ends_with_newline():
            write_file_atomic(self.log, b"".join(raw + b"\n" for raw in keep))
        return notices

    def _ends_with_newline(self) -> bool:
        """False for a missing log or one whose last row lacks its newline (the
        next row appended would run into it)."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() == 0:
                    return True
                fh.seek(-1, os.SEEK_END)
                return fh.read(1) == b"\n"
        except OSError:
            return False

    def save_network(self, net: Network, path: Path) -> None:
        try:
            net.save(path)
        except OSError as exc:
            raise SessionWriteError(path, exc) from None

    def write_summary(self, summary: dict) -> None:
        write_file_atomic(self.summary, json.dumps(summary, indent=2).encode())


# ---- log.jsonl
#: a log row is one line of at most this many bytes (a real one is < 1 KiB)
MAX_LOG_LINE = 1 << 20
#: the kinds of row a session writes, and the numbers each must carry
LOG_KINDS = {"train": ("loss",), "eval": ("val_accuracy",)}


@dataclass
class LogScan:
    rows: list[dict]  # the valid rows, in order
    raw: list[bytes]  # their lines as written (no newline)
    bad: list[tuple[int, bytes]]  # (line number, line) of every unreadable line but a torn last one
    torn: bool  # the last line was cut short (no newline, unreadable): a crash mid-write


def _no_constants(name):
    raise ValueError(f"non-finite number {name}")


def parse_log_row(raw: bytes) -> dict | None:
    """The row a log line holds, or None when it is not a valid row: a JSON
    object with an integer ``step`` >= 0, a known ``kind`` and its numbers
    finite."""
    try:
        row = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    if not isinstance(row, dict):
        return None
    step, kind = row.get("step"), row.get("kind")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or kind not in LOG_KINDS:
        return None
    for key in LOG_KINDS[kind]:
        v = row.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return None
    return row


def scan_log_lines(fh) -> LogScan:
    """Read a log line by line (memory: one line of at most MAX_LOG_LINE
    bytes beyond the rows kept; time: linear in the file)."""
    scan = LogScan([], [], [], False)
    number = 0
    while True:
        line = fh.readline(MAX_LOG_LINE + 1)
        if not line:
            break
        number += 1
        ended = line.endswith(b"\n")
        if not ended and len(line) > MAX_LOG_LINE:  # overlong: skip to its end, keep its start
            while True:
                rest = fh.readline(MAX_LOG_LINE + 1)
                if not rest or rest.endswith(b"\n"):
                    break
            scan.bad.append((number, line[:256]))
            continue
        raw = line.rstrip(b"\n").rstrip(b"\r")
        if not raw.strip():
            continue
        row = parse_log_row(raw)
        if row is not None:
            scan.rows.append(row)
            scan.raw.append(raw)
        elif not ended:
            scan.torn = True  # the last line, cut short
        else:
            scan.bad.append((number, raw))
    return scan
