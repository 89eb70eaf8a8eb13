"""Wire protocol: COBS, frames, the stream decoder (fuzzed) and the ARQ link."""

from __future__ import annotations

import random
import socket
import threading
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwloop.firmware_models.wire import (
    Frame, FrameDecoder, FrameError, Link, LinkError, ProtocolError, cobs_decode, cobs_encode,
    decode_frame, encode_frame,
)
from hwloop.firmware_models.wire import messages as M
from hwloop.firmware_models.wire.frame import MAX_ENCODED, MAX_PAYLOAD
from hwloop.firmware_models.wire.link import Oversized, parse_state
from hwloop.firmware_models.wire.transport import FdTransport


# ------------------------------------------------------------------ COBS
@settings(deadline=None)  # a loaded machine must not fail a property
@given(st.binary(max_size=2000))
def test_cobs_roundtrip_and_no_zero(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


def test_cobs_known_vectors():
    # from the COBS paper / common test vectors
    assert cobs_encode(b"\x00") == b"\x01\x01"
    assert cobs_encode(b"\x00\x00") == b"\x01\x01\x01"
    assert cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs_encode(b"\x11\x00\x00\x00") == b"\x02\x11\x01\x01\x01"
    assert cobs_encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255)) + b"\x01"


@settings(deadline=None)  # a loaded machine must not fail a property
@given(st.binary(max_size=600))
def test_cobs_decode_only_raises_frame_error(data):
    try:
        cobs_decode(data)
    except FrameError:
        pass


# ------------------------------------------------------------------ frames
frames = st.builds(
    Frame,
    type=st.integers(0, 255),
    seq=st.integers(0, 0xFFFF),
    req=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=700),
    flags=st.integers(0, 255),
)


@settings(deadline=None)  # a loaded machine must not fail a property
@given(frames)
def test_frame_roundtrip(f):
    enc = encode_frame(f)
    assert enc.endswith(b"\x00") and 0 not in enc[:-1]
    assert decode_frame(enc) == f


def test_frame_detects_every_single_bit_flip():
    f = Frame(type=M.RESULT, seq=7, req=3, payload=bytes(range(200)))
    body = encode_frame(f)[:-1]
    for pos in range(len(body)):
        for bit in range(8):
            bad = bytearray(body)
            bad[pos] ^= 1 << bit
            with pytest.raises(FrameError):
                decode_frame(bytes(bad))


def test_frame_bound_enforced():
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame(Frame(type=1, seq=0, payload=bytes(MAX_PAYLOAD + 1)))
    with pytest.raises(FrameError, match="exceeds"):
        decode_frame(b"\x05" * (MAX_ENCODED + 10))


def test_length_field_checked_even_when_crc_matches():
    body = bytearray(M_header := Frame(type=1, seq=1, payload=b"abc").encode())
    raw = cobs_decode(bytes(body[:-1]))
    forged = bytearray(raw[:-4])
    forged[6] = 5  # claim 5 bytes
    forged += zlib.crc32(bytes(forged)).to_bytes(4, "little")
    with pytest.raises(FrameError, match="length field"):
        decode_frame(cobs_encode(bytes(forged)))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=600), frames.map(lambda f: bytearray(encode_frame(f)))), st.data())
def test_decode_frame_only_raises_frame_error(raw, data):
    raw = bytearray(raw)
    if raw and data.draw(st.booleans()):  # damage a valid frame a little
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    try:
        f = decode_frame(bytes(raw))
    except FrameError:
        return
    assert isinstance(f, Frame) and len(f.payload) <= MAX_PAYLOAD


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 64))
def test_stream_decoder_never_raises_on_garbage(data, chunk):
    dec = FrameDecoder()
    for i in range(0, len(data), chunk):
        for ev in dec.feed(data[i : i + chunk]):
            assert isinstance(ev, (Frame, FrameError))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500), st.lists(frames, min_size=1, max_size=4), st.integers(1, 97))
