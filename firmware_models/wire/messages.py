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
#: 1.3: RESULT_COMPACT, only the fired neurons' ticks, sent to hosts whose HELLO says minor >= 3)
PROTOCOL_MINOR = 3
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
# chip -> host replies
HELLO_REPLY = 0x20
CONFIG_OK = 0x21
RESULT = 0x22
RUN_DONE = 0x23
STATUS_REPLY = 0x24
RESET_OK = 0x25
RESULT_COMPACT = 0x26  # (1.3) RESULT carrying only the fired neurons' ticks, bit-packed
ERROR = 0x2F

NAMES = {
    ACK: "ACK", NAK: "NAK", HELLO: "HELLO", CONFIG: "CONFIG", RUN: "RUN", STATUS: "STATUS",
    RESET: "RESET", RUN_INJECT: "RUN_INJECT", HELLO_REPLY: "HELLO_REPLY", CONFIG_OK: "CONFIG_OK", RESULT: "RESULT",
    RUN_DONE: "RUN_DONE", STATUS_REPLY: "STATUS_REPLY", RESET_OK: "RESET_OK", RESULT_COMPACT: "RESULT_COMPACT", ERROR: "ERROR",
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
ERROR_NAMES = {
    E_BAD_MESSAGE: "BAD_MESSAGE", E_VERSION: "UNSUPPORTED_VERSION", E_NOT_CONFIGURED: "NOT_CONFIGURED",
    E_CONFIG_INVALID: "CONFIG_INVALID", E_BATCH_TOO_LARGE: "BATCH_TOO_LARGE",
    E_BUFFER_OVERFLOW: "BUFFER_OVERFLOW", E_UNKNOWN_COMMAND: "UNKNOWN_COMMAND", E_INTERNAL: "INTERNAL",
    E_LINK_RESET: "LINK_RESET", E_INJECT_INVALID: "INJECT_INVALID",
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

    _ST = struct.Struct("<HBBQIIHHHBBHBBffBffffIHI")

    def pack(self) -> bytes:
        return self._ST.pack(
            self.protocol_version, self.fw_major, self.fw_minor, self.chip_id, self.boot_id,
            self.config_crc, self.max_payload, self.max_neurons, self.max_fanin, self.max_layers,
            self.max_bias, self.max_inputs, self.dac_bits, self.n_ranges, self.w_fs_min, self.tdc_lsb_us,
            self.tdc_bits, self.tau_min_us, self.tau_max_us, self.i0_min, self.i0_max, self.baud,
            self.max_batch, self.rx_buffer,
        ) + (bytes([self.protocol_minor & 0xFF]) if self.protocol_minor else b"") + (
            struct.pack("<f", self.inject_max) if self.protocol_minor >= 2 else b"")

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
        return cls(*head, protocol_minor=minor, inject_max=inject_max)

    def validate(self) -> "ChipInfo":
        """Refuse limits outside their documented range (`CHIP_LIMITS`), and ranges
        whose ends are swapped, with a `ChipLimitError` (a `ProtocolError`) that names the field."""
        if self.protocol_version != PROTOCOL_VERSION:
            raise ChipLimitError(f"chip speaks protocol v{self.protocol_version}, host v{PROTOCOL_VERSION}")
        for name, (lo, hi) in CHIP_LIMITS.items():
            v = getattr(self, name)
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ChipLimitError(f"HELLO_REPLY: chip reports {name}={v!r}, outside the documented range {lo:g}..{hi:g}")
        for lo, hi in (("tau_min_us", "tau_max_us"), ("i0_min", "i0_max")):
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


def _unpack_bits(p: bytes, offset: int, count: int, width: int, what: str) -> tuple[np.ndarray, int]:
    """(``count`` ``width``-bit fields from ``p[offset:]``, the offset after them)."""
    nbytes = (count * width + 7) // 8
    if len(p) < offset + nbytes:
        raise ProtocolError(f"RESULT_COMPACT: {what} needs {nbytes} bytes, {len(p) - offset} left")
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
