"""Sweep throughput on a Ray board pool, and what Ray adds per trial.

    python bench/bench_sweep.py [--trials 8] [--boards 1 2 4]      # throughput
    python bench/bench_sweep.py study [--out runs/sweep-chips]     # the 8 chips x 3 seeds study (docs/sweeps.md)

**throughput**: ``--trials`` short sessions (Yin-Yang on ``qif-emu``) on one
local Ray, started once (its start-up is printed, not counted):

* the per-trial overhead: each trial run directly by `run_session` in this
  process and as one lease on a 1-board pool's actor, interleaved, medians;
  the health check's share printed apart;
* sweeps of all trials (``--boards any``: each takes the next free board)
  on pools of 1, 2 and 4 emulated boards (chip ids 1-4), each size twice in
  mirrored order (1, 2, 4, 4, 2, 1) against load drift: trials per hour
  next to ideal linear scaling (the 1-board rate times the boards).

Every figure comes from one run, side by side; the load average is printed
(the machine is shared).

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


def overhead(base: LoopConfig, seeds: list[int], work: Path) -> dict:
    """Per trial, interleaved (direct, pool, direct, pool, ...) so that load drifts hit both alike:
    `run_session` in this process vs one lease on a 1-board pool's actor (`run_trial`: health check,
    session, result back), each on a fresh session directory."""
    import ray

    from hwloop.pool import BoardPool, PoolConfig

    url = "qif-emu?chip_id=1"
    direct, leased, health = [], [], []
    with BoardPool(PoolConfig.from_boards(chip_boards(1))) as pool:
        actor = pool.boards["chip1"].actor
        ray.get(actor.run_trial.remote({"dir": str(work / "warm"), "config": {**base.to_json(), "seed": 99}}))
        for s in seeds:
            t0 = time.perf_counter()
            run_session(work / "od" / str(s), LoopConfig(**{**base.__dict__, "seed": s, "target": url}),
                        progress=False)
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            rec = ray.get(actor.run_trial.remote({"dir": str(work / "op" / str(s)),
                                                  "config": {**base.to_json(), "seed": s}}))
            leased.append(time.perf_counter() - t0)
            assert rec["status"] == "done", rec
            health.append(rec["health"]["seconds"])
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return {"direct_median_s": med(direct), "pool_median_s": med(leased), "health_median_s": med(health),
            "direct_s": direct, "pool_s": leased}


def throughput(args) -> int:
    import ray

    from hwloop.pool import BoardPool, PoolConfig, Sweep

    init = str(pretrained("yinyang-qif.hwnet"))
    base = LoopConfig(init=init, **BENCH_TRIAL)
    seeds = list(range(args.trials))
    work = Path(tempfile.mkdtemp(prefix="hwloop-bench-sweep-"))
    load0 = os.getloadavg()
    try:
        ray_start = start_ray([b["name"] for b in chip_boards(max(args.boards))])
        over = overhead(base, seeds, work)
        rows = []
        order = list(args.boards) + list(reversed(args.boards))  # each size twice, mirrored against drift
        for k, n in enumerate(order):
            config = PoolConfig.from_boards(chip_boards(n))
            t0 = time.perf_counter()
            with BoardPool(config) as pool:
                pool_start = time.perf_counter() - t0
                t1 = time.perf_counter()
                res = Sweep(pool, base, work / f"pool{n}-{k}", seeds=seeds, boards=None, progress=False).run()
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
    mean_wall = {n: sum(r["wall_s"] for r in rows if r["boards"] == n) / 2 for n in args.boards}
    one = mean_wall.get(1)
    print(f"{args.trials} trials per pool run (qif-emu, {BENCH_TRIAL['train_limit'] // BENCH_TRIAL['batch_size']} "
          f"steps of {BENCH_TRIAL['batch_size']}, evaluations on {BENCH_TRIAL['eval_limit']} samples); each pool size "
          f"run twice in the order {order}")
    print(f"Ray start {ray_start:.1f} s (once, not counted)")
    print(f"{'run':<12} {'wall s (both runs)':>19} {'trials/h':>9} {'ideal':>9} {'of ideal':>9}  health check s/trial")
    for n in args.boards:
        walls = [r["wall_s"] for r in rows if r["boards"] == n]
        hs = [r["health_s_per_trial"] for r in rows if r["boards"] == n]
        ideal = per_h(one) * n if one else float("nan")
        print(f"{'pool of ' + str(n):<12} {walls[0]:>9.1f} {walls[1]:>9.1f} {per_h(mean_wall[n]):>9.0f} "
              f"{ideal:>9.0f} {per_h(mean_wall[n]) / ideal:>9.0%}  {hs[0]:.2f} {hs[1]:.2f}")
    d, p_ = over["direct_median_s"], over["pool_median_s"]
    print(f"per trial, interleaved, medians of {args.trials}: direct {d:.2f} s, through a 1-board pool {p_:.2f} s: "
          f"overhead {p_ - d:+.2f} s ({(p_ - d) / d:+.0%}), of which the health check {over['health_median_s']:.2f} s")
    print(f"load average (1, 5, 15 min): {tuple(round(v, 1) for v in load0)} at the start, "
          f"{tuple(round(v, 1) for v in os.getloadavg())} at the end, on {os.cpu_count()} cores")
    print(json.dumps({"trials": args.trials, "ray_start_s": ray_start, "overhead": over, "pools": rows}))
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
