"""The two numba kernels of `bitexact`'s first-spike-time core (the block
kernel, SIMD over the live neurons of several samples in float64 lanes, and
the one-neuron-at-a-time kernel, integer) against the numpy reference, each
forced on every layer, over random configs (hypothesis): batches that are not
a multiple of the block, wide layers (slots fire and are compacted, neurons
are pruned), constant biases (the clipped path), negative weight exponents,
and 1 to 3 threads. `tests/test_loihi_bitexact.py` checks the default choice
against Lava itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwloop.firmware_models.loihi import CoreConfig, CoreLayer, clip_and_truncate_weights, numba_available, simulate

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")


@st.composite
def wide_core(draw):
    """One or two layers, up to 140 neurons fed by 1-8 sources (the block
    kernel's case), biases constant or spiking."""
    steps = draw(st.integers(8, 120))
    n_src = draw(st.integers(1, 8))
    layers = []
    for _ in range(draw(st.integers(1, 2))):
        n_out = draw(st.integers(1, 140))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        n_bias = int(rng.integers(0, 3))
        const = draw(st.booleans())
        layers.append(CoreLayer(
            weight=clip_and_truncate_weights(rng.integers(-300, 300, (n_src, n_out))),
            weight_exp=draw(st.integers(-8, 7)), du=draw(st.integers(0, 4095)), dv=draw(st.integers(0, 4095)),
            vth=int(min(2**17 - 1, 2 ** draw(st.floats(0, 17)) // 1)),
            bias_weight=clip_and_truncate_weights(rng.integers(-300, 300, (n_bias, n_out))),
            bias_steps=rng.integers(-2, steps + 2, n_bias),
            bias_mant=rng.integers(-4096, 4096, n_out) if const else 0,
            bias_exp=rng.integers(0, 8, n_out) if const else 0,
        ))
        n_src = n_out
    return CoreConfig(tuple(layers), steps)


def _run(config: CoreConfig, x: np.ndarray, kind: str) -> list[np.ndarray]:
    from hwloop.firmware_models.loihi.core import _layer_numba

    cur = np.where((x >= 0) & (x < config.steps), x, config.steps).astype(np.int64)
    outs = []
    for layer in config.layers:
        o = _layer_numba(layer, cur, config.steps, kind=kind)
        outs.append(o)
        cur = np.where(o >= 0, o, config.steps)
    return outs


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=wide_core(), batch=st.integers(1, 45), seed=st.integers(0, 2**31), threads=st.integers(1, 3))
def test_both_kernels_equal_the_numpy_reference(config, batch, seed, threads):
    from hwloop.firmware_models.loihi import _numba_kernel as K

    rng = np.random.default_rng(seed)
    x = rng.integers(-1, config.steps + 1, (batch, config.n_in))
    x[rng.random(x.shape) < 0.2] = config.steps
    ref = simulate(config, x, engine="numpy")
    real = K.num_threads
    K.num_threads = lambda: threads
    try:
        for kind in ("block", "neuron"):
            for layer, (a, b) in enumerate(zip(ref, _run(config, x, kind))):
                np.testing.assert_array_equal(a, b, err_msg=f"{kind} kernel, layer {layer}, {threads} threads")
    finally:
        K.num_threads = real


def test_the_yinyang_layers_agree_and_spike():
    # the shipped network: every neuron of both layers, both kernels, a batch of 300
    from hwloop.backends import open_target
    from hwloop.network import Network
    from hwloop.pretrained import path

    net = Network.load(path("yinyang-lif.hwnet"))
    with open_target("bitexact?steps=100") as be:
        compiled = be.load(net)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (300, 2))
    k_in = compiled.to_steps(net.encoding.encode(np.concatenate([x, 1 - x], axis=1)))
    ref = simulate(compiled.core, k_in, engine="numpy")
    for kind in ("block", "neuron"):
        for layer, (a, b) in enumerate(zip(ref, _run(compiled.core, k_in, kind))):
            np.testing.assert_array_equal(a, b, err_msg=f"{kind} kernel, layer {layer}")
    assert (ref[0] >= 0).mean() > 0.5 and (ref[1] >= 0).mean() > 0.5  # the comparison saw spikes


def test_an_unknown_kernel_kind_is_refused():
    from hwloop.firmware_models.loihi.core import _layer_numba

    layer = CoreLayer(weight=np.zeros((2, 3), np.int32), weight_exp=0, du=1, dv=1, vth=10)
    with pytest.raises(ValueError, match="unknown kernel kind"):
        _layer_numba(layer, np.zeros((4, 2), np.int64), 10, kind="dense")


def test_spike_steps_become_the_same_times_by_lookup():
    # LoihiCompiled.to_times looks a batch up in a table: the values of the formula, bit for bit
    from hwloop.backends import open_target
    from hwloop.network import Network
    from hwloop.pretrained import path

    with open_target("bitexact?steps=100") as be:
        c = be.load(Network.load(path("yinyang-lif.hwnet")))
    k = np.random.default_rng(1).integers(-1, c.steps, (50, 7))
    want = np.where(k >= 0, (k + 0.5) * c.dt, np.inf)
    got = c.to_times(k)
    assert got.dtype == np.float64 and got.shape == k.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(c.to_times(np.array([c.steps + 3, -5])), [(c.steps + 3.5) * c.dt, np.inf])


def test_a_current_more_than_one_wrap_out_of_range_wraps_again_on_later_steps():
    """60 sources of weight -256 at exponent 7 in one step put u ~13 wraps below the
    24-bit range; Lava (and the reference) wrap u once per step, so u comes back into
    range six steps later and later input makes the neuron fire. A kernel that wraps
    only on input steps, or prunes a neuron whose u is still out of range, never fires
    it (found by hypothesis in CI on the first version of the block kernel)."""
    n_src, n_out, steps = 68, 4, 24
    w = np.full((n_src, n_out), -256, dtype=np.int32)
    w[-8:, :] = 254
    layer = CoreLayer(weight=w, weight_exp=7, du=0, dv=0, vth=1, bias_weight=np.zeros((0, n_out), np.int32),
                      bias_steps=np.zeros(0, np.int64), bias_mant=0, bias_exp=0)
    config = CoreConfig((layer,), steps)
    x = np.full((3, n_src), steps)
    x[:, :60] = 0
    x[:, 60:] = [[3], [9], [15]]
    (ref,) = simulate(config, x, engine="numpy")
    assert ref.tolist() == [[7] * 4, [10] * 4, [16] * 4]  # fires: the wraps brought u back
    for kind in ("block", "neuron"):
        (got,) = _run(config, x, kind)
        np.testing.assert_array_equal(got, ref, err_msg=f"{kind} kernel")
