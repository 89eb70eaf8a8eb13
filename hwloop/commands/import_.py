"""hwloop import: turn another tool's NIR graph into an hwloop network file.

The module is ``import_`` because ``import`` is a Python keyword; the
subcommand is ``hwloop import``.
"""

from __future__ import annotations


def register(sub):
    p = sub.add_parser(
        "import", help="read a NIR graph (snnTorch, Norse, Rockpool, Lava-DL, ...) into a .hwnet file",
        description="Map a feed-forward NIR graph of CubaLIF layers onto hwloop's LIF model "
                    "(docs/interop.md). NIR stores no units, trial length or input encoding: graphs "
                    "exported by hwloop carry them in metadata, other graphs need --t-max and --time-unit.")
    p.add_argument("input", help=".nir file")
    p.add_argument("--out", required=True, help="output .hwnet file")
    p.add_argument("--from", dest="source", default="nir", choices=["nir", "snntorch", "norse", "rockpool"],
                   help="whose conventions a graph without hwloop metadata follows: 'nir' (NIR's ODE as "
                        "written) or the exporter of snntorch 1.0 / norse 1.1 / rockpool 3.1 (docs/interop.md; "
                        "default: %(default)s)")
    p.add_argument("--t-max", type=float, default=None, help="trial length, in --time-unit")
    p.add_argument("--time-unit", default=None, choices=["s", "ms", "us", "ns"],
                   help="unit of every time constant in the graph (NIR stores none; --from presets: s)")
    p.add_argument("--dt", type=float, default=None,
                   help="the exporter's time step (--from nir: when its spikes are one-step pulses of height "
                        "1; --from snntorch: default 1e-4; --from norse: its dt, default 1e-3; --from rockpool: "
                        "derived from r unless given)")
    p.add_argument("--classes", default=None, help="comma-separated class names (default 0..n-1)")
    enc = p.add_argument_group("input encoding (feature value -> spike time, linear)")
    enc.add_argument("--value-min", type=float, default=None)
    enc.add_argument("--value-max", type=float, default=None)
    enc.add_argument("--t-at-min", type=float, default=None, help="spike time of a feature at --value-min")
    enc.add_argument("--t-at-max", type=float, default=None, help="spike time of a feature at --value-max")
    enc.add_argument("--silent-at-min", action="store_true", default=None,
                     help="features at or below --value-min send no spike")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..interop.nir_io import import_nir

    encoding = {k: getattr(args, k) for k in ("value_min", "value_max", "t_at_min", "t_at_max", "silent_at_min")
                if getattr(args, k) is not None}
    classes = None if args.classes is None else [c.strip() for c in args.classes.split(",")]
    imp = import_nir(args.input, t_max=args.t_max, time_unit=args.time_unit, dt=args.dt, classes=classes,
                     encoding=encoding or None, source=args.source)
    path = imp.network.save(args.out)
    if not args.json:
        print(f"wrote {path}: {imp.network.summary()}")
        for note in imp.notes:
            print(f"note: {note}")
    return {"out": str(path), "summary": imp.network.summary(), "foreign": imp.foreign, "notes": imp.notes,
            "sizes": list(imp.network.sizes)}
