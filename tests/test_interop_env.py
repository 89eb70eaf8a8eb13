"""The interop tests run against the real packages, at the pinned versions.

`make venv` installs the peers with --no-deps (Makefile PEERS); this checks
that what is installed is what pyproject's `peers` extra and the Makefile pin,
and that installing them did not move torch or numpy.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["peers"]
    return dict(p.split("==") for p in extra)


def test_makefile_installs_exactly_the_pinned_peers():
    make = (ROOT / "Makefile").read_text()
    line = re.search(r"^PEERS\s*:=\s*(.+)$", make, re.M).group(1).split()
    assert dict(p.split("==") for p in line) == _pins()


def test_installed_peers_are_the_pinned_versions():
    for name, pinned in _pins().items():
        assert version(name) == pinned, f"{name} {version(name)} installed, {pinned} pinned"


def test_peers_left_torch_and_numpy_alone():
    assert version("torch").split("+")[0] == "2.13.0"
    assert int(version("numpy").split(".")[0]) < 2
