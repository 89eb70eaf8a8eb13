"""The qif-emu target end to end: the ideal chip reproduces the QIF model,
design rules stop bad networks before anything reaches the chip, the default
chip differs from the model the way mismatch should, firmware error replies,
and the standalone `hwloop emulator` can be used like a board."""

from __future__ import annotations

import dataclasses
import os
import select
import subprocess
import sys

import numpy as np
import pytest
import torch

from hwloop.backends import list_targets, open_target
from hwloop.firmware_models.wire import RemoteError
from hwloop.firmware_models.wire import messages as M
from hwloop.errors import DesignRuleError, TargetError
from hwloop.models import network_forward
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

import qif_reference


def qif(tau=1.0, i0=1.25, v0=0.5):
    return NeuronParams(model="qif", tau_syn=tau, tau_mem=tau, threshold=1.0, options={"i0": i0, "v0": v0})


def random_net(seed, sizes=(4, 24, 3), t_max=3.0, tau=1.0, scale=0.7, n_bias=1):
    rng = np.random.default_rng(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers.append(Layer(rng.normal(0.05, scale, (a + n_bias, b)), qif(tau), bias_times=tuple(rng.uniform(0, 0.5, n_bias))))
    return Network(layers=tuple(layers), encoding=InputEncoding(n_features=sizes[0]),
                   decoding=OutputDecoding(classes=tuple(str(i) for i in range(sizes[-1]))), t_max=t_max)


def model_times(net, t_in):
    with torch.no_grad():
        w = [torch.tensor(np.array(l.weight)) for l in net.layers]
        out = network_forward(net.layers, w, torch.as_tensor(t_in), net.t_max)
    return [o.numpy() for o in out]


@pytest.fixture(scope="module")
def ideal():
    be = open_target("qif-emu?mismatch=0&noise=0&baud=0&chip_id=7")
    yield be
    be.close()


@pytest.mark.parametrize("seed,sizes", [(0, (4, 24, 3)), (1, (5, 40, 30, 4))])
def test_ideal_chip_reproduces_the_qif_model(ideal, seed, sizes):
    net = random_net(seed, sizes)
    prog = ideal.load(net)
    x = np.random.default_rng(seed + 10).uniform(0, 1.2, (120, sizes[0]))
    m = ideal.run(x)
    eff, xq = prog.effective, prog.quantized_inputs(x)
    ref_model = model_times(eff, xq)
    ref_exact = qif_reference.network_times(eff, xq)
    tol = prog.tick / 2 + 1e-6  # TDC bin centre + integrator (exact at zero mismatch)
    n_spikes = 0
    for li, (chip, mod, ex) in enumerate(zip(m.times, ref_model, ref_exact)):
        # the trainer's model and the independent closed form agree with each other ...
        fin = np.isfinite(ex) & (ex < eff.t_max)
        assert np.allclose(mod[fin], ex[fin], atol=1e-9)
        # ... and the chip agrees with both, silent where they are silent
        near_end = np.abs(np.where(np.isfinite(ex), ex, 1e9) - eff.t_max) < prog.tick
        assert np.array_equal(np.isfinite(chip)[~near_end], fin[~near_end]), f"layer {li}: spiking sets differ"
        both = fin & np.isfinite(chip)
        err = np.abs(chip[both] - mod[both])
        assert err.max() <= tol, f"layer {li}: max error {err.max():.3g} > {tol:.3g}"
        n_spikes += both.sum()
    assert n_spikes > 0.3 * sum(t.size for t in m.times)
    assert m.target_time_s == pytest.approx(120 * prog.trial_ticks * prog.lsb_us * 1e-6, rel=1e-3)


def test_dac_quantisation_is_6_bit_and_reported(ideal):
    """Default policy: the range with the least squared error, clipping included."""
    net = random_net(3)
    prog = ideal.load(net)
    for l, e, c in zip(net.layers, prog.effective.layers, prog.config.layers):
        assert np.abs(c.codes).max() <= 31
        fs = 0.125 * 2**c.w_range

        def err(k):
            f = 0.125 * 2**k
            return np.sum((np.clip(np.round(l.weight / f * 31), -31, 31) / 31 * f - l.weight) ** 2)

        assert err(c.w_range) <= min(err(k) for k in range(8)) + 1e-12
        np.testing.assert_allclose(e.weight, c.codes / 31 * fs)
        inside = np.abs(l.weight) <= fs
        assert np.abs(e.weight - l.weight)[inside].max() <= fs / 31 / 2 + 1e-12


def test_dac_policies_cover_and_mse(ideal):
    from hwloop.backends.qif.compiler import compile_network

    info = ideal.client.info
    net = random_net(3)
    cover = compile_network(net, info, dac="cover")
    for l, c in zip(net.layers, cover.config.layers):
        fs = 0.125 * 2**c.w_range
        assert fs >= np.abs(l.weight).max() > fs / 2  # smallest range that fits: nothing clips
    # one weight just above a power of two: "cover" halves the resolution of
    # every weight, "mse" keeps the finer range and clips that one weight
    w0 = net.layers[0].weight.copy()
    w0 *= 3.9 / np.abs(w0).max()
    w0.flat[0] = 4.01
    odd = dataclasses.replace(net, layers=(dataclasses.replace(net.layers[0], weight=w0),) + net.layers[1:])
    assert compile_network(odd, info, dac="cover").config.layers[0].w_range == 6
    mse = compile_network(odd, info, dac="mse")
    assert mse.config.layers[0].w_range == 5
    assert mse.effective.layers[0].weight.flat[0] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="DAC policy"):
        compile_network(net, info, dac="nearest")
    with pytest.raises(TargetError, match="dac="):
        open_target("qif-emu?dac=fast")


