"""The chip emulator as a process that owns a serial port.

``python -m hwloop.firmware_models.qif_chip [--chip-id N --mismatch S --noise S --baud B]``
opens a pseudo-terminal, prints ``PORT /dev/pts/N`` on stdout (one line, then
nothing else there), and runs the firmware on the master side. Anything that
speaks the wire protocol over a serial port can then open the slave path as
if it were a USB-UART board; the host driver does exactly that.

The pty's slave side is set raw (no echo, no CR/LF translation, 8 bit) and
kept open by the emulator, so the line stays up while hosts open and close
it. With ``--parent-pid`` the emulator exits when that process dies, so a
crashed host leaves no orphan chips behind: a watchdog thread checks the
parent every `WATCH_S` seconds and ends the process itself, so the firmware
being blocked (writing into a full pseudo-terminal nobody reads, computing a
block) cannot delay it. A SIGTERM stops the command loop, and ends the
process after `TERM_GRACE_S` at the latest.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import tty

from .core import ENGINES
from .firmware import Firmware
from .spec import DEFAULT_MISMATCH, DEFAULT_NOISE, DEFAULT_SPEC
from .uart import PacedUart


def open_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hwloop.firmware_models.qif_chip", description=__doc__.splitlines()[0])
    p.add_argument("--chip-id", type=lambda s: int(s, 0), default=1, help="die identity; seeds the fixed-pattern mismatch")
    p.add_argument("--mismatch", type=float, default=DEFAULT_MISMATCH, help="relative sigma of fixed-pattern mismatch")
    p.add_argument("--noise", type=float, default=DEFAULT_NOISE, help="temporal noise strength (V per sqrt(tau))")
    p.add_argument("--baud", type=int, default=921600, help="UART rate the firmware paces its I/O at (0 = unpaced)")
    p.add_argument("--tx-fifo", type=int, default=PacedUart.TX_FIFO,
                   help="bytes the UART's transmit FIFO holds (0 = a write returns when its last byte left)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="the analog core's integrator: the numba kernel (auto: where numba imports) or the numpy reference")
    p.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name, v in (("mismatch", args.mismatch), ("noise", args.noise)):
        if not 0 <= v <= 1:
            print(f"emulator: --{name} must be in 0..1, got {v}", file=sys.stderr)
            return 2
    if args.baud < 0:
        print("emulator: --baud must be >= 0", file=sys.stderr)
        return 2
    if not 0 <= args.tx_fifo <= 1 << 20:
        print("emulator: --tx-fifo must be in 0..1048576", file=sys.stderr)
        return 2
    master, slave, path = open_pty()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stopping.set())
    threading.Thread(target=_watchdog, args=(args.parent_pid, stopping), daemon=True, name="parent-watchdog").start()
    fw = Firmware(PacedUart(master, args.baud, args.tx_fifo), spec=DEFAULT_SPEC, chip_id=args.chip_id, mismatch=args.mismatch,
                  noise=args.noise, baud=args.baud, engine=args.engine)
    print(f"PORT {path}", flush=True)
    print(f"qif chip emulator: chip_id={args.chip_id} mismatch={args.mismatch} noise={args.noise} "
          f"baud={args.baud} port={path}", file=sys.stderr, flush=True)

    try:
        fw.serve(stopping.is_set)
    except KeyboardInterrupt:
        pass
    finally:
        os.close(master)
        os.close(slave)
    return 0


#: how often the watchdog looks at the parent, and how long a SIGTERM may take
WATCH_S = 0.1
TERM_GRACE_S = 1.0


def _watchdog(parent_pid: int, stopping: threading.Event) -> None:
    """End the process when the parent is gone (or a SIGTERM was not obeyed in time),
    whatever the main thread is blocked in. ``os._exit``: nothing here needs saving."""
    adopted = os.getppid() == parent_pid  # then a change of parent means it died, even as a zombie
    while True:
        if stopping.wait(WATCH_S):
            time.sleep(TERM_GRACE_S)  # the command loop normally stops well before
            os._exit(0)
        if parent_pid and not _alive(parent_pid, adopted):
            os._exit(0)


def _alive(pid: int, adopted: bool = False) -> bool:
    if adopted and os.getppid() != pid:
        return False  # re-parented: our parent exited (a zombie still answers kill 0)
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
