"""The QIF chip in spike-train mode (protocol 1.4): the analog core directly,
and the qif-emu target running qif-trains networks (docs/qif-chip-trains.md)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from hwloop.backends import open_target
from hwloop.backends.qif.trains_compiler import compile_trains
from hwloop.errors import DesignRuleError, TargetError
from hwloop.firmware_models.qif_chip.core import ConfigInvalid
from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH, DEFAULT_NOISE, DEFAULT_SPEC
from hwloop.firmware_models.qif_chip.trains_core import TrainsCore, validate_trains_config
from hwloop.firmware_models.wire import messages as M
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

SPEC = DEFAULT_SPEC
MAXC = SPEC.max_code


def layer_cfg(n_src, n_out, codes=None, rec=None, i0=0.1, tau=10.0, syn_tau=5.0, spiking=True, v_peak=4.0,
              v_reset=0.0, refractory=0, w_range=3, rec_range=2, v_init=None):
    if codes is None:
        codes = np.zeros((n_src, n_out), np.int8)
    if v_init is None:
        v_init = (1 - math.sqrt(1 - 4 * i0)) / 2 if (spiking and i0 < 0.25) else 0.0
    return M.TrainLayerConfig(codes=np.asarray(codes, np.int8), w_range=w_range, tau_us=tau, syn_tau_us=syn_tau, i0=i0,
                              v_peak=v_peak, v_reset=v_reset, v_init=v_init, refractory=refractory, spiking=spiking,
                              rec_codes=None if rec is None else np.asarray(rec, np.int8), rec_range=rec_range)


def config(*layers, n_inputs=None, n_steps=100, step_ticks=10, substeps=8, probe_period=1):
    return M.TrainsConfig(n_inputs=n_inputs or layers[0].codes.shape[0], n_steps=n_steps, step_ticks=step_ticks,
                          substeps=substeps, probe_period=probe_period, layers=tuple(layers))


def core(cfg, mismatch=DEFAULT_MISMATCH, noise=DEFAULT_NOISE, chip_id=7):
    c = TrainsCore(SPEC, chip_id, mismatch, noise)
    c.configure(cfg)
    return c


def rand_cfg(rng, rec=True, n_in=20, n_hid=48, n_out=5):
    hid = layer_cfg(n_in, n_hid, rng.integers(-31, 32, (n_in, n_hid)), rec=rng.integers(-12, 13, (n_hid, n_hid)) if rec else None)
    out = layer_cfg(n_hid, n_out, rng.integers(-31, 32, (n_hid, n_out)), w_range=1, spiking=False)
    return config(hid, out, n_inputs=n_in)


def raster(rng, n, k=20, T=100, p=0.05):
    return (rng.random((T, n, k)) < p).astype(np.uint8)


# ------------------------------------------------------------------ the core
def test_excitable_neurons_rest_without_input_and_oscillatory_ones_fire():
    quiet = core(config(layer_cfg(4, 64, i0=0.1), n_steps=200))
    res = quiet.run(np.zeros((200, 8, 4), np.uint8), seed=1, first_sample=0, probe_mask=1, keep_v=True)
    assert res.counts.sum() == 0
    rest = (1 - math.sqrt(1 - 0.4)) / 2
    # every neuron sits near its own (mismatched) rest point, drifting only by the noise
    assert np.abs(res.v_true[:, 50:] - rest).max() < 0.15
    busy = core(config(layer_cfg(4, 64, i0=0.6), n_steps=200))
    c = busy.run(np.zeros((200, 8, 4), np.uint8), seed=1, first_sample=0).counts
    assert (c.sum(axis=0) >= 2).all()  # i0 > 1/4: every neuron oscillates (fires again and again) undriven


def test_a_spike_resets_the_membrane_and_a_driven_neuron_fires_again():
    # one strong input spike at step 10, a slow synapse: the neuron fires, resets, fires again
    codes = np.full((1, 4), 31, np.int8)
    c = core(config(layer_cfg(1, 4, codes, i0=0.0, syn_tau=200.0, v_reset=-0.5, w_range=5), n_steps=60),
             mismatch=0, noise=0)
    r = np.zeros((60, 2, 1), np.uint8)
    r[10, 0, 0] = 1  # sample 1 gets nothing
    res = c.run(r, seed=0, first_sample=0, probe_mask=1, keep_v=True)
    spikes = res.counts[:, 0, 0]
    assert spikes[:10].sum() == 0 and spikes.sum() >= 3 and res.counts[:, 1].sum() == 0
    first = int(np.flatnonzero(spikes)[0])
    v = res.v_true[0, :, 0]
    assert v[first] >= 4.0  # sampled before the reset of the step that fired
    assert v[first + 1] < 1.0  # reset to v_reset, climbing again
    # refractory: the same input with a 5-step refractory period fires later again, never in the hold
    c2 = core(config(layer_cfg(1, 4, codes, i0=0.0, syn_tau=200.0, v_reset=-0.5, refractory=5, w_range=5), n_steps=60),
              mismatch=0, noise=0)
    s2 = c2.run(r, seed=0, first_sample=0).counts[:, 0, 0]
    ks = np.flatnonzero(s2)
    assert ks[0] == first and np.all(np.diff(ks) > 5)


def test_recurrence_changes_the_output():
    rng = np.random.default_rng(1)
    cfg = rand_cfg(rng, rec=True)
    no_rec = config(M.TrainLayerConfig(**{**cfg.layers[0].__dict__, "rec_codes": None}), cfg.layers[1], n_inputs=20)
    r = raster(rng, 32)
    a = core(cfg).run(r, 3, 0).counts
    b = core(no_rec).run(r, 3, 0).counts
    assert a.sum() > 0 and b.sum() > 0
    assert np.abs(a[:, :, :48].astype(int) - b[:, :, :48]).sum() > 0.1 * b[:, :, :48].sum()


def test_noise_is_keyed_on_the_absolute_sample_index():
    rng = np.random.default_rng(2)
    c = core(rand_cfg(rng))
    r = raster(rng, 300)
    whole = c.run(r, 9, 0, probe_mask=3)
    part = c.run(r[:, 100:], 9, 100, probe_mask=3)
    assert np.array_equal(whole.counts[:, 100:], part.counts)
    assert np.array_equal(whole.codes[100:], part.codes)
    other = c.run(r, 10, 0).counts
    assert not np.array_equal(other, whole.counts)  # another run seed, other noise


def test_adc_codes_are_within_resolution_and_noise_of_the_true_membrane():
    rng = np.random.default_rng(3)
    cfg = rand_cfg(rng)
    c = core(cfg)
    res = c.run(raster(rng, 64), 4, 0, probe_mask=3, keep_v=True)
    full = (1 << SPEC.adc_bits) - 1
    a = 0
    for li, L in enumerate(c.layers):
        m = L["n_out"]
        codes = res.codes[:, :, a:a + m].astype(float)
        v = res.v_true[:, :, a:a + m]
        lo, hi = L["adc_lo"], L["adc_hi"]
        ideal = (v - lo) / (hi - lo) * full
        inside = (ideal > 3) & (ideal < full - 3)  # away from the ends, where the codes clip
        err = (codes - ideal)[inside]
        # per-channel offset and gain, the half-LSB rounding, and the ADC's own noise (5 sigma)
        bound = (np.abs(L["adc_off"]) + np.abs(L["adc_gain"] - 1) * full)[None, None, :]
        bound = np.broadcast_to(bound, codes.shape)[inside] + 0.5 + 5 * c.adc_noise_lsb
        assert inside.sum() > 1000
        assert np.all(np.abs(err) <= bound)
        # the ADC's noise is there (about 0.5 LSB rms), on top of the fixed offsets
        resid = err - np.broadcast_to(L["adc_off"] + (L["adc_gain"] - 1) * 0, codes.shape)[inside]
        assert 0.2 < np.std(resid) < 2.0
        clipped = ideal <= 0
        assert np.all(codes[clipped & (ideal < -3)] == 0)
        a += m


def discrete_reference(cfg: M.TrainsConfig, r: np.ndarray) -> np.ndarray:
    """The discrete qif-trains step (Euler) integrated at the chip's substep, with the
    chip's own parameters (ideal die): spike counts per step (T, n, neurons)."""
    S = cfg.substeps
    h = cfg.step_ticks * SPEC.tdc_lsb_us / S
    T, n, _ = r.shape
    Ls = []
    for L in cfg.layers:
        w = L.codes.astype(float) / MAXC * SPEC.w_full_scale(L.w_range)
        rec = None if L.rec_codes is None else L.rec_codes.astype(float) / MAXC * SPEC.w_full_scale(L.rec_range)
        m = w.shape[1]
        Ls.append(dict(w=w, rec=rec, k=h / L.tau_us, d=math.exp(-h / L.syn_tau_us), L=L, v=np.full((n, m), L.v_init),
                       i=np.zeros((n, m)), ref=np.zeros((n, m), int), s=np.zeros((n, m))))
    out = np.zeros((T, n, sum(x["w"].shape[1] for x in Ls)), np.int64)
    for t in range(T):
        for j in range(S):
            below, a = None, 0
            for X in Ls:
                L = X["L"]
                x = (r[t].astype(float) @ X["w"]) if (below is None and j == 0) else 0.0
                if below is not None:
                    x = below @ X["w"]
                if X["rec"] is not None:
                    x = x + X["s"] @ X["rec"]
                X["i"] = X["d"] * X["i"] + x
                v = X["v"]
                if L.spiking:
                    vt = v + X["k"] * (v * (v - 1) + L.i0 + X["i"])
                    vt = np.where(X["ref"] > 0, v, np.maximum(vt, -1))
                    X["ref"] = np.maximum(X["ref"] - 1, 0)
                    s = (vt >= L.v_peak).astype(float)
                    vt = np.where(s > 0, L.v_reset, vt)
                    X["ref"] = np.where(s > 0, L.refractory * S, X["ref"])
                else:
                    vt = v + X["k"] * (X["i"] - v)
                    s = np.zeros_like(v)
                X["v"], X["s"] = vt, s
                m = v.shape[1]
                out[t, :, a:a + m] += s.astype(np.int64)
                a += m
                below = s
    return out


