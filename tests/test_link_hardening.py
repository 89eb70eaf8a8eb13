"""What a chip says is checked, and the link's own markers cannot be forged
(issue 12, finding 10).

* Wire type 0xFF used to be the link's internal "message too large" marker:
  a peer sending it got a false BUFFER_OVERFLOW (or ``ERROR INTERNAL
  IndexError`` with an empty payload). The marker is now its own class.
* The host believed every limit in HELLO_REPLY: ``max_payload=0`` or
  ``dac_bits=0`` ended in a ValueError traceback. Each limit is now checked
  against its documented range, and refused with a one-line TargetError
  naming the field, before anything is compiled or sent.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import threading
import time
import tty

import numpy as np
import pytest

from hwloop.backends import open_target
from hwloop.errors import TargetError
from hwloop.firmware_models.qif_chip.firmware import Firmware
from hwloop.firmware_models.qif_chip.spec import DEFAULT_SPEC
from hwloop.firmware_models.wire import Link, LinkError, Message, Oversized, RemoteError
from hwloop.firmware_models.wire import messages as M
from hwloop.firmware_models.wire.transport import FdTransport
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

QIF = NeuronParams(model="qif", tau_syn=1.0, tau_mem=1.0, threshold=1.0, options={"i0": 1.25, "v0": 0.5})


def tiny_net():
    rng = np.random.default_rng(0)
    return Network(layers=(Layer(rng.normal(0, 0.6, (5, 6)), QIF, bias_times=(0.3,)),
                           Layer(rng.normal(0, 0.6, (7, 3)), QIF, bias_times=(0.1,))),
                   encoding=InputEncoding(n_features=4), decoding=OutputDecoding(classes=("a", "b", "c")), t_max=3.0)


@pytest.fixture(scope="module")
def ideal():
    with open_target("qif-emu?mismatch=0&noise=0&baud=0") as chip:
        chip.load(tiny_net())
        yield chip


@pytest.mark.parametrize("payload", [b"", bytes([M.CONFIG]), b"\x11" * 40])
def test_wire_type_ff_is_an_unknown_command_not_an_overflow(ideal, payload):
    with pytest.raises(RemoteError) as e:
        ideal.client.request(0xFF, payload, (M.ERROR,))
    assert e.value.name == "UNKNOWN_COMMAND" and "0xff" in e.value.text
    # and the chip still works, and still reports a real overflow as one
    with pytest.raises(RemoteError) as e:
        ideal.client.request(M.CONFIG, bytes(200_000), (M.CONFIG_OK,))
    assert e.value.name == "BUFFER_OVERFLOW" and "CONFIG" in e.value.text
    assert ideal.run(np.full((3, 4), 0.5)).output.shape == (3, 3)


def test_link_delivers_type_ff_as_a_message_and_marks_overflow_apart():
    a, b = socket.socketpair()
    try:
        tx = Link(FdTransport(a.fileno()), ack_timeout=0.05, max_payload=64, name="tx")
        rx = Link(FdTransport(b.fileno()), ack_timeout=0.05, max_payload=64, max_message=100, name="rx")
        got, stop = [], threading.Event()

        def receive():
            while not stop.is_set():
                m = rx.recv(0.01)
                if m is not None:
                    got.append(m)

        th = threading.Thread(target=receive, daemon=True)
        th.start()
        tx.send(0xFF, 7, b"")
        tx.send(0x40, 8, bytes(300))  # over rx's 100-byte bound
        tx.send(0xFF, 9, b"\x11")
        tx.flush()
        for _ in range(100):
            if len(got) == 3:
                break
            tx.poll(0.01)
        stop.set()
        th.join(5)
        assert got == [Message(0xFF, 7, b""), Oversized(type=0x40, req=8, limit=100), Message(0xFF, 9, b"\x11")]
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ the chip's limits
class LyingFirmware(Firmware):
    """The real firmware, but its HELLO_REPLY carries one doctored field."""

    def __init__(self, *args, lie: dict, **kw):
        super().__init__(*args, **kw)
        self.lie = lie

    def info(self):
        return dataclasses.replace(super().info(), **self.lie)


@pytest.fixture
def lying_chip():
    started = []

    def start(**lie):
        master, slave = os.openpty()
        tty.setraw(slave)
        fw = LyingFirmware(FdTransport(master), spec=DEFAULT_SPEC, chip_id=3, mismatch=0.0, noise=0.0, lie=lie)
        stop = threading.Event()
        th = threading.Thread(target=fw.serve, args=(stop.is_set,), daemon=True)
        th.start()
        started.append((stop, th, master, slave))
        return os.ttyname(slave)

    yield start
    for stop, th, master, slave in started:
        stop.set()
        th.join(5)
        os.close(master)
        os.close(slave)


BAD_LIMITS = [
    ("max_payload", 0), ("max_payload", 8), ("dac_bits", 0), ("dac_bits", 1), ("dac_bits", 9), ("n_ranges", 0),
    ("max_neurons", 0), ("max_fanin", 0), ("max_layers", 0), ("max_inputs", 0), ("max_batch", 0),
    ("rx_buffer", 10), ("tdc_bits", 0), ("tdc_bits", 17), ("w_fs_min", 0.0), ("w_fs_min", math.nan),
    ("tdc_lsb_us", 0.0), ("tdc_lsb_us", math.inf), ("tau_min_us", -1.0), ("tau_max_us", math.nan),
    ("i0_min", -math.inf), ("i0_max", math.nan),
]


@pytest.mark.parametrize("field,value", BAD_LIMITS, ids=[f"{f}={v}" for f, v in BAD_LIMITS])
def test_chip_limits_outside_their_range_are_refused_naming_the_field(lying_chip, field, value):
    path = lying_chip(**{field: value})
    with pytest.raises(TargetError) as e:
        with open_target(f"qif://{path}?baud=0&connect_timeout=3") as board:
            board.load(tiny_net())
            board.run(np.full((2, 4), 0.5))
    msg = str(e.value)
    assert f"{field}=" in msg and "documented range" in msg and "\n" not in msg


@pytest.mark.parametrize("lie", [{"tau_min_us": 60.0, "tau_max_us": 50.0}, {"i0_min": 3.0, "i0_max": 1.0}])
def test_swapped_ranges_are_refused(lying_chip, lie):
    path = lying_chip(**lie)
    with pytest.raises(TargetError, match=f"{next(iter(lie))}=.* above"):
        open_target(f"qif://{path}?baud=0&connect_timeout=3")


def test_a_chip_of_another_major_version_is_refused_at_once(lying_chip):
    path = lying_chip(protocol_version=2)
    with pytest.raises(TargetError, match=r"chip speaks protocol v2, host v1"):
        open_target(f"qif://{path}?baud=0&connect_timeout=30")  # refused at the first reply, not after 30 s


def test_an_honest_chip_passes_and_reports_its_protocol_version(lying_chip):
    path = lying_chip()
    with open_target(f"qif://{path}?baud=0") as board:
        assert board.chip_info.protocol == f"{M.PROTOCOL_VERSION}.{M.PROTOCOL_MINOR}" == "1.5"
        board.load(tiny_net())
        assert board.run(np.full((2, 4), 0.5)).output.shape == (2, 3)


# ------------------------------------------------------------------ a chip whose link gives up on a reply
class FlakyFirmware(Firmware):
    """The real firmware, but its link gives up once on the reply to the first CONFIG
    and once in the middle of the first RUN's results (as on a line that turned bad)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.flaked = set()

    def _flake(self, what):
        if what not in self.flaked:
            self.flaked.add(what)
            raise LinkError(f"chip: no ACK for {what} (simulated)")

    def on_config(self, req, payload):
        self._flake("CONFIG_OK")
        super().on_config(req, payload)

    def on_run(self, req, payload):
        if "RESULT" in self.flaked:
            return super().on_run(req, payload)
        real, results = self.link.send, []

        def send(mtype, r, p=b""):
            if mtype in (M.RESULT, M.RESULT_COMPACT):
                results.append(r)
                if len(results) == 3:
                    self._flake("RESULT")
            real(mtype, r, p)

        self.link.send = send
        try:
            super().on_run(req, payload)
        finally:
            del self.link.send


