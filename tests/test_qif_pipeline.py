"""Protocol 1.5: the host sends its next RUN while the last one streams and the
chip queues it (and computes its first chunk while the last chunk streams).
The results must be those of one RUN at a time, sample for sample, on a clean
line and through the fault-injecting proxy; a 1.4 host is not pipelined."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwloop.backends.base import parse_target
from hwloop.backends.qif import QifSerialBackend
from hwloop.firmware_models.wire import messages as M
from linkproxy import LinkProxy
from test_qif_chip_link import same, small_net  # the link tests' network and comparison

PER_RUN = 40  # samples per RUN the host is told the chip buffers: 300 samples make 8 RUNs


@pytest.fixture(scope="module")
def rig():
    proxy = LinkProxy(["--chip-id", "0x5EED", "--baud", "0"], seed=2)
    url = f"qif://{proxy.host_path}?ack_timeout=0.08&timeout=1.0&frame=256&retries=15&recoveries=12&connect_timeout=5"
    be = QifSerialBackend(parse_target(url))
    be.load(small_net())
    x = np.random.default_rng(3).uniform(0, 1.5, (300, 4))
    yield proxy, be, x
    be.close()
    proxy.close()


def run(be, x, minor):
    c = be.client
    c.hello_minor = minor
    c.connect()
    c.info = dataclasses.replace(c.info, max_batch=PER_RUN)
    queued = c.events["runs_queued"]
    be.run_index = 0  # the same run seed every time
    m = be.run(x)
    return m, c.events["runs_queued"] - queued


def test_pipelined_runs_give_the_results_of_one_run_at_a_time(rig):
    proxy, be, x = rig
    one_at_a_time, q_old = run(be, x, 4)
    piped, q_new = run(be, x, M.PROTOCOL_MINOR)
    assert q_old == 0 and q_new == 300 // PER_RUN  # a 1.4 host sends nothing ahead; 1.5 every next RUN
    assert piped.info["recoveries"] == 0 and one_at_a_time.info["recoveries"] == 0
    assert same(piped, one_at_a_time)
    assert 0.3 < np.isfinite(piped.times[0]).mean() <= 1.0  # the comparison saw spikes


def test_pipelined_runs_survive_a_noisy_line(rig):
    proxy, be, x = rig
    clean, _ = run(be, x, M.PROTOCOL_MINOR)
    proxy.set_faults(ber=3e-4)
    try:
        noisy, queued = run(be, x, M.PROTOCOL_MINOR)
    finally:
        proxy.set_faults()
    assert queued > 0
    assert same(noisy, clean)
    link = be.client.link.stats
    assert link["retransmits"] + link["frame_errors"] > 0  # the faults did hit
