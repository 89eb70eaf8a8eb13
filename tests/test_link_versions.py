"""Protocol 1.1 meets protocol 1.0 (the frozen copy in `wire_v1_0`), and
protocol 1.4 (spike-train mode) meets 1.3.

What each pairing gets, as docs/wire-protocol.md ("Versions") states it:

* an old (1.0) host with a 1.1 chip keeps working: the chip accepts its
  4-byte HELLO, the old host ignores the minor byte appended to HELLO_REPLY
  and the SACK/state payloads of ACKs and NAKs; the old host's own
  retransmissions stay go-back-N;
* a 1.1 host with an old (1.0) chip keeps working: the chip ignores the minor
  byte of HELLO and replies without one, the host reports protocol 1.0; the
  chip holds no frame after a gap, which the 1.1 sender survives (it resends
  what was dropped);
* a different *major* version is refused with a clear error, both ways.

Every pairing must give the results of the current pair, sample for sample.

Protocol 1.4 (docs/qif-chip-trains.md, "Versions"), per direction:

* an old (1.3) host with the 1.4 firmware: first-spike traffic keeps working
  (the reply's appended spike-train limits are ignored); spike-train traffic
  is a clear version error: the firmware answers TRAIN_CONFIG / RUN_TRAINS
  from a host whose HELLO said minor < 4 with ERROR UNSUPPORTED_VERSION
  ("needs protocol 1.4"), since that host could not read the replies;
* a 1.4 host with old (1.3) firmware: first-spike traffic keeps working;
  spike-train traffic is a clear version error raised by the host before
  anything is sent (`TrainsUnsupported`, "update the firmware"); a host that
  sent one anyway gets the 1.3 firmware's ERROR UNKNOWN_COMMAND.
"""

from __future__ import annotations

import os
import threading
import tty

import numpy as np
import pytest
import serial

import wire_v1_0.client as old_client
import wire_v1_0.firmware as old_firmware
import wire_v1_0.transport as old_transport
from hwloop.backends import open_target
from hwloop.backends.qif import spawn_emulator, stop_emulator
from hwloop.backends.qif.compiler import compile_network
from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH, DEFAULT_NOISE, DEFAULT_SPEC
from hwloop.firmware_models.wire import RemoteError
from hwloop.firmware_models.wire import messages as M
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

from linkproxy import LinkProxy

QIF = NeuronParams(model="qif", tau_syn=1.0, tau_mem=1.0, threshold=1.0, options={"i0": 1.25, "v0": 0.5})
CHIP = ["--chip-id", "0x5EED", "--baud", "0"]  # default mismatch and noise
SEED = 12345


def net():
    rng = np.random.default_rng(0)
    return Network(layers=(Layer(rng.normal(0, 0.6, (5, 20)), QIF, bias_times=(0.3,)),
                           Layer(rng.normal(0, 0.6, (21, 3)), QIF, bias_times=(0.1,))),
                   encoding=InputEncoding(n_features=4), decoding=OutputDecoding(classes=("a", "b", "c")), t_max=3.0)


X = np.random.default_rng(3).uniform(0, 1.5, (300, 4))


@pytest.fixture(scope="module")
def reference():
    """Ticks from the current host and the current firmware (the emulator process)."""
    proc, err, path = spawn_emulator(CHIP)
    try:
        with open_target(f"qif://{path}?baud=0") as board:
            prog = board.load(net())
            ticks = prog.input_ticks(X)
            out, _ = board.client.run(ticks, sum(prog.sizes), SEED)
        return prog, ticks, out
    finally:
        stop_emulator(proc)
        err.close()


def _old_host_run(path, prog, ticks):
    port = serial.serial_for_url(path, baudrate=115200, timeout=0.01)
    try:
        client = old_client.ChipClient(old_transport.SerialTransport(port), baud=None, reply_timeout=2.0,
                                       connect_timeout=5.0)
        info = client.connect()
        assert info.protocol_version == 1 and info.fw_version == "1.1"  # the 1.3 chip; the old host reads it
        client.configure(prog.config.pack())
        out, stats = client.run(ticks, sum(prog.sizes), SEED)
        return out, stats, client
    finally:
        port.close()


