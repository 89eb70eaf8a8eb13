"""Message types and their payloads (see docs/wire-protocol.md).

A message is ``(type, req, payload)``; the link layer carries it in one or
more frames. Spike times cross the wire as TDC ticks in ``uint16``
(`NO_SPIKE` = 0xFFFF for "no spike"), weights as signed DAC codes in
``int8``: a batch of samples is a few compact arrays, not text.

Every ``unpack_*`` raises `ProtocolError` (never struct/numpy errors) when
the payload does not have the shape the type promises.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from .errors import ChipLimitError, ProtocolError

#: protocol major version: peers with different majors cannot talk (HELLO is refused)
PROTOCOL_VERSION = 1
#: protocol minor version: peers with the same major interoperate whatever their minors
#: (1.1: selective repeat -- SACK bitmaps in ACKs, receiver state in NAKs -- and ERROR LINK_RESET;
#: 1.2: RUN_INJECT, per-neuron injected current, and ``inject_max`` in HELLO_REPLY;
#: 1.3: RESULT_COMPACT, only the fired neurons' ticks, sent to hosts whose HELLO says minor >= 3;
#: 1.4: spike-train mode -- TRAIN_CONFIG, RUN_TRAINS, TRAIN_EVENTS, PROBE_CODES -- and the spike-train
#: limits appended to HELLO_REPLY; served only to hosts whose HELLO says minor >= 4;
#: 1.5: RUN pipelining -- a RUN or RUN_INJECT that arrives while a RUN streams waits its turn
#: instead of cancelling it, for hosts whose HELLO says minor >= 5)
PROTOCOL_MINOR = 5
#: the first minor version that has the spike-train messages
TRAINS_MINOR = 4
#: the first minor version whose chips queue a RUN behind the one streaming
PIPELINE_MINOR = 5
NO_SPIKE = 0xFFFF  # tick value meaning "no spike in this trial"
MAX_TICK = 0xFFFE

# link-level frame types
ACK = 0x01
NAK = 0x02
# host -> chip requests
HELLO = 0x10
CONFIG = 0x11
RUN = 0x12
STATUS = 0x13
RESET = 0x14
RUN_INJECT = 0x15  # (1.2) RUN with a per-neuron injected current (DC + optional per-sample vector)
TRAIN_CONFIG = 0x16  # (1.4) a spike-train configuration (replaces whatever the chip holds)
RUN_TRAINS = 0x17  # (1.4) a batch of input spike trains, sparse events
# chip -> host replies
HELLO_REPLY = 0x20
CONFIG_OK = 0x21
RESULT = 0x22
RUN_DONE = 0x23
STATUS_REPLY = 0x24
RESET_OK = 0x25
RESULT_COMPACT = 0x26  # (1.3) RESULT carrying only the fired neurons' ticks, bit-packed
TRAIN_EVENTS = 0x27  # (1.4) every spike of a range of samples, (step, neuron) events bit-packed
PROBE_CODES = 0x28  # (1.4) membrane ADC codes of a range of samples (only when the RUN_TRAINS asked)
ERROR = 0x2F

NAMES = {
    ACK: "ACK", NAK: "NAK", HELLO: "HELLO", CONFIG: "CONFIG", RUN: "RUN", STATUS: "STATUS",
    RESET: "RESET", RUN_INJECT: "RUN_INJECT", HELLO_REPLY: "HELLO_REPLY", CONFIG_OK: "CONFIG_OK", RESULT: "RESULT",
    RUN_DONE: "RUN_DONE", STATUS_REPLY: "STATUS_REPLY", RESET_OK: "RESET_OK", RESULT_COMPACT: "RESULT_COMPACT", ERROR: "ERROR",
    TRAIN_CONFIG: "TRAIN_CONFIG", RUN_TRAINS: "RUN_TRAINS", TRAIN_EVENTS: "TRAIN_EVENTS", PROBE_CODES: "PROBE_CODES",
}

# error codes carried by ERROR messages
E_BAD_MESSAGE = 1
E_VERSION = 2
E_NOT_CONFIGURED = 3
E_CONFIG_INVALID = 4
E_BATCH_TOO_LARGE = 5
E_BUFFER_OVERFLOW = 6
E_UNKNOWN_COMMAND = 7
E_INTERNAL = 8
E_LINK_RESET = 9  # (1.1) the chip's link gave up sending a reply; the host asks again
E_INJECT_INVALID = 10  # (1.2) an injected current outside +-inject_max, not finite, or of the wrong shape
E_EVENT_OVERFLOW = 11  # (1.4) a sample fired more spikes than the chip's event buffer holds (max_events)
ERROR_NAMES = {
    E_BAD_MESSAGE: "BAD_MESSAGE", E_VERSION: "UNSUPPORTED_VERSION", E_NOT_CONFIGURED: "NOT_CONFIGURED",
    E_CONFIG_INVALID: "CONFIG_INVALID", E_BATCH_TOO_LARGE: "BATCH_TOO_LARGE",
    E_BUFFER_OVERFLOW: "BUFFER_OVERFLOW", E_UNKNOWN_COMMAND: "UNKNOWN_COMMAND", E_INTERNAL: "INTERNAL",
    E_LINK_RESET: "LINK_RESET", E_INJECT_INVALID: "INJECT_INVALID", E_EVENT_OVERFLOW: "EVENT_OVERFLOW",
}


def type_name(t: int) -> str:
    return NAMES.get(t, f"0x{t:02x}")


@dataclass(frozen=True)
class Message:
    type: int
    req: int
    payload: bytes = b""


def _unpack(st: struct.Struct, payload: bytes, what: str, exact: bool = True) -> tuple:
    if len(payload) < st.size or (exact and len(payload) != st.size):
        raise ProtocolError(f"{what}: payload of {len(payload)} bytes, expected {st.size}")
    return st.unpack_from(payload, 0)


# ---------------------------------------------------------------- HELLO
_HELLO = struct.Struct("<HH")  # protocol (major) version, payload size the host wants; 1.1 appends minor u8


def pack_hello(version: int, max_payload: int, minor: int | None = PROTOCOL_MINOR) -> bytes:
    """``minor=None`` packs a version 1.0 HELLO (no minor byte)."""
    return _HELLO.pack(version, max_payload) + (b"" if minor is None else bytes([minor & 0xFF]))


def unpack_hello(p: bytes) -> tuple[int, int, int]:
    """(major, payload size, minor); a 1.0 HELLO has no minor byte and reads as minor 0.
    Later versions may append more fields."""
    major, want = _unpack(_HELLO, p, "HELLO", exact=False)
    return major, want, (p[_HELLO.size] if len(p) > _HELLO.size else 0)


#: documented range of every limit a chip reports in HELLO_REPLY (docs/wire-protocol.md);
#: the host refuses a reply outside them with a ProtocolError naming the field
CHIP_LIMITS = {
    "max_payload": (16, 4096),
    "max_neurons": (1, 0xFFFF),
    "max_fanin": (1, 0xFFFF),
    "max_layers": (1, 0xFF),
    "max_bias": (0, 0xFF),
    "max_inputs": (1, 0xFFFF),
    "dac_bits": (2, 8),
    "n_ranges": (1, 32),
    "w_fs_min": (1e-6, 1e6),
    "tdc_lsb_us": (1e-6, 1e6),
    "tdc_bits": (2, 16),
    "tau_min_us": (1e-6, 1e9),
    "tau_max_us": (1e-6, 1e9),
    "i0_min": (0.0, 1e6),
    "i0_max": (0.0, 1e6),
    "max_batch": (1, 0xFFFF),
    "rx_buffer": (256, 0xFFFFFFFF),
    "inject_max": (0.0, 1e3),
}
#: (1.4) the spike-train limits, checked only when the chip speaks 1.4 (0 = a chip without the mode)
TRAIN_LIMITS = {
    "train_max_steps": (1, 0xFFFF),
    "train_max_substeps": (1, 0xFF),
    "train_max_step_ticks": (1, 0xFFFF),
    "syn_tau_min_us": (1e-9, 1e9),
    "syn_tau_max_us": (1e-9, 1e12),
    "train_i0_min": (-1e3, 1e3),
    "train_i0_max": (-1e3, 1e3),
    "v_peak_max": (1e-3, 1e3),
    "max_refractory": (0, 0xFFFF),
    "max_probe_period": (1, 0xFFFF),
    "adc_bits": (1, 16),
    "max_events": (1, 0xFFFFFFFF),
}


@dataclass(frozen=True)
class ChipInfo:
    """What the chip says about itself in HELLO_REPLY: identity and limits."""

    protocol_version: int
    fw_major: int
    fw_minor: int
    chip_id: int
    boot_id: int
    config_crc: int  # 0 = not configured
    max_payload: int  # payload size the chip will use (min of both sides)
    max_neurons: int
    max_fanin: int
    max_layers: int
    max_bias: int
    max_inputs: int
    dac_bits: int
    n_ranges: int
    w_fs_min: float  # full-scale weight of range 0; range k is w_fs_min * 2**k
    tdc_lsb_us: float
    tdc_bits: int
    tau_min_us: float
    tau_max_us: float
    i0_min: float
    i0_max: float
    baud: int
    max_batch: int
    rx_buffer: int
    protocol_minor: int = 0  # (1.1) appended after the 1.0 fields; a 1.0 chip sends none
    #: (1.2) largest |injected current| per neuron (units of the drive I0), float32 after the
    #: minor byte; 0 = the chip cannot inject (protocol below 1.2)
    inject_max: float = 0.0
    #: (1.4) spike-train limits, after inject_max (`_TRAINS`); all 0 for a chip below 1.4
    train_max_steps: int = 0
    train_max_substeps: int = 0
    train_max_step_ticks: int = 0
    syn_tau_min_us: float = 0.0
    syn_tau_max_us: float = 0.0
    train_i0_min: float = 0.0
    train_i0_max: float = 0.0
    v_peak_max: float = 0.0
    max_refractory: int = 0
    max_probe_period: int = 0
    adc_bits: int = 0
    max_events: int = 0

    _ST = struct.Struct("<HBBQIIHHHBBHBBffBffffIHI")
    _TRAINS = struct.Struct("<HBHfffffHHBI")
    _TRAIN_FIELDS = ("train_max_steps", "train_max_substeps", "train_max_step_ticks", "syn_tau_min_us",
                     "syn_tau_max_us", "train_i0_min", "train_i0_max", "v_peak_max", "max_refractory",
                     "max_probe_period", "adc_bits", "max_events")

    @property
    def has_trains(self) -> bool:
        """Whether the chip runs spike trains (protocol 1.4 or later)."""
        return self.protocol_minor >= TRAINS_MINOR

    def pack(self) -> bytes:
        return self._ST.pack(
            self.protocol_version, self.fw_major, self.fw_minor, self.chip_id, self.boot_id,
            self.config_crc, self.max_payload, self.max_neurons, self.max_fanin, self.max_layers,
            self.max_bias, self.max_inputs, self.dac_bits, self.n_ranges, self.w_fs_min, self.tdc_lsb_us,
            self.tdc_bits, self.tau_min_us, self.tau_max_us, self.i0_min, self.i0_max, self.baud,
            self.max_batch, self.rx_buffer,
        ) + (bytes([self.protocol_minor & 0xFF]) if self.protocol_minor else b"") + (
            struct.pack("<f", self.inject_max) if self.protocol_minor >= 2 else b"") + (
            self._TRAINS.pack(*(getattr(self, f) for f in self._TRAIN_FIELDS))
            if self.protocol_minor >= TRAINS_MINOR else b"")

    @classmethod
    def unpack(cls, p: bytes) -> "ChipInfo":
        head = _unpack(cls._ST, p, "HELLO_REPLY", exact=False)
        n = cls._ST.size
        minor = p[n] if len(p) > n else 0  # later versions may append more
        inject_max = 0.0
        if minor >= 2:
            if len(p) < n + 5:
                raise ProtocolError(f"HELLO_REPLY: protocol 1.{minor} reply of {len(p)} bytes lacks inject_max")
            inject_max = struct.unpack_from("<f", p, n + 1)[0]
        trains = {}
        if minor >= TRAINS_MINOR:
            if len(p) < n + 5 + cls._TRAINS.size:
                raise ProtocolError(f"HELLO_REPLY: protocol 1.{minor} reply of {len(p)} bytes lacks the spike-train limits")
            trains = dict(zip(cls._TRAIN_FIELDS, cls._TRAINS.unpack_from(p, n + 5)))
        return cls(*head, protocol_minor=minor, inject_max=inject_max, **trains)

    def validate(self) -> "ChipInfo":
        """Refuse limits outside their documented range (`CHIP_LIMITS`), and ranges
        whose ends are swapped, with a `ChipLimitError` (a `ProtocolError`) that names the field."""
        if self.protocol_version != PROTOCOL_VERSION:
            raise ChipLimitError(f"chip speaks protocol v{self.protocol_version}, host v{PROTOCOL_VERSION}")
        for name, (lo, hi) in CHIP_LIMITS.items():
            v = getattr(self, name)
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ChipLimitError(f"HELLO_REPLY: chip reports {name}={v!r}, outside the documented range {lo:g}..{hi:g}")
        pairs = [("tau_min_us", "tau_max_us"), ("i0_min", "i0_max")]
        if self.has_trains:
            for name, (lo, hi) in TRAIN_LIMITS.items():
                v = getattr(self, name)
                if not (math.isfinite(v) and lo <= v <= hi):
                    raise ChipLimitError(f"HELLO_REPLY: chip reports {name}={v!r}, outside the documented range {lo:g}..{hi:g}")
            pairs += [("syn_tau_min_us", "syn_tau_max_us"), ("train_i0_min", "train_i0_max")]
        for lo, hi in pairs:
            if getattr(self, lo) > getattr(self, hi):
                raise ChipLimitError(f"HELLO_REPLY: chip reports {lo}={getattr(self, lo)!r} above {hi}={getattr(self, hi)!r}")
        return self

    @property
    def fw_version(self) -> str:
        return f"{self.fw_major}.{self.fw_minor}"

    @property
    def protocol(self) -> str:
        return f"{self.protocol_version}.{self.protocol_minor}"


# ---------------------------------------------------------------- CONFIG
_CFG_HEAD = struct.Struct("<BHHI")  # n_layers, n_inputs, trial ticks, flags
_CFG_LAYER = struct.Struct("<HHBBfff")  # n_src (incl. bias), n_out, n_bias, range, tau_us, i0, v0


@dataclass(frozen=True)
class LayerConfig:
    """One layer as the chip stores it: DAC codes and analog bias settings."""

    codes: np.ndarray  # int8, (n_src, n_out); last n_bias rows are the bias sources
    w_range: int  # full scale = w_fs_min * 2**w_range
    tau_us: float
    i0: float
    v0: float
    bias_ticks: tuple[int, ...] = ()

    @property
    def n_out(self) -> int:
        return int(self.codes.shape[1])


@dataclass(frozen=True)
class ChipConfig:
    n_inputs: int
    trial_ticks: int
    layers: tuple[LayerConfig, ...]

    @property
    def n_neurons(self) -> int:
        return sum(layer.n_out for layer in self.layers)

    def pack(self) -> bytes:
        out = bytearray(_CFG_HEAD.pack(len(self.layers), self.n_inputs, self.trial_ticks, 0))
        for layer in self.layers:
            codes = np.asarray(layer.codes)
            n_src, n_out = codes.shape
            out += _CFG_LAYER.pack(n_src, n_out, len(layer.bias_ticks), layer.w_range, layer.tau_us, layer.i0, layer.v0)
            out += np.asarray(layer.bias_ticks, dtype="<u2").tobytes()
            out += codes.astype(np.int8).tobytes()
        return bytes(out)

    @classmethod
    def unpack(cls, p: bytes) -> "ChipConfig":
        n_layers, n_inputs, trial_ticks, _flags = _unpack(_CFG_HEAD, p, "CONFIG", exact=False)
        off = _CFG_HEAD.size
        layers = []
        for i in range(n_layers):
            if len(p) < off + _CFG_LAYER.size:
                raise ProtocolError(f"CONFIG: truncated in the header of layer {i}")
            n_src, n_out, n_bias, w_range, tau, i0, v0 = _CFG_LAYER.unpack_from(p, off)
            off += _CFG_LAYER.size
            need = 2 * n_bias + n_src * n_out
            if len(p) < off + need:
                raise ProtocolError(f"CONFIG: layer {i} needs {need} bytes of biases and codes, {len(p) - off} left")
            bias = tuple(int(x) for x in np.frombuffer(p, dtype="<u2", count=n_bias, offset=off))
            off += 2 * n_bias
            codes = np.frombuffer(p, dtype=np.int8, count=n_src * n_out, offset=off).reshape(n_src, n_out).copy()
            off += n_src * n_out
            layers.append(LayerConfig(codes=codes, w_range=w_range, tau_us=tau, i0=i0, v0=v0, bias_ticks=bias))
        if off != len(p):
            raise ProtocolError(f"CONFIG: {len(p) - off} trailing bytes after {n_layers} layers")
        return cls(n_inputs=n_inputs, trial_ticks=trial_ticks, layers=tuple(layers))


# ---------------------------------------------------------------- RUN
_RUN = struct.Struct("<IIHH")  # run seed, first sample index, n_samples, n_inputs


def pack_run(seed: int, first: int, ticks: np.ndarray) -> bytes:
    ticks = np.asarray(ticks, dtype="<u2")
    return _RUN.pack(seed & 0xFFFFFFFF, first, ticks.shape[0], ticks.shape[1]) + ticks.tobytes()


def unpack_run(p: bytes) -> tuple[int, int, np.ndarray]:
    seed, first, n, k = _unpack(_RUN, p, "RUN", exact=False)
    if len(p) != _RUN.size + 2 * n * k:
        raise ProtocolError(f"RUN: {n} samples x {k} inputs need {_RUN.size + 2 * n * k} bytes, got {len(p)}")
    return seed, first, np.frombuffer(p, dtype="<u2", offset=_RUN.size).reshape(n, k).copy()


# ---------------------------------------------------------------- RUN_INJECT (1.2)
_INJ = struct.Struct("<IIHHHBB")  # seed, first, n_samples, n_inputs, n_neurons, flags, reserved
INJ_PER_SAMPLE = 0x01  # flag: an (n_samples, n_neurons) float32 perturbation follows the DC vector


def pack_run_inject(seed: int, first: int, ticks: np.ndarray, dc: np.ndarray,
                    per_sample: np.ndarray | None = None) -> bytes:
    """A RUN whose neurons get ``dc[k] (+ per_sample[s, k])`` added to their drive."""
    ticks = np.asarray(ticks, dtype="<u2")
    dc = np.asarray(dc, dtype="<f4").reshape(-1)
    n, k = ticks.shape
    head = _INJ.pack(seed & 0xFFFFFFFF, first, n, k, dc.size, INJ_PER_SAMPLE if per_sample is not None else 0, 0)
    out = head + ticks.tobytes() + dc.tobytes()
    if per_sample is not None:
        ps = np.asarray(per_sample, dtype="<f4")
        if ps.shape != (n, dc.size):
            raise ValueError(f"per-sample injection of shape {ps.shape}, expected {(n, dc.size)}")
        out += ps.tobytes()
    return out


def unpack_run_inject(p: bytes) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray | None]:
    """(seed, first, ticks, dc, per_sample or None)."""
    seed, first, n, k, m, flags, _ = _unpack(_INJ, p, "RUN_INJECT", exact=False)
    if flags & ~INJ_PER_SAMPLE:
        raise ProtocolError(f"RUN_INJECT: unknown flags {flags:#x}")
    need = _INJ.size + 2 * n * k + 4 * m + (4 * n * m if flags & INJ_PER_SAMPLE else 0)
    if len(p) != need:
        raise ProtocolError(f"RUN_INJECT: {n} samples x {k} inputs, {m} neurons need {need} bytes, got {len(p)}")
    off = _INJ.size
    ticks = np.frombuffer(p, dtype="<u2", count=n * k, offset=off).reshape(n, k).copy()
    off += 2 * n * k
    dc = np.frombuffer(p, dtype="<f4", count=m, offset=off).astype(np.float64)
    off += 4 * m
    ps = None
    if flags & INJ_PER_SAMPLE:
        ps = np.frombuffer(p, dtype="<f4", count=n * m, offset=off).reshape(n, m).astype(np.float64)
    return seed, first, ticks, dc, ps


def run_inject_bytes(n: int, k: int, m: int, per_sample: bool) -> int:
    """Size of a RUN_INJECT payload (for batching under the chip's receive buffer)."""
    return _INJ.size + 2 * n * k + 4 * m + (4 * n * m if per_sample else 0)


# ---------------------------------------------------------------- RESULT
_RESULT = struct.Struct("<IHH")  # first sample index, n_samples, n_neurons
RESULT_HEADER = _RESULT.size


def pack_result(first: int, ticks: np.ndarray) -> bytes:
    ticks = np.asarray(ticks, dtype="<u2")
    return _RESULT.pack(first, ticks.shape[0], ticks.shape[1]) + ticks.tobytes()


def unpack_result(p: bytes) -> tuple[int, np.ndarray]:
    first, n, k = _unpack(_RESULT, p, "RESULT", exact=False)
    if len(p) != _RESULT.size + 2 * n * k:
        raise ProtocolError(f"RESULT: {n} samples x {k} neurons need {_RESULT.size + 2 * n * k} bytes, got {len(p)}")
    return first, np.frombuffer(p, dtype="<u2", offset=_RESULT.size).reshape(n, k).copy()


# ---------------------------------------------------------------- RESULT_COMPACT (1.3)
# first sample index, n_samples, n_neurons, encoding, tick bits, fired count
_COMPACT = struct.Struct("<IHHBBI")
COMPACT_HEADER = _COMPACT.size
ENC_DENSE = 0  # every neuron's tick as u16, NO_SPIKE for silent (as RESULT): when most fire with wide ticks
ENC_BITMAP = 1  # a bit per (sample, neuron): fired; then the fired neurons' ticks in that order
ENC_PAIRS = 2  # the fired neurons' flat indices (sample * n_neurons + neuron), ascending; then their ticks
ENC_NAMES = {ENC_DENSE: "dense", ENC_BITMAP: "bitmap", ENC_PAIRS: "pairs"}


def _bits(x: int) -> int:
    return int(x).bit_length()


def _pack_bits(values: np.ndarray, width: int) -> bytes:
    """``values`` as ``width``-bit unsigned fields, least significant bit first, in
    one bit stream padded with zeros to a whole byte."""
    if width == 0 or values.size == 0:
        return b""
    v = np.asarray(values, dtype=np.uint32)
    bits = ((v[:, None] >> np.arange(width, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def _unpack_bits(p: bytes, offset: int, count: int, width: int, what: str,
                 msg: str = "RESULT_COMPACT") -> tuple[np.ndarray, int]:
    """(``count`` ``width``-bit fields from ``p[offset:]``, the offset after them)."""
    nbytes = (count * width + 7) // 8
    if len(p) < offset + nbytes:
        raise ProtocolError(f"{msg}: {what} needs {nbytes} bytes, {len(p) - offset} left")
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64), offset + nbytes
    bits = np.unpackbits(np.frombuffer(p, dtype=np.uint8, count=nbytes, offset=offset), bitorder="little")
    fields = bits[: count * width].reshape(count, width).astype(np.int64)
    return fields @ (np.int64(1) << np.arange(width, dtype=np.int64)), offset + nbytes


def compact_sizes(n: int, m: int, fired: int, max_tick: int) -> dict[int, int]:
    """Payload bytes of a RESULT_COMPACT of ``n`` samples x ``m`` neurons with
    ``fired`` spikes, the largest tick ``max_tick``, in each encoding."""
    tb = _bits(max_tick) if fired else 0
    ticks = (fired * tb + 7) // 8
    return {ENC_DENSE: COMPACT_HEADER + 2 * n * m,
            ENC_BITMAP: COMPACT_HEADER + (n * m + 7) // 8 + ticks,
            ENC_PAIRS: COMPACT_HEADER + (fired * _bits(max(n * m - 1, 0)) + 7) // 8 + ticks}


def pack_result_compact(first: int, ticks: np.ndarray) -> bytes:
    """(1.3) ``ticks`` (n, m) as only what the host needs: which neurons fired and
    their ticks (``NO_SPIKE`` marks the silent ones), in whichever encoding is
    smallest for these samples (a bitmap plus ticks, (index, tick) pairs, or,
    when nearly all fire with wide ticks, the plain u16 ticks of RESULT); packed
    ticks take as many bits as the largest of them needs."""
    t = np.asarray(ticks, dtype=np.uint16)
    n, m = t.shape
    flat = t.reshape(-1)
    idx = np.flatnonzero(flat != NO_SPIKE)
    vals = flat[idx]
    max_tick = int(vals.max()) if idx.size else 0
    sizes = compact_sizes(n, m, idx.size, max_tick)
    enc = min(sizes, key=lambda e: (sizes[e], -e))  # on a tie the denser-packed form
    tb = _bits(max_tick) if idx.size else 0
    head = _COMPACT.pack(first, n, m, enc, tb, idx.size)
    if enc == ENC_DENSE:
        return head + t.astype("<u2").tobytes()
    if enc == ENC_BITMAP:
        body = np.packbits(flat != NO_SPIKE, bitorder="little").tobytes()
    else:
        body = _pack_bits(idx, _bits(max(n * m - 1, 0)))
    return head + body + _pack_bits(vals, tb)


def unpack_result_compact(p: bytes) -> tuple[int, np.ndarray]:
    """(first, ticks (n, m) uint16 with ``NO_SPIKE`` for the neurons that did not fire)."""
    first, n, m, enc, tb, fired = _unpack(_COMPACT, p, "RESULT_COMPACT", exact=False)
    if enc not in ENC_NAMES:
        raise ProtocolError(f"RESULT_COMPACT: unknown encoding {enc}")
    if tb > 16 or fired > n * m:
        raise ProtocolError(f"RESULT_COMPACT: {fired} spikes of {tb}-bit ticks in {n} samples x {m} neurons")
    off = COMPACT_HEADER
    if enc == ENC_DENSE:
        if len(p) != off + 2 * n * m:
            raise ProtocolError(f"RESULT_COMPACT: {n} x {m} dense ticks need {off + 2 * n * m} bytes, got {len(p)}")
        out = np.frombuffer(p, dtype="<u2", offset=off).reshape(n, m).astype(np.uint16)
        if int((out != NO_SPIKE).sum()) != fired:
            raise ProtocolError(f"RESULT_COMPACT: the ticks hold {int((out != NO_SPIKE).sum())} spikes, the header {fired}")
        return first, out
    if enc == ENC_BITMAP:
        nbytes = (n * m + 7) // 8
        if len(p) < off + nbytes:
            raise ProtocolError(f"RESULT_COMPACT: the bitmap needs {nbytes} bytes, {len(p) - off} left")
        mask = np.unpackbits(np.frombuffer(p, dtype=np.uint8, count=nbytes, offset=off), bitorder="little")[: n * m]
        idx = np.flatnonzero(mask)
        off += nbytes
        if idx.size != fired:
            raise ProtocolError(f"RESULT_COMPACT: the bitmap marks {idx.size} spikes, the header {fired}")
    else:
        idx, off = _unpack_bits(p, off, fired, _bits(max(n * m - 1, 0)), "the spike indices")
        if fired and (np.any(np.diff(idx) <= 0) or idx[-1] >= n * m):
            raise ProtocolError("RESULT_COMPACT: spike indices not ascending within the samples")
    vals, off = _unpack_bits(p, off, fired, tb, "the ticks")
    if off != len(p):
        raise ProtocolError(f"RESULT_COMPACT: {len(p) - off} trailing bytes")
    if fired and vals.max() > MAX_TICK:
        raise ProtocolError("RESULT_COMPACT: a fired neuron's tick is 0xFFFF")
    out = np.full(n * m, NO_SPIKE, dtype=np.uint16)
    out[idx] = vals
    return first, out.reshape(n, m)


_DONE = struct.Struct("<Iff")  # samples run, chip (analog) seconds, firmware compute seconds


def pack_done(n: int, chip_s: float, compute_s: float) -> bytes:
    return _DONE.pack(n, chip_s, compute_s)


def unpack_done(p: bytes) -> tuple[int, float, float]:
    return _unpack(_DONE, p, "RUN_DONE")


# ---------------------------------------------------------------- STATUS / ERROR / misc
_STATUS = struct.Struct("<IIIIIIII")
STATUS_FIELDS = ("boot_id", "config_crc", "runs", "samples", "frames_rx", "frame_errors", "retransmits", "uptime_ms")


def pack_status(**values: int) -> bytes:
    return _STATUS.pack(*(int(values[k]) & 0xFFFFFFFF for k in STATUS_FIELDS))


def unpack_status(p: bytes) -> dict:
    return dict(zip(STATUS_FIELDS, _unpack(_STATUS, p, "STATUS_REPLY")))


def pack_config_ok(crc: int) -> bytes:
    return struct.pack("<I", crc)


def unpack_config_ok(p: bytes) -> int:
    return _unpack(struct.Struct("<I"), p, "CONFIG_OK")[0]


def pack_error(code: int, text: str) -> bytes:
    return bytes([code & 0xFF]) + text.encode("utf-8", "replace")[:512]


def unpack_error(p: bytes) -> tuple[int, str, str]:
    if not p:
        raise ProtocolError("ERROR: empty payload")
    code = p[0]
    return code, ERROR_NAMES.get(code, f"error {code}"), p[1:].decode("utf-8", "replace")


def config_crc(payload: bytes) -> int:
    """Identity of a configuration: CRC-32 of its packed form, never 0."""
    import zlib

    return (zlib.crc32(payload) & 0xFFFFFFFF) or 1


# ================================================================ spike-train mode (1.4)
_TCFG_HEAD = struct.Struct("<BHHHBHB")  # n_layers, n_inputs, n_steps, step_ticks, substeps, probe_period, flags
# n_src (incl. bias), n_out, n_bias, w_range, has_rec, rec_range, spiking, refractory (steps),
# tau_us, syn_tau_us (inf: no leak), i0, v_peak, v_reset, v_init
_TCFG_LAYER = struct.Struct("<HHBBBBBHffffff")


@dataclass(frozen=True)
class TrainLayerConfig:
    """One spike-train layer as the chip stores it (docs/qif-chip-trains.md)."""

    codes: np.ndarray  # int8 (n_src, n_out); the last n_bias rows are the bias lines
    w_range: int
    tau_us: float
    syn_tau_us: float  # synaptic current time constant; inf = no decay
    i0: float
    v_peak: float
    v_reset: float
    v_init: float = 0.0
    refractory: int = 0  # steps
    spiking: bool = True
    bias_steps: tuple[int, ...] = ()  # the step each bias line spikes at, every trial
    rec_codes: np.ndarray | None = None  # int8 (n_out, n_out): neuron k -> neuron j, or None
    rec_range: int = 0

    @property
    def n_out(self) -> int:
        return int(self.codes.shape[1])


@dataclass(frozen=True)
class TrainsConfig:
    n_inputs: int
    n_steps: int
    step_ticks: int  # the network step dt in TDC ticks
    substeps: int  # integrator substeps per step
    probe_period: int  # steps between membrane ADC samples (when a RUN_TRAINS asks for them)
    layers: tuple[TrainLayerConfig, ...]

    @property
    def n_neurons(self) -> int:
        return sum(layer.n_out for layer in self.layers)

    @property
    def n_probe_steps(self) -> int:
        """Membrane samples per trial: steps 0, p, 2p, ... (end of each such step)."""
        return -(-self.n_steps // self.probe_period)

    def pack(self) -> bytes:
        out = bytearray(_TCFG_HEAD.pack(len(self.layers), self.n_inputs, self.n_steps, self.step_ticks,
                                        self.substeps, self.probe_period, 0))
        for L in self.layers:
            codes = np.asarray(L.codes)
            n_src, n_out = codes.shape
            rec = L.rec_codes is not None
            out += _TCFG_LAYER.pack(n_src, n_out, len(L.bias_steps), L.w_range, int(rec), L.rec_range if rec else 0,
                                    int(bool(L.spiking)), L.refractory, L.tau_us, L.syn_tau_us, L.i0, L.v_peak,
                                    L.v_reset, L.v_init)
            out += np.asarray(L.bias_steps, dtype="<u2").tobytes()
            out += codes.astype(np.int8).tobytes()
            if rec:
                out += np.asarray(L.rec_codes).astype(np.int8).tobytes()
        return bytes(out)

    @classmethod
    def unpack(cls, p: bytes) -> "TrainsConfig":
        n_layers, n_inputs, n_steps, step_ticks, substeps, period, flags = _unpack(_TCFG_HEAD, p, "TRAIN_CONFIG", exact=False)
        if flags:
            raise ProtocolError(f"TRAIN_CONFIG: unknown flags {flags:#x}")
        off = _TCFG_HEAD.size
        layers = []
        for i in range(n_layers):
            if len(p) < off + _TCFG_LAYER.size:
                raise ProtocolError(f"TRAIN_CONFIG: truncated in the header of layer {i}")
            (n_src, n_out, n_bias, w_range, rec, rec_range, spiking, refr, tau, stau, i0, vp, vr,
             vi) = _TCFG_LAYER.unpack_from(p, off)
            off += _TCFG_LAYER.size
            if rec > 1 or spiking > 1:
                raise ProtocolError(f"TRAIN_CONFIG: layer {i} has flag bytes {rec}, {spiking} (0 or 1 expected)")
            need = 2 * n_bias + n_src * n_out + (n_out * n_out if rec else 0)
            if len(p) < off + need:
                raise ProtocolError(f"TRAIN_CONFIG: layer {i} needs {need} bytes of biases and codes, {len(p) - off} left")
            bias = tuple(int(x) for x in np.frombuffer(p, dtype="<u2", count=n_bias, offset=off))
            off += 2 * n_bias
            codes = np.frombuffer(p, dtype=np.int8, count=n_src * n_out, offset=off).reshape(n_src, n_out).copy()
            off += n_src * n_out
            rc = None
            if rec:
                rc = np.frombuffer(p, dtype=np.int8, count=n_out * n_out, offset=off).reshape(n_out, n_out).copy()
                off += n_out * n_out
            layers.append(TrainLayerConfig(codes=codes, w_range=w_range, tau_us=tau, syn_tau_us=stau, i0=i0, v_peak=vp,
                                           v_reset=vr, v_init=vi, refractory=refr, spiking=bool(spiking),
                                           bias_steps=bias, rec_codes=rc, rec_range=rec_range))
        if off != len(p):
            raise ProtocolError(f"TRAIN_CONFIG: {len(p) - off} trailing bytes after {n_layers} layers")
        return cls(n_inputs=n_inputs, n_steps=n_steps, step_ticks=step_ticks, substeps=substeps,
                   probe_period=period, layers=tuple(layers))


def _pack_event_lists(counts: np.ndarray, idx: np.ndarray) -> tuple[bytes, int, int]:
    """Per-sample event counts and the flat event indices (ascending within each sample)
    as two bit-packed fields: (bytes, count bits, index bits)."""
    cb = _bits(int(counts.max(initial=0)))
    ib = _bits(int(idx.max(initial=0)))
    return _pack_bits(counts, cb) + _pack_bits(idx, ib), cb, ib


def _unpack_event_lists(p: bytes, off: int, n: int, total: int, cb: int, ib: int, slots: int, what: str):
    if cb > 32 or ib > 32:
        raise ProtocolError(f"{what}: field widths {cb}, {ib} bits (at most 32)")
    counts, off = _unpack_bits(p, off, n, cb, "the event counts", what)
    if int(counts.sum()) != total:
        raise ProtocolError(f"{what}: the counts add up to {int(counts.sum())} events, the header says {total}")
    idx, off = _unpack_bits(p, off, total, ib, "the event indices", what)
    if off != len(p):
        raise ProtocolError(f"{what}: {len(p) - off} trailing bytes")
    if total and idx.max() >= slots:
        raise ProtocolError(f"{what}: an event index beyond the {slots} (step, line) slots of a sample")
    # ascending (equal allowed: two spikes in one step) within each sample
    starts = np.r_[0, np.cumsum(counts)[:-1]] if n else np.zeros(0, np.int64)
    d = np.diff(idx)
    new = np.zeros(max(total - 1, 0), bool)
    bounds = starts[(starts > 0) & (starts < total)] - 1
    new[bounds] = True
    if np.any((d < 0) & ~new):
        raise ProtocolError(f"{what}: event indices not ascending within a sample")
    return counts.astype(np.int64), idx.astype(np.int64)


# ---------------------------------------------------------------- RUN_TRAINS (1.4)
# seed, first sample index, n_samples, n_inputs, n_steps, flags, probe layer mask, count bits, index bits, events
_RUNT = struct.Struct("<IIHHHBBBBI")
RUNT_PROBE = 0x01  # flag: sample the membranes of the layers in the mask (PROBE_CODES replies)


def pack_run_trains(seed: int, first: int, n_inputs: int, n_steps: int, counts: np.ndarray, idx: np.ndarray,
                    probe_mask: int = 0) -> bytes:
    """A batch of input spike trains: ``counts[s]`` events for sample s, then every
    event as ``step * n_inputs + input``, ascending within each sample."""
    counts = np.asarray(counts, dtype=np.int64)
    idx = np.asarray(idx, dtype=np.int64)
    body, cb, ib = _pack_event_lists(counts, idx)
    return _RUNT.pack(seed & 0xFFFFFFFF, first, counts.size, n_inputs, n_steps, RUNT_PROBE if probe_mask else 0,
                      probe_mask & 0xFF, cb, ib, idx.size) + body


def unpack_run_trains(p: bytes):
    """(seed, first, n_inputs, n_steps, counts, idx, probe layer mask)."""
    seed, first, n, k, steps, flags, mask, cb, ib, total = _unpack(_RUNT, p, "RUN_TRAINS", exact=False)
    if flags & ~RUNT_PROBE:
        raise ProtocolError(f"RUN_TRAINS: unknown flags {flags:#x}")
    counts, idx = _unpack_event_lists(p, _RUNT.size, n, total, cb, ib, steps * k, "RUN_TRAINS")
    return seed, first, k, steps, counts, idx, (mask if flags & RUNT_PROBE else 0)


def raster_events(raster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_steps, n, k) raster (nonzero = spike) -> per-sample counts and flat indices
    ``step * k + line`` ascending within each sample (a nonzero count c sends c events)."""
    r = np.asarray(raster)
    T, n, k = r.shape
    per = np.ascontiguousarray(np.moveaxis(r, 1, 0)).reshape(n, T * k).astype(np.int64)
    s, j = np.nonzero(per)
    rep = per[s, j]
    counts = np.bincount(s, weights=rep, minlength=n).astype(np.int64)
    return counts, np.repeat(j, rep)


def events_raster(counts: np.ndarray, idx: np.ndarray, n_steps: int, k: int, dtype=np.uint8) -> np.ndarray:
    """The inverse of `raster_events`: an (n_steps, n, k) array of spike counts."""
    n = counts.size
    s = np.repeat(np.arange(n), counts)
    r = np.zeros((n, n_steps * k), dtype=dtype)
    np.add.at(r, (s, idx), 1)
    return np.moveaxis(r.reshape(n, n_steps, k), 1, 0)


# ---------------------------------------------------------------- TRAIN_EVENTS (1.4)
# first sample index, n_samples, n_neurons, n_steps, count bits, index bits, events
_TEV = struct.Struct("<IHHHBBI")
TRAIN_EVENTS_HEADER = _TEV.size


def pack_train_events(first: int, n_neurons: int, n_steps: int, counts: np.ndarray, idx: np.ndarray) -> bytes:
    """Every spike of samples ``first..first+len(counts)-1``: ``counts[s]`` events each,
    ``step * n_neurons + neuron`` ascending within a sample (all layers' neurons, in order)."""
    counts = np.asarray(counts, dtype=np.int64)
    idx = np.asarray(idx, dtype=np.int64)
    body, cb, ib = _pack_event_lists(counts, idx)
    return _TEV.pack(first, counts.size, n_neurons, n_steps, cb, ib, idx.size) + body


def unpack_train_events(p: bytes):
    """(first, n_neurons, n_steps, counts, idx)."""
    first, n, m, steps, cb, ib, total = _unpack(_TEV, p, "TRAIN_EVENTS", exact=False)
    counts, idx = _unpack_event_lists(p, _TEV.size, n, total, cb, ib, steps * m, "TRAIN_EVENTS")
    return first, m, steps, counts, idx


def train_events_bytes(counts: np.ndarray, n_neurons: int, n_steps: int) -> int:
    """Payload size of a TRAIN_EVENTS for these per-sample counts (for cutting pieces)."""
    counts = np.asarray(counts)
    cb = _bits(int(counts.max(initial=0)))
    ib = _bits(max(n_neurons * n_steps - 1, 0))
    return _TEV.size + (counts.size * cb + 7) // 8 + (int(counts.sum()) * ib + 7) // 8


# ---------------------------------------------------------------- PROBE_CODES (1.4)
# first sample index, n_samples, n_neurons (of the probed layers), n_probe_steps, code bits, layer mask
_PRB = struct.Struct("<IHHHBB")
PROBE_HEADER = _PRB.size


def pack_probe_codes(first: int, codes: np.ndarray, bits: int, mask: int) -> bytes:
    """ADC codes (n_samples, n_probe_steps, n_neurons of the probed layers), ``bits`` each, packed."""
    c = np.asarray(codes)
    n, ps, m = c.shape
    body = c.astype(np.uint8).tobytes() if bits == 8 else _pack_bits(c.reshape(-1), bits)
    return _PRB.pack(first, n, m, ps, bits, mask) + body


def unpack_probe_codes(p: bytes):
    """(first, layer mask, codes (n_samples, n_probe_steps, n_neurons) int64)."""
    first, n, m, ps, bits, mask = _unpack(_PRB, p, "PROBE_CODES", exact=False)
    if not 1 <= bits <= 16:
        raise ProtocolError(f"PROBE_CODES: {bits}-bit codes (1..16 expected)")
    count = n * ps * m
    if bits == 8:
        if len(p) != _PRB.size + count:
            raise ProtocolError(f"PROBE_CODES: {n} x {ps} x {m} codes need {_PRB.size + count} bytes, got {len(p)}")
        v = np.frombuffer(p, dtype=np.uint8, offset=_PRB.size).astype(np.int64)
    else:
        v, off = _unpack_bits(p, _PRB.size, count, bits, "the ADC codes", "PROBE_CODES")
        if off != len(p):
            raise ProtocolError(f"PROBE_CODES: {len(p) - off} trailing bytes")
    return first, mask, v.reshape(n, ps, m)


def probe_codes_bytes(n: int, n_probe_steps: int, m: int, bits: int) -> int:
    return _PRB.size + (n * n_probe_steps * m * bits + 7) // 8
