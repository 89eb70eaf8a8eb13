"""hwloop emulator: run the analog QIF chip emulator standalone.

Prints ``PORT /dev/pts/N`` on the first line of stdout and serves until
interrupted, so the driver can be pointed at it like at a board::

    hwloop emulator --chip-id 3 &          # PORT /dev/pts/4
    hwloop eval net.hwnet --target qif:///dev/pts/4
"""

from __future__ import annotations

from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH, DEFAULT_NOISE


def register(sub):
    p = sub.add_parser("emulator", help="run the QIF chip emulator on a pseudo-terminal and print its port")
    p.add_argument("--chip-id", default="1", help="die identity (int, 0x.. allowed); seeds the mismatch pattern")
    p.add_argument("--mismatch", type=float, default=DEFAULT_MISMATCH, help="relative sigma of fixed-pattern mismatch")
    p.add_argument("--noise", type=float, default=DEFAULT_NOISE, help="temporal noise (V per sqrt(tau))")
    p.add_argument("--baud", type=int, default=921600, help="UART rate the firmware paces at (0 = unpaced)")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from hwloop.errors import TargetError
    from hwloop.firmware_models.qif_chip.emulator import main

    try:
        chip_id = int(str(args.chip_id), 0)
    except ValueError:
        raise TargetError(f"--chip-id must be an integer, got {args.chip_id!r}") from None
    for name in ("mismatch", "noise"):
        v = getattr(args, name)
        if not 0 <= v <= 1:
            raise TargetError(f"--{name} must be in 0..1, got {v}")
    if args.baud < 0:
        raise TargetError(f"--baud must be >= 0, got {args.baud}")
    rc = main(["--chip-id", str(chip_id), "--mismatch", str(args.mismatch), "--noise", str(args.noise),
               "--baud", str(args.baud)])
    return {"ok": rc == 0, "chip_id": chip_id, "stopped": True}
