"""The installed layout: everything under the one name `hwloop`, and the
device side blind to the host.

The folders keep the project's layout (hwloop/, backends/, firmware_models/)
and pyproject.toml maps them to `hwloop.backends` and `hwloop.firmware_models`.
The package list there is explicit (setuptools cannot discover a package whose
name differs from its folder), so these tests catch a new folder that would
not be installed, and an import of the old top-level names.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"hwloop": "hwloop", "backends": "hwloop.backends", "firmware_models": "hwloop.firmware_models"}


def _package_folders() -> set[str]:
    names = set()
    for folder, prefix in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            names.add(".".join((prefix, *rel)))
    return names


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def test_every_package_folder_is_installed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(cfg["packages"]) == _package_folders()
    assert cfg["package-dir"] == {v: k for k, v in FOLDERS.items()}


def test_no_code_imports_the_old_top_level_names():
    offenders = []
    for folder in (*FOLDERS, "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for mod in _imports(path):
                if mod.split(".")[0] in ("backends", "firmware_models"):
                    offenders.append(f"{path.relative_to(ROOT)}: {mod}")
    assert offenders == []


def test_firmware_imports_nothing_of_the_host():
    """Like real firmware: the device side knows its config and its wire protocol."""
    offenders = []
    for path in (ROOT / "firmware_models").rglob("*.py"):
        for mod in _imports(path):
            if mod == "hwloop" or (mod.startswith("hwloop.") and not mod.startswith("hwloop.firmware_models")):
                offenders.append(f"{path.relative_to(ROOT)}: {mod}")
    assert offenders == []


def test_installed_names_resolve_outside_the_source_tree(tmp_path):
    code = ("import sys, hwloop, hwloop.backends, hwloop.firmware_models.qif_chip; "
            "import importlib.util as u; "
            "print(u.find_spec('backends') is None, u.find_spec('firmware_models') is None, "
            "'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    # no top-level squatters, and the emulator's imports do not pull in torch
    assert out.stdout.split() == ["True", "True", "False"]