def test_old_host_keeps_working_with_the_new_firmware(reference):
    prog, ticks, want = reference
    proc, err, path = spawn_emulator(CHIP)
    try:
        out, stats, _ = _old_host_run(path, prog, ticks)
    finally:
        stop_emulator(proc)
        err.close()
    np.testing.assert_array_equal(out, want)
    assert stats["recoveries"] == 0


def test_old_host_keeps_working_with_the_new_firmware_on_a_lightly_noisy_line(reference):
    """Exercises the 1.1 chip's SACK ACKs, state NAKs and out-of-order holding
    against a go-back-N sender and receiver that ignore them."""
    prog, ticks, want = reference
    proxy = LinkProxy(CHIP, seed=4)
    try:
        proxy.set_faults(ber=2e-5, p_drop=1e-4)
        out, stats, client = _old_host_run(proxy.host_path, prog, ticks)
        link = client.link.stats
    finally:
        proxy.close()
    np.testing.assert_array_equal(out, want)
    assert link["frame_errors"] + link["naks_rx"] > 0  # the line was noisy enough to matter


@pytest.fixture
def old_chip():
    """The 1.0 firmware on a pseudo-terminal (in a thread), like an old board."""
    running = []

    def start():
        master, slave = os.openpty()
        tty.setraw(slave)
        fw = old_firmware.Firmware(old_transport.FdTransport(master), spec=DEFAULT_SPEC, chip_id=0x5EED,
                                   mismatch=DEFAULT_MISMATCH, noise=DEFAULT_NOISE)
        stop = threading.Event()
        th = threading.Thread(target=fw.serve, args=(stop.is_set,), daemon=True)
        th.start()
        running.append((stop, th, master, slave))
        return os.ttyname(slave)

    yield start
    for stop, th, master, slave in running:
        stop.set()
        th.join(5)
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("faults", [{}, {"ber": 2e-5, "p_drop": 1e-4}], ids=["clean", "lightly-noisy"])
def test_new_host_keeps_working_with_old_firmware(reference, old_chip, faults):
    prog, ticks, want = reference
    path = old_chip()
    proxy = None
    if faults:  # put the fault-injecting proxy in front of the old board's pty
        proxy = LinkProxy(port=path, seed=4)
        proxy.set_faults(**faults)
        path = proxy.host_path
    try:
        with open_target(f"qif://{path}?baud=0") as board:
            assert board.chip_info.protocol == "1.0" and board.chip_info.fw_version == "1.0"
            assert compile_network(net(), board.chip_info).config.pack() == prog.config.pack()
            board.load(net())
            out, _ = board.client.run(ticks, sum(prog.sizes), SEED)
    finally:
        if proxy is not None:
            proxy.close()
    np.testing.assert_array_equal(out, want)


def test_a_host_of_another_major_version_is_refused():
    """(A chip of another major version: `test_link_hardening.py`.)"""
    with open_target("qif-emu?baud=0&mismatch=0&noise=0") as chip:
        with pytest.raises(RemoteError) as e:
            chip.client.request(M.HELLO, M.pack_hello(2, 1024, 0), (M.HELLO_REPLY,))
        assert e.value.name == "UNSUPPORTED_VERSION" and "v2" in e.value.text and "v1.5" in e.value.text
        assert chip.client.hello().protocol == "1.5"  # and it still talks 1.x


# ------------------------------------------------------------------ 1.4 (spike trains) meets 1.3
import dataclasses  # noqa: E402

from hwloop.backends.qif.client import TrainsUnsupported  # noqa: E402
from hwloop.errors import TargetError  # noqa: E402
from hwloop.firmware_models.qif_chip.firmware import Firmware  # noqa: E402
from hwloop.firmware_models.wire.transport import FdTransport  # noqa: E402


