"""The board pool on Ray: one actor per board, claimed through custom resources.

Each declared board gets one Ray actor, created with the board's custom
resource (``hwloop-board-<name>``: 1), so it lands on the node that offers
that resource (the node the board hangs on) and no second actor can ever
hold the same board. The actor is the only process that opens the board's
target URL. A trial is leased to a board by calling `BoardWorker.run_trial`
on its actor: the actor health-checks the board first (`health.check_board`),
then runs the trial's session directory with ``target`` = the board's URL
(rebinding a resumed session first, `rebind.rebind_session`), and releases
the board when the session returns or fails. An actor method runs one at a
time, so a lease is exclusive.

A locally started Ray (the default) gets every board's resource on the one
local node; on a cluster (``address``) the nodes must have been started with
them (``ray start --resources='{"hwloop-board-chip3": 1}'``, docs/sweeps.md).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass, field

from .config import Board, PoolConfig, PoolError

#: signal the pool sends a board's actor to stop its session cleanly (the
#: actor hands it to the session's own SIGINT handler: finish the step,
#: checkpoint, return). SIGINT itself stays blocked in Ray's workers, so a
#: Ctrl-C in the terminal reaches the sweep driver only, which forwards it once.
STOP_SIGNAL = signal.SIGUSR1


class BoardWorker:
    """What runs inside a board's actor (a plain class; `BoardPool` wraps it with ``ray.remote``)."""

    def __init__(self, board: dict):
        self.board = Board(**{k: board[k] for k in ("name", "url", "host", "kind", "chip_id")})
        self.stop_requested = False
        # installed for the actor's life: a stop that arrives between sessions (during a health
        # check) must not hit SIGUSR1's default action, which ends the process
        signal.signal(STOP_SIGNAL, self._on_stop)
        self._idle_sigint = signal.getsignal(signal.SIGINT)

    def _on_stop(self, signum, frame):
        self.stop_requested = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not self._idle_sigint:  # a session's own clean stop (runner.py)
            handler(signal.SIGINT, frame)

    def where(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "hostname": socket.gethostname()}

    def health(self, seen_chip_id: int | None = None) -> dict:
        from .health import check_board

        return check_board(self.board.url, self.board.chip_id, seen_chip_id)

    def run_trial(self, spec: dict) -> dict:
        """Lease: health check, then the trial's session on this board; release on return.

        ``spec``: ``dir`` (the session directory), ``config`` (LoopConfig JSON
        without a meaningful target: the board's URL is put in), optional
        ``crash_after_step`` (test hook: the worker process dies there) and
        ``seen_chip_id``. Returns ``status``: ``unhealthy`` (nothing was run),
        ``done``, ``interrupted`` or ``failed`` (a session or target error,
        the session's files intact)."""
        from pathlib import Path

        from hwloop.errors import HwloopError
        from hwloop.session import LoopConfig, run_session

        from .rebind import rebind_session

        t0 = time.perf_counter()
        self.stop_requested = False
        health = self.health(spec.get("seen_chip_id"))
        out = {"board": self.board.name, "url": self.board.url, "chip_id": health.get("chip_id"), "health": health,
               "pid": os.getpid()}
        if not health["healthy"]:
            return {**out, "status": "unhealthy", "error": health["reason"]}
        if self.stop_requested:  # stopped during the check: the trial waits for the next run of the sweep
            return {**out, "status": "interrupted", "result": {"interrupted": True, "not_started": True},
                    "seconds": time.perf_counter() - t0}
        directory = Path(spec["dir"])
        try:
            if (directory / "summary.json").exists():
                from hwloop.session.files import SessionDir

                cfg = SessionDir(directory).load_config()
                res = {"ok": True, "interrupted": False, "session": str(directory), "already_complete": True,
                       **_read_json(directory / "summary.json")}
                out["url"] = cfg.target
            elif (directory / "config.json").exists():
                out["rebound"] = rebind_session(directory, self.board.url, reason=spec.get("reason", ""))
                res = run_session(directory, resume=True, progress=False, crash_after_step=spec.get("crash_after_step"))
            else:
                cfg = LoopConfig.from_json({**spec["config"], "target": self.board.url})
                res = run_session(directory, cfg, progress=False, crash_after_step=spec.get("crash_after_step"))
        except HwloopError as exc:
            return {**out, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                    "seconds": time.perf_counter() - t0}
        status = "interrupted" if res.get("interrupted") else "done"
        return {**out, "status": status, "result": res, "seconds": time.perf_counter() - t0}


def _read_json(path) -> dict:
    import json

    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@dataclass
class BoardState:
    """The pool's view of one board."""
    board: Board
    actor: object = None
    where: dict = field(default_factory=dict)
    state: str = "new"  # new | free | leased | evicted
    chip_id: int | None = None
    fw_version: str | None = None
    reason: str = ""
    checks: int = 0
    trials: int = 0
    worker_deaths: int = 0
    last_check: dict | None = None

    def to_json(self) -> dict:
        return {**self.board.to_json(), "state": self.state, "chip_id_seen": self.chip_id,
                "fw_version": self.fw_version, "reason": self.reason, "checks": self.checks, "trials": self.trials,
                "worker_deaths": self.worker_deaths, "hostname": self.where.get("hostname"),
                "pattern_accuracy": (self.last_check or {}).get("pattern_accuracy")}


#: how often Ray restarts a board's actor after its process died
ACTOR_RESTARTS = 1000
#: seconds a restarting actor may take before its board is evicted
RESTART_TIMEOUT = 300.0


