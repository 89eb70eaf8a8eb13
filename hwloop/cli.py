"""`hwloop` command line.

Every subcommand returns a dict; with ``--json`` the CLI prints it as one JSON
object on the last line of output (progress goes to stderr). Errors caused by
bad input are printed as one line on stderr, exit status 2 (``--json``: also
an object with ``"ok": false`` on stdout): a bad command line, errors hwloop
raises on purpose (`HwloopError`), and `OSError`s the user causes (a missing
file or folder, a directory where a file should go, no permission, a full
disk; `hwloop.fileio.is_user_oserror`). Anything else is a bug and keeps its
traceback; ``HWLOOP_TRACEBACK=1`` shows the traceback of the one-line errors
too. A subcommand reporting failure (e.g. validate finding disagreement)
exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys

from . import __version__
from .errors import HwloopError
from .fileio import is_user_oserror

# subcommand modules under hwloop.commands, in help order; a missing one is skipped
COMMANDS = ["demo", "train", "eval", "simulate", "devices", "validate", "loop", "report", "calibrate",
            "export", "import_", "emulator", "sweep"]


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


class UsageError(Exception):
    """A bad command line (raised by `Parser.error` instead of argparse's exit)."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless the help already
    says it, the default is unset (None) or the option is a flag."""

    def _get_help_string(self, action):
        text = action.help or ""
        lazy = getattr(action, "default_help", None)
        if lazy is not None:  # a default that needs heavy imports to state: computed only for --help
            return f"{text} (default{lazy()})".replace("%", "%%")
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if (not unset and "default" not in text
                and action.option_strings and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse, with a bad command line as one line on stderr (exit status 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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


def _one_line(prog: str, exc: BaseException, as_json: bool) -> int:
    """Print a user error as one line on stderr (and a JSON object); exit status 2."""
    if isinstance(exc, OSError) and not isinstance(exc, HwloopError):
        what = f"{exc.filename}: " if exc.filename else ""
        message = f"{what}{exc.strerror or exc}"
    else:
        message = str(exc)
    lines = [line.strip() for line in message.splitlines() if line.strip()] or [type(exc).__name__]
    # one line whatever the message held; a message with details (a worker's
    # traceback) keeps them for HWLOOP_TRACEBACK=1 and the JSON object
    line = " ".join(lines[0].split())
    if len(lines) > 1:
        line += f" ({len(lines) - 1} more line(s) of detail: set HWLOOP_TRACEBACK=1)"
    if os.environ.get("HWLOOP_TRACEBACK"):
        import traceback

        traceback.print_exception(exc)
    if as_json:
        print(json.dumps({"ok": False, "error": line, "error_type": type(exc).__name__,
                          **({"detail": message} if len(lines) > 1 else {})}))
    print(f"{prog}: error: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _one_line(exc.prog, UsageError(exc.prog, f"{exc} (see {exc.prog} --help)"), "--json" in argv)
    try:
        result = args.func(args)
    except HwloopError as exc:
        return _one_line(f"hwloop {args.command}", exc, getattr(args, "json", False))
    except OSError as exc:
        if not is_user_oserror(exc):
            raise
        return _one_line(f"hwloop {args.command}", exc, getattr(args, "json", False))
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
