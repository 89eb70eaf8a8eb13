"""The host <-> QIF chip wire protocol, implemented once for both ends.

Layers, bottom up (docs/wire-protocol.md specifies the bytes):

* `cobs` — COBS byte stuffing so 0x00 delimits frames and receivers resync;
* `frame` — header, payload bound and CRC-32; `FrameDecoder` for streams;
* `link` — selective-repeat ARQ: SACK/NAK, sequence numbers, a window, adaptive frame size, bounded retries;
* `messages` — message types and compact payloads (spike times as uint16 ticks);
* `transport` — a pyserial port or a raw file descriptor under the link.
"""

from .cobs import cobs_decode, cobs_encode
from .errors import (
    ChipLimitError, FrameError, LinkError, LinkTimeout, PortError, ProtocolError, RemoteError, WireError,
)
from .frame import MAX_PAYLOAD, Frame, FrameDecoder, decode_frame, encode_frame
from .link import Link, Oversized
from .messages import PROTOCOL_MINOR, PROTOCOL_VERSION, Message

__all__ = [
    "cobs_encode", "cobs_decode", "Frame", "FrameDecoder", "decode_frame", "encode_frame", "MAX_PAYLOAD",
    "Link", "Oversized", "Message", "PROTOCOL_VERSION", "PROTOCOL_MINOR", "WireError", "FrameError", "LinkError",
    "LinkTimeout", "PortError", "ProtocolError", "ChipLimitError", "RemoteError",
]
