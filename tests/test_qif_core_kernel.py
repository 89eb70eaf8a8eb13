"""The analog core's fused numba integrator (`firmware_models/qif_chip/_kernel.py`)
against the numpy path it replaces (the reference, ``engine="numpy"``).

Both integrate the same equations in the same order from the same noise
stream; they differ in the trig of the drift's mismatch terms: the numpy
path rounds ``2 psi`` to float32 and takes numpy's float32 sin/cos (errors up
to ~3e-7), the kernel float64 polynomials (~1e-16). So the random-layer test
holds the kernel to the numpy path run with float64 trig (``trig_dtype``):
spike times within ``TIME_TOL`` = 1e-10 of the trial (worst seen in 400
random layers: 3e-13), fired sets identical but for a spike within that of
the trial's end (a tie, allowed; none seen). Against the float32 default the
difference is that float32 error, amplified where a neuron passes its
threshold slowly (small I0 - 1/4, strong mismatch: up to ~2e-5 of the trial
seen); whole runs of the bench-sized network agree tick for tick but where a
time sits that close to a TDC bin edge.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.firmware_models.qif_chip import AnalogCore, ChipSpec
from hwloop.firmware_models.qif_chip import _kernel
from hwloop.firmware_models.qif_chip.core import ENGINES
from hwloop.firmware_models.wire.messages import NO_SPIKE, ChipConfig, LayerConfig

SPEC = ChipSpec()
LSB = SPEC.tdc_lsb_us
TIME_TOL = 1e-10  # of the trial length

pytestmark = pytest.mark.skipif(_kernel.integrate_segment is None, reason="numba is a dependency; absent only by mistake")


def compare(a: np.ndarray, b: np.ndarray, t_end: float) -> None:
    """Spike times within TIME_TOL of the trial; fired sets equal except within it of the end."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    tie = fa != fb
    if tie.any():
        late = np.where(fa, a, b)[tie]
        assert (late > t_end * (1 - TIME_TOL)).all(), f"fired sets differ away from the trial's end: {late}"
    both = fa & fb
    np.testing.assert_allclose(a[both], b[both], rtol=0, atol=TIME_TOL * t_end)


layers = st.fixed_dictionaries(dict(
    n_in=st.integers(1, 8), n_out=st.integers(1, 40), n_bias=st.integers(0, 2),
    tau=st.sampled_from([1.0, 5.0, 20.0, 50.0]), i0=st.floats(0.26, 4.0), v0=st.floats(-3.0, 3.0),
    w_range=st.integers(0, 7), trial_ticks=st.integers(20, 1600),
    mismatch=st.sampled_from([0.0, 0.05, 0.2]), noise=st.sampled_from([0.0, 0.01, 0.1]),
    n=st.integers(1, 40), first=st.integers(0, 600), seed=st.integers(0, 2**31 - 1),
    chip=st.integers(0, 2**40), inject=st.booleans(), data=st.integers(0, 2**31 - 1),
))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=layers)
def test_kernel_matches_numpy_on_random_layers(p):
    rng = np.random.default_rng(p["data"])
    n_in, n_out, nb, tt = p["n_in"], p["n_out"], p["n_bias"], p["trial_ticks"]
    cfg = ChipConfig(n_inputs=n_in, trial_ticks=tt, layers=(LayerConfig(
        codes=rng.integers(-31, 32, (n_in + nb, n_out)).astype(np.int8), w_range=p["w_range"], tau_us=p["tau"],
        i0=p["i0"], v0=p["v0"], bias_ticks=tuple(int(x) for x in rng.integers(0, tt, nb))),))
    core = AnalogCore(SPEC, p["chip"], p["mismatch"], p["noise"])
    core.configure(cfg)
    n = p["n"]
    ticks = rng.integers(0, tt, (n, n_in)).astype(np.uint16)
    ticks[rng.random(ticks.shape) < 0.2] = NO_SPIKE
    inj = rng.uniform(-1.0, 1.0, (n, n_out)) if p["inject"] else None
    L, t_end = core._layers[0], tt * LSB
    src = np.concatenate([np.where(ticks == NO_SPIKE, np.inf, ticks * LSB), np.broadcast_to(L["bias_t"], (n, nb))], 1)
    src = np.where(src < t_end, src, np.inf)
    got = core.integrate_layer(src, L, t_end, p["seed"], p["first"], 0, inject=inj, engine="numba")
    co = core._coefficients(L, t_end, p["noise"], inj)
    ref = core._integrate_numpy(src, L, t_end, p["seed"], p["first"], 0, p["noise"], co, trig_dtype=np.float64)
    compare(ref, got, t_end)
    # and the float32 default differs by no more than its own trig error can explain (loosely)
    ref32 = core.integrate_layer(src, L, t_end, p["seed"], p["first"], 0, inject=inj, engine="numpy")
    both = np.isfinite(ref32) & np.isfinite(got)
    assert np.abs(ref32[both] - got[both]).max(initial=0) < 1e-3 * t_end


