"""A man in the middle for serial links: host <-> [pty] proxy [pty] <-> emulator.

The proxy owns a pseudo-terminal that the host opens like a serial port, and
opens the emulator's pty on the other side. A thread shuttles bytes both
ways and, on request, damages them the way a bad cable or a flaky USB-UART
does: bit flips at a bit error rate, dropped bytes, duplicated bytes, frames
cut short (the rest of a frame lost up to its delimiter), bursts of random
garbage inserted, a black hole, the line stalling for a while (bytes held,
then delivered), and the chip restarting (emulator process killed with
SIGTERM or SIGKILL and started afresh, same chip id) after a given number of
bytes from the chip.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import numpy as np

from hwloop.backends.qif import spawn_emulator, stop_emulator


class LinkProxy:
    """Spawns the emulator with ``emu_args``, or (``port=``) stands in front of a
    port that is already there (then it cannot restart the chip)."""

    def __init__(self, emu_args: list[str] | None = None, seed: int = 0, port: str | None = None):
        self.emu_args = list(emu_args or [])
        self.rng = np.random.default_rng(seed)
        self.ber = self.p_drop = self.p_dup = self.p_truncate = self.p_burst = 0.0
        self.burst_len = 32
        self.blackhole = False
        self.restarts = 0
        self.stalls = 0
        self.bytes_from_chip = 0
        self._restart_at: int | None = None
        self._restart_kill = False
        self._stall_at: tuple[int, float] | None = None  # (chip bytes, seconds)
        self._stall_until = 0.0
        self._held = {"h2c": bytearray(), "c2h": bytearray()}
        self._trunc = {"h2c": False, "c2h": False}
        self._lock = threading.Lock()
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.host_path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        self.proc = self._err = None
        if port is None:
            self._start_emulator()
        else:
            self._open_chip_port(port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ control
    def set_faults(self, ber=0.0, p_drop=0.0, p_dup=0.0, p_truncate=0.0, blackhole=False, p_burst=0.0, burst_len=32):
        """``p_burst``: chance per byte that a burst of ``burst_len`` random bytes is inserted before it."""
        with self._lock:
            self.ber, self.p_drop, self.p_dup, self.p_truncate, self.blackhole = ber, p_drop, p_dup, p_truncate, blackhole
            self.p_burst, self.burst_len = p_burst, burst_len

    def restart_after(self, n_bytes: int, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and restart the emulator once
        ``n_bytes`` more bytes came from the chip."""
        with self._lock:
            self._restart_at = self.bytes_from_chip + n_bytes
            self._restart_kill = kill

    def stall_after(self, n_bytes: int, seconds: float) -> None:
        """Once ``n_bytes`` more bytes came from the chip, hold everything in both
        directions for ``seconds``, then deliver it in order (nothing is lost)."""
        with self._lock:
            self._stall_at = (self.bytes_from_chip + n_bytes, seconds)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self.proc is not None:
            stop_emulator(self.proc)
            self._err.close()
        for fd in (self.emu_fd, self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    # ------------------------------------------------------------ internals
    def _start_emulator(self) -> None:
        self.proc, self._err, path = spawn_emulator(self.emu_args)
        self._open_chip_port(path)

    def _open_chip_port(self, path: str) -> None:
        self.emu_fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.emu_fd)
        os.set_blocking(self.emu_fd, False)

    def _restart(self) -> None:
        if self._restart_kill:
            self.proc.kill()
            self.proc.wait(5)
        stop_emulator(self.proc)
        self._err.close()
        os.close(self.emu_fd)
        self._start_emulator()
        self.restarts += 1

    def _mangle(self, data: bytes, direction: str) -> bytes:
        if self.blackhole:
            return b""
        a = np.frombuffer(data, dtype=np.uint8).copy()
        if self.p_truncate:
            keep = np.ones(a.size, bool)
            cutting = self._trunc[direction]
            for i, b in enumerate(a):
                if cutting:
                    if b == 0:
                        cutting = False
                    else:
                        keep[i] = False
                elif b != 0 and self.rng.random() < self.p_truncate / 50:
                    cutting = True  # lose the rest of this frame, keep its delimiter
                    keep[i] = False
            self._trunc[direction] = cutting
            a = a[keep]
        if self.p_drop:
            a = a[self.rng.random(a.size) >= self.p_drop]
        if self.ber and a.size:
            n_flip = self.rng.binomial(8 * a.size, self.ber)
            pos = self.rng.integers(0, 8 * a.size, n_flip)
            np.bitwise_xor.at(a, pos // 8, (1 << (pos % 8)).astype(np.uint8))
        if self.p_dup and a.size:
            a = np.repeat(a, np.where(self.rng.random(a.size) < self.p_dup, 2, 1))
        if self.p_burst and a.size:
            at = np.flatnonzero(self.rng.random(a.size) < self.p_burst)
            for i in at[::-1]:
                a = np.insert(a, i, self.rng.integers(0, 256, self.burst_len, dtype=np.uint8))
        return a.tobytes()

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                select.select([], [fd], [], 0.05)
            except OSError:
                return

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return b""

    def _forward(self, fd: int, data: bytes, direction: str) -> None:
        if time.monotonic() < self._stall_until:
            self._held[direction] += data
            return
        if self._held[direction]:
            data, self._held[direction] = bytes(self._held[direction]) + data, bytearray()
        self._write_all(fd, data)

    def _loop(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.master, self.emu_fd], [], [], 0.05)
            with self._lock:
                if self.master in r:
                    data = self._read(self.master)
                    if data:
                        self._forward(self.emu_fd, self._mangle(data, "h2c"), "h2c")
                if self.emu_fd in r:
                    data = self._read(self.emu_fd)
                    if data:
                        self.bytes_from_chip += len(data)
                        self._forward(self.master, self._mangle(data, "c2h"), "c2h")
                        if self._stall_at is not None and self.bytes_from_chip >= self._stall_at[0]:
                            self._stall_until = time.monotonic() + self._stall_at[1]
                            self._stall_at = None
                            self.stalls += 1
                        if self._restart_at is not None and self.bytes_from_chip >= self._restart_at:
                            self._restart_at = None
                            self._restart()
                if self._stall_until and time.monotonic() >= self._stall_until:
                    self._stall_until = 0.0
                    self._forward(self.emu_fd, b"", "h2c")
                    self._forward(self.master, b"", "c2h")
