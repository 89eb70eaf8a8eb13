"""What the emulated QIF chip is: its fixed limits and analog defaults.

A real chip would have these in silicon; the emulator takes them from here
and reports them in its HELLO reply, so the host compiles against what the
chip says, not against this file.
"""

from __future__ import annotations

from dataclasses import dataclass

FW_MAJOR, FW_MINOR = 1, 1  # 1.1: per-neuron current injection (protocol 1.2); since protocol 1.3 also
# RESULT_COMPACT, firmware version kept at 1.1: calibrations are stored per firmware version and the analog
# core's fixed pattern, which they measure, did not change


@dataclass(frozen=True)
class ChipSpec:
    max_neurons: int = 512  # neurons on the die, shared by all layers
    max_fanin: int = 256  # synapse rows per layer (sources incl. bias lines)
    max_layers: int = 4
    max_bias: int = 8  # bias spike generators per layer
    max_inputs: int = 256  # input spike generators
    dac_bits: int = 6  # signed weight DAC: codes -31..31
    n_ranges: int = 8  # weight full scale = w_fs_min * 2**range
    w_fs_min: float = 0.125
    tdc_lsb_us: float = 0.1  # time-to-digital converter resolution
    tdc_bits: int = 16  # counter width; 0xFFFF means "no spike"
    tau_min_us: float = 1.0  # membrane time constant range (bias current DAC)
    tau_max_us: float = 50.0
    i0_min: float = 0.26  # drive current range; must stay above 1/4 (oscillatory regime)
    i0_max: float = 4.0
    max_batch: int = 1024  # samples per RUN command
    rx_buffer: int = 1 << 17  # bytes of one incoming message (CONFIG or RUN)
    steps_per_tau: int = 64  # integrator steps per membrane time constant
    inject_max: float = 2.0  # largest |injected current| per neuron (units of I0), DC + per-sample together

    @property
    def max_code(self) -> int:
        return (1 << (self.dac_bits - 1)) - 1

    def w_full_scale(self, w_range: int) -> float:
        return self.w_fs_min * (2.0 ** w_range)


DEFAULT_SPEC = ChipSpec()
#: default per-chip fixed-pattern mismatch (relative sigma) and temporal noise
DEFAULT_MISMATCH = 0.05
DEFAULT_NOISE = 0.01
