"""hwloop report: Markdown report with plots for a session directory."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("report", help="write a Markdown report with PNG plots for a session")
    p.add_argument("session", help="session directory")
    p.add_argument("--out", default=None, help="report folder (default SESSION/report)")
    p.add_argument("--samples", type=int, default=300, help="validation samples for the spike-time plots")
    p.add_argument("--no-target", action="store_true", help="plots from the log only (do not open the target)")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..report import write_report

    res = write_report(args.session, args.out, args.samples, run_target=not args.no_target)
    if not args.json:
        print(f"wrote {res['report']}")
    return res
