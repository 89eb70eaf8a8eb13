"""hwloop emulator: run the analog QIF chip emulator standalone.

Prints ``PORT /dev/pts/N`` on the first line of stdout and serves until
interrupted, so the driver can be pointed at it like at a board::

    hwloop emulator --chip-id 3 &          # PORT /dev/pts/4
    hwloop eval net.hwnet --target qif:///dev/pts/4
"""

from __future__ import annotations

from ._args import from_option


def register(sub):
    # the flags take what the qif-emu URL options take (one declaration, hwloop.backends.qif.backend)
    from hwloop.backends.qif.backend import QifEmuBackend

    opts = {o.name: o for o in QifEmuBackend.OPTIONS}
    p = sub.add_parser("emulator", help="run the QIF chip emulator on a pseudo-terminal and print its port")
    for name in ("chip_id", "mismatch", "noise", "baud"):
        o = opts[name]
        p.add_argument("--" + name.replace("_", "-"), type=from_option(o), default=o.default,
                       help=f"{o.doc}; {o.allowed()}")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from hwloop.firmware_models.qif_chip.emulator import main

    rc = main(["--chip-id", str(args.chip_id), "--mismatch", repr(args.mismatch), "--noise", repr(args.noise),
               "--baud", str(args.baud)])
    return {"ok": rc == 0, "chip_id": args.chip_id, "stopped": True}
