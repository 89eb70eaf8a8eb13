"""Bit-accurate integer model of the Loihi neuro-core (device side; no
imports of hwloop, backends or lava). See `core` for the arithmetic."""

from .core import (
    NO_SPIKE,
    CoreConfig,
    CoreLayer,
    clip_and_truncate_weights,
    numba_available,
    simulate,
)

__all__ = ["CoreConfig", "CoreLayer", "NO_SPIKE", "simulate", "clip_and_truncate_weights", "numba_available"]
