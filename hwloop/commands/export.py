"""hwloop export: hand a network to another tool (NIR graph, Lava-DL netx file)."""

from __future__ import annotations

from ..errors import HwloopError

FORMATS = ("nir", "netx")
CONSUMERS = ("nir", "snntorch", "norse", "rockpool")


def register(sub):
    p = sub.add_parser("export", help="write a network as a NIR graph or a Lava-DL netx file",
                       description="Write NET as a NIR graph (--format nir; see docs/interop.md) or as the "
                                   "HDF5 file Lava-DL's netx loads onto Loihi (--format netx, quantised as the "
                                   "bitexact target runs it, with the exponent netx reads; spike-train CUBA "
                                   "networks too, as multi-spike dense / dense_rec blocks compiled at weight "
                                   "exponent 0, the integers of bitexact?weight_exp=0).")
    p.add_argument("network", help=".hwnet file")
    p.add_argument("out", help="output file (.nir or .net)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--for", dest="consumer", default="nir", choices=CONSUMERS,
                   help="nir only: whose conventions the graph follows: 'nir' (NIR's continuous-time ODE, "
                        "Dirac spikes), or the time grid snntorch / norse / rockpool run it on "
                        "(default: %(default)s)")
    p.add_argument("--dt", type=float, default=None,
                   help="nir --for snntorch|norse|rockpool: the consumer's time step, in the network's time "
                        "unit (default: t_max / 1000)")
    p.add_argument("--steps", type=int, default=None,
                   help="netx only: Loihi time steps per trial (dt = t_max / steps; default: the Loihi "
                        "compiler's, as for the bitexact target)")
    p.add_argument("--weight-exp", default="0", choices=("0", "auto"),
                   help="netx of a spike-train network: '0' compiles every matrix at weight exponent 0, the "
                        "only one netx runs, so the file is exactly the integers of bitexact?weight_exp=0; "
                        "'auto' compiles as the default bitexact target does (finer weights) and rewrites "
                        "each layer netx cannot run as it is (not identical to any target; docs/interop.md) "
                        "(default: %(default)s)")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..network import Network

    net = Network.load(args.network)
    if net.is_spike_train:
        if args.format != "netx":
            raise HwloopError(f"{args.network}: a spike-train network ({net.model}, format version 2) cannot be "
                              "exported yet as NIR (NIR export writes first-spike-time networks only); "
                              "--format netx writes it for lava-dl")
        return _export_cuba_netx(net, args)
    if args.format == "nir":
        if args.steps is not None:
            raise HwloopError("--steps applies to --format netx only (use --dt for a NIR consumer's grid)")
        from ..interop.nir_io import export_nir

        path = export_nir(net, args.out, consumer=args.consumer, dt=args.dt)
        warnings = [] if net.model == "lif" else [
            f"{net.model} layers have no NIR primitive: exported as flagged CubaLIF placeholders that other "
            "tools will not run faithfully and hwloop refuses to import"]
        if args.consumer == "nir":
            warnings.append("a plain NIR graph (NIR's ODE, Dirac spikes): snnTorch, Norse and Rockpool each run "
                            "a time grid of their own; export with --for snntorch|norse|rockpool for them")
        if args.consumer != "nir":
            warnings.append(f"{args.consumer}'s neurons reset and fire again; hwloop's network has one spike "
                            "per neuron: downstream layers see the extra spikes (docs/interop.md)")
        info: dict = {"consumer": args.consumer}
        if args.consumer != "nir":
            from ..interop.conventions import DEFAULT_STEPS

            info["dt"] = net.t_max / DEFAULT_STEPS if args.dt is None else args.dt
    else:
        if args.consumer != "nir" or args.dt is not None:
            raise HwloopError("--for and --dt apply to --format nir only (netx: --steps)")
        from ..interop.netx import export_netx

        path, info = export_netx(net, args.out, steps=args.steps)
        warnings = []
        if any(e != 0 for e in info["weight_exp"]):
            warnings.append("netx reads weight exponent 0 only: layers compiled with exponents "
                            f"{info['weight_exp']} are written with exponent 0 and thresholds "
                            f"{info['netx_vth']} (measured effect in docs/interop.md)")
        if info["hidden_bias_ignored"]:
            warnings.append(f"hidden layers {info['hidden_bias_ignored']} have bias spikes, which netx cannot "
                            "express: they are kept in the hwloop keys hwlBiasWeight/hwlBiasStep and netx "
                            "ignores them (train with bias_time < 0 for a file netx runs as hwloop does)")
        warnings.append("netx builds Lava LIF neurons, which reset and fire again; hwloop's network has one "
                        "spike per neuron")
    if not args.json:
        print(f"wrote {path} ({args.format}): {net.summary()}")
        for w in warnings:
            print(f"warning: {w}")
    return {"out": str(path), "format": args.format, "warnings": warnings, **info}


def _export_cuba_netx(net, args) -> dict:
    """A spike-train (CUBA) network -> the netx file stock lava-dl runs (docs/interop.md)."""
    if args.consumer != "nir" or args.dt is not None:
        raise HwloopError("--for and --dt apply to --format nir only")
    from ..interop.netx import export_netx_cuba

    path, info = export_netx_cuba(net, args.out, steps=args.steps,
                                  weight_exp=None if args.weight_exp == "auto" else int(args.weight_exp))
    warnings = [f"layer {k}: netx runs weight exponent 0 only; {note['how']} (not the bitexact integers; "
                "measured effect in docs/interop.md)" for k, note in enumerate(info["notes"]) if not note["exact"]]
    if not info["spiking"][-1]:
        warnings.append("the readout layer does not spike: netx runs it as a LIF that cannot fire in range; the "
                        "decision is its membrane v (monitor the last block's neuron.v in Lava)")
    if not args.json:
        print(f"wrote {path} (netx, spike trains): {net.summary()}")
        if info.get("target"):
            print(f"the file holds the integers of the target {info['target']!r}: lava-dl runs it spike for "
                  "spike like that target")
        for w in warnings:
            print(f"warning: {w}")
    return {"out": str(path), "format": "netx", "warnings": warnings, **info}