def test_ideal_chip_agrees_with_the_discrete_model_at_its_substep():
    rng = np.random.default_rng(4)
    hid = layer_cfg(20, 40, rng.integers(-31, 32, (20, 40)), rec=rng.integers(-10, 11, (40, 40)), refractory=1)
    out = layer_cfg(40, 6, rng.integers(-31, 32, (40, 6)), i0=0.05, w_range=2)
    cfg = config(hid, out, n_inputs=20, n_steps=80)
    r = raster(rng, 24, T=80)
    chip = core(cfg, mismatch=0, noise=0).run(r, 0, 0).counts.astype(np.int64)
    ref = discrete_reference(cfg, r)
    assert ref.sum() > 1000
    # same spikes, within a step (Heun on the chip, Euler in the reference: the same ODE)
    assert abs(chip.sum() - ref.sum()) <= 0.03 * ref.sum()
    cc, rc = chip.sum(axis=0), ref.sum(axis=0)  # counts per (sample, neuron)
    assert np.mean(np.abs(cc - rc) <= 1) > 0.95
    near = np.minimum(chip, np.maximum(np.maximum(ref, np.roll(ref, 1, 0)), np.roll(ref, -1, 0))).sum()
    assert near >= 0.9 * chip.sum()


def test_core_speed_randman_sized():
    """20-128-10, 100 steps, batch 256, default mismatch and noise (the figure is in
    docs/qif-chip-trains.md; the bound here is loose for a loaded CI machine)."""
    rng = np.random.default_rng(5)
    hid = layer_cfg(20, 128, rng.integers(-31, 32, (20, 128)))
    out = layer_cfg(128, 10, rng.integers(-31, 32, (128, 10)), w_range=1, spiking=False)
    c = core(config(hid, out, n_inputs=20))
    r = raster(rng, 256)
    t0 = time.perf_counter()
    res = c.run(r, 1, 0)
    assert time.perf_counter() - t0 < 5.0
    assert res.counts.sum() > 0


