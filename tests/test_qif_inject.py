"""Per-neuron current injection (protocol 1.2, RUN_INJECT): the chip adds the
injected current to each neuron's drive, within ``inject_max``, and an old
chip or a bad vector is refused with a typed error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwloop.backends import open_target
from hwloop.backends.qif import spawn_emulator, stop_emulator
from hwloop.errors import TargetError
from hwloop.firmware_models.wire import messages as M
from hwloop.firmware_models.wire.errors import ProtocolError
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

QIF = NeuronParams(model="qif", tau_syn=1.0, tau_mem=1.0, threshold=1.0, options={"i0": 1.25, "v0": 0.5})


def one_layer(n_out=6, w=0.0):
    return Network(layers=(Layer(np.full((2, n_out), w), QIF),), encoding=InputEncoding(n_features=2),
                   decoding=OutputDecoding(classes=tuple("abcdef"[:n_out])), t_max=4.0)


@pytest.fixture(scope="module")
def ideal():
    with open_target("qif-emu?baud=0&mismatch=0&noise=0") as chip:
        yield chip


def test_dc_injection_moves_the_free_latency_as_the_ode_says(ideal):
    """No inputs, v0 = 1/2 on an ideal die: tau dV/dt = V(V - 1) + I0 + I spikes at
    tau (pi/2 - atan(0)) / sqrt(I0 + I - 1/4) (closed form of the QIF ODE)."""
    prog = ideal.load(one_layer())
    x = np.full((1, 2), np.inf)
    dc = np.array([-0.6, -0.3, 0.0, 0.3, 0.8, 1.5])
    t = ideal.run_injected(x, dc=dc).times[0][0]
    want = (math.pi / 2) / np.sqrt(1.0 + dc)
    np.testing.assert_allclose(t, want, atol=prog.tick)
    below = ideal.run_injected(x, dc=np.full(6, -1.2)).times[0][0]  # under the rheobase (-1): no spike
    assert np.all(np.isinf(below))


def test_zero_injection_is_the_plain_run_and_per_sample_vectors_touch_only_their_sample():
    with open_target("qif-emu?baud=0&chip_id=0x5EED") as chip:
        chip.load(one_layer(w=0.4))
        x = np.random.default_rng(1).uniform(0, 1.5, (40, 2))
        plain = chip.run(x).times[0]
        chip.run_index = 0
        zero = chip.run_injected(x, dc=np.zeros(6), per_sample=np.zeros((40, 6))).times[0]
        np.testing.assert_array_equal(plain, zero)
        ps = np.zeros((40, 6))
        ps[7, 3] = 0.5
        chip.run_index = 0
        moved = chip.run_injected(x, per_sample=ps).times[0]
        diff = np.argwhere(moved != plain)
        assert diff.tolist() == [[7, 3]] and moved[7, 3] < plain[7, 3]


def test_injection_limits_are_typed_errors(ideal):
    ideal.load(one_layer())
    x = np.zeros((3, 2))
    lim = ideal.chip_info.inject_max
    assert lim == 2.0
    with pytest.raises(TargetError, match="INJECT_INVALID.*beyond"):
        ideal.run_injected(x, dc=np.full(6, lim * 1.5))
    with pytest.raises(TargetError, match="INJECT_INVALID.*beyond"):  # DC + per-sample together
        ideal.run_injected(x, dc=np.full(6, lim * 0.6), per_sample=np.full((3, 6), lim * 0.6))
    with pytest.raises(TargetError, match="not finite"):
        ideal.run_injected(x, dc=np.full(6, np.nan))
    with pytest.raises(TargetError, match="5 neurons, the run has 6"):
        ideal.run_injected(x, dc=np.zeros(5))
    with pytest.raises(TargetError, match="shape"):
        ideal.run_injected(x, per_sample=np.zeros((2, 6)))
    # the chip's own check, bypassing the host's: a DC vector of the wrong length
    with pytest.raises(Exception) as e:
        ideal.client.request(M.RUN_INJECT, M.pack_run_inject(0, 0, np.zeros((1, 2)), np.zeros(4)), (M.RUN_DONE,))
    assert getattr(e.value, "name", "") == "INJECT_INVALID"
    assert ideal.run(x).times[0].shape == (3, 6)  # and the chip still runs


def test_run_inject_payloads_are_checked():
    p = M.pack_run_inject(1, 2, np.zeros((3, 2)), np.zeros(4), np.ones((3, 4)))
    seed, first, ticks, dc, ps = M.unpack_run_inject(p)
    assert (seed, first, ticks.shape, dc.shape, ps.shape) == (1, 2, (3, 2), (4,), (3, 4))
    with pytest.raises(ProtocolError):
        M.unpack_run_inject(p[:-1])
    with pytest.raises(ProtocolError):
        M.unpack_run_inject(p[:12])


def test_a_new_host_asking_an_old_chip_to_inject_gets_a_clear_error(tmp_path):
    import os
    import threading
    import tty

    import wire_v1_0.firmware as old_firmware
    import wire_v1_0.transport as old_transport
    from hwloop.firmware_models.qif_chip.spec import DEFAULT_SPEC

    master, slave = os.openpty()
    tty.setraw(slave)
    fw = old_firmware.Firmware(old_transport.FdTransport(master), spec=DEFAULT_SPEC, chip_id=3, mismatch=0.05,
                               noise=0.01)
    stop = threading.Event()
    th = threading.Thread(target=fw.serve, args=(stop.is_set,), daemon=True)
    th.start()
    try:
        with open_target(f"qif://{os.ttyname(slave)}?baud=0") as board:
            assert board.chip_info.inject_max == 0.0
            board.load(one_layer())
            with pytest.raises(TargetError, match="needs protocol 1.2"):
                board.run_injected(np.zeros((2, 2)), dc=np.zeros(6))
            assert board.run(np.zeros((2, 2))).times[0].shape == (2, 6)
    finally:
        stop.set()
        th.join(5)
        os.close(master)
        os.close(slave)
