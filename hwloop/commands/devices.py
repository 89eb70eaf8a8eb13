"""hwloop devices: the targets this build knows, whether they are reachable,
and (``--options``) the URL options each one takes."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("devices", help="list targets (in-process, emulated, serial ports) and their URL options")
    p.add_argument("--options", action="store_true",
                   help="also print every target's URL options: allowed values, default, meaning")
    p.add_argument("--pool", default=None, metavar="CONFIG",
                   help="instead: the boards of this pool file, each health-checked by its Ray actor (docs/sweeps.md)")
    p.add_argument("--address", default=None, help="with --pool: a Ray cluster address (default: a local Ray)")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    if args.pool is not None:
        from hwloop.pool.boards import show_pool

        return show_pool(args.pool, args.address, args.json)
    from hwloop.backends import list_targets, target_options

    rows = list_targets()
    options = {scheme: [o.to_json() for o in schema] for scheme, schema in target_options().items()}
    if not args.json:
        w = max(len(r["url"]) for r in rows)
        for r in rows:
            print(f"{r['url']:<{w}}  {r['status']:<11}  {r.get('description', '')}")
        if args.options:
            for scheme, schema in target_options().items():
                print(f"\n{scheme}" + ("" if schema else ": no options"))
                if schema:
                    wn = max(len(o.name) for o in schema)
                    for o in schema:
                        print(f"  {o.name:<{wn}}  {o.doc}\n  {'':<{wn}}  allowed: {o.allowed()}; "
                              f"default: {o.default_text()}")
    return {"targets": rows, "options": options}
