"""`hwloop` command line.

Every subcommand returns a dict; with ``--json`` the CLI prints it as one JSON
object on the last line of output (progress goes to stderr). Errors hwloop
raises on purpose are printed as one line, exit status 2 (``--json``: an
object with ``"ok": false``); a subcommand reporting failure (e.g. validate
finding disagreement) exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys

from . import __version__
from .errors import HwloopError

# subcommand modules under hwloop.commands, in help order; a missing one is skipped
COMMANDS = ["demo", "train", "eval", "simulate", "devices", "validate", "loop", "report",
            "export", "import_", "emulator"]


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwloop",
        description="Deploy first-spike-time SNNs to neuromorphic targets and train them in the loop.",
    )
    parser.add_argument("--version", action="version", version=f"hwloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"hwloop.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hwloop.commands.{name}":
                continue
            raise
        p = mod.register(sub)
        p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except HwloopError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": str(exc), "error_type": type(exc).__name__}))
        print(f"hwloop {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwloop {args.command}: interrupted", file=sys.stderr)
        return 130
    result = dict(result or {})
    ok = bool(result.pop("ok", True))
    if args.json:
        print(json.dumps(_jsonable({"ok": ok, **result}), allow_nan=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
