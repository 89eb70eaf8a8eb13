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
"""

from __future__ import annotations

import time

import numpy as np

from hwloop.errors import TargetError
from hwloop.network import Network

from ..base import Backend, TargetURL
from ..options import Option
from . import lava_compat
from .mapping import DEFAULT_STEPS, MAX_STEPS, LoihiCompiled, compile_network, core_as_lava_layers


STEPS = Option("steps", "int", DEFAULT_STEPS, "time steps per trial (dt = t_max / steps)", min=1, max=MAX_STEPS)
LAVA_OPTIONS = (
    STEPS,
    Option("timeout", "int", 0, "seconds one batch may take in the Lava worker (0: scaled with the batch size)",
           min=0, max=1 << 20),
    Option("batch", "int", 1000, "samples per Lava run (larger batches are split)", min=1, max=1 << 20),
)


class _LoihiBackend(Backend):
    OPTIONS = (STEPS,)

    def __init__(self, url: TargetURL):
        super().__init__(url)
        self.steps = self.opts["steps"]

    def compile(self, net: Network) -> LoihiCompiled:
        return compile_network(net, self.steps)

    def _deploy(self, compiled: LoihiCompiled) -> None:
        self._compiled = compiled

    def _finish(self, local_steps, target_s: float, extra: dict):
        c = self._compiled
        times = [c.to_times(k) for k in local_steps]
        info = {"steps": c.steps, "dt": c.dt, "spike_steps": [np.asarray(k) for k in local_steps], **extra}
        return times, target_s, info


class BitExactBackend(_LoihiBackend):
    scheme = "bitexact"
    description = "bit-accurate integer model of the Loihi core (numba/numpy, no Lava)"
    OPTIONS = (STEPS, Option("engine", "choice", "auto", "integer kernel: numba when installed (auto), or forced",
                             choices=("auto", "numba", "numpy")))

    def __init__(self, url: TargetURL):
        super().__init__(url)
        self.engine = self.opts["engine"]
        if self.engine == "numba":
            from hwloop.firmware_models.loihi import numba_available

            if not numba_available():
                raise TargetError(f"target {url.raw!r}: numba is not installed (pip install 'numba>=0.59,<0.61')")

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
               choices=("fixed", "float")),) + LAVA_OPTIONS[1:]
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


__all__ = ["BitExactBackend", "LavaSimBackend", "LavaHwBackend", "LoihiCompiled", "compile_network"]
