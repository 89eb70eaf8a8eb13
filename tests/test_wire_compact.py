"""Protocol 1.3: RESULT_COMPACT, only the fired neurons' ticks (issue #18 item 2).

The encoding round-trips whatever the spikes, is the smaller of its two forms
(bitmap + ticks, or (index, tick) pairs) byte for byte as `compact_sizes`
says, refuses malformed payloads with a `ProtocolError`, and the firmware
sends it only to a host that asked for 1.3: a 1.2 host gets the plain RESULT,
with the same ticks. (1.0 hosts and chips against this tree:
`test_link_versions.py`.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwloop.backends import open_target
from hwloop.firmware_models.qif_chip.firmware import compact_pieces
from hwloop.firmware_models.wire import messages as M
from hwloop.firmware_models.wire.errors import ProtocolError
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding


def random_ticks(seed: int, n: int, m: int, p_fire: float, top: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, top + 1, (n, m)).astype(np.uint16)
    t[rng.random((n, m)) >= p_fire] = M.NO_SPIKE
    return t


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 40), m=st.integers(1, 300),
       p_fire=st.sampled_from([0.0, 0.01, 0.05, 0.3, 0.52, 1.0]), top=st.sampled_from([0, 1, 523, 4095, M.MAX_TICK]))
def test_compact_round_trips_and_is_the_smaller_encoding(seed, n, m, p_fire, top):
    t = random_ticks(seed, n, m, p_fire, top)
    p = M.pack_result_compact(1234, t)
    first, back = M.unpack_result_compact(p)
    assert first == 1234 and back.dtype == np.uint16
    np.testing.assert_array_equal(back, t)
    fired = t[t != M.NO_SPIKE]
    sizes = M.compact_sizes(n, m, fired.size, int(fired.max(initial=0)))
    assert len(p) == min(sizes.values()) and sizes[p[8]] == len(p)
    assert len(p) <= M.COMPACT_HEADER + 2 * n * m  # never more than the 1.2 RESULT but for its header


def test_the_firmware_picks_pairs_for_sparse_and_the_bitmap_for_dense_replies():
    sparse = M.pack_result_compact(0, random_ticks(0, 16, 123, 0.02, 523))
    dense = M.pack_result_compact(0, random_ticks(0, 16, 123, 0.52, 523))
    full = M.pack_result_compact(0, random_ticks(0, 16, 123, 1.0, M.MAX_TICK))
    assert [M.ENC_NAMES[p[8]] for p in (sparse, dense, full)] == ["pairs", "bitmap", "dense"]
    # the Yin-Yang case of the issue: half the hidden layer fires, 10-bit ticks
    t = random_ticks(1, 50, 123, 0.52, 523)
    assert len(M.pack_result_compact(0, t)) < 0.45 * len(M.pack_result(0, t))


@pytest.mark.parametrize("p_fire,top", [(0.03, 900), (0.6, 900), (1.0, M.MAX_TICK)], ids=["pairs", "bitmap", "dense"])
def test_malformed_compact_payloads_are_protocol_errors(p_fire, top):
    good = M.pack_result_compact(5, random_ticks(2, 8, 40, p_fire, top))
    bad = [good[:10], good[:-1], good + b"\0", good[:8] + b"\x07" + good[9:],  # truncated, trailing, bad encoding
           good[:9] + b"\x11" + good[10:],  # 17-bit ticks
           good[:10] + (10**6).to_bytes(4, "little") + good[14:]]  # more spikes than neurons
    for p in bad:
        with pytest.raises(ProtocolError):
            M.unpack_result_compact(p)


def test_compact_pieces_fill_frames_and_cover_the_block():
    for seed, p_fire in ((0, 0.52), (1, 0.02), (2, 1.0)):
        res = random_ticks(seed, 256, 123, p_fire, 1500)
        pieces = compact_pieces(res, 1024)
        assert pieces[0][0] == 0 and pieces[-1][1] == 256
        assert all(a < b and b == c for (a, b), (c, _) in zip(pieces, pieces[1:]))
        sizes = [len(M.pack_result_compact(0, res[a:b])) for a, b in pieces]
        assert max(sizes) <= 1024
        assert sum(sizes[:-1]) / (len(sizes) - 1) > 0.85 * 1024  # full frames, not a sample per frame


QIF = NeuronParams(model="qif", tau_syn=1.0, tau_mem=1.0, threshold=1.0, options={"i0": 1.25, "v0": 0.5})


def small_net():
    rng = np.random.default_rng(0)
    return Network(layers=(Layer(rng.normal(0, 0.6, (5, 30)), QIF, bias_times=(0.3,)),
                           Layer(rng.normal(0, 0.6, (31, 3)), QIF, bias_times=(0.1,))),
                   encoding=InputEncoding(n_features=4), decoding=OutputDecoding(classes=("a", "b", "c")), t_max=3.0)


def test_a_1_2_host_gets_plain_results_and_a_1_3_host_compact_ones_with_the_same_ticks():
    x = np.random.default_rng(3).uniform(0, 1.5, (120, 4))
    with open_target("qif-emu?baud=0") as board:  # default mismatch and noise
        prog = board.load(small_net())
        ticks = prog.input_ticks(x)
        client = board.client
        seen = []
        recv = client.link.recv

        def spy(timeout):
            m = recv(timeout)
            if m is not None:
                seen.append(m.type)
            return m

        client.link.recv = spy
        assert client.info.protocol == "1.5"
        new, st_new = client.run(ticks, sum(prog.sizes), 77)
        got_new = set(seen)
        seen.clear()
        client.request(M.HELLO, M.pack_hello(M.PROTOCOL_VERSION, 1024, 2), (M.HELLO_REPLY,))  # now a 1.2 host
        old, st_old = client.run(ticks, sum(prog.sizes), 77)
        got_old = set(seen)
    assert M.RESULT_COMPACT in got_new and M.RESULT not in got_new
    assert M.RESULT in got_old and M.RESULT_COMPACT not in got_old
    np.testing.assert_array_equal(new, old)
    assert (new != M.NO_SPIKE).any() and (new == M.NO_SPIKE).any()
    assert st_new["result_bytes"] < 0.8 * st_old["result_bytes"] and st_old["result_bytes"] == 2 * new.size
