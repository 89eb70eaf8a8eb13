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


@dataclass(frozen=True)
class SpikeEvents:
    """One layer's spikes of a spike-train run as sparse events: event k is
    neuron ``neuron[k]`` of sample ``sample[k]`` firing at step ``step[k]``
    (sorted by step, then sample, then neuron); ``shape`` is (n_steps,
    batch, n_neurons). `raster` gives the dense 0/1 array, on request."""

    step: np.ndarray
    sample: np.ndarray
    neuron: np.ndarray
    shape: tuple[int, int, int]

    @classmethod
    def from_raster(cls, raster: np.ndarray) -> "SpikeEvents":
        """Events of a dense (n_steps, batch, n) raster (nonzero = spike)."""
        t, b, n = np.nonzero(np.asarray(raster))
        return cls(t.astype(np.int32), b.astype(np.int32), n.astype(np.int32), tuple(int(x) for x in raster.shape))

    def __len__(self) -> int:
        return int(self.step.shape[0])

    def raster(self, dtype=np.uint8) -> np.ndarray:
        """The dense (n_steps, batch, n) raster (1 = spike)."""
        r = np.zeros(self.shape, dtype=dtype)
        r[self.step, self.sample, self.neuron] = 1
        return r

    def counts(self) -> np.ndarray:
        """Spikes per sample and neuron, (batch, n), int64."""
        c = np.zeros(self.shape[1:], dtype=np.int64)
        np.add.at(c, (self.sample, self.neuron), 1)
        return c

    def first_steps(self) -> np.ndarray:
        """Step of each neuron's first spike, (batch, n), -1 = silent."""
        first = np.full(self.shape[1:], np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, (self.sample, self.neuron), self.step.astype(np.int64))
        return np.where(first == np.iinfo(np.int64).max, -1, first)


@dataclass
class Measurement:
    """What a target measured for one batch, in the network's time unit.

    ``times`` is the first-spike view, for every network: each layer's first
    spike time per neuron (``inf`` = silent); for a spike-train network the
    first spike at step k is at time ``k * dt``, so first-spike-time code
    reads a spike-train measurement unchanged. A spike-train run also fills
    ``events`` (every layer's spikes, `SpikeEvents`), ``dt`` and, when asked
    for (``probe=True``), ``probes``: every layer's membrane potential
    before reset, (n_steps, batch, n) per layer. Both are None for a
    first-spike-time network."""

    times: list[np.ndarray]  # one (batch, n_neurons) array per layer; inf = silent
    target: str
    target_time_s: float = 0.0  # time the target itself spent running
    host_time_s: float = 0.0  # everything else: encoding, transfer, decoding
    info: dict = field(default_factory=dict)
    events: list[SpikeEvents] | None = None
    probes: list[np.ndarray] | None = None
    dt: float | None = None
    #: spike-train decodings (max-membrane, spike-count): the per-class decision variable (batch, n_out)
    scores: np.ndarray | None = None

    def predictions(self) -> np.ndarray:
        """Predicted class index per sample, -1 where undecided: the highest
        ``scores`` where the decoding gives them, else the earliest output
        spike (ties and all-silent outputs undecided)."""
        v = self.scores if self.scores is not None else -self.output
        best = v.max(axis=1, keepdims=True)
        top = v == best
        pred = np.argmax(v, axis=1)
        return np.where((top.sum(axis=1) == 1) & np.isfinite(best[:, 0]), pred, -1)

    @property
    def output(self) -> np.ndarray:
        """The output layer's spike times, (batch, n_out)."""
        return self.times[-1]

    def raster(self, layer: int = -1) -> np.ndarray:
        """The dense (n_steps, batch, n) spike raster of one layer (spike-train runs only)."""
        if self.events is None:
            raise TargetError(f"{self.target}: this measurement holds first-spike times only, no spike trains")
        return self.events[layer].raster()

    def counts(self, layer: int = -1) -> np.ndarray:
        """Spike counts (batch, n) of one layer (spike-train runs only)."""
        if self.events is None:
            raise TargetError(f"{self.target}: this measurement holds first-spike times only, no spike trains")
        return self.events[layer].counts()


def times_to_raster(t: np.ndarray, dt: float, n_steps: int) -> np.ndarray:
    """Input spike times (batch, n) -> a (n_steps, batch, n) raster: a spike at
    time t falls in step floor(t / dt); ``inf`` and times at or past the end
    of the trial send none."""
    t = np.asarray(t, dtype=np.float64)
    r = np.zeros((n_steps, *t.shape), dtype=np.float32)
    with np.errstate(invalid="ignore"):
        k = np.floor(t / dt)
    b, j = np.nonzero(np.isfinite(k) & (k < n_steps))
    r[k[b, j].astype(np.int64), b, j] = 1.0
    return r


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
        self.check_family(net)
        compiled = self.compile(net)
        self.deploy(compiled, net)
        return compiled

    @property
    def network(self) -> Network:
        """The network deployed on the target; `TargetError` if none is."""
        if self._network is None:
            raise TargetError(f"{self.url.raw}: no network deployed (call load() first)")
        return self._network

    #: whether this target runs spike-train (discrete-time, format version 2) networks
    SPIKE_TRAINS: bool = False

    def check_family(self, net: Network) -> None:
        """`TargetError` if this target cannot run the network's family."""
        if net.is_spike_train and not self.SPIKE_TRAINS:
            raise TargetError(f"{self.url.raw}: {self.scheme} runs first-spike-time networks only; this is a "
                              f"spike-train network ({net.model}, dt={net.dt:g} {net.time_unit}); run it on "
                              f"'software', 'bitexact' or 'lava-sim'")

    def run_raster(self, raster: np.ndarray, probe: bool = False) -> Measurement:
        """Run a spike-train network on an input raster (n_steps, batch, n_features), 1 = spike."""
        raise TargetError(f"{self.url.raw}: {self.scheme} does not run spike-train networks")

    def checked_raster(self, raster) -> np.ndarray:
        """``raster`` as an array, checked against the deployed spike-train network (`TargetError`
        naming the expected shape, or values other than 0 and 1); for `run_raster` implementations."""
        net = self.network
        if not net.is_spike_train:
            raise TargetError(f"{self.url.raw}: run_raster needs a spike-train network; this one is {net.model}")
        r = np.asarray(raster)
        shape = (net.n_steps, "batch", net.encoding.n_features)
        if r.ndim != 3 or r.shape[0] != net.n_steps or r.shape[2] != net.encoding.n_features or r.shape[1] == 0:
            raise TargetError(f"{self.url.raw}: expected an input raster of shape {shape}, got {r.shape}")
        if r.dtype.kind not in "biuf" or not np.isin(r, (0, 1)).all():
            raise TargetError(f"{self.url.raw}: an input raster holds 0 (no spike) and 1 (spike) only")
        return r

    def run(self, t_features: np.ndarray, probe: bool = False) -> Measurement:
        """Run a batch of input spike times (batch, n_features), in the network's time unit
        (``inf``: the input sends no spike), and return what the target measured.
        ``probe=True`` (spike-train networks, targets that can) also records
        every layer's membrane per step (`Measurement.probes`)."""
        net = self.network
        if probe and not net.is_spike_train:
            raise TargetError(f"{self.url.raw}: membrane probes are recorded for spike-train networks only")
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
        if net.is_spike_train:
            return self.run_raster(times_to_raster(x, net.dt, net.n_steps), probe=probe)
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
