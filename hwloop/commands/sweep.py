"""hwloop sweep: a grid of in-the-loop sessions over seeds x boards x settings on a Ray board pool."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("sweep", help="run a grid of in-the-loop sessions (seeds x boards x settings) on a "
                                     "pool of boards, on Ray",
                       description="Every trial is an ordinary session directory under OUT/trials/ (hwloop report "
                                   "and hwloop loop --resume work on it); OUT/summary.csv, summary.json and "
                                   "summary.png hold the results. Running the same command again continues an "
                                   "interrupted sweep. docs/sweeps.md.")
    p.add_argument("--pool", required=True, metavar="FILE", help="the pool file (TOML or JSON): boards and URLs")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep directory")
    p.add_argument("--init", required=True, metavar="NET", help="network every trial starts from (.hwnet)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, or A-B for a range")
    p.add_argument("--boards", default="all",
                   help="the boards axis: comma-separated board names, 'all' (one trial per board and seed), "
                        "or 'any' (no board axis: each trial takes whichever board of the pool is free)")
    p.add_argument("--set", action="append", default=None, metavar="KEY=V[,V...]",
                   help="a session setting (any `hwloop loop` option as its config.json name, e.g. lr, epochs, "
                        "batch_size, gradient); several comma-separated values make it a grid axis; a "
                        "tuple value (max_missing) joins its numbers with '+'")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: start a local Ray on 127.0.0.1 for this sweep)")
    p.add_argument("--max-attempts", type=int, default=3,
                   help="failures a trial may have (each worker death or failed session resumes it from its "
                        "last checkpoint on another board of its kind) before it is given up")
    p.add_argument("--max-running", type=int, default=None,
                   help="trials running at once (default: one per board)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--crash", action="append", default=None, metavar="TRIAL:STEP", help=_suppress())
    p.set_defaults(func=run)
    return p


def _suppress():
    import argparse

    return argparse.SUPPRESS


def parse_seeds(text: str) -> list[int]:
    from hwloop.pool import SweepError

    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo or hi - lo > 100_000:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise SweepError(f"--seeds: expected integers or ranges A-B, got {part!r}") from None
    if any(s < 0 for s in out) or len(set(out)) != len(out):
        raise SweepError(f"--seeds: seeds must be distinct and >= 0, got {text!r}")
    return out


def parse_settings(items: list[str]) -> tuple[dict, dict]:
    """``KEY=V[,V...]`` -> (single values, grid axes), each value typed like the LoopConfig field."""
    import dataclasses

    from hwloop.pool import SweepError
    from hwloop.session import LoopConfig

    fields = {f.name: f for f in dataclasses.fields(LoopConfig)}
    single, grid = {}, {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in fields:
            raise SweepError(f"--set {item!r}: expected KEY=VALUE with KEY a session setting "
                             f"({', '.join(sorted(fields))})")
        if key in single or key in grid:
            raise SweepError(f"--set {key}: given twice")
        values = [_typed(key, str(fields[key].type), v.strip()) for v in text.split(",")]
        if len(values) == 1:
            single[key] = values[0]
        else:
            grid[key] = values
    return single, grid


def _typed(key: str, annotation: str, text: str):
    from hwloop.pool import SweepError

    try:
        if text.lower() in ("none", "null") and "None" in annotation:
            return None
        if annotation.startswith("tuple"):
            return tuple(float(v) for v in text.split("+"))
        if annotation.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if annotation.startswith("int"):
            return int(text, 0)
        if annotation.startswith("float"):
            return float(text)
        return text
    except ValueError:
        raise SweepError(f"--set {key}: {text!r} is not a {annotation.split(' ')[0]}") from None


def run(args) -> dict:
    import dataclasses
    import sys

    from hwloop.pool import BoardPool, PoolConfig, Sweep, SweepError
    from hwloop.session import LoopConfig

    config = PoolConfig.load(args.pool)
    seeds = parse_seeds(args.seeds)
    single, grid = parse_settings(args.set or [])
    for key in ("target", "seed", "init"):
        if key in single or key in grid:
            raise SweepError(f"--set {key}: given by " + {"target": "the pool (each board's url)",
                                                          "seed": "--seeds", "init": "--init"}[key])
    if args.boards == "all":
        boards = config.names
    elif args.boards == "any":
        boards = None
    else:
        boards = [b.strip() for b in args.boards.split(",") if b.strip()]
        for b in boards:
            config.by_name(b)
    if args.max_attempts < 1:
        raise SweepError("--max-attempts must be >= 1")
    faults = {}
    for item in args.crash or []:  # test hook: the worker of TRIAL's first attempt dies after STEP
        trial, _, step = item.partition(":")
        if not step.isdigit():
            raise SweepError(f"--crash: expected TRIAL:STEP, got {item!r}")
        faults[trial] = int(step)
    base = dataclasses.replace(LoopConfig(init=args.init), **single)
    with BoardPool(config, address=args.address) as pool:
        status = pool.check_all()
        bad = [b for b in status if b["state"] == "evicted"]
        for b in bad:
            print(f"sweep: board {b['name']} ({b['url']}) left out: {b['reason']}", file=sys.stderr)
        sweep = Sweep(pool, base, args.out, seeds, boards=boards, settings=grid, max_attempts=args.max_attempts,
                      progress=not args.quiet, faults=faults, max_running=args.max_running)
        res = sweep.run()
    if not args.json:
        _print_table(res)
    return res


def _print_table(res: dict) -> None:
    def f(v):
        return "-" if v is None else f"{v:.3f}"

    print(f"{'trial':<6} {'seed':>4} {'board':<10} {'chip':>6} {'status':<11} {'test start':>10} {'test after':>10}")
    for r in res["trials"]:
        chip = "-" if r["chip_id"] is None else f"{r['chip_id']:#x}"
        moved = f"  ran on {r['boards_run_on']}" if r["moved"] else ""
        print(f"{r['trial']:<6} {r['seed']:>4} {r['board']:<10} {chip:>6} {r['status']:<11} "
              f"{f(r['test_start_accuracy']):>10} {f(r['test_selected_accuracy']):>10}{moved}")
    for name, g in res["by_board"].items():
        s, a = g.get("test_start_accuracy", {}), g.get("test_selected_accuracy", {})
        if s and a:
            print(f"{name}: deployed as is {s['mean']:.3f} +- {s['std']:.3f}, after {a['mean']:.3f} +- "
                  f"{a['std']:.3f} (n={g['trials']})")
    for b in res["evicted"]:
        print(f"evicted: {b['name']} ({b['url']}): {b['reason']}")
    print(f"{res['done']} done, {res['interrupted']} stopped, {res['failed']} failed; {res['sweep']}/summary.csv")