@pytest.mark.parametrize("change, rule", [
    (dict(n_steps=0), "step-count"),
    (dict(step_ticks=0), "dt-grid"),
    (dict(substeps=0), "substeps"),
    (dict(probe_period=0), "probe-period"),
    (dict(probe_period=101), "probe-period"),
])
def test_chip_config_rules_are_named(change, rule):
    cfg = config(layer_cfg(4, 8))
    with pytest.raises(ConfigInvalid) as e:
        validate_trains_config(M.TrainsConfig(**{**cfg.__dict__, **change}), SPEC)
    assert e.value.rule == rule


@pytest.mark.parametrize("layer, rule", [
    (dict(codes=np.full((4, 8), 40, np.int8)), "weight-code"),
    (dict(w_range=9), "weight-range"),
    (dict(tau_us=0.5), "tau-range"),
    (dict(syn_tau_us=0.0), "syn-tau-range"),
    (dict(i0=5.0), "i0-range"),
    (dict(v_peak=9.0), "v-peak-range"),
    (dict(v_reset=4.0), "v-reset-range"),
    (dict(refractory=300), "refractory-range"),
    (dict(rec_codes=np.zeros((8, 8), np.int8), codes=np.zeros((250, 8), np.int8)), "fan-in"),
    (dict(codes=np.zeros((4, 600), np.int8)), "neuron-count"),
])
def test_chip_layer_rules_are_named(layer, rule):
    base = layer_cfg(4, 8)
    L = M.TrainLayerConfig(**{**base.__dict__, **layer})
    with pytest.raises(ConfigInvalid) as e:
        validate_trains_config(config(L, n_inputs=L.codes.shape[0]), SPEC)
    assert e.value.rule == rule


