"""hwloop report: Markdown report with plots for a session directory."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("report", help="write a Markdown report with PNG plots for a session",
                       description="Write SESSION/report/report.md with PNG figures and the data they are "
                                   "drawn from (data.json). The spike-time figures re-run the target.")
    p.add_argument("session", help="session directory")
    p.add_argument("--out", default=None, help="report folder (default SESSION/report)")
    p.add_argument("--samples", type=int, default=300,
                   help="validation samples for the spike-time plots (default 300)")
    p.add_argument("--network", choices=["best", "final"], default="best",
                   help="the session's network the target runs: best.hwnet (best validation accuracy on the "
                        "target) or network.hwnet (where the session ended); default best")
    p.add_argument("--sample", type=int, default=0, help="the validation sample of the raster plot (default 0)")
    p.add_argument("--smooth", type=int, default=None,
                   help="loss curve: moving-average window in steps (default a fifth of an epoch)")
    p.add_argument("--no-target", action="store_true", help="plots from the log only (do not open the target)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..report import write_report

    res = write_report(args.session, args.out, args.samples, run_target=not args.no_target, network=args.network,
                       sample=args.sample, progress=not args.quiet, smooth=args.smooth)
    if not args.json:
        print(f"wrote {res['report']}")
    return res