def test_design_rules_are_checked_before_anything_is_written(ideal):
    ideal.client.reset()
    base = random_net(4)
    lay = base.layers

    def with_layer0(**kw):
        return dataclasses.replace(base, layers=(dataclasses.replace(lay[0], **kw),) + lay[1:])

    cases = [
        ("weight-range", 0, with_layer0(weight=lay[0].weight * 100)),
        ("neuron-model", 0, with_layer0(neuron=dataclasses.replace(lay[0].neuron, model="lif"))),
        ("i0-range", 0, with_layer0(neuron=qif(i0=9.0))),
        ("bias-count", 0, random_net(5, n_bias=9)),
        ("fan-in", 1, random_net(6, sizes=(4, 300, 3))),
        ("input-count", 0, random_net(6, sizes=(300, 4, 3))),
        ("neuron-count", None, random_net(7, sizes=(4, 200, 200, 200, 3))),
        ("layer-count", None, random_net(8, sizes=(4, 5, 5, 5, 5, 3))),
        ("tau-range", 1, dataclasses.replace(base, layers=(lay[0], dataclasses.replace(lay[1], neuron=qif(tau=0.001))))),
    ]
    for rule, layer, net in cases:
        with pytest.raises(DesignRuleError) as info:
            ideal.load(net)
        e = info.value
        assert (e.rule, e.layer) == (rule, layer), str(e)
        assert e.limit is not None and rule in str(e)
    assert ideal.status()["config_crc"] == 0  # nothing reached the chip


def test_default_chip_differs_like_mismatch_should():
    net = random_net(9)
    x = np.random.default_rng(1).uniform(0, 1.2, (100, 4))
    with open_target("qif-emu?baud=0&chip_id=7") as chip:  # default mismatch 5 %, noise 0.01
        prog = chip.load(net)
        real = chip.run(x).times[0]
    ideal = qif_reference.network_times(prog.effective, prog.quantized_inputs(x))[0]
    both = np.isfinite(real) & np.isfinite(ideal)
    dev = np.abs(real[both] - ideal[both])
    assert np.median(dev) > 2 * prog.tick  # clearly not the ideal chip ...
    assert np.median(dev) < 0.2  # ... but the same network (tau = 1)
    assert np.corrcoef(real[both], ideal[both])[0, 1] > 0.9


