"""Run a compiled first-spike-time network on Lava, fed the fast way, inside
a worker process that can be killed.

The fast way (measured in lava-nc 0.10.0; see docs/loihi.md): one Lava run
for the whole batch. The S samples of a batch become S parallel copies of the
network: each layer is one ``TTFSLif`` population of S*n neurons, fed by a
block-diagonal ``Sparse`` connection (kron(I_S, W^T)); each layer's bias
sources are one shared ``SpikeTimeSource`` with the bias weights tiled over
the copies. Every neuron records its own first spike step, read once after
the run, so no raster is shipped per step.

Why a worker process: Lava runs each process model in a forked OS process; an
exception inside one surfaces as a bare ``RuntimeError`` after which
``stop()`` can hang, and ``run()`` after ``stop()`` crashes the interpreter.
So every batch builds fresh processes, and all of it happens in a separate
Python process (its own process group) that the host kills when it overruns
its time limit or dies, then restarts on the next call.

Lava time: steps start at 1. Input sources fire at Lava step k+1 for local
step k; each connection delivers one step late, so layer l sees local step k
at Lava step k + l + 2 and its bias sources fire at k + l + 1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np


@dataclass
class LavaLayer:
    """What one layer needs on Lava, fixed or float (plain, picklable)."""

    weight: np.ndarray  # (n_src, n_out), int (stored weights) or float
    bias_weight: np.ndarray  # (n_bias, n_out)
    bias_steps: np.ndarray  # (n_bias,) local steps; outside 0..steps-1: never
    weight_exp: int
    du: float
    dv: float
    vth: float
    bias_mant: np.ndarray
    bias_exp: np.ndarray


def lava_offset(layer_index: int) -> int:
    """Lava time step of local step 0 of layer ``layer_index``."""
    return layer_index + 2


def run_in_process(layers: list[LavaLayer], steps: int, in_steps: np.ndarray, precision: str) -> dict:
    """Build, run and tear down one batch on Lava (call in the worker).

    Returns {"steps": [per-layer (S, n) local spike steps, -1 silent],
    "lava_s": seconds inside run(), "build_s": seconds building}."""
    from hwloop.backends.loihi.lava_compat import import_lava

    import_lava()
    from scipy.sparse import csr_matrix, identity, kron

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.sparse.process import Sparse
    from lava.utils.weightutils import SignMode

    from hwloop.backends.loihi.lava_procs.ttfs.ttfs import SpikeTimeSource, TTFSLif

    t0 = time.perf_counter()
    fixed = precision in ("fixed", "hw")
    S = in_steps.shape[0]
    dtype = np.int32 if fixed else np.float64
    conn_kw = dict(weight_exp=0, num_weight_bits=8, sign_mode=SignMode.MIXED) if fixed else {}

    def lava_steps(local, offset):
        local = np.asarray(local, dtype=np.int64)
        return np.where((local >= 0) & (local < steps), local + offset, -1)

    src = SpikeTimeSource(spike_step=lava_steps(in_steps.reshape(-1), 1))
    prev_out = src.s_out
    lifs = []
    keep = [src]  # processes must stay referenced until the run ends
    eye = identity(S, dtype=dtype, format="csr")
    for li, layer in enumerate(layers):
        n = layer.weight.shape[1]
        kw = dict(conn_kw, weight_exp=int(layer.weight_exp)) if fixed else {}
        lif = TTFSLif(
            shape=(S * n,),
            du=int(layer.du) if fixed else float(layer.du),
            dv=int(layer.dv) if fixed else float(layer.dv),
            vth=int(layer.vth) if fixed else float(layer.vth),
            bias_mant=np.tile(np.asarray(layer.bias_mant, dtype=dtype), S),
            bias_exp=np.tile(np.asarray(layer.bias_exp, dtype=dtype), S),
            t_start=lava_offset(li),
        )
        main = Sparse(weights=csr_matrix(kron(eye, csr_matrix(np.asarray(layer.weight, dtype=dtype).T))), **kw)
        prev_out.connect(main.s_in)
        main.a_out.connect(lif.a_in)
        keep += [lif, main]
        if len(layer.bias_steps):
            bsrc = SpikeTimeSource(spike_step=lava_steps(layer.bias_steps, lava_offset(li) - 1))
            bconn = Sparse(weights=csr_matrix(np.tile(np.asarray(layer.bias_weight, dtype=dtype).T, (S, 1))), **kw)
            bsrc.s_out.connect(bconn.s_in)
            bconn.a_out.connect(lif.a_in)
            keep += [bsrc, bconn]
        lifs.append(lif)
        prev_out = lif.s_out
    n_run = steps + len(layers)
    if precision == "hw":
        from lava.magma.core.run_configs import Loihi2HwCfg

        cfg = Loihi2HwCfg(select_tag="fixed_pt")
    else:
        cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt")
    t1 = time.perf_counter()
    last = lifs[-1]
    try:
        last.run(condition=RunSteps(num_steps=n_run), run_cfg=cfg)
        t2 = time.perf_counter()
        out = []
        for li, lif in enumerate(lifs):
            t = np.asarray(lif.t_spike.get(), dtype=np.int64).reshape(S, -1)
            local = t - lava_offset(li)
            out.append(np.where((t >= 0) & (local < steps), local, -1))
    finally:
        last.stop()
    return {"steps": out, "lava_s": t2 - t1, "build_s": t1 - t0}


# ------------------------------------------------------------------ worker
def _worker_main(fd: int) -> None:
    """Serve jobs on the inherited socket until told to stop (or EOF)."""
    conn = Connection(fd)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            if job[0] == "call":  # ("call", "module:function", args): any job of the Loihi backends
                import importlib

                module, _, name = job[1].partition(":")
                conn.send(("ok", getattr(importlib.import_module(module), name)(*job[2])))
                continue
            conn.send(("ok", run_in_process(*job)))
        except BaseException as exc:  # report everything; the host decides
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


class LavaWorker:
    """A separate Python process (own session, so its Lava children can be
    killed with it) that runs Lava jobs one at a time. Started as
    ``python -m hwloop.backends.loihi.lava_worker FD`` rather than through
    multiprocessing's spawn, which would re-run the caller's ``__main__``."""

    def __init__(self):
        self._proc = None
        self._conn = None

    def _start(self):
        ours, theirs = socket.socketpair()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hwloop.backends.loihi.lava_worker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )
        theirs.close()
        self._conn = Connection(ours.detach())

    def run(self, layers, steps, in_steps, precision, timeout_s: float) -> dict:
        """Run a job; raises RuntimeError(message, remote traceback) or TimeoutError."""
        return self._submit((layers, int(steps), np.asarray(in_steps, dtype=np.int64), precision), timeout_s)

    def call(self, function: str, args: tuple, timeout_s: float):
        """Run ``function`` ("module:name", importable in the worker) on ``args`` in the worker."""
        return self._submit(("call", function, tuple(args)), timeout_s)

    def _submit(self, job, timeout_s: float):
        if self._proc is None or self._proc.poll() is not None:
            self.kill()
            self._start()
        try:
            self._conn.send(job)
            ready = self._conn.poll(timeout_s)
            reply = self._conn.recv() if ready else None
        except (EOFError, OSError):
            self.kill()
            raise RuntimeError("the Lava worker process died", "") from None
        if reply is None:
            self.kill()
            raise TimeoutError(f"Lava did not finish within {timeout_s:.0f} s")
        if reply[0] == "ok":
            return reply[1]
        self.kill()  # Lava may be in a bad state after an error: start clean next time
        raise RuntimeError(reply[1], reply[2])

    def kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self._proc.wait(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._conn.send(None)
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def __del__(self):
        try:
            self.kill()
        except Exception:
            pass