def bench_sized_config(rng, hidden=120):
    """The Yin-Yang-sized network of bench/bench_link.py, as its compiler lays it out."""
    return ChipConfig(n_inputs=4, trial_ticks=1500, layers=(
        LayerConfig(codes=rng.integers(-20, 21, (5, hidden)).astype(np.int8), w_range=4, tau_us=50.0, i0=1.25, v0=0.5,
                    bias_ticks=(100,)),
        LayerConfig(codes=rng.integers(-20, 21, (hidden + 1, 3)).astype(np.int8), w_range=4, tau_us=50.0, i0=1.25,
                    v0=0.5, bias_ticks=(100,))))


@pytest.mark.parametrize("die", [(0.05, 0.01), (0.0, 0.0), (0.05, 0.0), (0.0, 0.01)],
                         ids=["default", "ideal", "mismatch-only", "noise-only"])
def test_whole_runs_agree_tick_for_tick_but_at_bin_edges(die):
    rng = np.random.default_rng(5)
    cfg = bench_sized_config(rng)
    x = rng.integers(0, 500, (300, 4)).astype(np.uint16)
    x[rng.random(x.shape) < 0.05] = NO_SPIKE
    out = {}
    for engine in ("numpy", "numba"):
        core = AnalogCore(SPEC, 1, *die, engine=engine)
        core.configure(cfg)
        out[engine] = core.run(x, 10, 250)  # samples 250..549: three noise blocks
    a, b = out["numpy"].astype(int), out["numba"].astype(int)
    fired = a != NO_SPIKE
    assert 0.3 < fired.mean() < 1.0  # a mix of spiking and silent neurons
    differ = a != b
    # a tick differs only where a spike time sits within the tolerance of a TDC bin edge
    # (15000 times in all; the chance of one at 1e-7 of the trial is ~1e-3 per time)
    assert differ.sum() <= 3, np.argwhere(differ)[:5]
    assert (np.abs(a - b)[differ & fired & (b != NO_SPIKE)] == 1).all()


