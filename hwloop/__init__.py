"""hwloop: deploy first-spike-time spiking networks onto neuromorphic targets
and train them in the loop (hardware forward, software backward).

The public names below are imported on first use (PEP 562), so that
``import hwloop.firmware_models...`` in the chip emulator's process, or
``import hwloop`` in a script that only reads a file, does not pay for torch.

A script does what the commands do with the functions of the same names::

    import hwloop
    net = hwloop.train("lif", "yinyang", epochs=20).network    # hwloop train
    hwloop.evaluate(net, target="bitexact")["accuracy"]        # hwloop eval
    s = hwloop.loop(net, "bitexact", "runs/s1", epochs=2)      # hwloop loop
    s.report()                                                 # hwloop report

docs/api.md is the reference, generated from the docstrings
(``python tools/gen_api_docs.py``).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it, in the order of docs/api.md
_PUBLIC = {
    # the functions the commands are built on (hwloop/api.py)
    "train": "hwloop.api",
    "evaluate": "hwloop.api",
    "loop": "hwloop.api",
    "load": "hwloop.api",
    "open_target": "hwloop.api",
    "Session": "hwloop.api",
    # the network artifact
    "Network": "hwloop.network",
    "Layer": "hwloop.network",
    "NeuronParams": "hwloop.network",
    "InputEncoding": "hwloop.network",
    "OutputDecoding": "hwloop.network",
    "Provenance": "hwloop.network",
    # torch modules for first-spike-time layers
    "SpikeLayer": "hwloop.nn",
    "SpikeNetwork": "hwloop.nn",
    "TTFSLoss": "hwloop.nn",
    # configurations and results
    "TrainConfig": "hwloop.training",
    "TrainResult": "hwloop.training",
    "LoopConfig": "hwloop.session",
    # targets and data
    "Backend": "hwloop.backends.base",
    "Measurement": "hwloop.backends.base",
    "Dataset": "hwloop.data",
    "load_dataset": "hwloop.data",
    # errors
    "HwloopError": "hwloop.errors",
    "NetworkFileError": "hwloop.errors",
    "NetworkSpecError": "hwloop.errors",
    "DatasetError": "hwloop.errors",
    "DesignRuleError": "hwloop.errors",
    "TargetError": "hwloop.errors",
    "SessionError": "hwloop.session",
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
