"""Helpers for tests that hold two session directories to the same result
(resume, sweeps): every log row but its timings, and the weights of the
current and the selected network."""

import json
from pathlib import Path

import numpy as np

from hwloop.network import Network

#: log fields that measure time, not the session's result
TIMING = {"seconds", "target_seconds", "host_seconds", "io_seconds", "deploy_seconds"}


def rows(d):
    """The session's log rows without their timings."""
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (Path(d) / "log.jsonl").read_text().splitlines()]


def assert_same_session(a, b):
    """Sessions ``a`` and ``b`` ended alike: network.hwnet and best.hwnet weights bit for bit, and
    every log row once, with the same losses, accuracies and learning rates."""
    for name in ("network.hwnet", "best.hwnet"):
        for x, y in zip(Network.load(Path(a) / name).weights(), Network.load(Path(b) / name).weights()):
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert rows(a) == rows(b)
