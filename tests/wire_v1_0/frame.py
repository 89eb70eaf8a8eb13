"""Frames: the unit that crosses the wire, and the stream decoder.

On the wire a frame is ``COBS(body) 0x00`` and the body is::

    type u8 | flags u8 | seq u16 | req u16 | len u16 | payload[len] | crc32 u32

all little-endian. ``crc32`` is the IEEE 802.3 CRC-32 (zlib's) of everything
before it. ``seq`` numbers frames per direction (for acknowledgement and
duplicate suppression), ``req`` ties replies to the request that caused them.
``len`` is redundant with the frame length on purpose: a truncated frame whose
CRC happens to match is still rejected. Payloads are bounded by
`MAX_PAYLOAD`, so a receiver needs a fixed buffer and discards anything longer
without waiting for a delimiter that may never come.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .cobs import cobs_decode, cobs_encode
from .errors import FrameError

HEADER = struct.Struct("<BBHHH")
CRC = struct.Struct("<I")
OVERHEAD = HEADER.size + CRC.size  # 12 bytes of body around the payload
#: hard bound on a frame's payload; the negotiated size may be smaller
MAX_PAYLOAD = 4096
#: longest body and longest encoded frame (COBS adds one byte per 254, plus one)
MAX_BODY = OVERHEAD + MAX_PAYLOAD
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 2

# flags
F_MORE = 0x01  # more fragments of this message follow
F_SYNC = 0x02  # sender's first frame since boot/open: accept whatever its seq


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    req: int = 0
    payload: bytes = b""
    flags: int = 0

    def encode(self) -> bytes:
        return encode_frame(self)


def encode_frame(f: Frame) -> bytes:
    if len(f.payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(f.payload)} bytes exceeds the frame bound {MAX_PAYLOAD}")
    head = HEADER.pack(f.type & 0xFF, f.flags & 0xFF, f.seq & 0xFFFF, f.req & 0xFFFF, len(f.payload))
    body = head + bytes(f.payload)
    body += CRC.pack(zlib.crc32(body) & 0xFFFFFFFF)
    return cobs_encode(body) + b"\x00"


def decode_body(body: bytes) -> Frame:
    if len(body) < OVERHEAD:
        raise FrameError(f"frame of {len(body)} bytes is shorter than the {OVERHEAD}-byte minimum")
    if len(body) > MAX_BODY:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_BODY}-byte bound")
    (crc,) = CRC.unpack_from(body, len(body) - CRC.size)
    if zlib.crc32(body[: -CRC.size]) & 0xFFFFFFFF != crc:
        raise FrameError("CRC mismatch")
    ftype, flags, seq, req, length = HEADER.unpack_from(body, 0)
    payload = body[HEADER.size : -CRC.size]
    if length != len(payload):
        raise FrameError(f"length field says {length} bytes, frame carries {len(payload)}")
    return Frame(type=ftype, seq=seq, req=req, payload=bytes(payload), flags=flags)


def decode_frame(encoded: bytes) -> Frame:
    """One encoded frame, without or with its trailing delimiter."""
    encoded = bytes(encoded)
    if encoded.endswith(b"\x00"):
        encoded = encoded[:-1]
    if len(encoded) > MAX_ENCODED:
        raise FrameError(f"encoded frame of {len(encoded)} bytes exceeds the {MAX_ENCODED}-byte bound")
    return decode_body(cobs_decode(encoded))


class FrameDecoder:
    """Turns a byte stream into frames. Never raises: every chunk between
    delimiters yields either a `Frame` or a `FrameError` describing why it was
    dropped, so the caller can count errors and NAK. The buffer never holds
    more than `MAX_ENCODED` bytes: an overlong run is dropped at once and the
    decoder skips to the next delimiter."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside an overlong run; drop until the next delimiter

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        events: list[Frame | FrameError] = []
        start = 0
        data = bytes(data)
        while start <= len(data):
            end = data.find(b"\x00", start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._skipping:
                if len(self._buf) + len(piece) > MAX_ENCODED:
                    events.append(FrameError(f"no delimiter within {MAX_ENCODED} bytes; dropped"))
                    self._buf.clear()
                    self._skipping = True
                else:
                    self._buf += piece
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif self._buf:
                try:
                    events.append(decode_body(cobs_decode(self._buf)))
                except FrameError as exc:
                    events.append(exc)
            self._buf.clear()
            start = end + 1
        return events

    def reset(self) -> None:
        self._buf.clear()
        self._skipping = False
