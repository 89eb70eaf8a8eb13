"""hwloop calibrate: measure a QIF chip's mismatch by current injection and store it."""

from __future__ import annotations

from ._args import POSITIVE


def register(sub):
    p = sub.add_parser("calibrate", help="measure a QIF chip's per-neuron mismatch and store the calibration",
                       description="Measure TARGET's neurons by current injection (all neurons in parallel: "
                                   "noisy binary search of the injected current against latency targets, then a "
                                   "fit; synaptic gains from single inputs) and write the calibration file of "
                                   "this chip and firmware (see docs/calibration.md). Deploy with it by adding "
                                   "calib=on to the target URL.")
    p.add_argument("target", help="qif-emu?... or qif:///dev/tty...")
    p.add_argument("--neurons", type=POSITIVE, default=None, help="calibrate the first N neurons (default: all)")
    p.add_argument("--repeats", type=POSITIVE, default=8,
                   help="samples per search point (a majority decides each step)")
    p.add_argument("--measure-repeats", type=POSITIVE, default=64,
                   help="samples per measured latency the fit and the gains come from (averages the noise)")
    p.add_argument("--out", default=None, help="calibration file (default: the store, $HWLOOP_CALIBRATION_DIR)")
    p.add_argument("--plot", default=None, help="write a PNG of the parameter spread and the compensation")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..backends import open_target
    from ..calibration import CalibrationError, calibrate, spread, store_path
    from ..errors import TargetError
    from ..firmware_models.wire.errors import WireError

    with open_target(args.target) as chip:
        if not hasattr(chip, "client"):
            raise TargetError(f"{args.target}: calibration is for QIF chips (qif://, qif-emu)")
        try:
            cal = calibrate(chip, n_neurons=args.neurons, repeats=args.repeats,
                            measure_repeats=args.measure_repeats, quiet=args.quiet or args.json)
        except WireError as exc:
            raise CalibrationError(f"{args.target}: calibration interrupted ({exc}); nothing was written, "
                                   f"run it again") from None
    path = cal.save(args.out or store_path(cal.chip_id, cal.fw_version))
    res = {"file": str(path), "chip_id": cal.chip_id, "fw_version": cal.fw_version, "neurons": int(cal.g.size),
           "chip_runs": cal.chip_runs, "samples": cal.samples, "seconds": round(cal.seconds, 2),
           "spread": {k: spread(getattr(cal, k)) for k in ("g", "D", "u0", "col")}}
    if args.plot:
        _plot(cal, args.plot)
        res["plot"] = args.plot
    if not args.json:
        print(f"calibrated chip {cal.chip_id:#x} (firmware {cal.fw_version}): {cal.g.size} neurons in "
              f"{cal.chip_runs} chip runs ({cal.samples} samples, {cal.seconds:.1f} s) -> {path}")
        for k, name in (("g", "tau gain"), ("D", "drive - c^2/4"), ("u0", "v0 - c/2"), ("col", "synaptic gain")):
            s = res["spread"][k]
            print(f"  {name:<14} mean {s['mean']:.4f}  std {s['std']:.4f}  range {s['min']:.3f}..{s['max']:.3f}")
        print(f"deploy with it: add calib=on to the target URL (e.g. {args.target.split('?')[0]}?...&calib=on)")
    return res


def _plot(cal, path):
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    # before: the measured effective parameters; after: what the compensated neuron sees (nominal by design
    # for tau and drive; the initial-voltage offset is cancelled at deployment by tick-0 bias lines, to the
    # deployed layer's weight resolution, which depends on the network: only "before" is shown for it)
    for ax, (name, before, after) in zip(axes, (
            ("tau gain", cal.g, np.ones_like(cal.g)),
            ("synaptic gain", cal.col, np.ones_like(cal.col)),
            ("v0 - c/2 (cancelled at deployment)", cal.u0, None))):
        ax.hist(before, bins=30, alpha=0.6, label="measured (uncompensated)")
        if after is not None:
            ax.hist(after, bins=30, alpha=0.6, label="after compensation")
        ax.set_title(name, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)

