"""The integer spike-train model (`firmware_models/loihi/trains.py`,
`simulate_trains`) against Lava's own standard processes (LIF + Dense +
recurrent Dense, fixed point), step for step: spikes of every layer, and the
membrane ``v`` and current ``u`` of every neuron after every step.

Lava is the truth here. Each hypothesis example is one random network (sizes,
decays, thresholds, weight exponents, recurrence or not, 100..1000 steps) with
a small batch of random input rasters in one Lava run (a few seconds each), so
examples are few; the larger sweep is marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.backends.loihi import lava_compat
from hwloop.firmware_models.loihi.core import VTH_MAX
from hwloop.firmware_models.loihi.trains import TrainLayer, pre_reset, simulate_trains

pytestmark = pytest.mark.skipif(not lava_compat.lava_installed(), reason="lava-nc not installed")


@pytest.fixture(scope="module")
def runner():
    from hwloop.backends.loihi.lava_trains import TrainsRunner

    r = TrainsRunner()
    yield r
    r.close()


def stored(w):
    """Random raw integers -> what a mixed-sign 8-bit synapse stores (even, -256..254)."""
    return (np.clip(w, -256, 255) >> 1) << 1


@st.composite
def random_trains(draw, max_layers=2, max_n=12, steps=(100, 300), batch=(1, 3)):
    """A random integer network and input raster, tuned so that a fair share of
    examples fire (thresholds log-uniform against the drive) and some saturate."""
    T = draw(st.integers(*steps))
    B = draw(st.integers(*batch))
    n_src = draw(st.integers(1, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    rate = draw(st.sampled_from([0.02, 0.1, 0.3, 0.7]))
    raster = (rng.random((T, B, n_src)) < rate).astype(np.uint8)
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        n = draw(st.integers(1, max_n))
        bias = draw(st.floats(-0.3, 0.6))  # mean drive: some layers excitatory, some mostly inhibitory
        w = stored(rng.integers(-256, 256, (n_src, n)) + int(bias * 256))
        rec = None
        if draw(st.booleans()):
            rec = stored(rng.integers(-256, 256, (n, n)))
        layers.append(TrainLayer(
            weight=w, weight_exp=draw(st.integers(-8, 7)),
            du=draw(st.one_of(st.integers(0, 4095), st.sampled_from([0, 4095]))),
            dv=draw(st.one_of(st.integers(0, 4095), st.sampled_from([0, 4095]))),
            vth=int(min(VTH_MAX, 2 ** draw(st.floats(0, 17)))),
            recurrent=rec, rec_exp=draw(st.integers(-8, 7)) if rec is not None else 0))
        n_src = n
    return layers, raster


def check_against_lava(runner, layers, raster):
    res = runner.run(layers, raster, probe=True)
    spikes, volts, amps = simulate_trains(layers, raster, probe=True, currents=True)
    for li in range(len(layers)):
        for name, ours, lava in (("spikes", spikes[li], res["spikes"][li]), ("v", volts[li], res["v"][li]),
                                 ("u", amps[li], res["u"][li])):
            assert ours.shape == lava.shape, (name, li)
            bad = np.argwhere(ours != lava)
            assert bad.size == 0, (f"layer {li} {name} differs first at (step, sample, neuron) {tuple(bad[0])}: "
                                   f"ours {ours[tuple(bad[0])]}, Lava {lava[tuple(bad[0])]}")
    # the pre-reset membrane rebuilt from Lava's monitors exceeds the threshold exactly where Lava fired
    for li, layer in enumerate(layers):
        v_pre = pre_reset(layer, res["v"][li], res["u"][li])
        np.testing.assert_array_equal(v_pre > (layer.vth << 6), res["spikes"][li].astype(bool))
    return [s.sum() for s in spikes]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=random_trains())
def test_random_networks_equal_lava_spikes_and_membranes(runner, case):
    check_against_lava(runner, *case)


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=random_trains(max_layers=3, steps=(100, 1000), batch=(1, 2)))
def test_random_networks_equal_lava_long_trials(runner, case):
    check_against_lava(runner, *case)


def test_hand_built_recurrent_network_fires_and_equals_lava(runner):
    """A fixed case that certainly exercises firing, reset, recurrence and inhibition
    (so the random sweep cannot pass by everything staying silent)."""
    rng = np.random.default_rng(7)
    layers = [
        TrainLayer(weight=stored(rng.integers(-100, 256, (6, 5))), weight_exp=1, du=400, dv=300, vth=400,
                   recurrent=stored(rng.integers(-256, 200, (5, 5))), rec_exp=0),
        TrainLayer(weight=stored(rng.integers(-150, 256, (5, 3))), weight_exp=2, du=1200, dv=80, vth=300),
    ]
    raster = (rng.random((200, 3, 6)) < 0.25).astype(np.uint8)
    counts = check_against_lava(runner, layers, raster)
    assert counts[0] > 50 and counts[1] > 10, counts


def test_recurrent_spike_arrives_one_step_later(runner):
    """One input spike at step 3 makes neuron 0 fire at step 3 (same step, as the
    CUBA model); its recurrent synapse onto neuron 1 makes neuron 1 fire at step 4."""
    layer = TrainLayer(weight=np.array([[254, 0]]), weight_exp=7, du=4095, dv=4095, vth=100,
                       recurrent=np.array([[0, 254], [0, 0]]), rec_exp=7)
    raster = np.zeros((10, 1, 1), np.uint8)
    raster[3, 0, 0] = 1
    res = runner.run([layer], raster, probe=False)
    ours, _ = simulate_trains([layer], raster)
    np.testing.assert_array_equal(res["spikes"][0], ours[0])
    assert [tuple(np.argwhere(ours[0][:, 0, j]).ravel()) for j in range(2)] == [(3,), (4,)]


def test_train_layer_rejects_weights_lava_would_change():
    with pytest.raises(ValueError, match="even"):
        TrainLayer(weight=np.array([[3]]), weight_exp=0, du=0, dv=0, vth=1)
    with pytest.raises(ValueError, match="even"):
        TrainLayer(weight=np.array([[2]]), weight_exp=0, du=0, dv=0, vth=1, recurrent=np.array([[255]]))


# ------------------------------------------------------------------ the targets
def test_bitexact_and_lava_sim_measure_the_same_cuba_network():
    """A float CUBA network (recurrent hidden layer, non-spiking readout) on both
    targets: identical events, probes (model units, before reset) and scores;
    the batch is split over several Lava runs (?batch=5) and put back in order."""
    from test_loihi_trains import cuba, raster_for

    net = cuba(recurrent=True, seed=11)
    x = raster_for(net, batch=12, seed=4)
    bx = net.run("bitexact", raster=x, probe=True)
    lv = net.run("lava-sim?batch=5", raster=x, probe=True)
    assert lv.info["lava_runs"] == 3 and len(bx.events[0]) > 100
    for li in range(2):
        np.testing.assert_array_equal(bx.raster(li), lv.raster(li))
        np.testing.assert_array_equal(bx.probes[li], lv.probes[li])
        np.testing.assert_array_equal(bx.times[li], lv.times[li])
    np.testing.assert_array_equal(bx.scores, lv.scores)
    # without probes Lava monitors only the readout (its membrane is the max-membrane score)
    lv2 = net.run("lava-sim", raster=x)
    assert lv2.probes is None
    np.testing.assert_array_equal(lv2.scores, bx.scores)
    np.testing.assert_array_equal(lv2.raster(0), bx.raster(0))


@pytest.mark.parametrize("recurrent", [False, True])
def test_lava_float_models_equal_the_software_model(recurrent):
    """``lava-sim?precision=float``: Lava's own floating-point LIF + Dense on the
    unquantised network is the software target's CUBA model (reset to zero, the
    same step alignment): identical spikes, membranes to float rounding. An
    independent check of the software model's semantics against Lava's."""
    from test_loihi_trains import cuba, raster_for

    net = cuba(recurrent=recurrent, seed=13)
    x = raster_for(net, batch=6, seed=5)
    sw = net.run("software", raster=x, probe=True)
    lf = net.run("lava-sim?precision=float", raster=x, probe=True)
    assert lf.info["precision"] == "float" and len(sw.events[0]) > 100
    for li in range(2):
        np.testing.assert_array_equal(lf.raster(li), sw.raster(li))
        np.testing.assert_allclose(lf.probes[li], sw.probes[li], rtol=0, atol=1e-9)
    np.testing.assert_allclose(lf.scores, sw.scores, rtol=0, atol=1e-9)


def test_cli_simulate_on_lava_sim_with_probes(tmp_path, capsys):
    import json

    from hwloop.cli import main
    from test_loihi_trains import cuba

    net = cuba(seed=12)
    path = net.save(tmp_path / "c.hwnet")
    x = np.random.default_rng(0).uniform(size=(3, 6))
    np.save(tmp_path / "x.npy", x)
    args = ["simulate", str(path), "--inputs", str(tmp_path / "x.npy"), "--probe", "--json"]
    assert main(args + ["--target", "lava-sim", "--out", str(tmp_path / "l.npz")]) == 0
    assert main(args + ["--target", "bitexact", "--out", str(tmp_path / "b.npz")]) == 0
    capsys.readouterr()
    zl, zb = np.load(tmp_path / "l.npz"), np.load(tmp_path / "b.npz")
    assert "layer_0_membrane" in zl.files and sorted(zl.files) == sorted(zb.files)
    for k in zl.files:
        np.testing.assert_array_equal(zl[k], zb[k], err_msg=k)


@pytest.mark.slow
def test_randman_network_accuracy_on_bitexact_and_lava_sim(tmp_path, capsys):
    """`hwloop train --model cuba --dataset randman` (a few epochs), then eval on
    software and bitexact (the whole test split) and lava-sim (30 samples, which
    must decide exactly as bitexact)."""
    import json

    from hwloop.cli import main

    path = tmp_path / "r.hwnet"
    assert main(["train", "--model", "cuba", "--dataset", "randman", "--epochs", "4", "--out", str(path),
                 "--quiet"]) == 0
    capsys.readouterr()

    def ev(target, *extra):
        assert main(["eval", str(path), "--target", target, "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    sw, bx = ev("software"), ev("bitexact")
    assert sw["accuracy"] > 0.5  # learned something: chance is 0.1
    assert abs(bx["accuracy"] - sw["accuracy"]) <= 0.03, (sw["accuracy"], bx["accuracy"])
    assert ev("lava-sim", "--limit", "30")["n_correct"] == ev("bitexact", "--limit", "30")["n_correct"]
