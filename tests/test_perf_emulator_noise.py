"""The emulator draws its temporal noise in segments and keeps a block's noise
for the later chunks of the same run (issue #18 item 2), without changing it:
the numbers are those of one (BLOCK, n_out) draw per block and step, as
before, and a run cut into chunks gives what one call gives."""

from __future__ import annotations

import numpy as np
import pytest

from hwloop.firmware_models.qif_chip.core import AnalogCore
from hwloop.firmware_models.qif_chip.spec import DEFAULT_SPEC
from hwloop.firmware_models.wire.messages import ChipConfig, LayerConfig


def per_step_reference(chip_id, seed, first, n, layer, n_out, n_steps, B):
    """The stream as the emulator drew it before: one call per block and step."""
    blocks = range(first // B, (first + n - 1) // B + 1)
    gens = [np.random.default_rng([chip_id & 0xFFFFFFFF, seed, layer, k]) for k in blocks]
    lo = first - blocks[0] * B
    for _ in range(n_steps):
        yield np.concatenate([g.standard_normal((B, n_out), dtype=np.float32) for g in gens])[lo:lo + n]


@pytest.mark.parametrize("cache", [True, False], ids=["kept", "rolling"])
@pytest.mark.parametrize("first,n", [(0, 50), (250, 20), (100, 300)])
def test_noise_is_the_per_step_stream(cache, first, n):
    core = AnalogCore(DEFAULT_SPEC, 0x5EED, 0.05, 0.01)
    core._noise_cache = {}
    if not cache:
        core.NOISE_CACHE_BYTES = 0
    got = [z.copy() for z in core._noise_source(77, first, n, 1, 9, 40)]  # views of a reused buffer
    want = list(per_step_reference(0x5EED, 77, first, n, 1, 9, 40, core.BLOCK))
    assert len(got) == len(want) == 40
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"step {k}")


def test_a_run_in_chunks_equals_one_call_and_draws_a_block_once(monkeypatch):
    rng = np.random.default_rng(0)
    cfg = ChipConfig(n_inputs=4, trial_ticks=400, layers=(
        LayerConfig(codes=rng.integers(-31, 32, (5, 40)).astype(np.int8), w_range=3, tau_us=20.0, i0=1.25, v0=0.5,
                    bias_ticks=(30,)),
        LayerConfig(codes=rng.integers(-31, 32, (41, 3)).astype(np.int8), w_range=3, tau_us=20.0, i0=1.25, v0=0.5,
                    bias_ticks=(20,))))
    x = rng.integers(0, 200, (60, 4)).astype(np.uint16)
    one = AnalogCore(DEFAULT_SPEC, 3, 0.05, 0.02)
    one.configure(cfg)
    whole = one.run(x, 11, 0)
    cut = AnalogCore(DEFAULT_SPEC, 3, 0.05, 0.02)
    cut.configure(cfg)
    made = []
    real = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda *a, **k: made.append(a) or real(*a, **k))
    parts = [cut.run(x[:16], 11, 0)]
    first = len(made)
    parts.append(cut.run(x[16:], 11, 16))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert (whole != 0xFFFF).any() and (whole == 0xFFFF).any()
    assert first == 2 and len(made) == first  # one generator per layer's block, none again for the second chunk
