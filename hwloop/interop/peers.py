"""Run an exported NIR file in the real consumer packages and read back first-spike times.

This is what the interop tests use to check that a file does in snnTorch,
Norse, Rockpool and nirtorch what it does in hwloop; a user can call it to
do the same. Each runner loads the file with the package's own NIR importer
(``snntorch.import_nir.import_from_nir``, ``norse.torch.from_nir``,
``rockpool.nn.modules.torch.nir.from_nir``, ``nirtorch.nir_to_torch``),
drives it with the input raster the file's metadata describes (features and
bias channels as one-step pulses of height 1 on the consumer's grid) and
records every ``CubaLIF`` layer's output with a forward hook.

``first_spike_only=True`` makes the hooks pass on only each neuron's first
spike (later ones are zeroed before the next layer sees them): hwloop's
one-spike-per-neuron contract imposed on the consumer's own neurons, which
otherwise reset and fire again (`docs/interop.md` reports both).

The packages are imported lazily; a missing one raises `HwloopError`.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import HwloopError
from . import conventions

RUNNERS = ("snntorch", "norse", "rockpool", "nirtorch")


def _need(module: str, pip: str):
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise HwloopError(f"running NIR files in {pip} needs it installed ({exc}); `make venv` installs it") from None


@dataclass
class PeerRun:
    """First-spike times per layer (network time units, ``inf`` silent) and spike counts."""

    times: list[np.ndarray]
    counts: list[np.ndarray]  # spikes per neuron per sample, as the consumer emitted them
    dt: float  # the grid step, network time units
    steps: int


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _graph_info(graph) -> dict:
    meta = dict(graph.metadata or {})
    get = lambda k: meta[k].decode() if isinstance(meta.get(k), bytes) else meta.get(k)  # noqa: E731
    if get("hwloop_format") != "hwloop-nir" or get("hwloop_input_channels") is None:
        raise HwloopError("peers run graphs exported by hwloop (version 2), whose metadata describes the input")
    ch = json.loads(get("hwloop_input_channels"))
    return {"consumer": get("hwloop_consumer"), "dt": meta.get("hwloop_dt"), "graph_dt": meta.get("hwloop_graph_dt"),
            "t_max": float(meta["hwloop_t_max"]), "features": int(ch["features"]),
            "bias": [(int(li), float(t)) for li, t in ch["bias"]],
            "cancel": [(int(j), float(t)) for j, t in ch.get("cancel", [])]}


def input_raster(info: dict, t_in: np.ndarray, h: float) -> tuple[np.ndarray, int]:
    """(steps, B, channels) float32 raster of features + bias channels, one-step pulses at round(t/h)."""
    t_in = np.asarray(t_in, dtype=np.float64)
    b = t_in.shape[0]
    bias = np.array([t for _, t in info["bias"]] + [t for _, t in info.get("cancel", [])], dtype=np.float64)
    times = np.concatenate([t_in, np.broadcast_to(bias, (b, bias.size))], axis=1)
    steps = int(round(info["t_max"] / h))
    with np.errstate(invalid="ignore"):
        k = np.where(np.isfinite(times), np.floor(times / h + 0.5), steps)
    k = np.minimum(k, steps).astype(np.int64)
    x = np.zeros((steps, b, times.shape[1]), dtype=np.float32)
    bi, ci = np.nonzero(k < steps)
    x[k[bi, ci], bi, ci] = 1.0
    return x, steps


class _Recorder:
    """Forward hooks on the layer modules: record spikes, optionally keep only first spikes."""

    def __init__(self, modules: dict, names: list[str], first_spike_only: bool, time_axis: int | None):
        self.first = first_spike_only
        self.time_axis = time_axis  # None: called once per step; 1: whole sequences (B, T, N)
        self.rec = {n: [] for n in names}
        self.fired = {}
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(mod, inp, out):
            z = out[0] if isinstance(out, tuple) else out
            if self.first:
                if self.time_axis is None:
                    f = self.fired.get(name)
                    if f is None:
                        f = torch_zeros_like_bool(z)
                    z = z * (~f)
                    self.fired[name] = f | (z > 0)
                else:  # keep only the first step with spikes, as one spike
                    s = z > 0
                    first = s & (s.cumsum(dim=1) == 1)
                    z = first.to(z.dtype)
            self.rec[name].append(z.detach())
            if isinstance(out, tuple):
                return (z,) + tuple(out[1:])
            return z
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def torch_zeros_like_bool(z):
    import torch  # noqa: PLC0415

    return torch.zeros_like(z, dtype=torch.bool)


def _first_times(spikes: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, B, N) spike values -> first-spike times (k + 1/2) h and counts."""
    s = spikes > 0
    any_ = s.any(axis=0)
    k = s.argmax(axis=0).astype(np.float64)
    return np.where(any_, (k + 0.5) * h, np.inf), np.asarray(spikes, np.float64).sum(axis=0)


