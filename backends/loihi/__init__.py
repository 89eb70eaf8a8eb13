"""Loihi targets behind the one backend interface.

* ``bitexact[?steps=N&engine=numba|numpy]``: our integer model of the Loihi
  core (`hwloop.firmware_models.loihi`), in-process, no Lava.
* ``lava-sim[?steps=N&precision=fixed|float&timeout=S&batch=B]``: Lava's
  ``Loihi2SimCfg`` (fixed-point models by default), run in a worker process.
* ``lava-hw[?steps=N]``: Lava's ``Loihi2HwCfg``; needs Intel's non-public
  ``lava-loihi`` extension and says so when it is missing.

All three compile the same way (`mapping.compile_network`), so a network
gets the same integer registers on each, and ``bitexact`` agrees with the
fixed-point ``lava-sim`` spike for spike.

Spike-train (CUBA) networks run on ``bitexact`` and ``lava-sim`` (fixed
point): `trains_mapping.compile_trains` gives the integer layers of Lava's
standard LIF + Dense (+ recurrent Dense), ``bitexact`` runs them in
`firmware_models.loihi.trains`, ``lava-sim`` on Lava (`lava_trains`). Both
return what the software target returns (``lava-sim?precision=float``: Lava's
float models on the unquantised network): events on the network's own steps
(Lava's per-layer delay undone), membrane probes (before reset, in model
units) only when asked, and the decoding's scores.
"""

from __future__ import annotations

import time

import numpy as np

from hwloop.errors import TargetError
from hwloop.network import Network

from ..base import Backend, Measurement, SpikeEvents, TargetURL
from ..options import Option
from . import lava_compat
from .mapping import DEFAULT_STEPS, MAX_STEPS, LoihiCompiled, compile_network, core_as_lava_layers
from .trains_mapping import TrainsReport, compile_trains

#: the largest block-diagonal Dense matrix (bytes) one Lava run of a spike-train batch may build
LAVA_TRAINS_DENSE_BYTES = 64 << 20


class TrainsCompiled:
    """A spike-train network on a Loihi core: integer layers and the mapping's report;
    for Lava's floating-point models (``lava-sim?precision=float``) also the float
    layers that run instead (``float_layers``; scale 1, no quantisation)."""

    def __init__(self, layers, report: TrainsReport, float_layers=None):
        self.layers = list(layers)
        self.report = report
        self.float_layers = float_layers

    @property
    def dt(self) -> float:
        return self.report.dt

    @property
    def steps(self) -> int:
        return self.report.n_steps

    def format_report(self) -> str:
        return self.report.format()


STEPS = Option("steps", "int", DEFAULT_STEPS, "time steps per trial (dt = t_max / steps)", min=1, max=MAX_STEPS)
WEIGHT_EXP = Option("weight_exp", "choice", "auto", "spike-train networks: each matrix's weight exponent chosen "
                    "(auto), or 0 for all (the integers a netx file stores)", choices=("auto", "0"))
WEIGHT_BITS = Option("weight_bits", "int", 8, "spike-train networks: bits of every stored weight (Lava's "
                     "num_weight_bits; fewer: a coarser weight step)", min=1, max=8)
LAVA_OPTIONS = (
    STEPS,
    Option("timeout", "int", 0, "seconds one batch may take in the Lava worker (0: scaled with the batch size)",
           min=0, max=1 << 20),
    Option("batch", "int", 1000, "samples per Lava run (larger batches are split)", min=1, max=1 << 20),
)


