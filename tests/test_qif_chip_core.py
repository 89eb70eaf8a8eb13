"""The analog core on its own: numerical integration vs exact and ODE ground
truth, mismatch, noise, TDC, and the chip's own configuration checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from hwloop.firmware_models.qif_chip import AnalogCore, ChipSpec, ConfigInvalid, Mismatch, validate_config
from hwloop.firmware_models.wire.messages import NO_SPIKE, ChipConfig, LayerConfig

from qif_reference import layer_times

SPEC = ChipSpec()
LSB = SPEC.tdc_lsb_us


def random_config(rng, sizes=(6, 24, 5), n_bias=1, trial_ticks=1500, tau=20.0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        codes = rng.integers(-31, 32, (a + n_bias, b)).astype(np.int8)
        layers.append(LayerConfig(codes=codes, w_range=2 + i, tau_us=tau, i0=1.25, v0=0.5,
                                  bias_ticks=tuple(int(x) for x in rng.integers(0, 300, n_bias))))
    return ChipConfig(n_inputs=sizes[0], trial_ticks=trial_ticks, layers=tuple(layers))


def ideal_chip_times(core: AnalogCore, cfg: ChipConfig, ticks: np.ndarray) -> np.ndarray:
    """Exact network times (chip us) using the core's effective weights and the ideal analog values."""
    t_end = cfg.trial_ticks * LSB
    t = np.where(ticks == NO_SPIKE, np.inf, ticks * LSB)
    out = []
    for L, layer in zip(core._layers, cfg.layers):
        src = np.concatenate([t, np.broadcast_to(np.asarray(layer.bias_ticks) * LSB, (t.shape[0], len(layer.bias_ticks)))], 1)
        t = layer_times(src, L["w"], layer.tau_us, layer.i0, layer.v0, t_end)
        out.append(t)
    return np.concatenate(out, 1)


def test_ideal_chip_matches_exact_network_far_inside_tdc_resolution():
    rng = np.random.default_rng(11)
    cfg = random_config(rng, trial_ticks=450)  # free neurons would fire at pi/2 tau = 314 ticks
    core = AnalogCore(SPEC, chip_id=3, mismatch=0.0, noise=0.0)
    core.configure(cfg)
    ticks = rng.integers(0, 250, (40, 6)).astype(np.uint16)
    ticks[rng.random(ticks.shape) < 0.1] = NO_SPIKE
    ref = ideal_chip_times(core, cfg, ticks)
    got = core.run(ticks, seed=0, first_sample=0)
    assert 0.2 < np.isfinite(ref).mean() < 1.0  # a mix of spiking and silent neurons
    # TDC reads floor(t / lsb): exact unless t sits within float noise of a bin edge
    ref_ticks = np.where(np.isfinite(ref), np.floor(ref / LSB), NO_SPIKE)
    rf = np.where(np.isfinite(ref), ref, 0.0) / LSB
    edge = np.isfinite(ref) & (np.abs(rf - np.round(rf)) < 1e-6)
    assert np.array_equal(got[~edge], ref_ticks[~edge].astype(np.uint16))
    # and the analog times themselves agree to ~1e-9 of the lsb
    src = np.concatenate([np.where(ticks == NO_SPIKE, np.inf, ticks * LSB),
                          np.broadcast_to(np.asarray(cfg.layers[0].bias_ticks) * LSB, (40, 1))], 1)
    t_an = core.integrate_layer(src, core._layers[0], cfg.trial_ticks * LSB)
    fin = np.isfinite(ref[:, :24])
    assert np.array_equal(np.isfinite(t_an), fin)
    assert np.max(np.abs(t_an[fin] - ref[:, :24][fin])) < 1e-6 * LSB


def _ode_first_spike(src_t, w_col, tau, i0, c, v0, t_end, v_peak=1e7):
    """First spike by integrating V itself (solve_ivp, tight tolerances) from
    input to input; the spike is V reaching v_peak (t differs from V=inf by ~tau/v_peak)."""
    order = np.argsort(src_t)
    times = [src_t[i] for i in order if np.isfinite(src_t[i]) and src_t[i] < t_end] + [t_end]
    weights = [w_col[i] for i in order if np.isfinite(src_t[i]) and src_t[i] < t_end] + [0.0]
    v, t = v0, 0.0

    def rhs(_, y):
        return [(y[0] * (y[0] - c) + i0) / tau]

    def peak(_, y):
        return y[0] - v_peak

    peak.terminal = True
    for te, wi in zip(times, weights):
        if te > t:
            sol = solve_ivp(rhs, (t, te), [v], events=peak, rtol=1e-11, atol=1e-11, method="DOP853")
            if sol.t_events[0].size:
                return sol.t_events[0][0] + tau / v_peak
            v = sol.y[0, -1]
        v, t = v + wi, te
    return np.inf