def run_nir(path: str | Path, runner: str, t_in: np.ndarray, *, first_spike_only: bool = False,
            dt: float | None = None) -> PeerRun:
    """Load ``path`` (exported by hwloop) with ``runner``'s own NIR importer and run ``t_in``.

    ``t_in``: (B, n_features) input spike times in network units (``inf``: no
    spike). The grid is the file's ``hwloop_dt`` (discrete consumers) or
    ``dt`` (required for ``nirtorch``, which runs NIR's ODE with our reference
    CubaLIF module on that grid).
    """
    import torch  # noqa: PLC0415

    nir = _need("nir", "nir")
    if runner not in RUNNERS:
        raise HwloopError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    graph = nir.read(str(path))
    info = _graph_info(graph)
    h = float(info["dt"]) if info["dt"] is not None else dt
    if h is None:
        raise HwloopError(f"{path}: a continuous-time graph needs dt (the grid to run it on)")
    x, steps = input_raster(info, t_in, h)
    names = sorted((n for n, v in graph.nodes.items() if isinstance(v, nir.CubaLIF)), key=lambda n: int(n[3:]))
    xt = torch.from_numpy(x)
    quiet = contextlib.redirect_stdout(io.StringIO())  # snnTorch prints progress on import
    with torch.no_grad():
        if runner == "snntorch":
            _need("snntorch", "snntorch")
            from snntorch.import_nir import import_from_nir  # noqa: PLC0415

            with quiet:
                model = import_from_nir(graph)
            rec = _Recorder(dict(model.named_modules()), names, first_spike_only, None)  # a fresh model: fresh state
            for t in range(steps):
                model(xt[t])
        elif runner == "norse":
            nt = _need("norse.torch", "norse")
            model = nt.from_nir(graph, dt=float(info["graph_dt"]))
            rec = _Recorder(dict(model.named_modules()), names, first_spike_only, None)
            state = None
            for t in range(steps):
                _, state = model(xt[t], state)
        elif runner == "rockpool":
            _need("rockpool", "rockpool")
            from rockpool.nn.modules.torch.nir import from_nir  # noqa: PLC0415

            model = from_nir(graph)
            rec = _Recorder(dict(model.named_modules()), names, first_spike_only, 1)
            model(xt.permute(1, 0, 2).contiguous())  # Rockpool takes (batch, time, channels)
        else:
            nirtorch = _need("nirtorch", "nirtorch")
            model = nirtorch.nir_to_torch(graph, {**_nirtorch_default_map(nirtorch),
                                                  nir.CubaLIF: lambda node: ReferenceCubaLIF(node, h)})
            rec = _Recorder(dict(model.named_modules()), names, first_spike_only, None)
            state = None
            for t in range(steps):
                _, state = model(xt[t], state)
    rec.close()
    times, counts = [], []
    for n in names:
        seq = rec.rec[n]
        if runner == "rockpool":
            arr = seq[-1].permute(1, 0, 2).numpy()
        else:
            arr = torch.stack(seq).numpy()
        relays = json.loads(_text(graph.nodes[n].metadata.get("hwloop_relays", "[]")))
        if relays:  # relay neurons carry bias spikes (see nir_io.network_to_nir), not network neurons
            arr = np.delete(arr, [r for r, _ in relays], axis=-1)
        t, c = _first_times(arr, h)
        times.append(t)
        counts.append(c)
    return PeerRun(times=times, counts=counts, dt=h, steps=steps)


def _nirtorch_default_map(nirtorch):
    from nirtorch.nir_interpreter import DEFAULT_MAP  # noqa: PLC0415

    return dict(DEFAULT_MAP)


def _reference_cubalif_class():
    import torch  # noqa: PLC0415

    class _Ref(torch.nn.Module):
        """NIR's CubaLIF ODE as written, on a grid of step h: each step, the input's
        Dirac spikes (area 1 each) jump I by ``w_in x / tau_syn``, then (I, v) are
        propagated exactly over h (the ODE is linear between spikes); a neuron
        spikes when v > v_threshold at the end of the step and v <- v_reset."""

        def __init__(self, node, h: float):
            super().__init__()
            f = lambda a: torch.as_tensor(np.asarray(a, np.float64).reshape(-1))  # noqa: E731
            self.ts, self.tm, self.r = f(node.tau_syn), f(node.tau_mem), f(node.r)
            self.vl, self.vt, self.vr, self.w_in = f(node.v_leak), f(node.v_threshold), f(node.v_reset), f(node.w_in)
            a, b = torch.exp(-h / self.ts), torch.exp(-h / self.tm)
            equal = torch.isclose(self.ts, self.tm, rtol=1e-12, atol=0)
            # v(h) - v_leak = b (v0 - v_leak) + k I0,  k = r tau_s (a - b) / (tau_s - tau_m)  (r h/tau a when equal)
            denom = torch.where(equal, torch.ones_like(self.ts), self.ts - self.tm)
            k = torch.where(equal, self.r * h / self.tm * a, self.r * self.ts * (a - b) / denom)
            self.a, self.b, self.k = a, b, k

        def forward(self, x, state=None):
            x = x.double()
            if state is None:
                state = (torch.zeros_like(x), self.vl.expand_as(x).clone())
            i, v = state
            i = i + self.w_in * x / self.ts
            v_new = self.vl + self.b * (v - self.vl) + self.k * i
            i = self.a * i
            z = (v_new > self.vt).to(x.dtype)
            v_new = torch.where(z > 0, self.vr.expand_as(v_new), v_new)
            return z.float(), (i, v_new)

    return _Ref


