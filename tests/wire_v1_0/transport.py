"""Byte transports the `Link` runs over: a pyserial port (host) or a raw
file descriptor (pty master, socket, pipe). Both present the same two
calls, so the link code is blind to which one it has."""

from __future__ import annotations

import os
import select
import time

from .errors import LinkError


class SerialTransport:
    """A pyserial port (``serial.Serial`` or anything ``serial_for_url`` opens).

    The port's own timeout is set once to a short value and the wait loops
    here, because changing a pyserial timeout reconfigures the port."""

    POLL = 0.01

    def __init__(self, port):
        self.port = port
        port.timeout = self.POLL
        port.write_timeout = 5.0

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except Exception as exc:  # pyserial raises SerialException / SerialTimeoutException / OSError
            raise LinkError(f"serial write to {getattr(self.port, 'port', '?')} failed: {exc}") from None

    def read(self, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        try:
            while True:
                n = self.port.in_waiting
                if n:
                    return self.port.read(n)
                b = self.port.read(1)
                if b:
                    return b + self.port.read(self.port.in_waiting)
                if time.monotonic() >= end:
                    return b""
        except Exception as exc:
            raise LinkError(f"serial read from {getattr(self.port, 'port', '?')} failed: {exc}") from None

    def close(self) -> None:
        self.port.close()


class FdTransport:
    """A file descriptor (e.g. a pty master). Writes wait for room at most
    ``write_timeout`` s and then drop the rest, as a UART does when nobody
    listens."""

    def __init__(self, fd: int, write_timeout: float = 1.0):
        self.fd = fd
        self.write_timeout = write_timeout
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        view = memoryview(bytes(data))
        end = time.monotonic() + self.write_timeout
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                left = end - time.monotonic()
                if left <= 0:
                    return  # nobody is reading: the bytes go nowhere
                select.select([], [self.fd], [], min(left, 0.05))

    def read(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not r:
            return b""
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return b""
        except OSError:
            # pty master with no slave open reads EIO: the line is idle, not broken
            time.sleep(min(timeout, 0.01))
            return b""