def test_dead_emulator_is_restarted_and_the_run_repeated_exactly():
    """qif-emu restarts an emulator process that died (the pseudo-terminal
    dies with it, so the link alone cannot recover), re-sends the
    configuration and repeats the lost run with the same noise seed: the
    results equal those of a backend whose emulator never died."""
    net = random_net(9)
    x = np.random.default_rng(1).uniform(0, 1.2, (40, 4))
    url = "qif-emu?baud=0&chip_id=7&timeout=1&ack_timeout=0.05&retries=2&recoveries=1&connect_timeout=5"
    with open_target(url) as ref:
        ref.load(net)
        expected = [ref.run(x).times for _ in range(2)]
    with open_target(url) as chip:
        chip.load(net)
        first = chip.run(x).times
        chip.proc.kill()
        chip.proc.wait(5)
        check = chip._check_alive
        chip._check_alive = lambda: None  # as if it died during the run: the link fails first
        second = chip.run(x)
        assert chip.respawns == 1 and second.info["emulator_respawns"] == 1
        chip._check_alive = check
        for got, want in zip([first, second.times], expected):
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
        chip.proc.kill()  # found dead before a configuration: restarted at once
        chip.proc.wait(5)
        chip.load(random_net(10))
        assert chip.respawns == 2 and np.isfinite(chip.run(x).times[-1]).any()


def test_firmware_answers_errors_with_types(ideal):
    ideal.load(random_net(0))
    c = ideal.client
    with pytest.raises(RemoteError) as e:
        c.request(M.HELLO, M.pack_hello(99, 1024), (M.HELLO_REPLY,))
    assert e.value.name == "UNSUPPORTED_VERSION" and "v99" in e.value.text
    with pytest.raises(RemoteError) as e:
        c.request(0x3A, b"", (M.ERROR,))
    assert e.value.name == "UNKNOWN_COMMAND"
    with pytest.raises(RemoteError) as e:
        c.request(M.RUN, b"\x01\x02", (M.RUN_DONE,))
    assert e.value.name == "BAD_MESSAGE"
    with pytest.raises(RemoteError) as e:
        c.request(M.CONFIG, bytes(200_000), (M.CONFIG_OK,))
    assert e.value.name == "BUFFER_OVERFLOW"
    c.reset()
    with pytest.raises(RemoteError) as e:
        c.request(M.RUN, M.pack_run(0, 0, np.zeros((1, 4), np.uint16)), (M.RUN_DONE,))
    assert e.value.name == "NOT_CONFIGURED"
    assert c.hello().protocol_version == M.PROTOCOL_VERSION  # still talking


def test_large_batches_are_split_and_bad_inputs_refused(ideal):
    net = random_net(2, sizes=(4, 8, 3))
    ideal.load(net)
    x = np.random.default_rng(0).uniform(0, 1, (2500, 4))  # > max_batch 1024 per RUN
    m = ideal.run(x)
    assert m.output.shape == (2500, 3)
    assert np.array_equal(m.output[1500:1510], ideal.run(x[1500:1510]).output)  # no noise: position-free
    with pytest.raises(TargetError, match=">= 0"):
        ideal.run(-x[:3])
    with pytest.raises(TargetError, match="unknown option"):
        open_target("qif-emu?mismatsh=0")
    with pytest.raises(TargetError, match="cannot open serial port"):
        open_target("qif:///dev/does-not-exist")


def test_devices_lists_the_emulator():
    rows = list_targets()
    assert any(r["url"] == "qif-emu" and r["status"] == "available" for r in rows)
    assert any(r["url"].startswith("qif://") for r in rows)


def test_standalone_emulator_command_can_be_used_like_a_board():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "hwloop", "emulator", "--mismatch", "0", "--noise", "0", "--baud", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        r, _, _ = select.select([p.stdout], [], [], 30)
        assert r, "emulator printed nothing"
        line = p.stdout.readline().decode()
        assert line.startswith("PORT /dev/")
        with open_target(f"qif://{line.split()[1]}?baud=0") as board:
            assert board.chip_info.fw_version == "1.1"
            net = random_net(0)
            prog = board.load(net)
            x = np.random.default_rng(0).uniform(0, 1, (20, 4))
            out = board.run(x).output
            ref = qif_reference.network_times(prog.effective, prog.quantized_inputs(x))[-1]
            both = np.isfinite(out) & np.isfinite(ref)
            assert np.abs(out[both] - ref[both]).max() <= prog.tick / 2 + 1e-6
    finally:
        p.terminate()
        p.wait(5)
