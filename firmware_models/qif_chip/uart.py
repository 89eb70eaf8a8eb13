"""A UART as the firmware sees it: bytes leave and arrive at the baud rate.

A pseudo-terminal moves bytes as fast as the CPU copies them, so a link
benchmark over a bare pty would measure memcpy, not a serial line. This
transport paces the chip's side like a UART with 8N1 framing (10 bit times
per byte) and a transmit FIFO of `TX_FIFO` bytes: a write returns once all but
the last `TX_FIFO` bytes would have left the shift register, so the line keeps
sending while the firmware prepares its next frame, as it does on a chip whose
UART has a FIFO or DMA. Received bytes are handed to the firmware no earlier
than they could have arrived. Pacing both directions on the chip side makes
the link behave like a real one whatever the host does. ``baud=0`` disables
pacing.

When nobody reads the other end, the pseudo-terminal fills up; a write then
waits at most ``write_timeout`` for room (for the whole write, not per
chunk) and drops the rest, as a UART's bytes go nowhere on an open line.
"""

from __future__ import annotations

import time

from ..wire.transport import FdTransport


class PacedUart(FdTransport):
    CHUNK_S = 0.002  # write granularity: about 2 ms of line time per os.write
    TX_FIFO = 256  # bytes the transmitter holds: a write returns while they are still going out

    def __init__(self, fd: int, baud: int, tx_fifo: int | None = None):
        super().__init__(fd)
        self.baud = int(baud)
        self._byte_s = 10.0 / self.baud if self.baud > 0 else 0.0
        self._fifo_s = (self.TX_FIFO if tx_fifo is None else int(tx_fifo)) * self._byte_s
        self._tx_clock = 0.0
        self._rx_clock = 0.0

    def write(self, data: bytes) -> None:
        if not self._byte_s:
            return super().write(data)
        chunk = max(1, int(self.CHUNK_S / self._byte_s))
        give_up = time.monotonic() + self.write_timeout + len(data) * self._byte_s
        for i in range(0, len(data), chunk):
            piece = data[i : i + chunk]
            now = time.monotonic()
            self._tx_clock = max(self._tx_clock, now)
            if not self.write_by(piece, give_up):
                return
            self._tx_clock += len(piece) * self._byte_s
            delay = self._tx_clock - self._fifo_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def read(self, timeout: float) -> bytes:
        data = super().read(timeout)
        if data and self._byte_s:
            now = time.monotonic()
            self._rx_clock = max(self._rx_clock, now - len(data) * self._byte_s) + len(data) * self._byte_s
            delay = self._rx_clock - now
            if delay > 0:
                time.sleep(delay)
        return data