def ReferenceCubaLIF(node, h):  # noqa: N802 - a class factory (torch imported lazily)
    return _reference_cubalif_class()(node, h)


def default_dt(net_t_max: float) -> float:
    return net_t_max / conventions.DEFAULT_STEPS


__all__ = ["RUNNERS", "PeerRun", "run_nir", "input_raster", "default_dt"]


# ------------------------------------------------------------------- lava-dl netx
@dataclass
class NetxRun:
    """First-spike local steps per layer (``-1`` silent) and spike counts, as lava-dl's netx ran the file."""

    steps: list[np.ndarray]
    counts: list[np.ndarray]
    dt: float


def netx_input_steps(info: dict, t_in: np.ndarray) -> np.ndarray:
    """(B, channels) local input steps for a netx file we wrote: features, then layer 0's bias sources."""
    t_in = np.asarray(t_in, dtype=np.float64)
    dt, steps = float(info["dt"]), int(info["steps"])
    with np.errstate(invalid="ignore"):
        k = np.where(np.isfinite(t_in), np.floor(t_in / dt + 0.5), steps)
    k = np.minimum(k, steps).astype(np.int64)
    bias = np.asarray(info["input_channels"]["bias_steps"], np.int64)
    return np.concatenate([k, np.broadcast_to(bias, (k.shape[0], bias.size))], axis=1)


def run_netx(path: str | Path, t_in: np.ndarray, *, first_spike_only: bool = False) -> NetxRun:
    """Load ``path`` with lava-dl's ``netx.hdf5.Network`` and run ``t_in`` on Lava's CPU simulator
    (``Loihi2SimCfg``, fixed point).

    The samples run one after another in one Lava run, each in a window of
    ``steps + layers + 3`` steps, with netx's own ``reset_interval`` resetting
    every neuron between windows. Input spikes come from a Lava
    ``RingBuffer`` into ``Network.inp``; every layer's output goes to a
    ``RingBuffer`` sink. ``first_spike_only=True`` runs the file one layer at
    a time (netx's ``num_layers`` / ``skip_layers``), feeding each layer only
    the first spike of every neuron of the layer before.
    """
    from .lava_dl_compat import import_netx  # noqa: PLC0415
    from .netx import read_netx  # noqa: PLC0415

    netx = import_netx()
    from lava.magma.core.run_conditions import RunSteps  # noqa: PLC0415
    from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: PLC0415
    from lava.proc import io  # noqa: PLC0415

    core, info = read_netx(path)
    if "input_channels" not in info:
        raise HwloopError(f"{path}: not a netx file written by this hwloop (no hwloop/input_channels)")
    k_in = netx_input_steps(info, t_in)
    n_samples, n_layers, steps = k_in.shape[0], len(core.layers), core.steps
    window = steps + n_layers + 3

    def raster(k: np.ndarray) -> np.ndarray:  # (B, n) local steps -> (n, B * window) spikes
        data = np.zeros((k.shape[1], n_samples * window), dtype=np.int32)
        b, c = np.nonzero((k >= 0) & (k < steps))
        data[c, b * window + k[b, c]] = 1
        return data

    def run(data: np.ndarray, **net_kw) -> list[np.ndarray]:
        net = netx.hdf5.Network(net_config=str(path), reset_interval=window, reset_offset=0, **net_kw)
        src = io.source.RingBuffer(data=data)
        src.s_out.connect(net.inp)
        sinks = []
        for layer in net.layers:
            sink = io.sink.RingBuffer(shape=layer.out.shape, buffer=data.shape[1])
            layer.out.connect(sink.a_in)
            sinks.append(sink)
        try:
            net.run(condition=RunSteps(num_steps=data.shape[1]), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            return [np.asarray(s.data.get()) for s in sinks]
        finally:
            net.stop()

    def first(rec: np.ndarray, delay: int) -> tuple[np.ndarray, np.ndarray]:
        r = (rec > 0).reshape(rec.shape[0], n_samples, window).transpose(1, 0, 2)  # (B, n, window)
        counts = r.sum(axis=2)
        k = np.where(r.any(axis=2), r.argmax(axis=2) - delay, -1)
        return k, counts

    if not first_spike_only:
        recs = run(raster(k_in))
        out = [first(rec, delay=j + 1) for j, rec in enumerate(recs)]
    else:
        out, k_prev = [], k_in
        for j in range(n_layers):
            (rec,) = run(raster(k_prev), num_layers=j + 2, skip_layers=j + 1)
            k, counts = first(rec, delay=1)
            out.append((k, counts))
            k_prev = k
    return NetxRun(steps=[k for k, _ in out], counts=[c for _, c in out], dt=float(info["dt"]))