class BoardPool:
    """The boards of a pool file, each owned by one Ray actor.

    ``address``: None starts (or reuses) a local Ray with every board's
    resource on this machine; a cluster address connects to it (its nodes
    offer the resources)."""

    def __init__(self, config: PoolConfig, address: str | None = None):
        self.config = config
        self.address = address
        self.boards = {b.name: BoardState(b) for b in config.boards}
        self.started_ray = False
        self._tag = f"{os.getpid()}-{int(time.time() * 1000) % 10 ** 8}"

    # ---- life cycle
    def start(self) -> "BoardPool":
        ray = _ray()
        if not ray.is_initialized():
            if self.address is None:
                ray.init(address="local", resources=self.config.resources(), include_dashboard=False,
                         log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")
            else:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            self.started_ray = True
        offered = ray.cluster_resources()
        remote = ray.remote(BoardWorker)
        for st in self.boards.values():
            b = st.board
            if offered.get(b.resource, 0) < 1:
                st.state, st.reason = "evicted", (f"no Ray node offers resource {b.resource} (start the node "
                                                  f"on {b.host} with --resources='{{\"{b.resource}\": 1}}')")
                continue
            st.actor = remote.options(resources={b.resource: 1}, num_cpus=0, max_restarts=ACTOR_RESTARTS,
                                      max_task_retries=0, name=f"hwloop-{b.name}-{self._tag}").remote(b.to_json())
        for st in self.boards.values():
            if st.actor is not None:
                st.where = ray.get(st.actor.where.remote())
                st.state = "free"
        return self

    def close(self) -> None:
        ray = _ray()
        for st in self.boards.values():
            if st.actor is not None:
                try:
                    ray.kill(st.actor, no_restart=True)
                except Exception:
                    pass
                st.actor = None
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # ---- state
    def usable(self) -> list[BoardState]:
        return [st for st in self.boards.values() if st.state != "evicted"]

    def evict(self, name: str, reason: str) -> None:
        st = self.boards[name]
        st.state, st.reason = "evicted", reason

    def note_health(self, name: str, rec: dict) -> None:
        st = self.boards[name]
        st.checks += 1
        st.last_check = rec
        if rec.get("healthy"):
            if rec.get("chip_id") is not None:
                st.chip_id = rec["chip_id"]
            st.fw_version = rec.get("fw_version") or st.fw_version
            st.reason = ""
        else:
            self.evict(name, rec.get("reason") or "health check failed")

    def check_all(self) -> list[dict]:
        """Health-check every board that is not leased (in parallel, one per actor); evicts the failing ones."""
        ray = _ray()
        refs = {name: st.actor.health.remote(st.chip_id) for name, st in self.boards.items()
                if st.actor is not None and st.state in ("free", "new")}
        for name, ref in refs.items():
            try:
                rec = ray.get(ref)
            except ray.exceptions.RayError as exc:
                rec = {"healthy": False, "reason": f"the board's worker died during the check ({type(exc).__name__})"}
            self.note_health(name, rec)
        return self.status()

    def status(self) -> list[dict]:
        return [st.to_json() for st in self.boards.values()]

    def stop_trial(self, name: str) -> None:
        """Ask the session running on board ``name`` to checkpoint and stop."""
        st = self.boards[name]
        pid, node = st.where.get("pid"), st.where.get("node_id")
        if pid is None:
            return
        ray = _ray()
        if node == ray.get_runtime_context().get_node_id():
            try:
                os.kill(pid, STOP_SIGNAL)
            except ProcessLookupError:
                pass
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        _signal_task().options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                               ).remote(pid, int(STOP_SIGNAL))

    def refresh_where(self, name: str, timeout: float = RESTART_TIMEOUT) -> None:
        """After a worker death Ray restarts the actor in a new process: wait for it, learn its pid."""
        ray = _ray()
        st = self.boards[name]
        deadline = time.monotonic() + timeout
        while True:
            try:
                st.where = ray.get(st.actor.where.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except ray.exceptions.ActorUnavailableError:  # still restarting
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            except Exception as exc:  # dead for good (restarts used up, node gone)
                self.evict(name, f"the board's worker cannot be restarted ({type(exc).__name__})")
                return
        self.evict(name, f"the board's worker did not restart within {timeout:g} s")


def show_pool(path, address: str | None = None, quiet: bool = False) -> dict:
    """`hwloop devices --pool`: every board health-checked by its actor, as a table and JSON."""
    config = PoolConfig.load(path)
    with BoardPool(config, address=address) as pool:
        rows = pool.check_all()
    if not quiet:
        w = max(len(r["name"]) for r in rows)
        for r in rows:
            chip = "-" if r["chip_id_seen"] is None else f"{r['chip_id_seen']:#x}"
            acc = "" if r["pattern_accuracy"] is None else f"  pattern {r['pattern_accuracy']:.2f}"
            print(f"{r['name']:<{w}}  {r['state']:<8}  {r['kind']:<10}  chip {chip:<6}  {r['host']:<10}  "
                  f"{r['url']}{acc}{'  ' + r['reason'] if r['reason'] else ''}")
    return {"ok": all(r["state"] != "evicted" for r in rows), "pool": rows}


def _ray():
    try:
        import ray
    except ModuleNotFoundError:
        raise PoolError("the board pool needs Ray (pip install 'ray==2.40.0'; `make venv` installs it)") from None
    return ray


_SIGNAL_TASK = None


def _signal_task():
    global _SIGNAL_TASK
    if _SIGNAL_TASK is None:
        def send(pid: int, signum: int) -> None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        _SIGNAL_TASK = _ray().remote(send)
    return _SIGNAL_TASK
