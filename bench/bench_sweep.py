"""Sweep throughput on a Ray board pool, and what Ray adds per trial.

    python bench/bench_sweep.py [--trials 8] [--boards 1 2 4]      # throughput
    python bench/bench_sweep.py study [--out runs/sweep-chips]     # the 8 chips x 3 seeds study (docs/sweeps.md)

**throughput**: the same ``--trials`` short sessions (Yin-Yang on ``qif-emu``,
``--boards any``: each trial takes the next free board) run

* directly, one after another, by `run_session` in this process (no Ray);
* on pools of 1, 2 and 4 emulated boards (chip ids 1-4), one local Ray for
  all of them, started once (its start-up is printed, not counted).

It prints trials per hour for each, next to ideal linear scaling (the
1-board rate times the boards), and the per-trial overhead of the pool
(1-board pool vs direct, per trial), with the share of it that is the
health check before every lease. Every figure comes from one run, side by
side, so machine load hits all of them alike.

**study**: in-the-loop recovery across 8 chip ids x 3 seeds on ``qif-emu``
(default mismatch and noise), one board per chip (``--parallel`` 4 running at once): the test
accuracy deployed as is and after the session, per chip (mean and spread
over seeds). Writes the sweep directory (summary.csv/json/png) and prints
the per-chip table. The session is a shortened version of the recommended
one of docs/results-inloop.md (see ``STUDY``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwloop.pretrained import path as pretrained  # noqa: E402
from hwloop.session import LoopConfig, run_session  # noqa: E402

#: the throughput trial: 4 training steps of 50 samples, 3 evaluations of 200 (start, epoch end, test x2)
BENCH_TRIAL = dict(dataset="yinyang", epochs=1, batch_size=50, train_limit=200, eval_limit=200, lr=0.002)
#: the study session: the recipe of docs/results-inloop.md (lr 0.002, batch 50, EMA, decay per epoch),
#: shortened to fit a 2-core machine: 2 epochs on 2000 training samples (80 steps), validation and
#: test on 500 samples each (the recommended session runs 20 epochs on all 5000, 1000 / 1000)
STUDY = dict(dataset="yinyang", epochs=2, batch_size=50, train_limit=2000, eval_limit=500, lr=0.002,
             lr_gamma=0.75, ema=0.95)


def chip_boards(n: int, own_kind: bool = False) -> list[dict]:
    """qif-emu chips 1..n; ``own_kind``: each chip its own kind, so a trial never moves to another chip."""
    return [{"name": f"chip{c}", "url": f"qif-emu?chip_id={c}", **({"kind": f"chip{c}"} if own_kind else {})}
            for c in range(1, n + 1)]


def start_ray(names: list[str]) -> float:
    import ray

    from hwloop.pool.config import RESOURCE_PREFIX

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1", resources={RESOURCE_PREFIX + n: 1 for n in names})
    return time.perf_counter() - t0


def throughput(args) -> int:
    import ray

    from hwloop.pool import BoardPool, PoolConfig, Sweep

    init = str(pretrained("yinyang-qif.hwnet"))
    base = LoopConfig(init=init, **BENCH_TRIAL)
    seeds = list(range(args.trials))
    work = Path(tempfile.mkdtemp(prefix="hwloop-bench-sweep-"))
    try:
        t0 = time.perf_counter()
        for s in seeds:
            run_session(work / "direct" / str(s), LoopConfig(**{**base.__dict__, "seed": s,
                                                                 "target": "qif-emu?chip_id=1"}), progress=False)
        direct = time.perf_counter() - t0
        ray_start = start_ray([b["name"] for b in chip_boards(max(args.boards))])
        rows = []
        for n in args.boards:
            config = PoolConfig.from_boards(chip_boards(n))
            t0 = time.perf_counter()
            with BoardPool(config) as pool:
                pool_start = time.perf_counter() - t0
                t1 = time.perf_counter()
                res = Sweep(pool, base, work / f"pool{n}", seeds=seeds, boards=None, progress=False).run()
                wall = time.perf_counter() - t1
            if not res["ok"]:
                print(f"pool of {n}: {res['failed']} trials failed: {[t['error'] for t in res['trials']]}")
                return 1
            health = [e["health_seconds"] for e in res["events"] if e.get("health_seconds") is not None]
            rows.append({"boards": n, "wall_s": wall, "pool_start_s": pool_start,
                         "health_s_per_trial": sum(health) / len(health)})
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_h = lambda wall: 3600.0 * args.trials / wall  # noqa: E731
    one = next((r for r in rows if r["boards"] == 1), None)
    print(f"{args.trials} trials (qif-emu, {BENCH_TRIAL['train_limit'] // BENCH_TRIAL['batch_size']} steps of "
          f"{BENCH_TRIAL['batch_size']}, evaluations on {BENCH_TRIAL['eval_limit']} samples)")
    print(f"Ray start {ray_start:.1f} s (once, not counted)")
    print(f"{'run':<16} {'wall s':>8} {'trials/h':>9} {'ideal':>9} {'of ideal':>9}")
    print(f"{'direct (no Ray)':<16} {direct:>8.1f} {per_h(direct):>9.0f} {'':>9} {'':>9}")
    for r in rows:
        ideal = per_h(one["wall_s"]) * r["boards"] if one else float("nan")
        print(f"{'pool of ' + str(r['boards']):<16} {r['wall_s']:>8.1f} {per_h(r['wall_s']):>9.0f} {ideal:>9.0f} "
              f"{per_h(r['wall_s']) / ideal:>9.0%}   (pool start {r['pool_start_s']:.1f} s, health check "
              f"{r['health_s_per_trial']:.2f} s/trial)")
    if one:
        over = (one["wall_s"] - direct) / args.trials
        print(f"per-trial overhead of the pool (1 board vs direct): {over:+.2f} s, of which the health check "
              f"{one['health_s_per_trial']:.2f} s; direct {direct / args.trials:.2f} s per trial")
    print(f"load average (1, 5, 15 min) at the end: {tuple(round(v, 1) for v in os.getloadavg())} on "
          f"{os.cpu_count()} cores")
    print(json.dumps({"trials": args.trials, "direct_s": direct, "ray_start_s": ray_start, "pools": rows}))
    return 0


def study(args) -> int:
    from hwloop.pool import BoardPool, PoolConfig, Sweep

    boards = chip_boards(args.chips, own_kind=True)
    config = PoolConfig.from_boards(boards)
    start_ray(config.names)
    base = LoopConfig(init=str(pretrained("yinyang-qif.hwnet")), **STUDY)
    print(f"study: {args.chips} chips x {args.seeds} seeds, session {STUDY}, load average {os.getloadavg()}",
          flush=True)
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    with BoardPool(config) as pool:
        pool.check_all()
        res = Sweep(pool, base, args.out, seeds=seeds, boards=config.names, progress=True,
                    max_running=args.parallel).run()
    _table(res)
    print(f"study: {time.perf_counter() - t0:.0f} s wall")
    return 0 if res and res["ok"] else 1


def _table(res: dict) -> None:
    for name, g in res["by_board"].items():
        s, a = g["test_start_accuracy"], g["test_selected_accuracy"]
        print(f"{name}: chip {g['chip_ids']} deployed as is {100 * s['mean']:.1f} +- {100 * s['std']:.1f} %, "
              f"after {100 * a['mean']:.1f} +- {100 * a['std']:.1f} % (min {100 * a['min']:.1f}, max "
              f"{100 * a['max']:.1f}, n={a['n']})", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", default="throughput", choices=["throughput", "study"])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--boards", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--chips", type=int, default=8)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--parallel", type=int, default=4, help="study: boards (chips) in use at once")
    p.add_argument("--out", default="runs/sweep-chips")
    args = p.parse_args()
    return throughput(args) if args.mode == "throughput" else study(args)


if __name__ == "__main__":
    sys.exit(main())
