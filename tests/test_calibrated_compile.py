"""The calibrated compilation (`compile_calibrated`, `calib=on`): weights spread over
several chip lines for a finer DAC (the first layer's neurons copied onto two chip
neurons each, so the second layer's rows spread too), the initial-voltage offset
cancelled by a tick-0 bias spike, and on a mismatched die a network that runs as the
software model does."""

from __future__ import annotations

import numpy as np
import pytest

from hwloop.backends import open_target
from hwloop.backends.qif.compiler import _split_codes, compile_calibrated, compile_network
from hwloop.calibration import Calibration, truth_of
from hwloop.data import load_dataset
from hwloop.firmware_models.qif_chip.core import AnalogCore
from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH, DEFAULT_SPEC
from hwloop.network import Network

import qif_reference

NET = "hwloop/pretrained/yinyang-qif.hwnet"


@pytest.fixture(scope="module")
def info():
    with open_target("qif-emu?baud=0") as chip:
        return chip.chip_info


def true_calibration(chip: int) -> Calibration:
    """The emulator's truth in the calibration's normalisation (rows of mean 1)."""
    tr = truth_of(chip, DEFAULT_MISMATCH, DEFAULT_SPEC.max_neurons)
    m0, m1 = np.mean(tr["row0"][:254]), np.mean(tr["row1"][:256])
    return Calibration(chip_id=chip, fw_version="x", g=tr["g"], D=tr["D"], u0=tr["u0"], col=tr["col"] * m0,
                       row0=tr["row0"][:254] / m0, row1=tr["row1"][:256] / m1 * (m1 / m0))


def test_split_codes_reach_the_target_to_one_code_of_one_line():
    rng = np.random.default_rng(0)
    gains = 1 + 0.05 * rng.standard_normal(8)
    target = rng.uniform(-200, 200, 500)
    codes = _split_codes(target, gains, 31)
    assert np.abs(codes).max() <= 31
    err = codes.T @ gains - target
    assert np.abs(err).max() <= gains.max() / 2 + 1e-9
    # one line rounds to a whole code of the 8x coarser range: 8x the error
    single = np.round(target / 8) * 8 - target
    assert np.sqrt(np.mean(err ** 2)) < np.sqrt(np.mean(single ** 2)) / 4


def test_the_program_spreads_inputs_and_bias_and_cancels_u0(info):
    net = Network.load(NET)
    prog = compile_calibrated(net, info, true_calibration(2))
    L0, L1 = prog.config.layers
    assert prog.config.n_inputs == 4 * 8 and list(prog.input_map) == [f for f in range(4) for _ in range(8)]
    # layer 0: 32 input lines, the network's bias over 4 lines at its tick, 4 lines at tick 0 for u0
    # every hidden neuron on two chip neurons (2k, 2k + 1)
    assert L0.codes.shape == (32 + 4 + 4, 240) and L0.bias_ticks[4:] == (0, 0, 0, 0)
    assert len(set(L0.bias_ticks[:4])) == 1 and L0.bias_ticks[0] > 0
    # layer 1: each hidden neuron's row over its two copies' lines, bias and u0 lines as in layer 0
    assert L1.codes.shape == (240 + 4 + 4, 3)
    assert prog.chip_neurons == 243 and prog.config.n_neurons == 243
    assert list(prog.neuron_map) == [k for k in range(120) for _ in range(2)] + [120, 121, 122]
    x = net.encoding.encode(load_dataset("yinyang", "test").x[:5])
    ticks = prog.input_ticks(x)
    assert ticks.shape == (5, 32) and np.array_equal(ticks[:, ::8], compile_network(net, info).input_ticks(x))
    assert prog.quantized_inputs(x).shape == (5, 4)
    rep = prog.calibration_report["layers"]
    tr = truth_of(2, DEFAULT_MISMATCH, 123)
    assert rep[0]["lines_per_input_row"] == 8 and rep[0]["v0_lines"] == 4
    # what is left of the initial-voltage offset is a fraction of the die's spread
    assert rep[0]["uncompensated_v0_rms"] < np.std(tr["u0"]) / 3
    assert rep[0]["weight_rms_error"] < 0.02
    assert rep[0]["chip_neurons_per_neuron"] == 2 and rep[1]["chip_neurons_per_neuron"] == 1
    assert rep[1]["lines_per_input_row"] == 2
    # two lines per row: the output layer in a range at least as fine as one line allows, and rounded
    # more finely than with one line per row
    single = compile_calibrated(net, info, true_calibration(2), split_max=1).calibration_report["layers"][1]
    assert single["lines_per_input_row"] == 1 and rep[1]["w_range"] <= single["w_range"]
    assert rep[1]["weight_rms_error"] < single["weight_rms_error"], (rep[1], single)
    # copies=False: one chip neuron per neuron, the rest as before
    flat = compile_calibrated(net, info, true_calibration(2), copies=False)
    assert flat.neuron_map is None and flat.chip_neurons == 123
    assert flat.config.layers[0].codes.shape == (40, 120) and flat.config.layers[1].codes.shape == (128, 3)