def test_stream_decoder_resyncs_after_garbage(garbage, fs, chunk):
    """Any garbage before a delimiter costs at most the frame it sits in."""
    stream = garbage + b"\x00" + b"".join(encode_frame(f) for f in fs)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += [e for e in dec.feed(stream[i : i + chunk]) if isinstance(e, Frame)]
    # garbage could itself decode as a (valid-CRC) frame only with probability ~2^-32
    assert got[-len(fs):] == fs


def test_stream_decoder_bounds_its_buffer():
    dec = FrameDecoder()
    evs = dec.feed(b"\x07" * (MAX_ENCODED + 5))
    assert any(isinstance(e, FrameError) and "no delimiter" in str(e) for e in evs)
    assert len(dec._buf) <= MAX_ENCODED
    f = Frame(type=2, seq=1, payload=b"x")
    evs = dec.feed(b"\x07" * 10 + b"\x00" + encode_frame(f))
    assert [e for e in evs if isinstance(e, Frame)] == [f]


# ------------------------------------------------------------------ messages
@settings(deadline=None)  # a loaded machine must not fail a property
@given(st.binary(max_size=300))
def test_message_unpackers_only_raise_protocol_error(p):
    for fn in (M.unpack_hello, M.unpack_run, M.unpack_result, M.unpack_done, M.unpack_status,
               M.unpack_error, M.unpack_config_ok, M.ChipInfo.unpack, M.ChipConfig.unpack,
               lambda p: M.ChipInfo.unpack(p).validate()):
        try:
            fn(p)
        except ProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.builds(Frame, type=st.sampled_from([M.ACK, M.NAK]), seq=st.integers(0, 0xFFFF),
                 payload=st.binary(max_size=12), flags=st.integers(0, 255)))
def test_ack_and_nak_state_never_raises(f):
    """1.1 ACK/NAK payloads (SACK bitmap, receiver state): any payload reads as a state or as none."""
    state = parse_state(decode_frame(encode_frame(f)))
    assert state is None or (state[0] == f.seq and 0 <= state[1] < 2**32)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(Frame, type=st.integers(0, 255), seq=st.integers(0, 0xFFFF), req=st.integers(0, 0xFFFF),
                          payload=st.binary(max_size=300), flags=st.integers(0, 255)), max_size=12))
def test_a_link_fed_arbitrary_valid_frames_only_raises_link_errors(fs):
    """Forged ACKs, NAKs, SYNC flags, sequence jumps: the link delivers or drops, never crashes."""

    class Loop:
        def __init__(self):
            self.rx = b"".join(encode_frame(f) for f in fs)

        def write(self, data):
            pass

        def read(self, timeout):
            data, self.rx = self.rx, b""
            return data

    link = Link(Loop(), ack_timeout=0.001, retries=1, max_message=500)
    try:
        link.send(0x40, 1, bytes(700))
        for _ in range(5):
            link.poll()
    except LinkError:
        pass
    for m in link.inbox:
        assert isinstance(m, (M.Message, Oversized))


def test_config_roundtrip():
    rng = np.random.default_rng(0)
    cfg = M.ChipConfig(
        n_inputs=4,
        trial_ticks=1234,
        layers=(
            M.LayerConfig(codes=rng.integers(-31, 32, (6, 5)).astype(np.int8), w_range=3, tau_us=20.0, i0=1.25,
                          v0=0.5, bias_ticks=(0, 17)),
            M.LayerConfig(codes=rng.integers(-31, 32, (5, 3)).astype(np.int8), w_range=0, tau_us=20.0, i0=1.25,
                          v0=0.5),
        ),
    )
    back = M.ChipConfig.unpack(cfg.pack())
    assert back.n_inputs == 4 and back.trial_ticks == 1234 and back.n_neurons == 8
    for a, b in zip(cfg.layers, back.layers):
        assert np.array_equal(a.codes, b.codes) and a.bias_ticks == b.bias_ticks and a.w_range == b.w_range
    with pytest.raises(ProtocolError, match="trailing"):
        M.ChipConfig.unpack(cfg.pack() + b"\x00")
    with pytest.raises(ProtocolError, match="layer 1"):
        M.ChipConfig.unpack(cfg.pack()[:-3])


