"""A sweep: a grid of in-the-loop sessions over seeds, boards and settings, run on a `BoardPool`.

Every trial is an ordinary session directory (``<sweep>/trials/<id>/``), so
``hwloop report`` and ``hwloop loop --resume`` work on it. The sweep
directory holds ``sweep.json`` (the grid and the pool file: what re-running
the same sweep command checks it against), ``trials.jsonl`` (one line per
attempt: board, chip id, outcome) and, at the end, ``summary.csv``,
``summary.json`` and ``summary.png``.

Scheduling: a trial with a home board (the grid's ``board`` axis) waits for
that board; a trial without one takes any free board. A trial whose worker
died or whose session failed is resumed from its last checkpoint on a
healthy board of the same kind (another one when there is one), rebinding
the session to it (`rebind.rebind_session`), until it has failed
``max_attempts`` times. A board that fails its health check is evicted and reported; its
trials move to the other boards of its kind. Ctrl-C stops every running
session after its step in flight, checkpointed; running the same command
again continues the sweep (finished trials are kept, stopped ones resumed).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .boards import BoardPool
from .config import PoolError

#: LoopConfig fields a grid may not vary (the pool sets the target; the rest name files)
NOT_SWEEPABLE = ("target", "init", "data_root")
SWEEP_FORMAT = "hwloop-sweep-1"


class SweepError(PoolError):
    """A sweep that cannot start or continue (bad grid, a sweep directory of another grid)."""


@dataclass
class Trial:
    id: str
    seed: int
    board: str | None  # home board, None: any board
    settings: dict  # the grid's other axes
    dir: Path
    status: str = "pending"  # pending | running | done | interrupted | failed
    attempts: int = 0
    failures: int = 0  # attempts whose worker died or whose session failed
    boards: list = field(default_factory=list)  # boards it ran on, in order
    chip_ids: list = field(default_factory=list)
    avoid: set = field(default_factory=set)  # boards that failed it
    displaced: bool = False  # its home board is gone: any board of the kind will do
    result: dict | None = None
    error: str = ""
    crash_after_step: int | None = None  # test hook, first attempt only

    @property
    def label(self) -> str:
        parts = [f"seed={self.seed}"] + ([f"board={self.board}"] if self.board else [])
        parts += [f"{k}={v}" for k, v in sorted(self.settings.items())]
        return " ".join(parts)


def expand_grid(seeds: list[int], boards: list[str] | None, settings: dict[str, list]) -> list[dict]:
    """Every combination, in a fixed order: settings, then boards, then seeds (seed fastest)."""
    from hwloop.session import LoopConfig

    known = {f.name for f in dataclasses.fields(LoopConfig)}
    for key, values in settings.items():
        if key not in known or key in NOT_SWEEPABLE or key == "seed":
            why = "set by the pool / names a file" if key in NOT_SWEEPABLE else "not a session setting"
            raise SweepError(f"--set {key}: {why} (sweepable: "
                             f"{', '.join(sorted(known - set(NOT_SWEEPABLE) - {'seed'}))})")
        if not isinstance(values, list) or not values:
            raise SweepError(f"--set {key}: needs at least one value")
    if not seeds:
        raise SweepError("a sweep needs at least one seed")
    keys = sorted(settings)
    out = []
    for combo in itertools.product(*(settings[k] for k in keys)):
        for board in boards or [None]:
            for seed in seeds:
                out.append({"seed": seed, "board": board, "settings": dict(zip(keys, combo))})
    return out


class Sweep:
    """Runs a grid of trials on a started `BoardPool`."""

    def __init__(self, pool: BoardPool, base: "LoopConfig", directory, seeds: list[int],
                 boards: list[str] | None = None, settings: dict | None = None, max_attempts: int = 3,
                 progress: bool = True, faults: dict | None = None, log=None, max_running: int | None = None):
        from hwloop.session.runner import checked_config

        # absolute paths: the trials run in the actors' processes, whose working directory is not ours
        self.pool, self.dir = pool, Path(directory).resolve()
        for key in ("init", "data_root"):
            if isinstance(getattr(base, key), str):
                base = dataclasses.replace(base, **{key: str(Path(getattr(base, key)).resolve())})
        self.progress, self.max_attempts = progress, max_attempts
        if max_running is not None and (not isinstance(max_running, int) or max_running < 1):
            raise SweepError(f"max_running must be an integer >= 1, got {max_running!r}")
        self.max_running = max_running
        self.log = log or (lambda text: print(text, file=sys.stderr))
        settings = dict(settings or {})
        if boards is not None:
            for name in boards:
                pool.config.by_name(name)  # a board the pool file does not declare: PoolConfigError
        grid = expand_grid(list(seeds), boards, settings)
        kinds = sorted({b.kind for b in pool.config.boards})
        if boards is None and len(kinds) > 1:
            raise SweepError(f"the pool holds boards of several kinds ({', '.join(kinds)}); a trial without a "
                             "board could land on any of them: name the boards with --boards")
        self.base = base
        self.configs = []
        first = pool.config.boards[0].url if boards is None else pool.config.by_name(boards[0]).url
        for g in grid:  # every trial's configuration checked before anything runs
            cfg = dataclasses.replace(base, seed=g["seed"], target=pool.config.by_name(g["board"]).url
                                      if g["board"] else first, **g["settings"])
            try:
                self.configs.append(checked_config(cfg))
            except Exception as exc:
                raise SweepError(f"trial {g}: {exc}") from None
        self.trials = [Trial(id=f"t{i:03d}", seed=g["seed"], board=g["board"], settings=g["settings"],
                             dir=self.dir / "trials" / f"t{i:03d}") for i, g in enumerate(grid)]
        for t in self.trials:
            if faults and t.id in faults:
                t.crash_after_step = faults[t.id]
        self.grid_record = {"format": SWEEP_FORMAT, "seeds": list(seeds), "boards": boards, "settings": settings,
                            "base": base.to_json(), "pool": [b.to_json() for b in pool.config.boards]}
        self.stop_requests = 0
        self.events: list[dict] = []

    # ---- files
    def _prepare_dir(self) -> None:
        path = self.dir / "sweep.json"
        self.dir.mkdir(parents=True, exist_ok=True)
        mine = {k: v for k, v in self.grid_record.items() if k != "pool"}
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                raise SweepError(f"{path}: unreadable; not a sweep directory of this hwloop") from None
            theirs = {k: v for k, v in old.items() if k != "pool"}
            if theirs != mine:
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                raise SweepError(f"{self.dir}: holds a sweep of another grid (differs in {', '.join(diff)}); "
                                 "use a new --out directory")
        path.write_text(json.dumps(self.grid_record, indent=2))
        for t in self.trials:  # a re-run continues: what ran before is the trial's history
            ran = [a for a in self._attempt_lines(t) if a.get("status") != "unhealthy"]
            t.attempts = len(ran)
            t.failures = sum(a.get("status") in ("failed", "worker died") for a in ran)
            t.boards = [a["board"] for a in ran]
            t.chip_ids = [a["chip_id"] for a in ran if a.get("chip_id") is not None]
            if (t.dir / "summary.json").exists():
                t.status = "done"
                t.result = _read_json(t.dir / "summary.json")

    def _attempt_lines(self, t: Trial) -> list[dict]:
        path = self.dir / "trials.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("trial") == t.id:
                out.append(row)
        return out

    def _record_attempt(self, t: Trial, rec: dict) -> None:
        row = {"trial": t.id, "attempt": t.attempts, "board": rec.get("board"), "chip_id": rec.get("chip_id"),
               "status": rec.get("status"), "error": rec.get("error", ""), "seconds": rec.get("seconds"),
               "health_seconds": (rec.get("health") or {}).get("seconds"),
               "rebound": rec.get("rebound"), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.events.append(row)
        with open(self.dir / "trials.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    # ---- scheduling
    def _wants(self, t: Trial, name: str) -> bool:
        st = self.pool.boards[name]
        if t.status != "pending" or name in t.avoid and self._others_exist(t, st):
            return False
        if t.board is None or (t.displaced and st.board.kind == self.pool.config.by_name(t.board).kind):
            return True
        return t.board == name

    def _others_exist(self, t: Trial, st) -> bool:
        """Another usable board of the kind that the trial has not failed on."""
        return any(o.board.kind == st.board.kind and o.board.name not in t.avoid for o in self.pool.usable())

    def _orphan_check(self) -> None:
        """Trials whose home board is evicted are displaced; trials with no usable board left fail."""
        usable = {st.board.name for st in self.pool.usable()}
        for t in self.trials:
            if t.status != "pending":
                continue
            if t.board is not None and t.board not in usable:
                t.displaced = True
            kind = self.pool.config.by_name(t.board).kind if t.board else None
            if not any(kind is None or self.pool.boards[n].board.kind == kind for n in usable):
                t.status = "failed"
                t.error = t.error or f"no usable board{'' if kind is None else ' of kind ' + kind} left"

    def run(self) -> dict:
        ray = self._ray = __import__("ray")
        self._prepare_dir()
        running: dict = {}  # ObjectRef -> (trial, board name)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(self.trials), initial=sum(t.status == "done" for t in self.trials),
                       desc="sweep", unit="trial", file=sys.stderr, dynamic_ncols=True)
        in_main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, self._on_sigint) if in_main else None
        t0 = time.perf_counter()
        try:
            while True:
                self._orphan_check()
                if not self.stop_requests:
                    self._dispatch(running)
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                if self.stop_requests and not getattr(self, "_stop_sent", 0) >= self.stop_requests:
                    self._stop_sent = self.stop_requests
                    for _, name in running.values():
                        self.pool.stop_trial(name)
                for ref in ready:
                    t, name = running.pop(ref)
                    self._finish(t, name, ref)
                    if bar is not None:
                        bar.n = sum(x.status in ("done", "failed") for x in self.trials)
                        bar.refresh()
                if bar is not None:
                    healthy = sum(st.state != "evicted" for st in self.pool.boards.values())
                    bar.set_postfix(running=len(running), boards=healthy,
                                    evicted=len(self.pool.boards) - healthy, refresh=False)
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
            if bar is not None:
                bar.close()
        return self.summarise(time.perf_counter() - t0)

    def _on_sigint(self, signum, frame):
        self.stop_requests += 1
        if self.stop_requests == 1:
            print("\nsweep: stopping every running trial after its step in flight (checkpointed); Ctrl-C again "
                  "to abort them", file=sys.stderr)
        elif self.stop_requests >= 3:  # the driver itself gives up waiting (the pool's actors are killed)
            raise KeyboardInterrupt

    def _dispatch(self, running: dict) -> None:
        busy = {name for _, name in running.values()}
        for st in self.pool.usable():
            name = st.board.name
            if self.max_running is not None and len(running) >= self.max_running:
                return
            if name in busy or st.actor is None:
                continue
            t = next((t for t in self.trials if self._wants(t, name)), None)
            if t is None:
                continue
            t.status = "running"
            t.attempts += 1
            cfg = self.configs[self.trials.index(t)]
            spec = {"dir": str(t.dir), "config": cfg.to_json(), "seen_chip_id": st.chip_id,
                    "reason": f"attempt {t.attempts} of trial {t.id}"}
            if t.attempts == 1 and t.crash_after_step is not None:
                spec["crash_after_step"] = t.crash_after_step
            st.state = "leased"
            running[st.actor.run_trial.remote(spec)] = (t, name)
            busy.add(name)

    def _finish(self, t: Trial, name: str, ref) -> None:
        ray = self._ray
        st = self.pool.boards[name]
        try:
            rec = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # a bug inside the worker: kept as the trial's error
            rec = {"board": name, "status": "failed", "error": str(exc).strip().splitlines()[-1][:500]}
        except ray.exceptions.RayError as exc:  # the worker process died (killed, crashed, node lost)
            st.worker_deaths += 1
            rec = {"board": name, "status": "worker died", "error": f"{type(exc).__name__}: the board's worker died"}
            self.pool.refresh_where(name)
        if st.state == "leased":
            st.state = "free"
        if rec.get("health") is not None:
            self.pool.note_health(name, rec["health"])
        status = rec["status"]
        self._record_attempt(t, rec)
        if status == "unhealthy":
            t.attempts -= 1  # nothing ran
            t.status = "pending"
            self.log(f"sweep: board {name} failed its health check and is evicted: {rec.get('error')}")
            return
        t.boards.append(name)
        if rec.get("chip_id") is not None:
            t.chip_ids.append(rec["chip_id"])
        st.trials += 1
        if status == "done":
            t.status, t.result = "done", rec["result"]
            return
        if status == "interrupted":
            t.status = "interrupted"
            return
        t.error = rec.get("error", "")
        if self.stop_requests:  # a trial that a second Ctrl-C aborted keeps its last checkpoint
            t.status = "interrupted"
            return
        t.failures += 1
        if t.failures >= self.max_attempts:
            t.status = "failed"
            self.log(f"sweep: trial {t.id} failed {t.failures} times, last on {name}: {t.error}")
            return
        t.status, t.displaced = "pending", True
        t.avoid.add(name)
        self.log(f"sweep: trial {t.id} on {name}: {status} ({t.error}); resuming it from its last checkpoint "
                 "on another board of its kind")

    # ---- results
    def summarise(self, seconds: float) -> dict:
        rows = [self._row(t) for t in self.trials]
        self._write_csv(rows)
        by_board = _aggregate(rows, "board")
        summary = {"ok": all(t.status == "done" for t in self.trials), "sweep": str(self.dir),
                   "trials": rows, "by_board": by_board, "overall": _aggregate(rows, None).get("all", {}),
                   "done": sum(t.status == "done" for t in self.trials),
                   "interrupted": sum(t.status in ("interrupted", "running", "pending") for t in self.trials),
                   "failed": sum(t.status == "failed" for t in self.trials),
                   "pool": self.pool.status(), "events": self.events, "seconds": seconds,
                   "evicted": [b for b in self.pool.status() if b["state"] == "evicted"]}
        (self.dir / "summary.json").write_text(json.dumps(_finite(summary), indent=2))
        try:
            plot_summary(rows, self.dir / "summary.png")
            summary["plot"] = str(self.dir / "summary.png")
        except Exception as exc:  # a plot is a nicety; the table is the result
            summary["plot_error"] = f"{type(exc).__name__}: {exc}"
        return summary

    def _row(self, t: Trial) -> dict:
        r = t.result or {}
        row = {"trial": t.id, "seed": t.seed, "board": t.board or (t.boards[-1] if t.boards else ""),
               "chip_id": t.chip_ids[-1] if t.chip_ids else None, "boards_run_on": "+".join(t.boards),
               # ran (partly) on another board than its own: its figures are not its home board's alone
               "moved": bool(t.board) and any(b != t.board for b in t.boards),
               **{k: v for k, v in sorted(t.settings.items())}, "status": t.status, "attempts": t.attempts,
               "start_val_accuracy": r.get("start_val_accuracy"), "best_val_accuracy": r.get("best_val_accuracy"),
               "test_start_accuracy": (r.get("test_start") or {}).get("accuracy"),
               "test_selected_accuracy": (r.get("test_selected") or {}).get("accuracy"),
               "test_n": (r.get("test_selected") or {}).get("n"),
               "selected": r.get("selected"), "steps": r.get("steps"), "seconds": r.get("seconds"),
               "error": t.error if t.status != "done" else "", "session": str(t.dir)}
        return row

    def _write_csv(self, rows: list[dict]) -> None:
        keys = list(rows[0]) if rows else ["trial"]
        with open(self.dir / "summary.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def _aggregate(rows: list[dict], key: str | None) -> dict:
    groups: dict = {}
    for r in rows:
        if r["status"] != "done":
            continue
        groups.setdefault("all" if key is None else r[key], []).append(r)
    out = {}
    for g, rs in groups.items():
        entry = {"trials": len(rs), "chip_ids": sorted({r["chip_id"] for r in rs if r["chip_id"] is not None})}
        for col in ("test_start_accuracy", "test_selected_accuracy", "best_val_accuracy"):
            vals = [r[col] for r in rs if isinstance(r[col], (int, float))]
            if vals:
                mean = sum(vals) / len(vals)
                sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
                entry[col] = {"mean": mean, "std": sd, "min": min(vals), "max": max(vals), "n": len(vals)}
        out[str(g)] = entry
    return out


def plot_summary(rows: list[dict], path: Path) -> None:
    """Test accuracy deployed as is (start) and after in-the-loop training, per board, one dot per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "done" and r["test_selected_accuracy"] is not None]
    boards = sorted({r["board"] for r in done}, key=lambda b: (len(b), b))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(boards) + 2), 3.6))
    for i, b in enumerate(boards):
        rs = [r for r in done if r["board"] == b]
        for j, (col, colour, label) in enumerate((("test_start_accuracy", "tab:grey", "deployed as is"),
                                                  ("test_selected_accuracy", "tab:blue", "after in the loop"))):
            vals = [r[col] for r in rs if r[col] is not None]
            x = [i + (j - 0.5) * 0.3] * len(vals)
            ax.plot(x, vals, "o", color=colour, alpha=0.6, label=label if i == 0 else None)
            if vals:
                ax.hlines(sum(vals) / len(vals), x[0] - 0.12, x[0] + 0.12, color=colour)
    chips = {r["board"]: r["chip_id"] for r in done}
    ax.set_xticks(range(len(boards)),
                  [f"{b}\n{chips[b]:#x}" if chips.get(b) is not None else b for b in boards], fontsize=8)
    ax.set_ylabel("test accuracy on the board")
    ax.set_title(f"{len(done)} trials: one dot per seed, bar = mean")
    if done:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, set):
        return sorted(obj)
    return obj


def _read_json(path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
