"""The reliable link: selective-repeat ARQ over frames, used by BOTH ends.

Each message is cut into frames (all but the last flagged MORE). Every data
frame carries a ``seq`` one higher than the previous one in that direction.

**Receiver.** It delivers frames in sequence order. A frame that arrives
after a gap is kept (up to `SACK_BITS` frames ahead) instead of dropped, and
delivered once the gap is filled. Every batch of frames read is answered by
one ACK whose ``seq`` is the last frame delivered in order and whose payload
is a bitmap of the frames held beyond it (SACK); a corrupted chunk at the end
of a batch is answered by a NAK carrying the same state.

**Sender.** It keeps up to ``window`` frames in flight and retransmits only
frames that are lost: a frame is lost when a frame sent *after* it has been
acknowledged (a serial line never reorders bytes, so the earlier one cannot
still be on its way), when a NAK arrives and it is the first frame the
receiver cannot have seen yet, or when nothing at all was acknowledged for a
timeout. Each retransmission counts against the frame it resends, never
against an innocent oldest frame.

**Bounds.** The link gives up (`LinkError`) when the peer stays silent (no
ACK or NAK) through ``retries`` consecutive timeouts, when one frame was sent
`MAX_TRIES` times while the peer kept answering without receiving it (a frame
cut while the line was clean may be too long for it once it turned bad: it is
given up, and the layer above asks again).

**Frame size.** The sender picks each frame's payload size from the error
rate it observes (its own retransmissions, and the corrupted chunks it
receives): long frames on a clean line, short ones on a noisy line, never more
than the ``max_payload`` negotiated in HELLO. The receiver needs no setting
for this; fragments of any size reassemble the same way.

The first frame a link sends (and the first after it gave up) is flagged
SYNC and sent alone: the receiver accepts it whatever its ``seq`` (unless it
repeats the last one accepted), so a restarted or re-opened peer is never
mistaken for a gap. Initial sequence numbers are random per boot/open.

Timeouts scale with the baud rate: n bytes in flight need 10 n / baud
seconds on the wire, plus whatever the transport still has queued
(``drain_time``), plus ``ack_timeout`` for the peer's reaction.

Version 1.0 of the protocol (go-back-N, empty ACK payloads, one-byte NAKs)
interoperates: see docs/wire-protocol.md, "Versions".
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol

from .errors import FrameError, LinkError, WireError
from .frame import F_MORE, F_SYNC, MAX_PAYLOAD, OVERHEAD, Frame, FrameDecoder, encode_frame
from .messages import ACK, NAK, Message, type_name

#: frames a receiver may hold beyond the last one delivered in order (bits of the SACK bitmap)
SACK_BITS = 32
#: most frames a sender keeps in flight (the receiver holds at most SACK_BITS + 1 of them)
MAX_WINDOW = SACK_BITS + 1
#: most bytes of frames in flight: enough to keep the line busy through an ACK round trip,
#: few enough that a line turning bad catches few frames cut for the clean line
WINDOW_BYTES = 8192
#: a frame sent this many times while the peer kept answering is given up
MAX_TRIES = 32
#: smallest payload the sender cuts a message into on a noisy line
MIN_FRAGMENT = 16
#: encoded size of an ACK frame with its SACK bitmap (body + COBS code + delimiter)
ACK_WIRE_BYTES = OVERHEAD + 4 + 3
#: NAK reason: a chunk between delimiters failed COBS, length or CRC checks
NAK_CORRUPT = 1

_SACK = struct.Struct("<I")
_NAK_STATE = struct.Struct("<BI")  # reason, SACK bitmap (seq carries the cumulative state)

# frame-size estimator: the byte error rate q that best explains the fate of the last
# frames seen (maximum likelihood: a frame of L bytes arrives intact with chance (1-q)^L)
_EST_KEEP = 48  # frames (sent by us, or received) remembered
_EST_MEMORY = 24.0  # an observation's weight falls to 1/e after this many newer ones
_EST_EVERY = 4  # new observations between two solves
_PRIOR_OK, _PRIOR_FAILED, _PRIOR_LEN = 0.225, 0.025, 272.0  # a weak prior: ~200-byte payloads at first
_FRAME_COST = 16.0  # bytes a frame costs beyond its payload (header, CRC, COBS, delimiter)


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes:
        """Whatever bytes are available, waiting at most ``timeout`` s for the first."""
        ...


@dataclass(frozen=True)
class Oversized:
    """Not a message: the link dropped an incoming message larger than its
    ``max_message`` bound. A distinct class, so no frame can forge it."""

    type: int  # wire type of the dropped message
    req: int
    limit: int  # the bound it exceeded, bytes


class _Pending:
    """One data frame in flight (sent, not yet acknowledged cumulatively)."""

    __slots__ = ("seq", "data", "type", "tries", "ord", "sacked", "timeouts", "naks", "lost")

    def __init__(self, seq: int, data: bytes, mtype: int):
        self.seq, self.data, self.type = seq, data, mtype
        self.tries = 0  # transmissions so far
        self.ord = 0  # link-wide ordinal of its latest transmission
        self.sacked = False  # the receiver holds it (SACK), waiting for an earlier gap
        self.timeouts = self.naks = self.lost = 0  # why it was retransmitted


def sack_bitmap(rx_last: int, held) -> int:
    """SACK bitmap for a receiver that delivered up to ``rx_last`` and holds ``held`` seqs:
    bit i set = frame ``rx_last + 2 + i`` is held."""
    bits = 0
    for s in held:
        d = (s - rx_last) & 0xFFFF
        if 2 <= d < 2 + SACK_BITS:
            bits |= 1 << (d - 2)
    return bits


def parse_state(f: Frame) -> tuple[int, int] | None:
    """The receiver state an ACK or NAK frame carries: (cumulative seq, SACK bitmap),
    or None when it carries none (a version 1.0 NAK). Never raises: an ACK payload of
    an unexpected length is read as "no SACK information"."""
    if f.type == ACK:
        return f.seq, (_SACK.unpack(f.payload)[0] if len(f.payload) == _SACK.size else 0)
    if f.type == NAK and len(f.payload) == _NAK_STATE.size:
        return f.seq, _NAK_STATE.unpack(f.payload)[1]
    return None


class Link:
    def __init__(
        self,
        transport: Transport,
        *,
        baud: int | None = None,
        ack_timeout: float = 0.25,
        retries: int = 16,
        max_payload: int = 1024,
        max_message: int = 1 << 20,
        name: str = "link",
        window: int = 32,
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
        self.window = min(MAX_WINDOW, max(1, int(window)))
        self.tx_seq = int.from_bytes(os.urandom(2), "little")
        self.inbox: deque[Message | Oversized] = deque()
        self.stats: Counter = Counter()
        self._decoder = FrameDecoder()
        # receiver
        self.rx_last: int | None = None  # last seq delivered in order
        self._held: dict[int, Frame] = {}  # frames after a gap, by seq
        self._partial: tuple[int, int] | None = None  # (type, req) being reassembled
        self._partial_buf = bytearray()
        self._overflowing = False
        # sender
        self._pending: OrderedDict[int, _Pending] = OrderedDict()  # by seq, oldest first
        self._synced = False  # the peer has acknowledged one of our frames since open / last give-up
        self._ord = 0  # transmissions so far (orders them on the line)
        self._high_ord = 0  # latest transmission known to have arrived
        self._deadline: float | None = None  # retransmission timer
        self._silent = 0  # timeouts since the peer last sent an ACK or NAK
        self._heard_at = self._busy_since = time.monotonic()
        # frame-size estimator: (length, failed) of the last frames, and the last solution
        self._obs: deque[tuple[float, bool]] = deque(maxlen=_EST_KEEP)
        self._obs_new = _EST_EVERY
        self._u = -math.log1p(-1e-4)

    # ------------------------------------------------------------ timing
    def wire_time(self, nbytes: int) -> float:
        return 10.0 * nbytes / self.baud if self.baud else 0.0

    def _drain(self) -> float:
        fn = getattr(self.transport, "drain_time", None)
        return float(fn()) if fn else 0.0

    def _arm(self) -> None:
        inflight = sum(len(p.data) for p in self._pending.values() if not p.sacked)
        if not inflight:
            self._deadline = None
            return
        self._deadline = (time.monotonic() + self.ack_timeout + self._drain()
                          + 2.0 * self.wire_time(inflight + ACK_WIRE_BYTES))

    # ------------------------------------------------------------ frame size
    def _observe(self, length: float, failed: bool) -> None:
        self._obs.append((float(length), bool(failed)))
        self._obs_new += 1

    @property
    def error_rate(self) -> float:
        """Estimated probability that a byte on the line is damaged (bit flip, loss,
        duplicate): the maximum-likelihood q for the fates of the last `_EST_KEEP` frames
        (recent ones weigh more), with a weak prior: a quarter of a 272-byte frame, 10 % lost."""
        if self._obs_new >= _EST_EVERY:
            self._obs_new = 0
            self._u = self._solve_u(self._u)
        return -math.expm1(-self._u)

    def _solve_u(self, guess: float) -> float:
        # d/du log-likelihood, u = -ln(1 - q):  sum_failed L / (e^{uL} - 1) - sum_ok L  (decreasing in u)
        n = len(self._obs)
        ok = _PRIOR_OK * _PRIOR_LEN
        failed = [(_PRIOR_LEN, _PRIOR_FAILED)]
        for i, (length, lost) in enumerate(self._obs):
            w = math.exp((i + 1 - n) / _EST_MEMORY)
            if lost:
                failed.append((length, w))
            else:
                ok += w * length

        def score(u: float) -> float:
            return sum(w * L / math.expm1(u * L) for L, w in failed if u * L < 700) - ok

        lo, hi = guess / 4.0, guess * 4.0
        while score(lo) < 0 and lo > 1e-12:
            lo, hi = lo / 16.0, lo
        while score(hi) > 0 and hi < 10.0:
            lo, hi = hi, hi * 16.0
        for _ in range(14):  # bisection in log u: a few per cent is plenty for a frame size
            mid = math.sqrt(lo * hi)
            if score(mid) > 0:
                lo = mid
            else:
                hi = mid
        return math.sqrt(lo * hi)

    @property
    def fragment_size(self) -> int:
        """Payload bytes of the next frame: the size that maximises the expected
        delivered fraction ``P / (P + c) * (1 - q)**(P + c)`` for the estimated byte
        error rate q and per-frame cost c (``P ~ sqrt(c / q)``), clipped to
        `MIN_FRAGMENT`..``max_payload``."""
        q, c = self.error_rate, _FRAME_COST
        best = (-c + math.sqrt(c * c + 4.0 * c / q)) / 2.0
        return max(min(MIN_FRAGMENT, self.max_payload), min(self.max_payload, int(best)))

    # ------------------------------------------------------------ sending
    def send(self, mtype: int, req: int, payload: bytes = b"") -> None:
        """Queue one message; returns once its last frame is on the way (window
        permitting). Delivery is driven by later `send`/`recv`/`poll`/`flush`
        calls, which raise `LinkError` if the peer stops acknowledging."""
        payload = bytes(payload)
        off = 0
        while True:
            self._poll(0.0)  # take in ACKs/NAKs that arrived while we were writing
            # the first frame after open / give-up goes alone, flagged SYNC
            while self._pending and (len(self._pending) >= (self.window if self._synced else 1)
                                     or self._pending_bytes() + self.fragment_size > WINDOW_BYTES):
                self._poll(self._until_deadline())
            size = self.fragment_size
            piece = payload[off : off + size]
            off += len(piece)
            flags = F_MORE if off < len(payload) else 0
            if not self._synced:
                flags |= F_SYNC
            data = encode_frame(Frame(type=mtype, seq=self.tx_seq, req=req, payload=piece, flags=flags))
            p = _Pending(self.tx_seq, data, mtype)
            if not self._pending:
                self._busy_since = time.monotonic()
            self._pending[self.tx_seq] = p
            self.tx_seq = (self.tx_seq + 1) & 0xFFFF
            self.stats["frames_tx"] += 1
            self._transmit(p)
            if off >= len(payload):
                return

    def flush(self) -> None:
        """Wait until every frame sent so far is acknowledged (or raise `LinkError`)."""
        while self._pending:
            self._poll(self._until_deadline())

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _pending_bytes(self) -> int:
        return sum(len(p.data) for p in self._pending.values())

    def _until_deadline(self) -> float:
        return 0.05 if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def _write(self, data: bytes) -> None:
        try:
            self.transport.write(data)
        except WireError:
            raise
        except OSError as exc:
            raise LinkError(f"{self.name}: write failed ({exc})") from None

    def _transmit(self, p: _Pending) -> None:
        p.tries += 1
        self._ord += 1
        p.ord = self._ord
        self._write(p.data)
        self._arm()

    def _retransmit(self, p: _Pending, why: str) -> None:
        setattr(p, why, getattr(p, why) + 1)
        self._observe(len(p.data), True)  # its last transmission failed
        if p.tries >= MAX_TRIES:
            self._give_up(p, f"the peer answered {p.tries} times but never received it")
        self.stats["retransmits"] += 1
        self._transmit(p)

    def _give_up(self, p: _Pending, why: str) -> None:
        self._pending.clear()
        self._deadline = None
        self._synced = False
        self._silent = 0
        self.stats["gave_up"] += 1
        raise LinkError(
            f"{self.name}: no ACK for {type_name(p.type)} frame seq {p.seq} after {p.tries} tries "
            f"({p.timeouts} timed out after {self.ack_timeout:g} s + wire time, {p.naks} answered by NAK, "
            f"{p.lost} lost behind later frames): {why}"
        )

    def _on_timeout(self) -> None:
        waiting = [p for p in self._pending.values() if not p.sacked]
        if not waiting:
            self._deadline = None
            return
        p = min(waiting, key=lambda q: q.ord)  # the one that has waited longest
        self._silent += 1
        if self._silent > self.retries:
            p.timeouts += 1
            quiet = time.monotonic() - max(self._heard_at, self._busy_since)
            self._give_up(p, f"no ACK or NAK from the peer for {quiet:.2f} s ({self.retries} retries)")
        self._retransmit(p, "timeouts")

    def _on_state(self, cum: int, sack: int) -> None:
        """Apply a receiver state (from an ACK or NAK); retransmit what it proves lost."""
        if not self._pending:
            self.stats["stray_acks"] += 1
            return
        oldest = next(iter(self._pending))
        k = (cum - oldest) & 0xFFFF
        if k >= len(self._pending) and k != 0xFFFF:  # not ours (stale, or an earlier incarnation)
            self.stats["stray_acks"] += 1
            return
        newest = 0
        if k < len(self._pending):
            for _ in range(k + 1):
                _, p = self._pending.popitem(last=False)
                if not p.sacked:
                    newest = max(newest, p.ord)
                    self._observe(len(p.data), False)
        if sack:
            for i in range(SACK_BITS):
                if sack >> i & 1:
                    p = self._pending.get((cum + 2 + i) & 0xFFFF)
                    if p is not None and not p.sacked:
                        p.sacked = True
                        newest = max(newest, p.ord)
                        self._observe(len(p.data), False)
        if not newest:
            return
        self._synced = True
        self._high_ord = max(self._high_ord, newest)
        self._arm()
        # everything sent before a frame that arrived, and not itself received, is lost
        for p in list(self._pending.values()):
            if not p.sacked and p.ord < self._high_ord:
                self._retransmit(p, "lost")

    def _on_nak(self) -> None:
        """The receiver saw a corrupted chunk: the first frame it cannot have seen yet
        is the suspect (if the chunk was noise, one frame is sent twice)."""
        waiting = [p for p in self._pending.values() if not p.sacked and p.ord > self._high_ord]
        if waiting:
            self._retransmit(min(waiting, key=lambda q: q.ord), "naks")

    # ------------------------------------------------------------ receiving
    def recv(self, timeout: float) -> Message | Oversized | None:
        """Next complete message (or `Oversized` marker), or None if none arrived within ``timeout`` s."""
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
        if self._deadline is not None:
            timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
        try:
            data = self.transport.read(min(max(timeout, 0.0), 0.05))
        except WireError:
            raise
        except OSError as exc:
            raise LinkError(f"{self.name}: read failed ({exc})") from None
        if data:
            self._on_bytes(data)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self._on_timeout()

    def _on_bytes(self, data: bytes) -> None:
        self.stats["bytes_rx"] += len(data)
        events = self._decoder.feed(data)
        got_data = bad_tail = False
        errors = good_bytes = 0
        for ev in events:
            if isinstance(ev, FrameError):
                errors += 1
                bad_tail = True
                continue
            bad_tail = False
            length = len(ev.payload) + OVERHEAD + 2
            good_bytes += length
            self._observe(length, False)
            if ev.type == ACK or ev.type == NAK:
                self._silent = 0
                self._heard_at = time.monotonic()
                if ev.type == NAK:
                    self.stats["naks_rx"] += 1
                state = parse_state(ev)
                if state is not None:
                    self._on_state(*state)
                if ev.type == NAK:
                    self._on_nak()
            else:
                got_data = True
                self._on_data(ev)
        self.stats["frame_errors"] += errors
        for _ in range(errors):  # a corrupted chunk's length is not known exactly: share the rest
            self._observe(max(OVERHEAD, (len(data) - good_bytes) / errors), True)
        # one answer per batch read: the receiver's state, as a NAK if the batch ended corrupted
        if bad_tail:
            self.stats["naks_tx"] += 1
            if self.rx_last is None:
                payload, seq = bytes([NAK_CORRUPT]), 0
            else:
                payload, seq = _NAK_STATE.pack(NAK_CORRUPT, sack_bitmap(self.rx_last, self._held)), self.rx_last
            self._write(encode_frame(Frame(type=NAK, seq=seq, payload=payload)))
        elif got_data:
            self.stats["acks_tx"] += 1
            self._write(encode_frame(Frame(type=ACK, seq=self.rx_last,
                                           payload=_SACK.pack(sack_bitmap(self.rx_last, self._held)))))

    def _on_data(self, f: Frame) -> None:
        self.stats["frames_rx"] += 1
        last = self.rx_last
        if last is None or (f.flags & F_SYNC and f.seq != last):
            if last is not None:
                self.stats["resyncs"] += 1
            self._held.clear()
            self._drop_partial()
            self._deliver(f)
            return
        d = (f.seq - last) & 0xFFFF
        if d == 1:
            self._deliver(f)
        elif 2 <= d < 2 + SACK_BITS:
            if f.seq in self._held:
                self.stats["duplicates"] += 1
            else:
                self._held[f.seq] = f
                self.stats["held"] += 1
        elif d == 0 or d >= 0x8000:
            self.stats["duplicates"] += 1  # already delivered (our ACK was lost)
        else:
            self.stats["out_of_order"] += 1  # beyond what we hold; the sender will resend it

    def _deliver(self, f: Frame) -> None:
        self.rx_last = f.seq
        self._assemble(f)
        while self._held:
            nxt = self._held.pop((self.rx_last + 1) & 0xFFFF, None)
            if nxt is None:
                break
            self.rx_last = nxt.seq
            self._assemble(nxt)

    def _drop_partial(self) -> None:
        if self._partial is not None:
            self.stats["partial_dropped"] += 1
        self._partial = None
        self._partial_buf.clear()
        self._overflowing = False

    def _assemble(self, f: Frame) -> None:
        key = (f.type, f.req)
        if self._partial != key:
            self._drop_partial()
            self._partial = key
        if not self._overflowing:
            if len(self._partial_buf) + len(f.payload) > self.max_message:
                self._overflowing = True
                self._partial_buf.clear()
                self.inbox.append(Oversized(type=f.type, req=f.req, limit=self.max_message))
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
        frames and any half message; the next frame we send is a SYNC frame. What
        the link learnt about the line (its error rate) is kept."""
        self.rx_last = None
        self._held.clear()
        self._pending.clear()
        self._deadline = None
        self._synced = False
        self._silent = 0
        self._drop_partial()
        self._decoder.reset()
