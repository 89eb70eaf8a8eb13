"""Make lava-nc 0.10.0 importable on Python 3.11, without touching site-packages.

lava-nc 0.10.0 declares Python < 3.11 and fails there at import:
``lava/magma/compiler/var_model.py`` gives dataclass fields the *instance*
``ByteEncoder()`` as default, and Python 3.11's dataclasses reject mutable
(unhashable) defaults. Every Lava run configuration imports that module.

`install()` puts an import hook in front of ``sys.meta_path`` that, for that
one module, reads the installed source and rewrites each
``name: ByteEncoder = ByteEncoder()`` into
``name: ByteEncoder = field(default_factory=ByteEncoder)`` before compiling
it. The hook also makes one more line of Lava tolerant: its message
infrastructure calls ``multiprocessing.set_start_method('fork')`` at import,
which raises when something else (a test runner, torch) already chose a start
method; it now only sets "fork" when nothing was chosen (on Linux "fork" is
Python 3.11's default anyway).

`import_lava()` is what the backend calls: it installs the hook, checks that
Lava is there, and otherwise raises `TargetError` saying how to install it.
The rest of hwloop never imports this module, so the core runs without Lava.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys

from hwloop.errors import TargetError

INSTALL_HINT = (
    "Lava is not installed. Install it into this environment with\n"
    "    pip install 'networkx<=2.8.7' 'asteval>=0.9.31,<0.10'\n"
    "    pip install --no-deps --ignore-requires-python lava-nc==0.10.0\n"
    "(or run `make venv`, which does both)."
)

_TARGETS = {
    "lava.magma.compiler.var_model": "_fix_var_model",
    "lava.magma.runtime.message_infrastructure.multiprocessing": "_fix_start_method",
}

_BYTE_ENCODER_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*=\s*)ByteEncoder\(\)\s*$", re.M)
_START_METHOD = re.compile(r"^(\s*)mp\.set_start_method\('fork'\)\s*$", re.M)


def _fix_var_model(src: str) -> str:
    fixed, n = _BYTE_ENCODER_DEFAULT.subn(r"\1field(default_factory=ByteEncoder)", src)
    if n == 0:
        return src  # a Lava version that no longer needs the fix
    # make `field` available; appended so line numbers of the rest stay put
    return fixed.replace("from dataclasses import dataclass", "from dataclasses import dataclass, field", 1)


def _fix_start_method(src: str) -> str:
    return _START_METHOD.sub(
        r"\1mp.get_start_method(allow_none=True) or mp.set_start_method('fork')", src
    )


class _RewritingLoader(importlib.machinery.SourceFileLoader):
    """Source loader that passes the module text through a fix-up first.
    Bytecode caching is off for these modules so a rewritten module never
    lands in, or comes from, Lava's own __pycache__."""

    def __init__(self, fullname: str, path: str, fix):
        super().__init__(fullname, path)
        self._fix = fix

    def get_data(self, path):
        data = super().get_data(path)
        if path == self.path:
            return self._fix(data.decode("utf-8")).encode("utf-8")
        return data

    def get_code(self, fullname):
        source = self.get_data(self.path)
        return compile(source, self.path, "exec", dont_inherit=True)


class _LavaCompatFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        fix_name = _TARGETS.get(fullname)
        if fix_name is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _RewritingLoader(fullname, spec.origin, globals()[fix_name])
        return spec


_FINDER = _LavaCompatFinder()


def install() -> None:
    """Put the hook in place (idempotent). Must run before Lava is imported."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def lava_installed() -> bool:
    return importlib.util.find_spec("lava") is not None and importlib.util.find_spec("lava.magma") is not None


def import_lava():
    """Install the shim and import the parts of Lava the backend uses.

    Raises `TargetError` with install instructions when Lava is missing, and
    names the module when Lava is present but still fails to import.
    """
    install()
    if not lava_installed():
        raise TargetError(INSTALL_HINT)
    try:
        import lava.magma.core.run_configs as run_configs  # noqa: F401
        import lava.magma.core.run_conditions as run_conditions  # noqa: F401
    except ImportError as exc:
        raise TargetError(f"Lava is installed but cannot be imported ({exc}). {INSTALL_HINT}") from None
    except ValueError as exc:  # the dataclass error this shim exists for
        raise TargetError(f"Lava failed to import on Python {sys.version.split()[0]} even with the "
                          f"compatibility shim ({exc})") from None
    import lava

    return lava