def test_a_reply_the_chip_gave_up_on_is_asked_for_again_at_once():
    """Protocol 1.1: the chip says ERROR LINK_RESET; the host repeats the request (or
    resumes the run) at once instead of waiting out its 5 s reply timeout."""
    master, slave = os.openpty()
    tty.setraw(slave)
    fw = FlakyFirmware(FdTransport(master), spec=DEFAULT_SPEC, chip_id=3, mismatch=0.0, noise=0.0)
    stop = threading.Event()
    th = threading.Thread(target=fw.serve, args=(stop.is_set,), daemon=True)
    th.start()
    x = np.random.default_rng(0).uniform(0, 1, (300, 4))
    try:
        with open_target(f"qif://{os.ttyname(slave)}?baud=0") as board:
            board.load(tiny_net())
            t0 = time.monotonic()
            m = board.run(x)
            took = time.monotonic() - t0
            assert board.client.events["replies_lost"] >= 1  # the CONFIG_OK, asked for again
            assert fw.flaked == {"CONFIG_OK", "RESULT"}
            assert m.info["recoveries"] == 1 and "gave up sending its reply" in m.info["errors"][0]
            assert took < 4.0  # not the 5 s reply timeout
            board.run_index = 0
            again = board.run(x)
    finally:
        stop.set()
        th.join(5)
        os.close(master)
        os.close(slave)
    for a, b in zip(m.times, again.times):
        np.testing.assert_array_equal(a, b)