# ------------------------------------------------------------------ the host: compiler and qif-emu
def qt(spiking=True, **kw):
    return NeuronParams.qif_trains(dt=kw.pop("dt", 1.0), current_decay=kw.pop("cd", 0.2), tau_mem=kw.pop("tau", 5.0),
                                   i0=kw.pop("i0", 0.1 if spiking else 0.0), spiking=spiking, **kw)


def trains_net(seed=0, rec=True, n_in=20, n_hid=40, n_out=4, kind="max-membrane", T=60, hidden=None):
    rng = np.random.default_rng(seed)
    layers = (Layer(rng.normal(0, 1.0, (n_in, n_hid)), hidden or qt(),
                    recurrent=rng.normal(0, 0.2, (n_hid, n_hid)) if rec else None),
              Layer(rng.normal(0, 0.4, (n_hid, n_out)), qt(spiking=kind != "max-membrane")))
    return Network(layers=layers, encoding=InputEncoding(n_features=n_in),
                   decoding=OutputDecoding(classes=tuple("abcdefgh"[:n_out]), kind=kind), t_max=float(T))


@pytest.fixture(scope="module")
def emu():
    with open_target("qif-emu?baud=0&chip_id=7") as chip:  # default mismatch and noise
        yield chip


def test_every_spike_is_reported_against_the_core_run_directly(emu):
    net = trains_net(kind="spike-count")
    prog = emu.load(net)
    rng = np.random.default_rng(6)
    r = raster(rng, 40, T=60).astype(np.float32)
    emu.run_index = 0
    m = emu.run_raster(r, probe=True)
    c = core(prog.config, chip_id=7)
    want = c.run(r.astype(np.uint8), seed=0, first_sample=0, probe_mask=3)
    got = np.concatenate([ev.raster(np.int64) for ev in m.events], axis=2)
    # counts (a neuron may fire twice in one step: both spikes are reported)
    cnt = np.zeros_like(want.counts, dtype=np.int64)
    a = 0
    for ev in m.events:
        np.add.at(cnt, (ev.step, ev.sample, a + ev.neuron), 1)
        a += ev.shape[2]
    assert np.array_equal(cnt, want.counts.astype(np.int64)) and cnt.sum() > 500
    assert got.shape == (60, 40, 44)
    # the first-spike view and the readout's spike counts
    first = m.events[0].first_steps()
    assert np.array_equal(np.isfinite(m.times[0]), first >= 0)
    np.testing.assert_array_equal(m.scores, cnt[:, :, 40:].sum(0))
    # the probes are the core's codes converted to model units
    lo, hi = prog.adc_ranges[0]
    v0 = lo + want.codes[:, :, :40] * (hi - lo) / 255
    np.testing.assert_allclose(m.probes[0], np.moveaxis(v0, 1, 0), atol=1e-6)
    assert m.probes[0].shape == (60, 40, 40) and m.dt == 1.0


