"""Consistent Overhead Byte Stuffing (Cheshire & Baker 1999).

COBS removes every 0x00 from a frame so that 0x00 can delimit frames on the
wire: a receiver that starts mid-stream, or sees garbage, resynchronises at
the next 0x00. The cost is at most one byte per 254 (plus one).

Encoding: the data is cut at its zero bytes; each piece becomes a code byte
(piece length + 1) followed by the piece, and the zero is implied. Pieces
longer than 254 bytes are split into 0xFF blocks that imply no zero.
"""

from __future__ import annotations

from .errors import FrameError


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    for seg in bytes(data).split(b"\x00"):
        while len(seg) >= 254:
            out.append(0xFF)
            out += seg[:254]
            seg = seg[254:]
        out.append(len(seg) + 1)
        out += seg
    return bytes(out)


def cobs_decode(enc: bytes) -> bytes:
    """Inverse of `cobs_encode`; raises `FrameError` on anything it could not have produced."""
    enc = bytes(enc)
    if not enc:
        raise FrameError("empty frame")
    out = bytearray()
    i, n = 0, len(enc)
    while i < n:
        code = enc[i]
        if code == 0:
            raise FrameError(f"COBS: zero byte at offset {i} inside a frame")
        j = i + code
        if j > n:
            raise FrameError(f"COBS: block at offset {i} claims {code - 1} bytes, only {n - i - 1} left")
        block = enc[i + 1 : j]
        if 0 in block:
            raise FrameError(f"COBS: zero byte inside block at offset {i}")
        out += block
        i = j
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