def test_kernel_results_do_not_depend_on_the_chunking():
    rng = np.random.default_rng(9)
    cfg = bench_sized_config(rng, hidden=30)
    x = rng.integers(0, 500, (100, 4)).astype(np.uint16)
    core = AnalogCore(SPEC, 7, 0.05, 0.01, engine="numba")
    core.configure(cfg)
    whole = core.run(x, 3, 200)
    core.configure(cfg)  # a fresh noise cache: every chunk draws what it needs
    parts = [core.run(x[a:b], 3, 200 + a) for a, b in ((0, 16), (16, 56), (56, 100))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_sincos_is_float64_accurate():
    # within a few ulp of x itself (the two-part pi/2 reduction rounds at that level)
    x = np.concatenate([np.linspace(-60, 60, 28571), [0.0, -0.0, math.pi / 4, -math.pi / 2, math.pi, 1e-300]])
    got = np.array([_kernel.sincos(v) for v in x])
    err = np.abs(got - np.stack([np.sin(x), np.cos(x)], 1)).max(axis=1)
    bound = 4 * np.finfo(float).eps * np.maximum(1.0, np.abs(x))
    assert (err <= bound).all(), (x[err > bound][:5], err[err > bound][:5])
    assert err[np.abs(x) <= 2 * math.pi].max() < 5e-16


def test_an_unknown_engine_is_refused_by_name():
    with pytest.raises(ValueError, match="expected one of auto, numba, numpy"):
        AnalogCore(SPEC, 1, 0.05, 0.01, engine="fast")
    core = AnalogCore(SPEC, 1, 0.05, 0.01)
    assert core.engine == "auto" and set(ENGINES) == {"auto", "numba", "numpy"}
    core.configure(bench_sized_config(np.random.default_rng(0), hidden=4))
    with pytest.raises(ValueError, match="integrator engine 'gpu'"):
        core.integrate_layer(np.zeros((1, 5)), core._layers[0], 10.0, engine="gpu")


@pytest.mark.parametrize("blocks_kept", [1.5, 2.5, 0.5])
def test_a_small_noise_cache_changes_no_result(blocks_kept):
    """Blocks dropped to make room (their buffers reused for later blocks) or drawn
    segment by segment when none fits: the same numbers as a cache that keeps all."""
    rng = np.random.default_rng(4)
    cfg = bench_sized_config(rng, hidden=20)
    x = rng.integers(0, 500, (700, 4)).astype(np.uint16)
    chunks, a, size = [], 0, 16
    while a < len(x):
        chunks.append((a, min(len(x), a + size)))
        a, size = chunks[-1][1], min(4 * size, AnalogCore.BLOCK)
    out = {}
    for name, budget in (("all", 1 << 40), ("small", None)):
        core = AnalogCore(SPEC, 2, 0.05, 0.01, engine="numba")
        core.configure(cfg)
        n_steps = math.ceil(cfg.trial_ticks * LSB / (50.0 / SPEC.steps_per_tau))
        core.NOISE_CACHE_BYTES = budget or int(blocks_kept * n_steps * core.BLOCK * 20 * 4)
        out[name] = np.concatenate([core.run(x[a:b], 6, 30 + a) for a, b in chunks])
    np.testing.assert_array_equal(out["small"], out["all"])
    assert (out["all"] != NO_SPIKE).mean() > 0.3


def test_the_emulator_takes_its_integrator_on_the_command_line():
    import os
    import socket

    from hwloop.firmware_models.qif_chip import emulator
    from hwloop.firmware_models.qif_chip.firmware import Firmware
    from hwloop.firmware_models.wire.transport import FdTransport

    assert emulator.build_parser().parse_args([]).engine == "auto"
    assert emulator.build_parser().parse_args(["--engine", "numpy"]).engine == "numpy"
    with pytest.raises(SystemExit):
        emulator.build_parser().parse_args(["--engine", "gpu"])
    a, b = socket.socketpair()
    fd = os.dup(a.fileno())
    try:
        fw = Firmware(FdTransport(fd), spec=SPEC, chip_id=1, mismatch=0.05, noise=0.01, engine="numpy")
        assert fw.core.engine == "numpy"
    finally:
        os.close(fd)
        a.close()
        b.close()


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_an_empty_batch_gives_an_empty_result(engine):
    core = AnalogCore(SPEC, 1, 0.05, 0.01, engine=engine)
    core.configure(bench_sized_config(np.random.default_rng(0), hidden=8))
    out = core.run(np.zeros((0, 4), np.uint16), 1, 0)
    assert out.shape == (0, 11) and out.dtype == np.uint16