def test_run_and_result_roundtrip():
    t = np.array([[0, 5, M.NO_SPIKE], [7, 8, 9]], dtype=np.uint16)
    seed, first, back = M.unpack_run(M.pack_run(99, 12, t))
    assert (seed, first) == (99, 12) and np.array_equal(back, t)
    first, back = M.unpack_result(M.pack_result(3, t))
    assert first == 3 and np.array_equal(back, t)
    assert len(M.pack_run(0, 0, t)) == 12 + 2 * t.size  # compact: 2 bytes per spike time


# ------------------------------------------------------------------ link
class FaultyTransport(FdTransport):
    """Corrupts what it writes: bit flips at a bit error rate, dropped and duplicated bytes."""

    def __init__(self, fd, rng, ber=0.0, p_drop=0.0, p_dup=0.0):
        super().__init__(fd)
        self.rng, self.ber, self.p_drop, self.p_dup = rng, ber, p_drop, p_dup

    def write(self, data: bytes) -> None:
        out = bytearray()
        for b in data:
            if self.rng.random() < self.p_drop:
                continue
            for bit in range(8):
                if self.rng.random() < self.ber:
                    b ^= 1 << bit
            out.append(b)
            if self.rng.random() < self.p_dup:
                out.append(b)
        super().write(bytes(out))


def _echo_peer(link: Link, stop: threading.Event):
    while not stop.is_set():
        try:
            m = link.recv(0.05)
            if m is not None:
                link.send(m.type + 1, m.req, m.payload[::-1])
        except LinkError:
            pass


def _pair(seed, window=4, **faults):
    a, b = socket.socketpair()
    rng = random.Random(seed)
    ta = FaultyTransport(a.fileno(), rng, **faults)
    tb = FaultyTransport(b.fileno(), random.Random(seed + 1), **faults)
    host = Link(ta, ack_timeout=0.05, retries=30, max_payload=200, name="host", window=window)
    peer = Link(tb, ack_timeout=0.05, retries=30, max_payload=200, name="peer", window=window)
    return (a, b), host, peer


@pytest.mark.parametrize("window", [1, 4])
@pytest.mark.parametrize("faults", [{}, {"ber": 3e-4, "p_drop": 1e-3, "p_dup": 1e-3}])
def test_link_delivers_exactly_once_in_order(faults, window):
    socks, host, peer = _pair(1, window=window, **faults)
    stop = threading.Event()
    th = threading.Thread(target=_echo_peer, args=(peer, stop), daemon=True)
    th.start()
    try:
        rng = np.random.default_rng(2)
        for req in range(12):
            payload = rng.integers(0, 256, int(rng.integers(0, 900)), dtype=np.uint8).tobytes()
            host.send(0x40, req, payload)
            m = host.recv(10.0)
            assert m is not None and m.req == req and m.type == 0x41 and m.payload == payload[::-1]
        assert host.recv(0.2) is None  # nothing delivered twice
    finally:
        stop.set()
        th.join(2)
        for s in socks:
            s.close()
    if faults:
        assert host.stats["retransmits"] + peer.stats["retransmits"] > 0


def test_link_gives_up_with_a_message_that_says_why():
    a, b = socket.socketpair()  # nobody reads b
    try:
        host = Link(FdTransport(a.fileno()), ack_timeout=0.02, retries=3, name="host")
        host.send(M.HELLO, 1, b"hi")  # queued: delivery is driven by later calls
        with pytest.raises(LinkError, match=r"no ACK for HELLO frame seq \d+ after 4 tries \(4 timed out"):
            host.flush()
        assert host.in_flight == 0
    finally:
        a.close()
        b.close()


def test_link_bounds_reassembly():
    socks, host, peer = _pair(3)
    peer.max_message = 500
    try:
        t = threading.Thread(target=host.send, args=(0x40, 9, bytes(1000)))
        t.start()
        got = None
        for _ in range(100):
            got = peer.recv(0.05) or got
            if not t.is_alive() and got is not None:
                break
        t.join(5)
        # the overflow marker, not a 500-byte truncation
        assert got == Oversized(type=0x40, req=9, limit=500)
    finally:
        for s in socks:
            s.close()