def test_decode_reads_the_mean_of_a_neurons_copies(info):
    net = Network.load(NET)
    prog = compile_calibrated(net, info, true_calibration(2))
    ticks = np.full((2, prog.chip_neurons), 0xFFFF, dtype=np.uint16)
    ticks[0, 0], ticks[0, 1] = 10, 20  # hidden neuron 0: both copies spiked
    ticks[0, 3] = 30  # hidden neuron 1: one copy only
    ticks[1, 240] = 7  # output neuron 0
    hid, out = prog.decode(ticks)
    assert hid.shape == (2, 120) and out.shape == (2, 3)
    assert hid[0, 0] == pytest.approx(15.5 * prog.tick) and hid[0, 1] == pytest.approx(30.5 * prog.tick)
    assert np.isinf(hid[0, 2:]).all() and np.isinf(hid[1]).all()
    assert out[1, 0] == pytest.approx(7.5 * prog.tick) and np.isinf(out[0]).all()
    # a per-network-neuron injection reaches every copy of its neuron
    x = np.arange(123.0)
    assert np.array_equal(prog.per_chip_neuron(x), x[prog.neuron_map])


def test_on_a_mismatched_die_the_calibrated_program_runs_the_software_network(info):
    """True parameters, no temporal noise: the calibrated program on chip 2 gives spike times
    closer to the software model's (unquantised weights) than the plain program does on an
    ideal die, whose only error is the 6-bit DAC (median |error|, network time units)."""
    net = Network.load(NET)
    x = net.encoding.encode(load_dataset("yinyang", "test").x[:150])
    plain = compile_network(net, info)
    ref = qif_reference.network_times(net, plain.quantized_inputs(x))

    def run(prog, chip, mismatch):
        core = AnalogCore(DEFAULT_SPEC, chip, mismatch, 0.0)
        core.configure(prog.config)
        inj = None if prog.dc is None else np.broadcast_to(prog.dc, (x.shape[0], prog.dc.size)).copy()
        return prog.decode(core.run(prog.input_ticks(x), 1, 0, inject=inj))

    def err(times):
        both = [np.isfinite(t) & np.isfinite(r) for t, r in zip(times, ref)]
        return [float(np.median(np.abs(t[b] - r[b]))) for t, r, b in zip(times, ref, both)]

    cal = run(compile_calibrated(net, info, true_calibration(2)), 2, DEFAULT_MISMATCH)
    ideal = run(plain, 0, 0.0)
    as_is = run(plain, 2, DEFAULT_MISMATCH)
    e_cal, e_ideal, e_as_is = err(cal), err(ideal), err(as_is)
    # the first layer's weights are spread over 8 lines: several times finer than the ideal die's;
    # the output layer, over the two copies of each hidden neuron, still finer than the ideal die
    assert e_cal[0] < e_ideal[0] / 3 and e_cal[1] < e_ideal[1], (e_cal, e_ideal)
    assert all(a < b / 3 for a, b in zip(e_cal, e_as_is)), (e_cal, e_as_is)


def test_a_layer_without_measured_row_gains_is_not_spread(info):
    import dataclasses

    net = Network.load(NET)
    prog = compile_calibrated(net, info, dataclasses.replace(true_calibration(2), row1=None))
    L1 = prog.config.layers[1]
    # and nothing is copied: the copies exist for the second layer's rows
    assert L1.codes.shape == (121, 3) and len(L1.bias_ticks) == 1 and prog.neuron_map is None
    rep = prog.calibration_report["layers"][1]
    assert rep["v0_lines"] == 0 and any("not compensated" in n for n in rep["notes"])
    assert prog.calibration_report["layers"][0]["v0_lines"] == 4  # the first layer is unaffected
