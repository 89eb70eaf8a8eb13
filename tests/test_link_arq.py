"""The 1.1 link layer in memory: selective repeat, the SACK/NAK state, the
adaptive frame size, and a property test over damaged lines.

The 1.0 link answered every NAK by resending its whole window and counted
each resend against the oldest frame, so a noisy line made it give up on a
frame that had arrived long ago (issue 12, finding 3). Here each frame is
resent only when it is lost, and counts only its own resends."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.firmware_models.wire import Frame, FrameDecoder, LinkError, encode_frame
from hwloop.firmware_models.wire import messages as M
from hwloop.firmware_models.wire.frame import F_MORE, F_SYNC
from hwloop.firmware_models.wire.link import MAX_TRIES, MIN_FRAGMENT, SACK_BITS, Link, parse_state, sack_bitmap
from hwloop.firmware_models.wire.transport import FdTransport


class Wire:
    """A transport the test drives by hand: records writes, serves queued reads."""

    def __init__(self):
        self.sent: list[Frame] = []
        self.rx = bytearray()
        self._dec = FrameDecoder()

    def write(self, data: bytes) -> None:
        self.sent += [f for f in self._dec.feed(data) if isinstance(f, Frame)]

    def read(self, timeout: float) -> bytes:
        data, self.rx = bytes(self.rx), bytearray()
        return data

    def feed(self, *frames: Frame) -> None:
        for f in frames:
            self.rx += encode_frame(f)

    def take(self) -> list[Frame]:
        out, self.sent = self.sent, []
        return out


def data_frame(seq, payload=b"x", flags=0, req=1):
    return Frame(type=0x40, seq=seq, req=req, payload=payload, flags=flags)


def ack(seq, sack=0):
    return Frame(type=M.ACK, seq=seq, payload=struct.pack("<I", sack))


# ------------------------------------------------------------------ receiver
def test_receiver_holds_frames_after_a_gap_and_reports_them():
    w = Wire()
    link = Link(w, name="rx")
    w.feed(data_frame(100, b"a", F_SYNC | F_MORE))
    link.poll()
    assert [(f.type, f.seq, parse_state(f)) for f in w.take()] == [(M.ACK, 100, (100, 0))]
    w.feed(data_frame(102, b"c", F_MORE), data_frame(103, b"d"))  # 101 lost
    link.poll()
    assert not link.inbox and [parse_state(f) for f in w.take()] == [(100, 0b11)]  # one ACK per batch read
    w.feed(data_frame(101, b"b", F_MORE))
    link.poll()
    assert [parse_state(f) for f in w.take()] == [(103, 0)]
    assert [m.payload for m in link.inbox] == [b"abcd"]  # delivered once, in order
    w.feed(data_frame(102, b"c", F_MORE))  # a late duplicate
    link.poll()
    assert [parse_state(f) for f in w.take()] == [(103, 0)] and link.stats["duplicates"] == 1


def test_a_corrupted_tail_is_answered_by_a_nak_carrying_the_state():
    w = Wire()
    link = Link(w, name="rx")
    w.feed(data_frame(7, flags=F_SYNC), data_frame(9))
    w.rx += bytearray(encode_frame(data_frame(10)))[:-6] + b"\x00"  # 10 arrives damaged
    link.poll()
    (nak,) = w.take()
    assert nak.type == M.NAK and parse_state(nak) == (7, 0b1)


def test_sync_restarts_the_receiver_and_drops_half_messages():
    w = Wire()
    link = Link(w, name="rx")
    w.feed(data_frame(5, b"half", F_SYNC | F_MORE), data_frame(7, b"held"))
    link.poll()
    w.feed(data_frame(40000, b"new", F_SYNC))  # the peer restarted
    link.poll()
    assert [m.payload for m in link.inbox] == [b"new"] and link.stats["resyncs"] == 1


@pytest.mark.parametrize("held", [[], [2], [3, 5], list(range(2, 2 + SACK_BITS))])
def test_sack_bitmap_roundtrip(held):
    base = 65530  # across the wrap of seq
    bits = sack_bitmap(base, [(base + d) & 0xFFFF for d in held])
    assert [d for d in range(2, 2 + SACK_BITS) if bits >> (d - 2) & 1] == held


# ------------------------------------------------------------------ sender
def _sender(w, n=4, **kw):
    link = Link(w, name="tx", ack_timeout=10.0, **kw)
    link.send(0x40, 1, b"s")  # the SYNC frame goes alone
    (sync,) = w.take()
    w.feed(ack(sync.seq))
    for i in range(n):
        link.send(0x40, 2 + i, b"p%d" % i)
    frames = w.take()
    assert len(frames) == n and link.in_flight == n
    return link, [f.seq for f in frames]


def test_a_sack_resends_only_the_frame_it_proves_lost():
    w = Wire()
    link, seqs = _sender(w)
    w.feed(ack(seqs[0], sack=0b1))  # seqs[1] missing, seqs[2] held
    link.poll()
    assert [f.seq for f in w.take()] == [seqs[1]]
    assert link.in_flight == 3
    w.feed(ack(seqs[3]))
    link.poll()
    assert link.in_flight == 0 and not w.take()


def test_a_nak_resends_one_frame_the_first_the_receiver_cannot_have_seen():
    w = Wire()
    link, seqs = _sender(w)
    nak = Frame(type=M.NAK, seq=seqs[1], payload=struct.pack("<BI", 1, 0))
    w.feed(nak)
    link.poll()
    assert [f.seq for f in w.take()] == [seqs[2]]  # not the whole window
    w.feed(nak)  # a second damaged chunk: the next suspect, still not the window
    link.poll()
    assert [f.seq for f in w.take()] == [seqs[3]]
    assert link.stats["retransmits"] == 2


def test_a_version_1_0_nak_without_state_still_gets_the_frame_resent():
    w = Wire()
    link, seqs = _sender(w)
    w.feed(Frame(type=M.NAK, seq=0, payload=b"\x01"))
    link.poll()
    assert [f.seq for f in w.take()] == [seqs[0]]


def test_resends_count_against_their_own_frame_not_the_oldest():
    """The 1.0 link gave up on the oldest frame after `retries` NAKs for *other* frames."""
    w = Wire()
    link, seqs = _sender(w, n=2, retries=3)
    for _ in range(2 * MAX_TRIES):  # the peer keeps receiving the oldest frame but loses the newest
        w.feed(Frame(type=M.NAK, seq=seqs[0], payload=struct.pack("<BI", 1, 0)))
        try:
            link.poll()
        except LinkError as exc:
            assert f"seq {seqs[1]} after {MAX_TRIES} tries" in str(exc)  # the frame that was lost, and only it
            break
    else:
        pytest.fail("a frame the peer never receives must be given up")


def test_the_link_gives_up_on_a_silent_peer_after_retries_timeouts():
    a, b = socket.socketpair()  # nobody reads b
    try:
        host = Link(FdTransport(a.fileno()), ack_timeout=0.02, retries=3, name="host")
        host.send(M.HELLO, 1, b"hi")
        t0 = time.monotonic()
        with pytest.raises(LinkError, match=r"no ACK for HELLO frame seq \d+ after 4 tries \(4 timed out.*"
                                             r"no ACK or NAK from the peer for 0\.\d+ s \(3 retries\)"):
            host.flush()
        assert time.monotonic() - t0 < 4 * 0.02 + 1.0
        assert host.in_flight == 0
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ frame size
def test_frame_size_follows_the_line():
    link = Link(Wire(), max_payload=1024)
    assert 100 < link.fragment_size < 400  # a moderate start, before the line has shown itself
    for _ in range(48):
        link._observe(1040, False)
    assert link.fragment_size == 1024  # clean: the largest negotiated payload
    rng = random.Random(0)
    for q, lo, hi in ((8e-4, 80, 250), (8e-3, 20, 70), (0.05, MIN_FRAGMENT, 24)):
        for _ in range(400):
            n = link.fragment_size + 16
            link._observe(n, rng.random() > (1 - q) ** n)
        assert lo <= link.fragment_size <= hi, (q, link.fragment_size, link.error_rate)


# ------------------------------------------------------------------ over damaged lines
class FrameFaults(FdTransport):
    """Damages whole writes (each is one frame): with probability ``p`` one byte is flipped."""

    def __init__(self, fd, rng, p):
        super().__init__(fd)
        self.rng, self.p = rng, p

    def write(self, data: bytes) -> None:
        data = bytearray(data)
        if self.rng.random() < self.p:
            data[self.rng.randrange(len(data) - 1)] ^= 0x5A
        super().write(bytes(data))


class ByteFaults(FdTransport):
    """Bit flips, dropped, duplicated bytes and garbage bursts, drawn per byte."""

    def __init__(self, fd, seed, ber=0.0, p_drop=0.0, p_dup=0.0, p_burst=0.0):
        super().__init__(fd)
        self.rng = np.random.default_rng(seed)
        self.ber, self.p_drop, self.p_dup, self.p_burst = ber, p_drop, p_dup, p_burst

    def write(self, data: bytes) -> None:
        a = np.frombuffer(data, dtype=np.uint8).copy()
        a = a[self.rng.random(a.size) >= self.p_drop]
        flips = self.rng.random((a.size, 8)) < self.ber
        a ^= np.packbits(flips, axis=1, bitorder="little")[:, 0]
        a = np.repeat(a, np.where(self.rng.random(a.size) < self.p_dup, 2, 1))
        for i in np.flatnonzero(self.rng.random(a.size) < self.p_burst)[::-1]:
            a = np.insert(a, i, self.rng.integers(0, 256, 32, dtype=np.uint8))
        super().write(a.tobytes())


def _echo(link, stop):
    while not stop.is_set():
        try:
            m = link.recv(0.02)
            if m is not None:
                link.send(m.type + 1, m.req, m.payload[::-1])
        except LinkError:
            pass


def exchange(make_transport, messages, window=32, max_payload=256, timeout=20.0):
    """Echo each message through a peer; returns (echoes received, LinkErrors raised by the host)."""
    a, b = socket.socketpair()
    host = Link(make_transport(a.fileno(), 0), ack_timeout=0.03, max_payload=max_payload, window=window, name="host")
    peer = Link(make_transport(b.fileno(), 1), ack_timeout=0.03, max_payload=max_payload, window=window, name="peer")
    stop = threading.Event()
    th = threading.Thread(target=_echo, args=(peer, stop), daemon=True)
    th.start()
    got, errors = [], []
    try:
        for req, payload in enumerate(messages):
            try:
                host.send(0x40, req, payload)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    m = host.recv(deadline - time.monotonic())
                    if m is None or m.req == req:
                        break
                    got.append(m)  # an echo of an earlier message: must not happen twice
                if m is not None:
                    got.append(m)
            except LinkError as exc:
                errors.append(str(exc))
        try:
            while (m := host.recv(0.1)) is not None:
                got.append(m)
        except LinkError as exc:
            errors.append(str(exc))
    finally:
        stop.set()
        th.join(5)
        a.close()
        b.close()
    return got, errors


@pytest.mark.slow
@pytest.mark.parametrize("window", [4, 32])
def test_half_the_frames_damaged_and_no_give_up(window):
    """Issue 12 measured the 1.0 link, in memory at 50 % frame corruption: it gave up
    in 42 of 100 trials with window 4. On this exchange the frozen 1.0 link
    (`wire_v1_0`) gave up in 12 of 20 trials with window 4, the 1.1 link in none
    (``python bench/bench_link.py --in-memory`` runs both)."""
    rng = random.Random(window)
    msgs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 700))) for _ in range(6)]
    for trial in range(5):
        got, errors = exchange(lambda fd, side: FrameFaults(fd, random.Random(trial * 2 + side), 0.5), msgs,
                               window=window)
        assert errors == []
        assert [(m.req, m.payload) for m in got] == [(i, p[::-1]) for i, p in enumerate(msgs)]


faults = st.fixed_dictionaries({
    "ber": st.sampled_from([0.0, 1e-4, 1e-3, 3e-3]),
    "p_drop": st.sampled_from([0.0, 1e-3, 1e-2]),
    "p_dup": st.sampled_from([0.0, 1e-3, 1e-2]),
    "p_burst": st.sampled_from([0.0, 1e-3]),
})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults, st.lists(st.binary(max_size=1500), min_size=1, max_size=5), st.sampled_from([1, 4, 32]),
       st.sampled_from([32, 256, 1024]), st.integers(0, 2**16))
def test_whatever_the_damage_nothing_is_corrupted_lost_or_doubled(f, msgs, window, max_payload, seed):
    got, errors = exchange(lambda fd, side: ByteFaults(fd, seed * 2 + side, **f), msgs, window=window,
                           max_payload=max_payload, timeout=10.0)
    replies = [(m.req, m.payload) for m in got]
    want = {i: p[::-1] for i, p in enumerate(msgs)}
    assert all(want.get(req) == p for req, p in replies)  # nothing corrupted
    assert len(replies) == len(set(r for r, _ in replies))  # nothing twice
    assert [r for r, _ in replies] == sorted(r for r, _ in replies)  # in order
    if not errors:
        assert len(replies) == len(msgs)  # nothing lost unless the link said so