def test_probes_only_when_asked_and_max_membrane_scores(emu):
    net = trains_net(kind="max-membrane")
    emu.load(net)
    r = raster(np.random.default_rng(7), 16, T=60)
    a = emu.run_raster(r)
    assert a.probes is None and a.scores.shape == (16, 4)
    assert a.info["probe_bytes"] > 0  # the readout's membrane, for the decision only
    b = emu.run_raster(r, probe=True)
    assert b.info["probe_bytes"] > a.info["probe_bytes"] and len(b.probes) == 2
    np.testing.assert_allclose(b.scores, b.probes[1].max(axis=0))
    with open_target("software") as sw:
        sw.load(net)
        s = sw.run_raster(r, probe=True)
    # deployed as is, the readout's membrane is close to the model's (ADC LSB 8/255)
    assert np.abs(b.probes[1] - s.probes[1]).mean() < 0.3


def test_probes_of_chosen_layers_only(emu):
    """probe=[layer, ...]: only those layers are sampled and sent (what an
    in-the-loop session with signal spikes+readout asks for); the others are None."""
    from hwloop.session.config import default_signal, target_has_probes

    net = trains_net(kind="max-membrane")
    emu.load(net)
    r = raster(np.random.default_rng(8), 16, T=60)
    emu.run_index = 0
    only = emu.run_raster(r, probe=[1])
    emu.run_index = 0
    every = emu.run_raster(r, probe=True)
    assert only.probes[0] is None and only.probes[1].shape == (60, 16, 4)
    assert only.info["probe_bytes"] < every.info["probe_bytes"] / 5
    np.testing.assert_array_equal(only.probes[1], every.probes[1])  # same run seed: the same ADC samples
    np.testing.assert_array_equal(only.scores, every.scores)
    hid = emu.run_raster(r, probe=[0])
    # the max-membrane readout is sampled for the decision anyway, so it comes back too
    assert hid.probes[0].shape == (60, 16, 40) and hid.probes[1].shape == (60, 16, 4)
    with pytest.raises(TargetError, match="probe layer 2"):
        emu.run_raster(r, probe=[2])
    assert target_has_probes("qif-emu") and default_signal("qif-emu") == "spikes+readout"
    assert default_signal("bitexact") == "spikes+membranes"


def test_the_chip_runs_a_net_close_to_the_software_model(emu):
    net = trains_net(seed=3, rec=False, kind="spike-count", n_out=4)
    emu.load(net)
    r = raster(np.random.default_rng(8), 32, T=60)
    m = emu.run_raster(r)
    with open_target("software") as sw:
        sw.load(net)
        s = sw.run_raster(r)
    a, b = m.counts(0).sum(), s.counts(0).sum()
    assert b > 100 and abs(a - b) < 0.4 * b  # same activity level (continuous vs Euler at dt; mismatch, noise)