class _LoihiBackend(Backend):
    OPTIONS = (STEPS,)
    SPIKE_TRAINS = True

    def __init__(self, url: TargetURL):
        super().__init__(url)
        self.steps = self.opts["steps"]
        exp = self.opts.get("weight_exp", "auto")
        self.weight_exp = None if exp == "auto" else int(exp)
        self.weight_bits = self.opts.get("weight_bits", 8)

    def compile(self, net: Network) -> "LoihiCompiled | TrainsCompiled":
        if net.is_spike_train:
            if "steps" in self.url.options:
                raise TargetError(f"{self.url.raw}: steps= sets the grid of first-spike-time networks; a spike-train "
                                  f"network runs on its own {net.n_steps} steps of dt={net.dt:g} {net.time_unit}")
            return TrainsCompiled(*compile_trains(net, weight_exp=self.weight_exp, weight_bits=self.weight_bits))
        if self.weight_bits != 8:
            raise TargetError(f"{self.url.raw}: weight_bits= applies to spike-train networks")
        if self.weight_exp is not None:
            raise TargetError(f"{self.url.raw}: weight_exp= applies to spike-train networks; a first-spike-time "
                              f"network's exponents are chosen by its own mapping")
        return compile_network(net, self.steps)

    def _deploy(self, compiled) -> None:
        self._compiled = compiled

    # ---- spike-train networks
    def _trains_run(self, layers, raster: np.ndarray, probe_layers: list[int]):
        """Run integer layers on the input raster: (spikes per layer (T, B, n) uint8,
        {layer: (v post-reset, u)} int arrays for ``probe_layers``, target seconds, info)."""
        raise NotImplementedError

    def run_raster(self, raster: np.ndarray, probe: bool = False) -> Measurement:
        """Run the deployed spike-train network on an input raster (n_steps, batch, n_features), 1 = spike."""
        from hwloop.firmware_models.loihi.trains import pre_reset

        net = self.network
        r = self.checked_raster(raster)
        c: TrainsCompiled = self._compiled
        t0 = time.perf_counter()
        L = len(c.layers)
        kind, window = net.decoding.kind, net.decoding.window or (0, net.n_steps)
        need = list(range(L)) if probe else ([L - 1] if kind == "max-membrane" else [])
        if c.float_layers is None:
            spikes, states, target_s, info = self._trains_run(c.layers, r.astype(np.uint8), need)
            membranes = {li: pre_reset(c.layers[li], *states[li]) / c.report.scales[li] for li in need}
        else:  # Lava's float models: v after reset and u, in model units already
            spikes, states, target_s, info = self._trains_run(c.float_layers, r.astype(np.uint8), need)
            membranes = {}
            for li in need:
                v, u = states[li]
                prev = np.concatenate([np.zeros_like(v[:1]), v[:-1]], axis=0)
                membranes[li] = prev * (1 - c.float_layers[li].dv) + u
        events, times = [], []
        for s in spikes:
            ev = SpikeEvents.from_raster(s)
            first = ev.first_steps()
            times.append(np.where(first >= 0, first * net.dt, np.inf))
            events.append(ev)
        silent = [li for li, layer in enumerate(net.layers) if not layer.neuron.spiking and len(events[li])]
        if silent:
            # a non-spiking readout can only fire when its membrane hits the top of the 24-bit range
            info["saturated_readout_spikes"] = {li: len(events[li]) for li in silent}
            import warnings

            warnings.warn(f"{self.url.raw}: the non-spiking layer(s) {silent} reached the top of the 24-bit membrane "
                          f"range (see the mapping's v_range) and fired; their membranes are clipped", RuntimeWarning,
                          stacklevel=2)
        if kind == "max-membrane":
            scores = membranes[L - 1][window[0]:window[1]].max(axis=0)
        elif kind == "spike-count":
            scores = spikes[-1][window[0]:window[1]].sum(axis=0).astype(np.float64)
        else:
            scores = None
        probes = [membranes[li] for li in range(L)] if probe else None
        total = time.perf_counter() - t0
        return Measurement(times=times, target=self.url.raw, target_time_s=float(target_s),
                           host_time_s=max(0.0, total - float(target_s)),
                           info={"dt": net.dt, "steps": net.n_steps, **info}, events=events, probes=probes,
                           scores=scores, dt=net.dt)

    def _finish(self, local_steps, target_s: float, extra: dict):
        c = self._compiled
        times = [c.to_times(k) for k in local_steps]
        info = {"steps": c.steps, "dt": c.dt, "spike_steps": [np.asarray(k) for k in local_steps], **extra}
        return times, target_s, info


