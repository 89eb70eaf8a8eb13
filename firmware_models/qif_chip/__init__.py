"""The emulated analog QIF chip: analog core, firmware command loop, emulator process.

* `spec` — the die's limits and analog defaults;
* `core` — QIF neurons integrated numerically with mismatch, noise, DAC and TDC;
* `trains_core` — the spike-train mode (protocol 1.4): reset, recurrence, the membrane ADC;
* `firmware` — the command loop on the chip side of the serial link;
* `uart` — a UART model that paces bytes at the configured baud rate;
* `emulator` — the process: a pseudo-terminal, the firmware behind it.
"""

from .core import AnalogCore, ConfigInvalid, Mismatch, validate_config
from .spec import DEFAULT_MISMATCH, DEFAULT_NOISE, DEFAULT_SPEC, ChipSpec
from .trains_core import TrainsCore, validate_trains_config

__all__ = ["AnalogCore", "ConfigInvalid", "Mismatch", "validate_config", "ChipSpec", "DEFAULT_SPEC",
           "DEFAULT_MISMATCH", "DEFAULT_NOISE", "TrainsCore", "validate_trains_config"]
