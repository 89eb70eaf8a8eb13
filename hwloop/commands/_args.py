"""Argument types for the subcommands: numbers checked while the command line
is parsed, so a bad value is one line naming the option (exit status 2)
before any file is read or any target opened."""

from __future__ import annotations

import argparse
import math


def integer(lo: int | None = None, hi: int | None = None):
    """An int in ``lo..hi`` (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {_range(lo, hi)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    """A finite float >= lo (> lo with ``lo_open``) and <= hi."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        bad = (not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo))
               or (hi is not None and value > hi))
        if bad:
            raise argparse.ArgumentTypeError(f"must be a finite number {_range(lo, hi, lo_open)}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _range(lo, hi, lo_open: bool = False) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    return " and ".join(parts) if parts else ""


POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
SEED = integer(0, 2**63 - 1)
POSITIVE_NUMBER = number(0.0, lo_open=True)


def from_option(option):
    """An argparse type with the range of a target URL option
    (`hwloop.backends.options.Option`), so a flag and the URL option it
    mirrors allow the same values."""
    from hwloop.errors import TargetError

    def parse(text: str):
        try:
            return option.parse(text, option.name)
        except TargetError:
            raise argparse.ArgumentTypeError(f"must be {option.allowed()}, got {text!r}") from None

    parse.__name__ = option.kind
    return parse
