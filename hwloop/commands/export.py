"""hwloop export: hand a network to another tool (NIR graph, Lava-DL netx file)."""

from __future__ import annotations

from ..errors import HwloopError

FORMATS = ("nir", "netx")


def register(sub):
    p = sub.add_parser("export", help="write a network as a NIR graph or a Lava-DL netx file",
                       description="Write NET as a NIR graph (--format nir; see docs/interop.md) or as the "
                                   "HDF5 file Lava-DL's netx loads onto Loihi (--format netx, quantised exactly "
                                   "as the bitexact target runs it).")
    p.add_argument("network", help=".hwnet file")
    p.add_argument("out", help="output file (.nir or .net)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--steps", type=int, default=None,
                   help="netx only: Loihi time steps per trial (dt = t_max / steps; default: the Loihi "
                        "compiler's, as for the bitexact target)")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..network import Network

    net = Network.load(args.network)
    if args.format == "nir":
        if args.steps is not None:
            raise HwloopError("--steps applies to --format netx only (NIR graphs are continuous-time)")
        from ..interop.nir_io import export_nir

        path = export_nir(net, args.out)
        warnings = [] if net.model == "lif" else [
            f"{net.model} layers have no NIR primitive: exported as flagged CubaLIF placeholders that other "
            "tools will not run faithfully and hwloop refuses to import"]
        info: dict = {}
    else:
        from ..interop.netx import export_netx

        path, info = export_netx(net, args.out, steps=args.steps)
        warnings = []
        if any(e != 0 for e in info["weight_exp"]):
            warnings.append("lava-dl's netx derives its own weight exponent and ignores neuron/wgtExp: loaded "
                            "with netx, layers with wgtExp != 0 get weights scaled by 2^-wgtExp "
                            "(see docs/interop.md); hwloop's reader and the bitexact target use wgtExp")
        if any(layer.bias_times for layer in net.layers):
            warnings.append("bias spikes are stored in the hwloop extension keys hwlBiasWeight/hwlBiasStep, "
                            "which netx ignores")
    if not args.json:
        print(f"wrote {path} ({args.format}): {net.summary()}")
        for w in warnings:
            print(f"warning: {w}")
    return {"out": str(path), "format": args.format, "warnings": warnings, **info}
