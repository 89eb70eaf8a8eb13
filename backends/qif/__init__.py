"""The analog QIF chip behind a serial link (see docs/qif-chip.md).

* `compiler` — Network -> chip configuration: time mapping, DAC quantisation, design rules;
* `trains_compiler` — a qif-trains Network -> the spike-train configuration (protocol 1.4);
* `client` — the host end of the wire protocol: requests, replies, recovery;
* `backend` — the ``qif`` (real port) and ``qif-emu`` (spawned emulator) targets.
"""

from .backend import QifEmuBackend, QifSerialBackend, spawn_emulator, stop_emulator
from .client import ChipClient
from .compiler import QifProgram, compile_network
from .trains_compiler import TrainsProgram, compile_trains

__all__ = ["QifEmuBackend", "QifSerialBackend", "ChipClient", "QifProgram", "compile_network", "spawn_emulator",
           "stop_emulator", "TrainsProgram", "compile_trains"]
