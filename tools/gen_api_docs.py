"""Generate docs/api.md, the API reference, from the docstrings of `hwloop.__all__`.

    python tools/gen_api_docs.py            # rewrite docs/api.md
    python tools/gen_api_docs.py --check    # exit 1 if docs/api.md is out of date

The reference lists every public name (the order of ``hwloop._PUBLIC``,
grouped by the module that defines it) with its signature and docstring;
for a class also its dataclass fields and every public method and property
it defines itself (inherited members of torch, Exception or object are not
repeated). A name or member without a docstring is shown as such, and
counted at the top, so the gap is visible in the reference itself.
`tests/test_api.py` checks that the committed file is what this script
writes and which names still lack a docstring.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"
MISSING = "*Not documented yet.*"


@dataclass
class Entry:
    """One documented thing: a public name, or a member of a public class."""

    qualname: str  # e.g. "train", "Network.save"
    kind: str  # function, class, method, property, classmethod, staticmethod
    signature: str
    doc: str | None
    module: str = ""
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # dataclass (name, type, default)
    members: list["Entry"] = field(default_factory=list)


def _annotation(ann) -> str:
    if isinstance(ann, str):  # postponed annotations (from __future__ import annotations)
        return ann.strip("'\"")
    return inspect.formatannotation(ann)


def _signature(obj, name: str) -> str:
    """``name(a: int = 1, *, b: str = 'x') -> T``, annotations as written in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(...)"
    parts, star_done = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            default = repr(p.default)
            if default == "<factory>" and dataclasses.is_dataclass(obj):  # dataclasses' default_factory marker
                default = repr(next(f for f in dataclasses.fields(obj) if f.name == p.name).default_factory())
            text += (" = " if p.annotation is not p.empty else "=") + default
        parts.append(text)
        if p.kind is p.POSITIONAL_ONLY and (p is list(sig.parameters.values())[-1] or
                                            list(sig.parameters.values())[len(parts)].kind is not p.POSITIONAL_ONLY):
            parts.append("/")
    ret = f" -> {_annotation(sig.return_annotation)}" if sig.return_annotation is not sig.empty else ""
    if inspect.isclass(obj):
        ret = ""
    return f"{name}({', '.join(parts)}){ret}"


def _doc(obj) -> str | None:
    doc = obj.__doc__ if isinstance(obj, property) else inspect.getdoc(obj)
    if isinstance(obj, type) and doc is not None:
        # a class without its own docstring inherits none here (dataclasses
        # make one from the signature; that is not documentation)
        own = obj.__dict__.get("__doc__")
        if not own or (dataclasses.is_dataclass(obj) and own.startswith(obj.__name__ + "(")):
            return None
    return inspect.cleandoc(doc) if doc else None


def _members(cls) -> list[Entry]:
    out = []
    for name, raw in cls.__dict__.items():  # definition order, own members only
        if name.startswith("_"):
            continue
        if isinstance(raw, property):
            out.append(Entry(f"{cls.__name__}.{name}", "property", f"{cls.__name__}.{name}", _doc(raw)))
        elif isinstance(raw, (staticmethod, classmethod)):
            kind = type(raw).__name__
            fn = raw.__func__
            out.append(Entry(f"{cls.__name__}.{name}", kind, _signature(getattr(cls, name), f"{cls.__name__}.{name}"),
                             _doc(fn)))
        elif inspect.isfunction(raw):
            sig = _signature(raw, f"{cls.__name__}.{name}").replace("(self, ", "(").replace("(self)", "()")
            out.append(Entry(f"{cls.__name__}.{name}", "method", sig, _doc(raw)))
    return out


def _fields(cls) -> list[tuple[str, str, str]]:
    if not dataclasses.is_dataclass(cls):
        return []
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rows.append((f.name, str(f.type), default))
    return rows


def collect() -> list[Entry]:
    """Every public name of `hwloop`, in the order of ``hwloop._PUBLIC``."""
    import hwloop

    entries = []
    for name in hwloop.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(hwloop, name)
        module = hwloop._PUBLIC[name]
        if inspect.isclass(obj):
            if dataclasses.is_dataclass(obj):
                sig = f"{name}(...)  # a dataclass: the fields below"
            elif issubclass(obj, BaseException) and "__init__" not in obj.__dict__:
                sig = f"{name}(message: str)"
            else:
                sig = _signature(obj, name)
            entries.append(Entry(name, "class", sig, _doc(obj), module, _fields(obj), _members(obj)))
        else:
            entries.append(Entry(name, "function", _signature(obj, name), _doc(obj), module))
    return entries


def undocumented(entries: list[Entry] | None = None) -> list[str]:
    """Qualified names (``"Network"``, ``"Network.save"``) that have no docstring."""
    entries = collect() if entries is None else entries
    out = []
    for e in entries:
        if not e.doc:
            out.append(e.qualname)
        out.extend(m.qualname for m in e.members if not m.doc)
    return out


def _anchor(qualname: str) -> str:
    return qualname.lower().replace(".", "")


def render(entries: list[Entry] | None = None) -> str:
    """The text of docs/api.md."""
    entries = collect() if entries is None else entries
    missing = undocumented(entries)
    total = sum(1 + len(e.members) for e in entries)
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python tools/gen_api_docs.py`; do not edit by hand",
        "(`tests/test_api.py` checks that this file is current). Every name below is importable",
        "from `hwloop` itself (`hwloop.train`, `hwloop.Network`, ...) and is imported on first",
        "use, so `import hwloop` stays light. How the pieces fit: [README](../README.md);",
        "a worked example: [examples/quickstart.py](examples/quickstart.py).",
        "",
        f"{total - len(missing)} of {total} public names and members have a docstring.",
    ]
    if missing:
        lines += ["Not documented yet: " + ", ".join(f"`{q}`" for q in missing) + "."]
    lines.append("")
    modules: dict[str, list[Entry]] = {}
    for e in entries:
        modules.setdefault(e.module, []).append(e)
    lines += ["## Contents", ""]
    for module, group in modules.items():
        lines.append(f"- `{module}`: " + ", ".join(f"[`{e.qualname}`](#{_anchor(e.qualname)})" for e in group))
    lines.append("")
    for module, group in modules.items():
        lines += [f"## `{module}`", ""]
        for e in group:
            lines += [f"### {e.qualname}", "", "```python", ("class " if e.kind == "class" else "") + e.signature,
                      "```", "", e.doc or MISSING, ""]
            if e.fields:
                lines += ["| field | type | default |", "|---|---|---|"]
                lines += [f"| `{n}` | `{t}` | `{d}` |" for n, t, d in e.fields]
                lines.append("")
            for m in e.members:
                label = "" if m.kind == "method" else f" *({m.kind})*"
                lines += [f"#### {m.qualname}{label}", "", "```python", m.signature, "```", "", m.doc or MISSING, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date; run: python tools/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    missing = undocumented()
    print(f"wrote {OUT.relative_to(ROOT)}; {len(missing)} public names or members without a docstring")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
