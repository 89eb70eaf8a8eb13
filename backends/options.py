"""Target URL options: one declarative schema per backend, checked in one place.

Every backend lists its options as `Option` records (name, type, allowed
range, default, one line of documentation) in its ``OPTIONS`` attribute.
`parse_options` turns the raw strings of a `TargetURL` into typed values
before the backend opens, spawns or allocates anything, and refuses with a
`TargetError` naming the option, the value and what is allowed:

* an option the target does not know;
* a value that does not parse as the declared type (``steps=1.5``);
* a float that is not finite (``timeout=nan``, ``inf``);
* a number outside the declared range (``retries=-1``, ``seed=1e20``);
* a word that is not one of the declared choices (``dac=max``).

`hwloop devices --options` and `docs/targets.md` print the same schema
(`options_markdown` renders it; a test keeps the document in step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from hwloop.errors import TargetError

KINDS = ("int", "float", "choice")


@dataclass(frozen=True)
class Option:
    """One URL option of a target.

    ``min``/``max`` bound numbers (inclusive unless ``min_exclusive``);
    ``also`` lists extra allowed values outside the range (e.g. ``0`` meaning
    "off"); ``choices`` are the words a ``choice`` option takes (the default
    must be one of them); ``base`` is 0 for integers that may be written in
    hex (``0x1f``). ``default=None`` means "decided by the target" and
    ``default_doc`` then says how.
    """

    name: str
    kind: str
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    also: tuple = ()
    choices: tuple[str, ...] = ()
    base: int = 10
    default_doc: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "choice" and self.default not in self.choices:
            raise ValueError(f"option {self.name}: default {self.default!r} is not a choice")

    # ------------------------------------------------------------------ text
    def allowed(self) -> str:
        """What values are allowed, in words (for messages and docs)."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        lo, hi = self.min, self.max
        if self.kind == "int":
            if lo is not None and hi is not None:
                text = f"an integer in {_num(lo)}..{_num(hi)}"
            elif lo is not None:
                text = f"an integer >= {_num(lo)}"
            elif hi is not None:
                text = f"an integer <= {_num(hi)}"
            else:
                text = "an integer"
        else:
            if lo is not None and hi is not None:
                text = f"a number in {'(' if self.min_exclusive else '['}{_num(lo)}, {_num(hi)}]"
            elif lo is not None:
                text = f"a number {'>' if self.min_exclusive else '>='} {_num(lo)}"
            elif hi is not None:
                text = f"a number <= {_num(hi)}"
            else:
                text = "a finite number"
        if self.also:
            text = " or ".join(_num(v) for v in self.also) + ", or " + text
        return text

    def default_text(self) -> str:
        if self.default is None:
            return self.default_doc or "(target's choice)"
        return _num(self.default) if isinstance(self.default, (int, float)) else str(self.default)

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.kind, "default": self.default, "allowed": self.allowed(),
                "doc": self.doc, **({"default_doc": self.default_doc} if self.default_doc else {})}

    # --------------------------------------------------------------- parsing
    def parse(self, raw: str, target: str) -> Any:
        def refuse(why: str) -> TargetError:
            return TargetError(f"target {target!r}: option {self.name}={raw!r} {why}; allowed: {self.allowed()}")

        text = raw.strip()
        if self.kind == "choice":
            if text not in self.choices:
                raise refuse("is not a known choice")
            return text
        if self.kind == "int":
            try:
                value: Any = int(text, self.base)
            except ValueError:
                raise refuse("is not an integer") from None
        else:
            try:
                value = float(text)
            except ValueError:
                raise refuse("is not a number") from None
            if not math.isfinite(value):
                raise refuse("is not finite")
        if value in self.also:
            return value
        if self.min is not None and (value <= self.min if self.min_exclusive else value < self.min):
            raise refuse("is out of range")
        if self.max is not None and value > self.max:
            raise refuse("is out of range")
        return value


def _num(v) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e7:
        return str(int(v))
    if isinstance(v, int) and abs(v) >= 1 << 20 and (v + 1) & v == 0:
        return f"2^{v.bit_length()}-1"
    return f"{v:g}" if isinstance(v, float) else str(v)


def with_default(options: Sequence[Option], **defaults) -> tuple[Option, ...]:
    """The same schema with some defaults changed (a subclass's own defaults)."""
    unknown = set(defaults) - {o.name for o in options}
    if unknown:
        raise ValueError(f"no such option(s): {', '.join(sorted(unknown))}")
    return tuple(replace(o, default=defaults[o.name]) if o.name in defaults else o for o in options)


def parse_options(target: str, raw: Mapping[str, str], schema: Sequence[Option]) -> dict[str, Any]:
    """Typed values for every option in ``schema`` (defaults filled in), or a
    `TargetError` for the first bad one. ``target`` is the URL as written."""
    by_name = {o.name: o for o in schema}
    unknown = sorted(set(raw) - set(by_name))
    if unknown:
        known = ", ".join(by_name) if by_name else "none (this target takes no options)"
        raise TargetError(f"target {target!r}: unknown option(s) {', '.join(unknown)}; known: {known}")
    return {o.name: o.parse(raw[o.name], target) if o.name in raw else o.default for o in schema}


def options_markdown(targets: Mapping[str, Sequence[Option]],
                     describe: Callable[[str], str] | None = None) -> str:
    """A Markdown section per target: a table of its options."""
    out = []
    for scheme, schema in targets.items():
        out.append(f"### `{scheme}`\n")
        if describe is not None:
            out.append(describe(scheme) + "\n")
        if not schema:
            out.append("No options.\n")
            continue
        out.append("| option | allowed | default | meaning |\n|---|---|---|---|")
        for o in schema:
            out.append(f"| `{o.name}` | {o.allowed()} | {o.default_text()} | {o.doc} |")
        out.append("")
    return "\n".join(out)


__all__ = ["Option", "parse_options", "with_default", "options_markdown"]
