"""The chip emulator as a process that owns a serial port.

``python -m hwloop.firmware_models.qif_chip [--chip-id N --mismatch S --noise S --baud B]``
opens a pseudo-terminal, prints ``PORT /dev/pts/N`` on stdout (one line, then
nothing else there), and runs the firmware on the master side. Anything that
speaks the wire protocol over a serial port can then open the slave path as
if it were a USB-UART board; the host driver does exactly that.

The pty's slave side is set raw (no echo, no CR/LF translation, 8 bit) and
kept open by the emulator, so the line stays up while hosts open and close
it. With ``--parent-pid`` the emulator exits when that process dies, so a
crashed host leaves no orphan chips behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tty

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
    master, slave, path = open_pty()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    fw = Firmware(PacedUart(master, args.baud), spec=DEFAULT_SPEC, chip_id=args.chip_id, mismatch=args.mismatch,
                  noise=args.noise, baud=args.baud)
    print(f"PORT {path}", flush=True)
    print(f"qif chip emulator: chip_id={args.chip_id} mismatch={args.mismatch} noise={args.noise} "
          f"baud={args.baud} port={path}", file=sys.stderr, flush=True)

    def should_stop() -> bool:
        if stopping:
            return True
        return bool(args.parent_pid) and not _alive(args.parent_pid)

    try:
        fw.serve(should_stop)
    except KeyboardInterrupt:
        pass
    finally:
        os.close(master)
        os.close(slave)
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
