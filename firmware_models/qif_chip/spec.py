"""What the emulated QIF chip is: its fixed limits and analog defaults.

A real chip would have these in silicon; the emulator takes them from here
and reports them in its HELLO reply, so the host compiles against what the
chip says, not against this file.
"""

from __future__ import annotations

from dataclasses import dataclass

FW_MAJOR, FW_MINOR = 1, 1  # 1.1: per-neuron current injection (protocol 1.2); since protocol 1.3 also
# RESULT_COMPACT, firmware version kept at 1.1: calibrations are stored per firmware version and the analog
# core's fixed pattern, which they measure, did not change; the same since protocol 1.4 (spike-train mode:
# its own fixed pattern is drawn on a stream of its own, the first-spike pattern is untouched)


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
    # ---- spike-train mode (protocol 1.4, trains_core.py)
    train_max_steps: int = 4096  # network steps per trial
    train_max_substeps: int = 16  # integrator substeps per network step
    train_max_step_ticks: int = 10000  # network step dt, in TDC ticks (the step clock runs on the TDC grid)
    syn_tau_min_us: float = 0.05  # synaptic time constant range (inf = the leak switched off)
    syn_tau_max_us: float = 1e4
    train_i0_min: float = -1.0  # drive current range in spike-train mode (below 1/4: excitable)
    train_i0_max: float = 4.0
    v_peak_max: float = 8.0  # spike comparator: v_peak in (v_reset, v_peak_max]
    v_rail: float = 16.0  # the membrane saturates at [-1, v_rail] (a non-spiking readout)
    max_refractory: int = 255  # steps
    max_probe_period: int = 255  # steps between membrane ADC samples
    adc_bits: int = 8  # membrane ADC (CADC) resolution over [-1, v_peak] of each layer
    adc_noise_lsb: float = 0.5  # ADC noise (LSB rms) at the default temporal noise; scales with it
    adc_offset_lsb: float = 1.0  # per-channel ADC offset (LSB rms) at the default mismatch; scales with it
    adc_gain_sigma: float = 0.01  # per-channel ADC gain error (rms) at the default mismatch; scales with it
    max_events: int = 1 << 16  # spikes the event buffer holds per sample (ERROR EVENT_OVERFLOW beyond)

    @property
    def max_code(self) -> int:
        return (1 << (self.dac_bits - 1)) - 1

    def w_full_scale(self, w_range: int) -> float:
        return self.w_fs_min * (2.0 ** w_range)


DEFAULT_SPEC = ChipSpec()
#: default per-chip fixed-pattern mismatch (relative sigma) and temporal noise
DEFAULT_MISMATCH = 0.05
DEFAULT_NOISE = 0.01
