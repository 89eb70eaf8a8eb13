"""hwloop: deploy first-spike-time spiking networks onto neuromorphic targets
and train them in the loop (hardware forward, software backward).

The public names below are imported on first use (PEP 562), so that
``import hwloop.firmware_models...`` in the chip emulator's process, or
``import hwloop`` in a script that only reads a file, does not pay for torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_PUBLIC = {
    "Network": "hwloop.network",
    "Layer": "hwloop.network",
    "NeuronParams": "hwloop.network",
    "InputEncoding": "hwloop.network",
    "OutputDecoding": "hwloop.network",
    "Provenance": "hwloop.network",
    "HwloopError": "hwloop.errors",
    "NetworkFileError": "hwloop.errors",
    "NetworkSpecError": "hwloop.errors",
    "DatasetError": "hwloop.errors",
    "DesignRuleError": "hwloop.errors",
    "TargetError": "hwloop.errors",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'hwloop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