class BitExactBackend(_LoihiBackend):
    scheme = "bitexact"
    description = "bit-accurate integer model of the Loihi core (numba/numpy, no Lava)"
    OPTIONS = (STEPS, Option("engine", "choice", "auto", "integer kernel: numba when installed (auto), or forced",
                             choices=("auto", "numba", "numpy")), WEIGHT_EXP, WEIGHT_BITS)

    def __init__(self, url: TargetURL):
        super().__init__(url)
        self.engine = self.opts["engine"]
        if self.engine == "numba":
            from hwloop.firmware_models.loihi import numba_available

            if not numba_available():
                raise TargetError(f"target {url.raw!r}: numba is not installed (pip install 'numba>=0.59,<0.61')")

    def _trains_run(self, layers, raster, probe_layers):
        from hwloop.firmware_models.loihi.trains import simulate_trains

        t0 = time.perf_counter()
        spikes, volts, amps = simulate_trains(layers, raster, probe=probe_layers, currents=True, engine=self.engine)
        target_s = time.perf_counter() - t0
        states = {li: (volts[li], amps[li]) for li in probe_layers}
        return spikes, states, target_s, {}

    def _run(self, t_features: np.ndarray):
        from hwloop.firmware_models.loihi import simulate

        c = self._compiled
        k_in = c.to_steps(t_features)
        t0 = time.perf_counter()
        out = simulate(c.core, k_in, engine=self.engine)
        return self._finish(out, time.perf_counter() - t0, {})


