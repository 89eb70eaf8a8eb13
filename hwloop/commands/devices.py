"""hwloop devices: the targets this build knows and whether they are reachable."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("devices", help="list targets (in-process, emulated, serial ports)")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from hwloop.backends import list_targets

    rows = list_targets()
    if not args.json:
        w = max(len(r["url"]) for r in rows)
        for r in rows:
            print(f"{r['url']:<{w}}  {r['status']:<11}  {r.get('description', '')}")
    return {"targets": rows}
