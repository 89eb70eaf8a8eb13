"""The pool file: which boards exist, where they hang, what kind they are.

TOML (``[[board]]`` tables) or JSON (``{"board": [...]}``), one entry per board::

    [[board]]
    name = "chip3"                    # unique; names the Ray resource hwloop-board-chip3
    url = "qif:///dev/ttyUSB0"        # the target URL the board's actor opens (exclusively)
    host = "lab-pc-2"                 # the machine the board hangs on (shown; see docs/sweeps.md)
    kind = "qif-v1"                   # optional: boards a trial may move between (default: URL scheme)
    chip_id = 3                       # optional: the chip id the health check must see

Everything is checked on load; a bad file raises `PoolConfigError` naming
the board and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from hwloop.errors import HwloopError

#: Ray custom resource a board's actor claims (one unit per board)
RESOURCE_PREFIX = "hwloop-board-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_BOARDS = 4096
MAX_FILE = 1 << 20


class PoolError(HwloopError):
    """A pool that cannot do what was asked (no healthy board of a kind, Ray missing a resource)."""


class PoolConfigError(PoolError):
    """A pool file that cannot be used: unreadable, not TOML/JSON, a bad or duplicate board."""


@dataclass(frozen=True)
class Board:
    """One declared board."""
    name: str
    url: str
    host: str = "local"
    kind: str = ""
    chip_id: int | None = None

    @property
    def resource(self) -> str:
        return RESOURCE_PREFIX + self.name

    def to_json(self) -> dict:
        return {"name": self.name, "url": self.url, "host": self.host, "kind": self.kind, "chip_id": self.chip_id,
                "resource": self.resource}


@dataclass(frozen=True)
class PoolConfig:
    boards: tuple[Board, ...]
    source: str = "<memory>"

    def by_name(self, name: str) -> Board:
        for b in self.boards:
            if b.name == name:
                return b
        raise PoolConfigError(f"{self.source}: no board named {name!r} (boards: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.boards]

    def resources(self) -> dict[str, float]:
        """The custom resources a local Ray node needs to host every board."""
        return {b.resource: 1.0 for b in self.boards}

    @classmethod
    def from_boards(cls, boards: list[dict], source: str = "<memory>") -> "PoolConfig":
        return _parse({"board": boards}, source)

    @classmethod
    def load(cls, path) -> "PoolConfig":
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_FILE + 1)
        except OSError as exc:
            raise PoolConfigError(f"{path}: cannot read the pool file ({exc.strerror or exc})") from None
        if len(raw) > MAX_FILE:
            raise PoolConfigError(f"{path}: larger than {MAX_FILE} bytes; not a pool file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PoolConfigError(f"{path}: not UTF-8 text") from None
        if path.suffix.lower() == ".json":
            try:
                tree = json.loads(text)
            except ValueError as exc:
                raise PoolConfigError(f"{path}: not valid JSON ({exc})") from None
        else:
            import tomllib

            try:
                tree = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise PoolConfigError(f"{path}: not valid TOML ({exc})") from None
        return _parse(tree, str(path))


def _parse(tree, source: str) -> PoolConfig:
    from hwloop.backends import check_target, parse_target

    if not isinstance(tree, dict) or set(tree) - {"board"}:
        extra = sorted(set(tree) - {"board"}) if isinstance(tree, dict) else type(tree).__name__
        raise PoolConfigError(f"{source}: a pool file holds only [[board]] entries, found {extra}")
    entries = tree.get("board")
    if not isinstance(entries, list) or not entries:
        raise PoolConfigError(f"{source}: no boards declared (add [[board]] entries with name and url)")
    if len(entries) > MAX_BOARDS:
        raise PoolConfigError(f"{source}: {len(entries)} boards, at most {MAX_BOARDS}")
    boards, seen_names, seen_urls = [], set(), {}
    for i, e in enumerate(entries):
        where = f"{source}: board {i + 1}"
        if not isinstance(e, dict):
            raise PoolConfigError(f"{where}: must be a table of fields, got {type(e).__name__}")
        unknown = set(e) - {"name", "url", "host", "kind", "chip_id"}
        if unknown:
            raise PoolConfigError(f"{where}: unknown fields {sorted(unknown)} (known: name, url, host, kind, chip_id)")
        name = e.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise PoolConfigError(f"{where}: name must be 1-64 letters, digits, '_', '.', '-', got {name!r:.70}")
        where = f"{source}: board {name!r}"
        if name in seen_names:
            raise PoolConfigError(f"{where}: declared twice (names are unique)")
        url = e.get("url")
        if not isinstance(url, str) or not url.strip():
            raise PoolConfigError(f"{where}: url must be a target URL (e.g. qif-emu?chip_id=3), got {url!r:.70}")
        try:
            scheme = parse_target(url).scheme
            check_target(url)  # scheme known, options valid; opens nothing
        except HwloopError as exc:
            raise PoolConfigError(f"{where}: {exc}") from None
        if url in seen_urls and scheme != "qif-emu":  # every qif-emu open spawns its own emulator
            raise PoolConfigError(f"{where}: url {url} is also board {seen_urls[url]!r}'s; one actor owns a board")
        seen_urls.setdefault(url, name)
        host = e.get("host", "local")
        kind = e.get("kind", scheme)
        for key, v in (("host", host), ("kind", kind)):
            if not isinstance(v, str) or not _NAME.match(v):
                raise PoolConfigError(f"{where}: {key} must be 1-64 letters, digits, '_', '.', '-', got {v!r:.70}")
        chip_id = e.get("chip_id")
        if chip_id is not None and (not isinstance(chip_id, int) or isinstance(chip_id, bool)
                                    or not 0 <= chip_id < 1 << 64):
            raise PoolConfigError(f"{where}: chip_id must be an integer in [0, 2^64), got {chip_id!r:.70}")
        seen_names.add(name)
        boards.append(Board(name=name, url=url, host=host, kind=kind, chip_id=chip_id))
    schemes: dict[str, tuple[str, str]] = {}
    for b in boards:  # a trial moves between boards of one kind: they must run the same target code
        scheme = parse_target(b.url).scheme
        first = schemes.setdefault(b.kind, (scheme, b.name))
        if first[0] != scheme:
            raise PoolConfigError(f"{source}: board {b.name!r} is of kind {b.kind!r} but a {scheme} target, "
                                  f"board {first[1]!r} of the same kind a {first[0]} one (a kind is one scheme)")
    return PoolConfig(tuple(boards), source)
