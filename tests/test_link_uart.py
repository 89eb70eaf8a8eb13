"""The emulator's UART model: paced at the baud rate, with a transmit FIFO.

A write returns once all but the last `TX_FIFO` bytes would have left the
shift register: the line stays busy while the firmware prepares its next
frame (as with a real UART's FIFO or DMA), and the pace never exceeds the
baud rate. Only lower bounds on time are asserted: a loaded machine can
make the UART slower, never faster."""

from __future__ import annotations

import socket
import time

import pytest

from hwloop.firmware_models.qif_chip.uart import PacedUart

BAUD = 115200


def _drain(sock, n):
    got = b""
    sock.settimeout(5)
    while len(got) < n:
        got += sock.recv(65536)
    return got


@pytest.mark.parametrize("fifo", [0, 256])
def test_writes_keep_the_baud_rate_and_return_with_the_fifo_still_sending(fifo):
    a, b = socket.socketpair()
    try:
        uart = PacedUart(a.fileno(), BAUD, tx_fifo=fifo)
        data = bytes(range(256)) * 8  # 2048 bytes
        t0 = time.monotonic()
        uart.write(data)
        returned = time.monotonic()
        ahead = uart._tx_clock - returned  # line time still queued when write returned
        uart.write(data)
        assert _drain(b, 2 * len(data)) == 2 * data
        byte_s = 10 / BAUD
        # the first write returned only once all but the FIFO's bytes were out ...
        assert returned - t0 >= (len(data) - fifo) * byte_s * 0.98
        assert ahead <= fifo * byte_s + 1e-3
        # ... and the second one followed without a gap in the line's clock
        assert uart._tx_clock - t0 >= 2 * len(data) * byte_s * 0.98
    finally:
        a.close()
        b.close()


def test_the_emulator_refuses_a_bad_fifo_size():
    from hwloop.firmware_models.qif_chip.emulator import main

    assert main(["--tx-fifo", "-1"]) == 2
