"""Message types and their payloads (see docs/wire-protocol.md).

A message is ``(type, req, payload)``; the link layer carries it in one or
more frames. Spike times cross the wire as TDC ticks in ``uint16``
(`NO_SPIKE` = 0xFFFF for "no spike"), weights as signed DAC codes in
``int8``: a batch of samples is a few compact arrays, not text.

Every ``unpack_*`` raises `ProtocolError` (never struct/numpy errors) when
the payload does not have the shape the type promises.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .errors import ProtocolError

PROTOCOL_VERSION = 1
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
# chip -> host replies
HELLO_REPLY = 0x20
CONFIG_OK = 0x21
RESULT = 0x22
RUN_DONE = 0x23
STATUS_REPLY = 0x24
RESET_OK = 0x25
ERROR = 0x2F

NAMES = {
    ACK: "ACK", NAK: "NAK", HELLO: "HELLO", CONFIG: "CONFIG", RUN: "RUN", STATUS: "STATUS",
    RESET: "RESET", HELLO_REPLY: "HELLO_REPLY", CONFIG_OK: "CONFIG_OK", RESULT: "RESULT",
    RUN_DONE: "RUN_DONE", STATUS_REPLY: "STATUS_REPLY", RESET_OK: "RESET_OK", ERROR: "ERROR",
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
ERROR_NAMES = {
    E_BAD_MESSAGE: "BAD_MESSAGE", E_VERSION: "UNSUPPORTED_VERSION", E_NOT_CONFIGURED: "NOT_CONFIGURED",
    E_CONFIG_INVALID: "CONFIG_INVALID", E_BATCH_TOO_LARGE: "BATCH_TOO_LARGE",
    E_BUFFER_OVERFLOW: "BUFFER_OVERFLOW", E_UNKNOWN_COMMAND: "UNKNOWN_COMMAND", E_INTERNAL: "INTERNAL",
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
_HELLO = struct.Struct("<HH")  # protocol version, payload size the host wants


def pack_hello(version: int, max_payload: int) -> bytes:
    return _HELLO.pack(version, max_payload)


def unpack_hello(p: bytes) -> tuple[int, int]:
    return _unpack(_HELLO, p, "HELLO", exact=False)  # later versions may append fields


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

    _ST = struct.Struct("<HBBQIIHHHBBHBBffBffffIHI")

    def pack(self) -> bytes:
        return self._ST.pack(
            self.protocol_version, self.fw_major, self.fw_minor, self.chip_id, self.boot_id,
            self.config_crc, self.max_payload, self.max_neurons, self.max_fanin, self.max_layers,
            self.max_bias, self.max_inputs, self.dac_bits, self.n_ranges, self.w_fs_min, self.tdc_lsb_us,
            self.tdc_bits, self.tau_min_us, self.tau_max_us, self.i0_min, self.i0_max, self.baud,
            self.max_batch, self.rx_buffer,
        )

    @classmethod
    def unpack(cls, p: bytes) -> "ChipInfo":
        return cls(*_unpack(cls._ST, p, "HELLO_REPLY", exact=False))

    @property
    def fw_version(self) -> str:
        return f"{self.fw_major}.{self.fw_minor}"


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
