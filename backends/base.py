"""The one small interface every target implements, and target URLs.

A backend turns a `hwloop.Network` into its own device configuration
(``compile``: design-rule check, quantise, map time), loads it (``deploy``)
and runs batches of input spike times (``run``), returning a `Measurement`:
every layer's spike times converted back to the network's own time unit,
``inf`` for a neuron that stayed silent. Per-layer pipeline latency, time
steps and tick counts are the backend's business, never the caller's.

Target names are URLs in the spirit of pyserial's ``serial_for_url``::

    software                     the float model itself (reference)
    bitexact                     our integer model of the Loihi core
    lava-sim[?precision=float]   Lava's Loihi2SimCfg (fixed point by default)
    lava-hw                      Lava's Loihi2HwCfg (needs lava-loihi)
    qif-emu[?chip_id=..&...]     the analog QIF chip emulator on a pseudo-terminal
    qif:///dev/ttyUSB0?baud=..   a QIF chip on a real serial port
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qsl

import numpy as np

from hwloop.errors import TargetError
from hwloop.network import Network

from .options import Option, parse_options


@dataclass
class Measurement:
    """What a target measured for one batch, in the network's time unit."""

    times: list[np.ndarray]  # one (batch, n_neurons) array per layer; inf = silent
    target: str
    target_time_s: float = 0.0  # time the target itself spent running
    host_time_s: float = 0.0  # everything else: encoding, transfer, decoding
    info: dict = field(default_factory=dict)

    @property
    def output(self) -> np.ndarray:
        """The output layer's spike times, (batch, n_out)."""
        return self.times[-1]


@dataclass(frozen=True)
class TargetURL:
    scheme: str
    path: str
    options: Mapping[str, str]
    raw: str


def parse_target(url: str) -> TargetURL:
    """``name[?k=v&...]`` or ``scheme://path[?k=v&...]``."""
    if not isinstance(url, str) or not url.strip():
        raise TargetError("empty target name")
    raw = url.strip()
    head, _, query = raw.partition("?")
    if "://" in head:
        scheme, _, path = head.partition("://")
    else:
        scheme, path = head, ""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise TargetError(f"target {raw!r}: malformed options {query!r} (expected k=v&k=v)") from None
    options: dict[str, str] = {}
    for key, value in pairs:
        if key in options:
            raise TargetError(f"target {raw!r}: option {key} given twice")
        options[key] = value
    return TargetURL(scheme=scheme.lower(), path=path, options=options, raw=raw)


class Backend(abc.ABC):
    """A target. Use as a context manager, or call ``close()``."""

    #: URL scheme, e.g. "bitexact"
    scheme: str = ""
    #: one line for `hwloop devices`
    description: str = ""
    #: the URL options this target takes (`hwloop.backends.options`); checked
    #: in ``__init__``, before a subclass opens or spawns anything
    OPTIONS: tuple[Option, ...] = ()
    #: whether the URL names a path (``qif:///dev/ttyUSB0``)
    takes_path: bool = False

    def __init__(self, url: TargetURL):
        #: typed option values, defaults filled in
        self.opts: dict[str, Any] = self.check_url(url)
        self.url = url
        self._deployed: Any = None
        self._network: Network | None = None

    @classmethod
    def check_url(cls, url: TargetURL) -> dict[str, Any]:
        """The URL's typed options, or a `TargetError` naming what is wrong;
        opens nothing."""
        if url.path and not cls.takes_path:
            raise TargetError(f"target {url.raw!r}: {cls.scheme} takes no path (got {url.path!r})")
        return parse_options(url.raw, url.options, cls.OPTIONS)

    # ---- to implement
    @abc.abstractmethod
    def compile(self, net: Network) -> Any:
        """Check design rules and build the device configuration. Raises
        `DesignRuleError` naming the rule, layer and limit; writes nothing."""

    @abc.abstractmethod
    def _deploy(self, compiled: Any) -> None:
        """Load a compiled configuration onto the target."""

    @abc.abstractmethod
    def _run(self, t_features: np.ndarray) -> tuple[list[np.ndarray], float, dict]:
        """Run one batch; return (times per layer in model units, target seconds, info)."""

    def close(self) -> None:
        """Release the target (ports, processes)."""

    # ---- state a resumed session needs (in-the-loop checkpoints)
    def state(self) -> dict:
        """What this target needs to continue exactly where it is, as plain
        JSON numbers (e.g. a noise-seed counter); {} for a target whose runs
        depend on nothing but the network and the inputs."""
        return {}

    def restore_state(self, state: dict) -> None:
        """Continue from a `state()` taken earlier (of the same target URL)."""
        if state:
            raise TargetError(f"{self.url.raw}: cannot restore target state {sorted(state)[:5]}")

    # ---- shared behaviour
    def deploy(self, compiled: Any, net: Network) -> None:
        """Load a configuration from `compile` onto the target; ``net`` is the network it came from."""
        self._deploy(compiled)
        self._deployed = compiled
        self._network = net

    def load(self, net: Network) -> Any:
        """compile + deploy; returns the compiled configuration."""
        compiled = self.compile(net)
        self.deploy(compiled, net)
        return compiled

    @property
    def network(self) -> Network:
        """The network deployed on the target; `TargetError` if none is."""
        if self._network is None:
            raise TargetError(f"{self.url.raw}: no network deployed (call load() first)")
        return self._network

    def run(self, t_features: np.ndarray) -> Measurement:
        """Run a batch of input spike times (batch, n_features), in the network's time unit
        (``inf``: the input sends no spike), and return what the target measured."""
        net = self.network
        x = np.asarray(t_features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != net.encoding.n_features:
            raise TargetError(
                f"{self.url.raw}: expected input spike times of shape (batch, {net.encoding.n_features}), got {x.shape}"
            )
        if x.shape[0] == 0:
            raise TargetError(f"{self.url.raw}: no samples to run (input of shape {x.shape})")
        # one rule for every target: a time >= 0, or inf for an input that sends no spike
        bad = np.isnan(x) | (x < 0)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise TargetError(
                f"{self.url.raw}: input spike times must be >= 0 (or inf: no spike); sample {i} "
                f"input {j} is {x[i, j]!r} ({int(bad.sum())} bad value(s) in the batch)")
        t0 = time.perf_counter()
        times, target_s, info = self._run(x)
        total = time.perf_counter() - t0
        return Measurement(
            times=[np.asarray(t, dtype=np.float64) for t in times],
            target=self.url.raw,
            target_time_s=float(target_s),
            host_time_s=max(0.0, total - float(target_s)),
            info=info,
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @classmethod
    def probe(cls) -> list[dict]:
        """Reachable instances of this target for `hwloop devices` (url, status)."""
        return [{"url": cls.scheme, "status": "available", "description": cls.description}]