def test_design_rules_of_the_compiler_are_named(emu):
    info = emu.chip_info
    with pytest.raises(DesignRuleError) as e:
        compile_trains(trains_net(), info, scale=0.33)
    assert e.value.rule == "dt-grid"
    with pytest.raises(DesignRuleError) as e:
        compile_trains(trains_net(hidden=qt(cd=1.0)), info)
    assert e.value.rule == "syn-tau-range"
    with pytest.raises(DesignRuleError) as e:
        compile_trains(trains_net(n_hid=300, rec=False), info)
    assert e.value.rule == "fan-in" and e.value.layer == 1
    with pytest.raises(DesignRuleError) as e:
        compile_trains(trains_net(), info, probe_period=61)
    assert e.value.rule == "probe-period"
    rng = np.random.default_rng(0)
    big = Network(layers=(Layer(rng.normal(0, 100.0, (20, 8)), qt()), Layer(rng.normal(0, 1, (8, 2)), qt(False))),
                  encoding=InputEncoding(n_features=20), decoding=OutputDecoding(classes=("a", "b"), kind="max-membrane"),
                  t_max=10.0)
    with pytest.raises(DesignRuleError) as e:
        compile_trains(big, info)
    assert e.value.rule == "weight-range" and e.value.layer == 0
    cuba = Network(layers=(Layer(rng.normal(0, 1, (20, 2)), NeuronParams.cuba(dt=1.0, current_decay=0.1, voltage_decay=0.1)),),
                   encoding=InputEncoding(n_features=20), decoding=OutputDecoding(classes=("a", "b"), kind="spike-count"),
                   t_max=10.0)
    with pytest.raises(DesignRuleError) as e:
        compile_trains(cuba, info)
    assert e.value.rule == "neuron-model"
    with pytest.raises(TargetError):
        emu.run_raster(np.zeros((5, 2, 20)))  # wrong shape for the deployed network: named by checked_raster


def test_a_readout_with_weights_beyond_the_dac_runs_scaled():
    """The model's readout weights are 1/k larger than a hidden layer's (k = dt / tau_readout):
    the linear readout runs at weights / sigma on the chip and is read back x sigma."""
    rng = np.random.default_rng(9)
    hid = qt()
    ro = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=100.0, spiking=False)
    net = Network(layers=(Layer(rng.normal(0, 1.0, (20, 40)), hid), Layer(rng.normal(0, 6.0, (40, 4)), ro)),
                  encoding=InputEncoding(n_features=20), decoding=OutputDecoding(classes=tuple("abcd"), kind="max-membrane"),
                  t_max=60.0)
    r = raster(np.random.default_rng(10), 16, T=60)
    with open_target("software") as sw:
        sw.load(net)
        s = sw.run_raster(r, probe=True)
    v_sw = s.probes[1]
    top = 1.2 * float(np.abs(v_sw).max())
    assert top > 2.0
    with open_target(f"qif-emu?baud=0&mismatch=0&noise=0&readout_range={top:.3f}") as chip:
        prog = chip.load(net)
        assert prog.readout_scale[0] == 1.0 and prog.readout_scale[1] in (2.0, 4.0)
        assert np.abs(prog.config.layers[1].codes).max() >= 15  # the DAC's range is used
        assert prog.adc_ranges[1] == pytest.approx((-top, top), rel=1e-4)
        np.testing.assert_allclose(prog.effective.layers[1].weight, net.layers[1].weight,
                                   atol=prog.readout_scale[1] * 16 / 31 / prog.charge_gain[1])
        m = chip.run_raster(r, probe=True)
    v_chip = m.probes[1]
    # the chip's readout follows the model's (ODE vs one Euler step per dt, the hidden layer's spikes
    # differ a little), to a fraction of its swing
    assert np.abs(v_chip - v_sw).mean() < 0.15 * np.abs(v_sw).mean() + 2 * prog.lsb(1)