def trains_net():
    rng = np.random.default_rng(0)
    hid = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=5.0, i0=0.1)
    out = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=5.0, spiking=False)
    return Network(layers=(Layer(rng.normal(0, 1.0, (4, 12)), hid), Layer(rng.normal(0, 0.4, (12, 3)), out)),
                   encoding=InputEncoding(n_features=4), decoding=OutputDecoding(classes=("a", "b", "c"), kind="max-membrane"),
                   t_max=20.0)


class Firmware13(Firmware):
    """The firmware as it was at protocol 1.3: no spike-train limits in HELLO_REPLY,
    and the 1.4 message types unknown to it."""

    def info(self):
        return dataclasses.replace(super().info(), protocol_minor=3)

    def handle(self, msg):
        if msg.type in (M.TRAIN_CONFIG, M.RUN_TRAINS):
            return self.error(msg.req, M.E_UNKNOWN_COMMAND, f"unknown command 0x{msg.type:02x}")
        return super().handle(msg)


@pytest.fixture
def chip_1_3():
    master, slave = os.openpty()
    tty.setraw(slave)
    fw = Firmware13(FdTransport(master), spec=DEFAULT_SPEC, chip_id=0x5EED, mismatch=DEFAULT_MISMATCH, noise=DEFAULT_NOISE)
    stop = threading.Event()
    th = threading.Thread(target=fw.serve, args=(stop.is_set,), daemon=True)
    th.start()
    yield os.ttyname(slave)
    stop.set()
    th.join(5)
    os.close(master)
    os.close(slave)


def test_old_1_3_host_keeps_working_and_gets_a_clear_version_error_for_spike_trains(reference):
    prog, ticks, want = reference
    proc, err, path = spawn_emulator(CHIP)
    try:
        with open_target(f"qif://{path}?baud=0") as board:
            board.client.hello_minor = 3  # a host that speaks 1.3
            info = board.client.hello()
            assert info.protocol == "1.5" and info.has_trains
            board.load(net())
            out, _ = board.client.run(ticks, sum(prog.sizes), SEED)
            np.testing.assert_array_equal(out, want)  # first-spike traffic: unchanged
            with pytest.raises(RemoteError) as e:  # what the firmware says to a 1.3 host that sends one anyway
                board.client.request(M.TRAIN_CONFIG, b"\0" * 16, (M.CONFIG_OK,))
            assert e.value.name == "UNSUPPORTED_VERSION" and "needs protocol 1.4" in e.value.text
            assert "HELLO said 1.3" in e.value.text
            with pytest.raises(TargetError, match="announced protocol 1.3; spike trains need 1.4"):
                board.load(trains_net())
            board.client.hello_minor = M.PROTOCOL_MINOR  # the same board, a 1.4 host: spike trains run
            board.client.hello()
            board.load(trains_net())
            m = board.run_raster(np.zeros((20, 2, 4)))
            assert m.scores.shape == (2, 3)
    finally:
        stop_emulator(proc)
        err.close()


def test_new_host_keeps_working_with_1_3_firmware_and_refuses_spike_trains_clearly(reference, chip_1_3):
    prog, ticks, want = reference
    with open_target(f"qif://{chip_1_3}?baud=0") as board:
        assert board.chip_info.protocol == "1.3" and not board.chip_info.has_trains
        board.load(net())
        out, _ = board.client.run(ticks, sum(prog.sizes), SEED)
        np.testing.assert_array_equal(out, want)  # first-spike traffic: unchanged
        with pytest.raises(TargetError, match=r"speaks protocol 1\.3; spike trains need protocol 1\.4 \(update the firmware\)"):
            board.load(trains_net())
        with pytest.raises(TrainsUnsupported):
            board.client.configure(b"\0" * 16, M.TRAIN_CONFIG)
        with pytest.raises(RemoteError) as e:  # a host that skipped the check
            board.client.request(M.TRAIN_CONFIG, b"\0" * 16, (M.CONFIG_OK,))
        assert e.value.name == "UNKNOWN_COMMAND"
        out2, _ = board.client.run(ticks[:20], sum(prog.sizes), SEED)  # and the board still works
        np.testing.assert_array_equal(out2, want[:20])
