"""hwloop: deploy first-spike-time spiking networks onto neuromorphic targets
and train them in the loop (hardware forward, software backward)."""

from .errors import (
    DatasetError,
    DesignRuleError,
    HwloopError,
    NetworkFileError,
    NetworkSpecError,
    TargetError,
)
from .network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding, Provenance

__version__ = "0.1.0"

__all__ = [
    "Network",
    "Layer",
    "NeuronParams",
    "InputEncoding",
    "OutputDecoding",
    "Provenance",
    "HwloopError",
    "NetworkFileError",
    "NetworkSpecError",
    "DatasetError",
    "DesignRuleError",
    "TargetError",
    "__version__",
]