def test_integrator_with_mismatch_matches_ode_integration_of_v():
    """With mismatch the psi-drift is not constant: the fixed-step Heun
    integration must still agree with an adaptive integration of the V ODE
    to well inside one TDC tick."""
    rng = np.random.default_rng(5)
    cfg = random_config(rng, sizes=(5, 6), trial_ticks=1200)
    core = AnalogCore(SPEC, chip_id=77, mismatch=0.1, noise=0.0)
    core.configure(cfg)
    L = core._layers[0]
    assert np.std(L["c"]) > 0.02 and np.std(L["tau"]) > 1.0  # mismatch really present
    src = np.concatenate([rng.uniform(0, 40, (4, 5)), np.full((4, 1), cfg.layers[0].bias_ticks[0] * LSB)], 1)
    t_end = cfg.trial_ticks * LSB
    got = core.integrate_layer(src, L, t_end)
    worst = 0.0
    n_spk = 0
    for b in range(src.shape[0]):
        for j in range(6):
            ref = _ode_first_spike(src[b], L["w"][:, j], L["tau"][j], L["i0"][j], L["c"][j], L["v0"][j], t_end)
            assert np.isfinite(ref) == np.isfinite(got[b, j])
            if np.isfinite(ref):
                n_spk += 1
                worst = max(worst, abs(ref - got[b, j]))
    assert n_spk >= 8
    assert worst < 0.1 * LSB, worst


def test_mismatch_is_a_property_of_the_chip_id():
    a, b, c = (Mismatch.for_chip(i, 0.05, SPEC) for i in (1, 1, 2))
    assert np.array_equal(a.tau_gain, b.tau_gain) and np.array_equal(a.row_gain, b.row_gain)
    assert not np.allclose(a.tau_gain, c.tau_gain)
    assert 0.03 < np.std(a.tau_gain) < 0.07 and 0.03 < np.std(a.c) < 0.07
    z = Mismatch.for_chip(1, 0.0, SPEC)
    assert np.all(z.tau_gain == 1) and np.all(z.c == 1) and np.all(z.v0_offset == 0) and np.all(z.row_gain == 1)


def test_noise_is_reproducible_per_sample_whatever_the_batching():
    rng = np.random.default_rng(2)
    cfg = random_config(rng, sizes=(4, 30, 3))
    core = AnalogCore(SPEC, chip_id=9, mismatch=0.05, noise=0.02)
    core.configure(cfg)
    ticks = rng.integers(0, 300, (150, 4)).astype(np.uint16)
    whole = core.run(ticks, seed=5, first_sample=0)
    parts = np.concatenate([core.run(ticks[:37], 5, 0), core.run(ticks[37:100], 5, 37), core.run(ticks[100:], 5, 100)])
    assert np.array_equal(whole, parts)
    other = core.run(ticks, seed=6, first_sample=0)
    both = (whole != NO_SPIKE) & (other != NO_SPIKE)
    diff = np.abs(whole.astype(int) - other.astype(int))[both]
    assert diff.mean() > 1  # a new run draws new noise ...
    quiet = AnalogCore(SPEC, chip_id=9, mismatch=0.05, noise=0.0)
    quiet.configure(cfg)
    base = quiet.run(ticks, 5, 0)
    both = (whole != NO_SPIKE) & (base != NO_SPIKE)
    jitter = np.abs(whole.astype(int) - base.astype(int))[both]
    assert 1 < np.median(jitter) < 100  # ... of a size set by `noise` (0.02 per sqrt(tau) at tau = 200 ticks)


def test_chip_refuses_what_it_cannot_hold():
    rng = np.random.default_rng(0)
    good = random_config(rng)
    validate_config(good, SPEC)
    cases = {
        "tau-range": LayerConfig(codes=good.layers[0].codes, w_range=2, tau_us=500.0, i0=1.25, v0=0.5, bias_ticks=good.layers[0].bias_ticks),
        "i0-range": LayerConfig(codes=good.layers[0].codes, w_range=2, tau_us=20.0, i0=0.2, v0=0.5, bias_ticks=good.layers[0].bias_ticks),
        "weight-code": LayerConfig(codes=np.full_like(good.layers[0].codes, -32), w_range=2, tau_us=20.0, i0=1.25, v0=0.5, bias_ticks=good.layers[0].bias_ticks),
        "layer-shape": LayerConfig(codes=good.layers[0].codes[1:], w_range=2, tau_us=20.0, i0=1.25, v0=0.5, bias_ticks=good.layers[0].bias_ticks),
    }
    for rule, bad in cases.items():
        with pytest.raises(ConfigInvalid, match=rule):
            validate_config(ChipConfig(good.n_inputs, good.trial_ticks, (bad,) + good.layers[1:]), SPEC)
    big = LayerConfig(codes=np.zeros((7, 600), np.int8), w_range=0, tau_us=20.0, i0=1.25, v0=0.5, bias_ticks=(0,))
    with pytest.raises(ConfigInvalid, match="neuron-count"):
        validate_config(ChipConfig(6, 100, (big,)), SPEC)
    first = LayerConfig(codes=np.zeros((200, 300), np.int8), w_range=0, tau_us=20.0, i0=1.25, v0=0.5)
    wide = LayerConfig(codes=np.zeros((301, 4), np.int8), w_range=0, tau_us=20.0, i0=1.25, v0=0.5, bias_ticks=(0,))
    with pytest.raises(ConfigInvalid, match="fan-in: layer 1 has 301"):
        validate_config(ChipConfig(200, 100, (first, wide)), SPEC)
