"""The reliable link: stop-and-wait ARQ over frames, used by BOTH ends.

Each message is cut into frames of at most ``max_payload`` bytes (all but
the last flagged MORE). Every data frame is acknowledged by an ACK frame
carrying its ``seq``; the sender waits for that ACK before sending the next
frame, retransmits on a NAK (the receiver saw a corrupted frame) or after a
timeout, and gives up with `LinkError` after ``retries`` retransmissions, so
no wait is unbounded. The receiver ACKs every intact data frame, including
duplicates (its ACK may have been lost), but delivers a frame only when its
``seq`` differs from the last one delivered: a retransmission after a lost ACK
is dropped, not delivered twice.

Stop-and-wait costs one ACK round trip per frame; with frames of ~1 KiB at
serial speeds that is a few per cent, and it keeps both ends' buffers bounded
by one frame. Initial sequence numbers are random per boot/open so a
restarted peer is not mistaken for a duplicate (1 in 65536 chance per
restart; the message is then lost and the request layer's timeout recovers).

Timeouts scale with the baud rate: a frame of n bytes needs 10 n / baud
seconds on the wire, plus whatever the transport still has queued
(``drain_time``), plus a fixed allowance for the peer's reaction.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from typing import Protocol

from .errors import FrameError, LinkError, WireError
from .frame import MAX_PAYLOAD, OVERHEAD, F_MORE, Frame, FrameDecoder, encode_frame
from .messages import ACK, NAK, Message, type_name

#: encoded size of an ACK/NAK frame (body + COBS code + delimiter, NAK has one payload byte)
ACK_WIRE_BYTES = OVERHEAD + 3
#: local-only message type the link puts in its inbox when a message exceeded ``max_message``
OVERFLOW = 0xFF


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes:
        """Whatever bytes are available, waiting at most ``timeout`` s for the first."""
        ...


class Link:
    def __init__(
        self,
        transport: Transport,
        *,
        baud: int | None = None,
        ack_timeout: float = 0.25,
        retries: int = 8,
        max_payload: int = 1024,
        max_message: int = 1 << 20,
        name: str = "link",
    ):
        if not 1 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be in 1..{MAX_PAYLOAD}, got {max_payload}")
        self.transport = transport
        self.baud = baud
        self.ack_timeout = float(ack_timeout)
        self.retries = int(retries)
        self.max_payload = int(max_payload)
        self.max_message = int(max_message)
        self.name = name
        self.tx_seq = int.from_bytes(os.urandom(2), "little")
        self.rx_last: int | None = None
        self.inbox: deque[Message] = deque()
        self.stats: Counter = Counter()
        self._decoder = FrameDecoder()
        self._partial: tuple[int, int] | None = None  # (type, req) being reassembled
        self._partial_buf = bytearray()
        self._overflowing = False
        self._ack_for: int | None = None
        self._got_ack = False
        self._got_nak = False

    # ------------------------------------------------------------ timing
    def wire_time(self, nbytes: int) -> float:
        return 10.0 * nbytes / self.baud if self.baud else 0.0

    def _drain(self) -> float:
        fn = getattr(self.transport, "drain_time", None)
        return float(fn()) if fn else 0.0

    # ------------------------------------------------------------ sending
    def send(self, mtype: int, req: int, payload: bytes = b"") -> None:
        """Send one message reliably (all its fragments acknowledged) or raise `LinkError`."""
        payload = bytes(payload)
        n = self.max_payload
        pieces = [payload[i : i + n] for i in range(0, len(payload), n)] or [b""]
        for k, piece in enumerate(pieces):
            flags = F_MORE if k < len(pieces) - 1 else 0
            self._send_reliable(Frame(type=mtype, seq=self.tx_seq, req=req, payload=piece, flags=flags))
            self.tx_seq = (self.tx_seq + 1) & 0xFFFF

    def _write(self, data: bytes) -> None:
        try:
            self.transport.write(data)
        except WireError:
            raise
        except OSError as exc:
            raise LinkError(f"{self.name}: write failed ({exc})") from None

    def _send_reliable(self, frame: Frame) -> None:
        data = encode_frame(frame)
        timeouts = naks = 0
        for attempt in range(1 + self.retries):
            if attempt:
                self.stats["retransmits"] += 1
            self._write(data)
            self.stats["frames_tx"] += 1
            self._ack_for, self._got_ack, self._got_nak = frame.seq, False, False
            deadline = (
                time.monotonic() + self.ack_timeout + self._drain()
                + 2.0 * self.wire_time(len(data) + ACK_WIRE_BYTES)
            )
            while not (self._got_ack or self._got_nak):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._poll(remaining)
            self._ack_for = None
            if self._got_ack:
                return
            if self._got_nak:
                naks += 1
            else:
                timeouts += 1
        self.stats["gave_up"] += 1
        raise LinkError(
            f"{self.name}: no ACK for {type_name(frame.type)} frame seq {frame.seq} after "
            f"{1 + self.retries} tries ({timeouts} timed out after {self.ack_timeout:g} s + wire time, "
            f"{naks} answered by NAK: the peer saw corrupted frames)"
        )

    # ------------------------------------------------------------ receiving
    def recv(self, timeout: float) -> Message | None:
        """Next complete message, or None if none arrived within ``timeout`` s."""
        deadline = time.monotonic() + max(0.0, timeout)
        while not self.inbox:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._poll(remaining)
        return self.inbox.popleft()

    def poll(self, timeout: float = 0.0) -> None:
        """Process whatever arrived (ACKing data frames) without blocking long."""
        self._poll(timeout)

    def _poll(self, timeout: float) -> None:
        try:
            data = self.transport.read(min(max(timeout, 0.0), 0.05))
        except WireError:
            raise
        except OSError as exc:
            raise LinkError(f"{self.name}: read failed ({exc})") from None
        if not data:
            return
        self.stats["bytes_rx"] += len(data)
        for ev in self._decoder.feed(data):
            if isinstance(ev, FrameError):
                self.stats["frame_errors"] += 1
                self._write(encode_frame(Frame(type=NAK, seq=0, payload=b"\x01")))
                self.stats["naks_tx"] += 1
            else:
                self._on_frame(ev)

    def _on_frame(self, f: Frame) -> None:
        if f.type == ACK:
            if self._ack_for is not None and f.seq == self._ack_for:
                self._got_ack = True
            else:
                self.stats["stray_acks"] += 1
            return
        if f.type == NAK:
            self.stats["naks_rx"] += 1
            if self._ack_for is not None:
                self._got_nak = True
            return
        self.stats["frames_rx"] += 1
        self._write(encode_frame(Frame(type=ACK, seq=f.seq)))
        if f.seq == self.rx_last:
            self.stats["duplicates"] += 1
            return
        self.rx_last = f.seq
        self._assemble(f)

    def _assemble(self, f: Frame) -> None:
        key = (f.type, f.req)
        if self._partial != key:
            if self._partial is not None:
                self.stats["partial_dropped"] += 1
            self._partial, self._overflowing = key, False
            self._partial_buf.clear()
        if not self._overflowing:
            if len(self._partial_buf) + len(f.payload) > self.max_message:
                self._overflowing = True
                self._partial_buf.clear()
                self.inbox.append(Message(type=OVERFLOW, req=f.req, payload=bytes([f.type])))
            else:
                self._partial_buf += f.payload
        if not f.flags & F_MORE:
            if not self._overflowing:
                self.inbox.append(Message(type=f.type, req=f.req, payload=bytes(self._partial_buf)))
            self._partial = None
            self._partial_buf.clear()
            self._overflowing = False

    def reset_peer(self) -> None:
        """Forget the peer's sequence state (after it restarted) and any half message."""
        self.rx_last = None
        self._partial = None
        self._partial_buf.clear()
        self._decoder.reset()
