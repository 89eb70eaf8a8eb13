"""The reliable link: go-back-N ARQ over frames, used by BOTH ends.

Each message is cut into frames of at most ``max_payload`` bytes (all but
the last flagged MORE). Every data frame carries a ``seq`` one higher than
the previous one in that direction. The receiver accepts a frame only if it
is the next in sequence, ACKs it (an ACK acknowledges everything up to its
``seq``) and delivers it; a duplicate or a frame after a gap is dropped and
answered by re-ACKing the last frame accepted. The sender keeps up to
``window`` frames in flight; on a NAK (the receiver saw a corrupted frame),
or when the oldest frame's ACK is overdue, it retransmits everything
unacknowledged, in order, and after ``retries`` retransmissions of the same
oldest frame it gives up with `LinkError`, so no wait is unbounded.

``window=1`` is stop-and-wait; a window of a few frames hides the ACK round
trip (host scheduling, UART latency) so the line stays busy, while each end
still buffers at most ``window`` frames. The first frame a link sends (and
the first after it gave up) is flagged SYNC and sent alone: the receiver
accepts it whatever its ``seq`` (unless it repeats the last accepted one), so
a restarted or re-opened peer is never mistaken for a gap. Initial sequence
numbers are random per boot/open.

Timeouts scale with the baud rate: n bytes in flight need 10 n / baud
seconds on the wire, plus whatever the transport still has queued
(``drain_time``), plus ``ack_timeout`` for the peer's reaction.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from typing import Protocol

from .errors import FrameError, LinkError, WireError
from .frame import F_MORE, F_SYNC, MAX_PAYLOAD, OVERHEAD, Frame, FrameDecoder, encode_frame
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
        window: int = 4,
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
        self.window = max(1, int(window))
        self._unacked: deque[tuple[int, bytes, int]] = deque()  # (seq, encoded frame, type), oldest first
        self._synced = False  # the peer has acknowledged one of our frames since open / last give-up
        self._deadline = 0.0
        self._tries = 0  # transmissions of the current oldest frame
        self._timeouts = 0
        self._naks = 0

    # ------------------------------------------------------------ timing
    def wire_time(self, nbytes: int) -> float:
        return 10.0 * nbytes / self.baud if self.baud else 0.0

    def _drain(self) -> float:
        fn = getattr(self.transport, "drain_time", None)
        return float(fn()) if fn else 0.0

    # ------------------------------------------------------------ sending
    def send(self, mtype: int, req: int, payload: bytes = b"") -> None:
        """Queue one message; returns once its last frame is on the way (window
        permitting). Delivery is driven by later `send`/`recv`/`poll`/`flush`
        calls, which raise `LinkError` if the peer stops acknowledging."""
        payload = bytes(payload)
        n = self.max_payload
        pieces = [payload[i : i + n] for i in range(0, len(payload), n)] or [b""]
        for k, piece in enumerate(pieces):
            flags = F_MORE if k < len(pieces) - 1 else 0
            # the first frame after open / give-up goes alone, flagged SYNC
            limit = self.window if self._synced else 1
            while len(self._unacked) >= limit or (not self._synced and self._unacked):
                self._poll(self._deadline - time.monotonic())
                limit = self.window if self._synced else 1
            if not self._synced:
                flags |= F_SYNC
            data = encode_frame(Frame(type=mtype, seq=self.tx_seq, req=req, payload=piece, flags=flags))
            if not self._unacked:
                self._tries, self._timeouts, self._naks = 1, 0, 0
            self._unacked.append((self.tx_seq, data, mtype))
            self._write(data)
            self.stats["frames_tx"] += 1
            self._arm()
            self.tx_seq = (self.tx_seq + 1) & 0xFFFF

    def flush(self) -> None:
        """Wait until every frame sent so far is acknowledged (or raise `LinkError`)."""
        while self._unacked:
            self._poll(self._deadline - time.monotonic())

    @property
    def in_flight(self) -> int:
        return len(self._unacked)

    def _arm(self) -> None:
        inflight = sum(len(d) for _, d, _ in self._unacked)
        self._deadline = (time.monotonic() + self.ack_timeout + self._drain()
                          + 2.0 * self.wire_time(inflight + ACK_WIRE_BYTES))

    def _write(self, data: bytes) -> None:
        try:
            self.transport.write(data)
        except WireError:
            raise
        except OSError as exc:
            raise LinkError(f"{self.name}: write failed ({exc})") from None

    def _retransmit(self, why: str) -> None:
        if why == "nak":
            self._naks += 1
        else:
            self._timeouts += 1
        if self._tries > self.retries:
            seq, _, mtype = self._unacked[0]
            self._unacked.clear()
            self._synced = False
            self.stats["gave_up"] += 1
            raise LinkError(
                f"{self.name}: no ACK for {type_name(mtype)} frame seq {seq} after "
                f"{self._tries} tries ({self._timeouts} timed out after {self.ack_timeout:g} s + wire time, "
                f"{self._naks} answered by NAK: the peer saw corrupted frames)"
            )
        self._tries += 1
        for _, data, _ in list(self._unacked):
            self._write(data)
            self.stats["retransmits"] += 1
        self._arm()

    def _on_ack(self, seq: int) -> None:
        for i, (s, _, _) in enumerate(self._unacked):
            if s == seq:
                for _ in range(i + 1):
                    self._unacked.popleft()
                self._synced = True
                self._tries, self._timeouts, self._naks = 1, 0, 0
                if self._unacked:
                    self._arm()
                return
        self.stats["stray_acks"] += 1

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
        if self._unacked and time.monotonic() >= self._deadline:
            self._retransmit("timeout")
        if self._unacked:
            timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
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
            self._on_ack(f.seq)
            return
        if f.type == NAK:
            self.stats["naks_rx"] += 1
            if self._unacked:
                self._retransmit("nak")
            return
        self.stats["frames_rx"] += 1
        last = self.rx_last
        if last is None or (f.flags & F_SYNC and f.seq != last) or f.seq == (last + 1) & 0xFFFF:
            self.rx_last = f.seq
            self._write(encode_frame(Frame(type=ACK, seq=f.seq)))
            self._assemble(f)
            return
        # a duplicate (our ACK was lost) or a frame after a gap: say where we are
        self.stats["duplicates" if f.seq == last else "out_of_order"] += 1
        self._write(encode_frame(Frame(type=ACK, seq=last)))

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
        """Forget the peer's sequence state (after it restarted), our unacknowledged
        frames and any half message; the next frame we send is a SYNC frame."""
        self.rx_last = None
        self._unacked.clear()
        self._synced = False
        self._partial = None
        self._partial_buf.clear()
        self._decoder.reset()
