"""The `bitexact` kernel starts no OpenMP pool (issue #18 item 4).

numba's parallel loops used to start numba's OpenMP pool, whose spinning
workers then slowed every 2-thread torch op of the process ~25x. The kernel
now splits the batch over plain Python threads; these tests check the
behaviour that guarantees it (the speed itself is measured by
``bench/bench_threads.py``, not here), and that the split changes nothing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hwloop.firmware_models.loihi import CoreConfig, CoreLayer, numba_available, simulate

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")


def _config(seed: int, n_in=5, sizes=(40, 3), steps=60) -> CoreConfig:
    rng = np.random.default_rng(seed)
    layers, n_src = [], n_in
    for n in sizes:
        layers.append(CoreLayer(weight=rng.integers(-120, 120, (n_src, n)), weight_exp=0, du=300, dv=200,
                                vth=int(rng.integers(100, 2000)), bias_weight=rng.integers(-50, 80, (1, n)),
                                bias_steps=np.array([3]), bias_mant=np.zeros(n, np.int64), bias_exp=np.zeros(n, np.int64)))
        n_src = n
    return CoreConfig(tuple(layers), steps)


def _run_py(code: str, timeout: float = 240) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_a_bitexact_run_after_importing_torch_starts_no_numba_pool():
    # torch first, as a user's script might; then a batch big enough to use every thread
    last = _run_py("""
        import torch
        torch.set_num_threads(2)
        import numpy as np, numba
        from hwloop.backends import open_target
        from hwloop.pretrained import path
        import hwloop
        net = hwloop.load(path("yinyang-lif.hwnet"))
        with open_target("bitexact") as be:
            be.load(net)
            be.run(np.random.default_rng(0).uniform(0, 1, (256, 4)))
        from hwloop.firmware_models.loihi import _numba_kernel as K
        assert K._pool is not None, "the batch was not split over threads"
        try:
            layer = numba.threading_layer()
        except ValueError:
            layer = "none"
        print(layer)
    """)
    assert last == "none", f"numba's parallel pool started ({last} threading layer)"


def test_results_do_not_depend_on_the_thread_count():
    from hwloop.firmware_models.loihi import _numba_kernel as K

    cfg = _config(3)
    x = np.random.default_rng(4).integers(0, cfg.steps, (97, cfg.n_in))
    ref = simulate(cfg, x, engine="numpy")
    real = K.num_threads
    try:
        for k in (1, 2, 3, 7):
            K.num_threads = lambda k=k: k
            got = simulate(cfg, x, engine="numba")
            for layer, (a, b) in enumerate(zip(ref, got)):
                np.testing.assert_array_equal(a, b, err_msg=f"{k} threads, layer {layer}")
    finally:
        K.num_threads = real
    assert any((o >= 0).any() for o in ref)  # the comparison saw spikes


def test_a_forked_child_runs_the_kernel():
    # the parent's thread pool does not survive fork; the child must make its own, not hang
    last = _run_py("""
        import os, signal, numpy as np
        from hwloop.firmware_models.loihi import CoreConfig, CoreLayer, simulate
        from hwloop.firmware_models.loihi import _numba_kernel as K
        K.num_threads = lambda: 2
        rng = np.random.default_rng(0)
        cfg = CoreConfig((CoreLayer(weight=rng.integers(-100, 100, (4, 20)), weight_exp=0, du=300, dv=200, vth=500),), 40)
        x = rng.integers(0, 40, (64, 4))
        ref = simulate(cfg, x)[0]
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)
            ok = np.array_equal(simulate(cfg, x)[0], ref)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    assert last == "0"
