"""One adapter per target behind one small interface (`hwloop.backends.base.Backend`).

``open_target(url)`` picks the adapter by the URL's scheme; adapters are
imported only when asked for, so optional dependencies (Lava) stay optional.
"""

from __future__ import annotations

import importlib

from hwloop.errors import TargetError

from .base import Backend, Measurement, SpikeEvents, TargetURL, parse_target, times_to_raster
from .options import Option, options_markdown

# scheme -> "module:Class"; imported lazily
TARGETS: dict[str, str] = {
    "software": "hwloop.backends.software:SoftwareBackend",
    "bitexact": "hwloop.backends.loihi:BitExactBackend",
    "lava-sim": "hwloop.backends.loihi:LavaSimBackend",
    "lava-hw": "hwloop.backends.loihi:LavaHwBackend",
    "qif-emu": "hwloop.backends.qif:QifEmuBackend",
    "qif": "hwloop.backends.qif:QifSerialBackend",
}


def backend_class(scheme: str) -> type[Backend]:
    if scheme not in TARGETS:
        raise TargetError(f"unknown target {scheme!r}; known: {', '.join(TARGETS)}")
    mod, _, cls = TARGETS[scheme].partition(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("hwloop.backends"):
            raise TargetError(f"target {scheme!r} is not implemented in this build") from None
        raise
    except AttributeError:
        raise TargetError(f"target {scheme!r} is not implemented in this build") from None


def open_target(url: str) -> Backend:
    """Open a target by URL, e.g. ``open_target("bitexact")``."""
    parsed = parse_target(url)
    return backend_class(parsed.scheme)(parsed)


def check_target(url: str) -> dict:
    """Check a target URL without opening the target: the scheme is known, the
    options are valid (`TargetError` otherwise). Returns the typed options."""
    parsed = parse_target(url)
    return backend_class(parsed.scheme).check_url(parsed)


def list_targets() -> list[dict]:
    """Every target this build knows, with whether it is reachable now."""
    rows = []
    for scheme in TARGETS:
        try:
            cls = backend_class(scheme)
        except TargetError as exc:
            rows.append({"url": scheme, "status": "unavailable", "description": str(exc)})
            continue
        rows.extend(cls.probe())
    return rows


def target_options() -> dict[str, tuple[Option, ...]]:
    """Every target's URL options (the schema `open_target` checks them against)."""
    out = {}
    for scheme in TARGETS:
        try:
            out[scheme] = tuple(backend_class(scheme).OPTIONS)
        except TargetError:
            continue
    return out


def target_options_markdown() -> str:
    """The option tables of docs/targets.md, generated from the schemas."""
    return options_markdown(target_options(), describe=lambda s: backend_class(s).description)


__all__ = ["Backend", "Measurement", "Option", "SpikeEvents", "times_to_raster", "TargetURL", "parse_target", "open_target", "check_target", "list_targets",
           "target_options", "target_options_markdown", "TARGETS"]
