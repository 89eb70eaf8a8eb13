"""The chip behind a damaged serial link: bit flips, dropped and duplicated
bytes, truncated frames, the chip restarting mid-batch. The host must get
exactly the results of a clean link, every wait must be bounded, and when
the link is beyond repair the error must say what happened.

One emulator (behind `linkproxy.LinkProxy`) serves the whole module, unpaced
(baud 0) and with short timeouts so the module stays fast; the same faults at
the default options and the paced 921 600 baud line are in
`test_link_defaults.py`."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hwloop.backends.base import parse_target
from hwloop.backends.qif import QifSerialBackend
from hwloop.errors import TargetError
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

from linkproxy import LinkProxy

QIF = NeuronParams(model="qif", tau_syn=1.0, tau_mem=1.0, threshold=1.0, options={"i0": 1.25, "v0": 0.5})


def small_net(seed=0):
    rng = np.random.default_rng(seed)
    return Network(
        layers=(Layer(rng.normal(0, 0.6, (5, 20)), QIF, bias_times=(0.3,)), Layer(rng.normal(0, 0.6, (21, 3)), QIF, bias_times=(0.1,))),
        encoding=InputEncoding(n_features=4), decoding=OutputDecoding(classes=("a", "b", "c")), t_max=3.0,
    )


@pytest.fixture(scope="module")
def rig():
    # default mismatch and noise: recovery must reproduce the noise too
    proxy = LinkProxy(["--chip-id", "0x5EED", "--baud", "0"], seed=1)
    url = f"qif://{proxy.host_path}?ack_timeout=0.08&timeout=1.0&frame=256&retries=15&recoveries=6&connect_timeout=5"
    be = QifSerialBackend(parse_target(url))
    be.load(small_net())
    x = np.random.default_rng(3).uniform(0, 1.5, (160, 4))
    be.run_index = 0
    clean = be.run(x)
    yield proxy, be, x, clean
    be.close()
    proxy.close()


def replay(be, x):
    be.run_index = 0  # same run seed as the clean reference
    return be.run(x)


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.times, b.times))


def test_clean_link_is_clean_and_results_are_plausible(rig):
    proxy, be, x, clean = rig
    assert clean.info["recoveries"] == 0
    assert [t.shape for t in clean.times] == [(160, 20), (160, 3)]
    assert 0.3 < np.isfinite(clean.times[0]).mean() <= 1.0
    assert same(replay(be, x), clean)  # the chip itself is deterministic per run seed


def test_bit_flips_are_repaired(rig):
    proxy, be, x, clean = rig
    proxy.set_faults(ber=2e-4)
    try:
        before = be.client.link.stats["retransmits"] + be.client.link.stats["frame_errors"]
        m = replay(be, x)
    finally:
        proxy.set_faults()
    assert same(m, clean)
    assert be.client.link.stats["retransmits"] + be.client.link.stats["frame_errors"] > before


def test_dropped_and_duplicated_bytes_are_repaired(rig):
    proxy, be, x, clean = rig
    proxy.set_faults(p_drop=1e-3, p_dup=1e-3)
    try:
        m = replay(be, x)
    finally:
        proxy.set_faults()
    assert same(m, clean)


def test_truncated_frames_are_repaired(rig):
    proxy, be, x, clean = rig
    proxy.set_faults(p_truncate=0.05)  # about one frame in four cut short
    try:
        errors_before = be.client.link.stats["frame_errors"]
        m = replay(be, x)
    finally:
        proxy.set_faults()
    assert same(m, clean)
    assert be.client.link.stats["frame_errors"] > errors_before


def test_chip_restart_mid_batch_is_survived(rig):
    proxy, be, x, clean = rig
    restarts = proxy.restarts
    proxy.restart_after(3000)  # the result stream of this batch is ~7.4 kB
    m = replay(be, x)
    assert proxy.restarts == restarts + 1
    assert same(m, clean)
    assert m.info["recoveries"] >= 1
    assert be.client.events["chip_restarts"] >= 1 and be.client.events["reconfigured"] >= 1


def test_dead_link_fails_in_bounded_time_and_says_why(rig):
    proxy, be, x, clean = rig
    proxy.set_faults(blackhole=True)
    client = be.client
    saved = client.max_recoveries, client.connect_timeout
    client.max_recoveries, client.connect_timeout = 2, 1.0
    t0 = time.monotonic()
    try:
        with pytest.raises(TargetError) as info:
            replay(be, x[:10])
    finally:
        proxy.set_faults()
        client.max_recoveries, client.connect_timeout = saved
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    # a chip that does not answer a whole handshake window is gone: no further recoveries are tried
    assert "gave up at sample 0 of 10: the chip did not answer a handshake within 1 s" in msg and "\n" not in msg
    assert "no ACK for RUN frame" in msg or "still unacknowledged: the chip is not receiving" in msg
    # bound: the link's silence (16 tries of 0.08 s) or the reply timeout (1 s), then one 1 s handshake
    # window, plus slack for a loaded machine
    assert elapsed < 16 * 0.08 + 1.0 + 2
    # and the link works again afterwards
    assert same(replay(be, x), clean)
