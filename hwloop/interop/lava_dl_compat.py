"""Make lava-dl 0.6.0's ``netx`` importable here, without touching site-packages.

lava-dl 0.6.0 declares Python < 3.11 and, like lava-nc, is installed with
``--no-deps --ignore-requires-python`` (see the Makefile). Two things stand
between it and ``import lava.lib.dl.netx`` on Python 3.11:

* it imports lava-nc, which needs the import hook of
  `hwloop.backends.loihi.lava_compat` (dataclass defaults, start method);
* ``netx.hdf5`` imports ``lava.lib.dl.slayer``, whose package ``__init__``
  eagerly imports ``slayer.object_detection`` (YOLO data sets and bounding
  boxes), which needs OpenCV (``cv2``) and torchvision. Neither is used by
  netx, and installing them would add ~100 MB and a second torch-pinned wheel
  to the test environment.

`install()` adds, beside lava_compat's hook, one that rewrites the source of
``lava/lib/dl/slayer/__init__.py`` at import so that the ``object_detection``
import is skipped when OpenCV or torchvision is missing (``slayer.obd`` is
then absent); with both installed the module is unchanged in effect. No file
on disk is modified.

`import_netx()` is what hwloop calls: it installs both hooks and imports
``lava.lib.dl.netx``, or raises `HwloopError` saying how to install it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys

from ..errors import HwloopError

INSTALL_HINT = (
    "lava-dl is not installed. Install it (after lava-nc, see docs/loihi.md) with\n"
    "    pip install --no-deps --ignore-requires-python lava-dl==0.6.0\n"
    "(or run `make venv`, which does it)."
)

_SLAYER = "lava.lib.dl.slayer"
_OBD_IMPORT = re.compile(r"^from \. import object_detection as obd\s*$", re.M)


def _fix_slayer_init(src: str) -> str:
    return _OBD_IMPORT.sub(
        "import importlib.util as _hwl_util\n"
        "if _hwl_util.find_spec('cv2') is not None and _hwl_util.find_spec('torchvision') is not None:\n"
        "    from . import object_detection as obd\n"
        "del _hwl_util",
        src,
    )


class _SlayerFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _SLAYER:
            return None
        from hwloop.backends.loihi.lava_compat import _RewritingLoader  # noqa: PLC0415

        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _RewritingLoader(fullname, spec.origin, _fix_slayer_init)
        return spec


_FINDER = _SlayerFinder()


def install() -> None:
    """Put both hooks in place (idempotent). Must run before lava-dl is imported."""
    from hwloop.backends.loihi import lava_compat  # noqa: PLC0415

    lava_compat.install()
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def lava_dl_installed() -> bool:
    try:
        return importlib.util.find_spec("lava.lib.dl.netx") is not None
    except ModuleNotFoundError:  # 'lava' or 'lava.lib' itself missing
        return False


def import_netx():
    """Install the hooks and return the ``lava.lib.dl.netx`` module."""
    from hwloop.backends.loihi.lava_compat import import_lava  # noqa: PLC0415

    install()
    import_lava()  # TargetError with its own hint when lava-nc is missing
    if not lava_dl_installed():
        raise HwloopError(INSTALL_HINT)
    try:
        import lava.lib.dl.netx as netx  # noqa: PLC0415
    except ImportError as exc:
        raise HwloopError(f"lava-dl is installed but its netx cannot be imported ({exc}). {INSTALL_HINT}") from None
    return netx