class LavaSimBackend(_LoihiBackend):
    scheme = "lava-sim"
    description = "Intel Lava's Loihi 2 simulator (Loihi2SimCfg, fixed point; ?precision=float)"
    OPTIONS = LAVA_OPTIONS[:1] + (
        Option("precision", "choice", "fixed", "Lava's fixed-point (bit-accurate) or floating-point models",
               choices=("fixed", "float")),) + LAVA_OPTIONS[1:] + (WEIGHT_EXP, WEIGHT_BITS)
    run_config = "sim"

    def __init__(self, url: TargetURL):
        super().__init__(url)
        self.precision = self.opts.get("precision", "fixed")
        self.timeout = self.opts["timeout"]  # 0: scaled with the batch
        self.batch = self.opts["batch"]
        if not lava_compat.lava_installed():
            raise TargetError(f"target {url.raw!r}: {lava_compat.INSTALL_HINT}")
        from .lava_runner import LavaWorker

        self._worker = LavaWorker()

    def _job_layers(self):
        c = self._compiled
        return core_as_lava_layers(c.core) if self.precision == "fixed" else c.float_layers

    def _run(self, t_features: np.ndarray):
        c = self._compiled
        k_in = c.to_steps(t_features)
        layers = self._job_layers()
        outs, lava_s, build_s = [], 0.0, 0.0
        for start in range(0, k_in.shape[0], self.batch):
            chunk = k_in[start:start + self.batch]
            n_neurons = chunk.shape[0] * sum(l.weight.shape[1] for l in layers)
            limit = self.timeout or (120 + 2e-5 * n_neurons * (c.steps + len(layers)))
            try:
                res = self._worker.run(layers, c.steps, chunk, self._precision_tag(), limit)
            except TimeoutError as exc:
                raise TargetError(f"{self.url.raw}: {exc} (batch of {chunk.shape[0]}; raise ?timeout=)") from None
            except RuntimeError as exc:
                msg, tb = exc.args if len(exc.args) == 2 else (str(exc), "")
                raise TargetError(f"{self.url.raw}: Lava failed: {msg}" + (f"\n{tb}" if tb else "")) from None
            outs.append(res["steps"])
            lava_s += res["lava_s"]
            build_s += res["build_s"]
        local = [np.concatenate([o[i] for o in outs], axis=0) for i in range(len(layers))]
        return self._finish(local, lava_s, {"precision": self.precision, "build_s": build_s})

    def _precision_tag(self) -> str:
        return self.precision

    def compile(self, net: Network):
        compiled = super().compile(net)
        if net.is_spike_train and self.precision == "float":
            from .trains_mapping import float_trains_layers

            compiled.float_layers = float_trains_layers(net)
        return compiled

    def _trains_run(self, layers, raster, probe_layers):
        from .lava_trains import TrainsRunner

        T, B, _ = raster.shape
        biggest = max(l.weight.size + (0 if l.recurrent is None else l.recurrent.size) for l in layers)
        per_run = max(1, min(self.batch, int((LAVA_TRAINS_DENSE_BYTES / (4 * biggest)) ** 0.5)))
        runner = TrainsRunner(self._worker)
        spikes = [[] for _ in layers]
        parts = {li: ([], []) for li in probe_layers}
        lava_s = build_s = 0.0
        for start in range(0, B, per_run):
            chunk = raster[:, start:start + per_run]
            S = chunk.shape[1]
            limit = self.timeout or (120 + 2e-4 * S * sum(l.n_out for l in layers) * (T + len(layers)))
            try:
                res = runner.run(layers, chunk, probe=probe_layers, timeout_s=limit)
            except TimeoutError as exc:
                raise TargetError(f"{self.url.raw}: {exc} (batch of {S}; raise ?timeout=)") from None
            except RuntimeError as exc:
                msg, tb = exc.args if len(exc.args) == 2 else (str(exc), "")
                raise TargetError(f"{self.url.raw}: Lava failed: {msg}" + (f"\n{tb}" if tb else "")) from None
            for li in range(len(layers)):
                spikes[li].append(res["spikes"][li])
            for li in probe_layers:
                parts[li][0].append(res["v"][li])
                parts[li][1].append(res["u"][li])
            lava_s += res["lava_s"]
            build_s += res["build_s"]
        spikes = [np.concatenate(s, axis=1) for s in spikes]
        states = {li: (np.concatenate(v, axis=1), np.concatenate(u, axis=1)) for li, (v, u) in parts.items()}
        return spikes, states, lava_s, {"precision": self.precision, "build_s": build_s,
                                        "lava_runs": -(-B // per_run)}

    def close(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()

    @classmethod
    def probe(cls) -> list[dict]:
        if lava_compat.lava_installed():
            return [{"url": cls.scheme, "status": "available", "description": cls.description},
                    {"url": cls.scheme + "?precision=float", "status": "available",
                     "description": "Lava's floating-point models (not bit-accurate)"}]
        return [{"url": cls.scheme, "status": "unavailable", "description": "lava-nc not installed"}]


def lava_loihi_installed() -> bool:
    """Whether Intel's lava-loihi extension is importable (without importing Lava
    when Lava itself is missing)."""
    if not lava_compat.lava_installed():
        return False
    lava_compat.install()
    from lava.utils import loihi

    return bool(loihi.is_installed())


class LavaHwBackend(LavaSimBackend):
    scheme = "lava-hw"
    description = "a Loihi 2 chip through Lava (Loihi2HwCfg; needs Intel's lava-loihi)"
    OPTIONS = LAVA_OPTIONS
    SPIKE_TRAINS = False  # the spike-train runner builds Loihi2SimCfg only

    def __init__(self, url: TargetURL):
        self.check_url(url)  # bad options first, before probing for Lava
        if not lava_compat.lava_installed():
            raise TargetError(f"target {url.raw!r}: {lava_compat.INSTALL_HINT}")
        if not lava_loihi_installed():
            raise TargetError(
                f"target {url.raw!r}: running on a Loihi chip needs Intel's lava-loihi extension "
                "(Loihi2HwCfg), which is not public and not installed here; "
                "use 'lava-sim' (bit-accurate simulation) or 'bitexact' instead")
        super().__init__(url)

    def _precision_tag(self) -> str:
        return "hw"

    @classmethod
    def probe(cls) -> list[dict]:
        ok = lava_loihi_installed()
        return [{"url": cls.scheme, "status": "available" if ok else "unavailable",
                 "description": cls.description if ok else "lava-loihi (Intel, non-public) not installed"}]


__all__ = ["BitExactBackend", "LavaSimBackend", "LavaHwBackend", "LoihiCompiled", "TrainsCompiled", "compile_network",
           "compile_trains"]
