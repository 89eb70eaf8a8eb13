"""Run integer spike-train (CUBA) layers on Lava's *standard* processes, in
the killable worker process of `lava_runner`.

The network on Lava, per layer: one ``lava.proc.lif.process.LIF``
population, fed by a ``lava.proc.dense.process.Dense`` from the layer below
(or from the input ``lava.proc.io.source.RingBuffer``) and, for a recurrent
layer, by a second ``Dense`` from the LIF's own ``s_out`` back to its
``a_in`` (Lava sums the two inputs at the port). Every ``Dense`` gets the
stored 8-bit mixed-sign weights, the layer's exponent and
``sign_mode=MIXED``, run under ``Loihi2SimCfg(select_tag="fixed_pt")`` (the
bit-accurate models ``PyLifModelBitAcc`` and ``PyDenseModelBitAcc``).

A batch of S samples is one Lava run: S independent copies of the network,
each LIF population ``S * n`` neurons (sample-major), each ``Dense``
block-diagonal (``kron(I_S, W^T)``). What is read back: every layer's
spikes (a ``lava.proc.io.sink.RingBuffer`` on its ``s_out``; with
``record="output"`` only the last layer's) and, only with ``probe``, ``v``
and ``u`` of every layer (``lava.proc.monitor.process.Monitor``, one per
variable; read in the post-management phase, i.e. after the step's update
and reset).

Lava time: steps start at 1. The input RingBuffer sends local step ``k`` at
Lava step ``k + 1``; each ``Dense`` delivers one step late, so layer ``l``
integrates local step ``k`` at Lava step ``k + l + 2``, and a recurrent
spike arrives one local step later, as in the CUBA model. A run lasts
``T + L + 1`` Lava steps; the runner cuts each layer's window out, so what it
returns is in local steps, the frame of `simulate_trains` and of the
software target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class FloatTrainLayer:
    """A layer for Lava's floating-point models (``select_tag="floating_pt"``):
    float weights (n_src, n_out), optional recurrent (n_out, n_out), the
    per-step decays as fractions, the threshold (``inf``: never fires). Lava's
    float LIF computes ``u = u (1 - du) + a``, ``v = v (1 - dv) + u``, spike if
    ``v > vth``, then ``v = 0``: the CUBA model with reset to zero."""

    weight: np.ndarray
    du: float
    dv: float
    vth: float
    recurrent: np.ndarray | None = None

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[1])


def lava_offset(layer_index: int) -> int:
    """Lava step (1-based) at which layer ``layer_index`` integrates its local step 0."""
    return layer_index + 2


def run_trains_in_process(layers, raster: np.ndarray, probe=False, record: str = "all") -> dict:
    """Build, run and tear down one batch on Lava (call it in the worker).

    ``layers``: `TrainLayer` records (fixed point), or `FloatTrainLayer`
    records (Lava's floating-point models); ``raster`` (T, S, n_in) 0/1. Returns
    ``{"spikes": per layer (T, S, n) uint8 (None for a layer not recorded),
    "v", "u": per layer (T, S, n) after each step (int32; float64 on the float
    models), or None without probe, "lava_s": seconds inside run(), "build_s": seconds building}``.
    ``probe``: True (monitor every layer), False, or the indices of the layers
    to monitor (the others' entries are None)."""
    from hwloop.backends.loihi.lava_compat import import_lava
    from hwloop.firmware_models.loihi.trains import _probe_set

    import_lava()
    from scipy.sparse import identity, kron

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor
    from lava.utils.weightutils import SignMode

    fixed = not isinstance(layers[0], FloatTrainLayer)
    if record not in ("all", "output"):
        raise ValueError(f"record must be 'all' or 'output', got {record!r}")
    t0 = time.perf_counter()
    x = (np.asarray(raster) != 0)
    T, S, n_in = x.shape
    L = len(layers)
    wanted = _probe_set(probe, L)
    n_run = T + L + 1
    dtype = np.int32 if fixed else np.float64
    data = np.zeros((S * n_in, n_run), dtype)
    data[:, :T] = x.transpose(1, 2, 0).reshape(S * n_in, T)  # (sample, input) x time, time last
    src = Source(data=data)
    keep = [src]  # every process must stay referenced until the run ends
    eye = identity(S, dtype=dtype, format="csr")

    def block(w):
        return np.asarray(kron(eye, np.asarray(w, dtype=dtype).T).todense(), dtype=dtype)

    def dense(w, e):
        if fixed:
            return Dense(weights=block(w), weight_exp=int(e), num_weight_bits=8, sign_mode=SignMode.MIXED)
        return Dense(weights=block(w))

    prev = src.s_out
    lifs, sinks, monitors = [], [], []
    for li, layer in enumerate(layers):
        n = layer.n_out
        if fixed:
            lif = LIF(shape=(S * n,), du=int(layer.du), dv=int(layer.dv), vth=int(layer.vth), bias_mant=0, bias_exp=0)
        else:
            lif = LIF(shape=(S * n,), du=float(layer.du), dv=float(layer.dv), vth=float(layer.vth), bias_mant=0.0,
                      bias_exp=0.0)
        ff = dense(layer.weight, getattr(layer, "weight_exp", 0))
        prev.connect(ff.s_in)
        ff.a_out.connect(lif.a_in)
        keep += [lif, ff]
        if layer.recurrent is not None:
            rec = dense(layer.recurrent, getattr(layer, "rec_exp", 0))
            lif.s_out.connect(rec.s_in)
            rec.a_out.connect(lif.a_in)
            keep.append(rec)
        if record == "all" or li == L - 1:
            sink = Sink(shape=(S * n,), buffer=n_run)
            lif.s_out.connect(sink.a_in)
            keep.append(sink)
        else:
            sink = None
        sinks.append(sink)
        if li in wanted:
            mv, mu = Monitor(), Monitor()
            mv.probe(lif.v, n_run)
            mu.probe(lif.u, n_run)
            keep += [mv, mu]
            monitors.append((mv, mu))
        else:
            monitors.append(None)
        lifs.append(lif)
        prev = lif.s_out
    cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt")
    t1 = time.perf_counter()
    head = lifs[-1]
    spikes, volts, amps = [], [], []

    def window(arr_time_first, li, n):
        """Lava steps -> the layer's local steps 0..T-1, shaped (T, S, n)."""
        a = np.asarray(arr_time_first)
        start = lava_offset(li) - 1  # 0-based index of Lava step lava_offset(li)
        return a[start:start + T].reshape(T, S, n)

    try:
        head.run(condition=RunSteps(num_steps=n_run), run_cfg=cfg)
        t2 = time.perf_counter()
        for li, (layer, sink) in enumerate(zip(layers, sinks)):
            n = layer.n_out
            if sink is None:
                spikes.append(None)
            else:
                spikes.append(window(np.asarray(sink.data.get()).T, li, n).astype(np.uint8))
            if monitors[li] is None:
                volts.append(None)
                amps.append(None)
            else:
                mv, mu = monitors[li]
                v = mv.get_data()[lifs[li].name]["v"]
                u = mu.get_data()[lifs[li].name]["u"]
                if fixed:
                    volts.append(np.rint(window(v, li, n)).astype(np.int32))
                    amps.append(np.rint(window(u, li, n)).astype(np.int32))
                else:
                    volts.append(np.array(window(v, li, n), dtype=np.float64))
                    amps.append(np.array(window(u, li, n), dtype=np.float64))
    finally:
        head.stop()
    return {"spikes": spikes, "v": volts if wanted else None, "u": amps if wanted else None,
            "lava_s": t2 - t1, "build_s": t1 - t0}


class TrainsRunner:
    """Spike-train jobs on the shared Lava worker process (`lava_runner.LavaWorker`)."""

    def __init__(self, worker=None):
        from .lava_runner import LavaWorker

        self._worker = worker or LavaWorker()

    def run(self, layers, raster, probe=False, record: str = "all", timeout_s: float | None = None) -> dict:
        """One Lava run of the batch; raises RuntimeError(message, remote traceback) or TimeoutError."""
        raster = np.ascontiguousarray(np.asarray(raster) != 0, dtype=np.uint8)
        if timeout_s is None:
            T, S, _ = raster.shape
            timeout_s = 120 + 2e-4 * S * sum(l.n_out for l in layers) * (T + len(layers))
        return self._worker.call("hwloop.backends.loihi.lava_trains:run_trains_in_process",
                                 (list(layers), raster, probe if isinstance(probe, bool) else sorted(probe), record),
                                 timeout_s)

    def close(self) -> None:
        self._worker.close()
