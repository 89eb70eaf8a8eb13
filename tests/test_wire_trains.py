"""Protocol 1.4, the spike-train messages: round trips, malformed payloads
refused with a ProtocolError, replies cut to frame size, and spike-train
traffic over a damaged link giving exactly the results of a clean one."""

from __future__ import annotations

import numpy as np
import pytest

from hwloop.backends.base import parse_target
from hwloop.backends.qif import QifSerialBackend
from hwloop.firmware_models.qif_chip.firmware import Firmware
from hwloop.firmware_models.qif_chip.spec import DEFAULT_SPEC
from hwloop.firmware_models.wire import messages as M
from hwloop.firmware_models.wire.errors import ChipLimitError, ProtocolError
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

from linkproxy import LinkProxy


def tcfg(rng, rec=True):
    L0 = M.TrainLayerConfig(codes=rng.integers(-31, 32, (6, 9)).astype(np.int8), w_range=3, tau_us=10.0,
                            syn_tau_us=float("inf"), i0=0.1, v_peak=4.0, v_reset=-0.25, v_init=0.11, refractory=2,
                            rec_codes=rng.integers(-31, 32, (9, 9)).astype(np.int8) if rec else None, rec_range=1 if rec else 0)
    L1 = M.TrainLayerConfig(codes=rng.integers(-31, 32, (9, 3)).astype(np.int8), w_range=0, tau_us=5.0, syn_tau_us=2.5,
                            i0=0.0, v_peak=2.0, v_reset=-1.0, spiking=False)
    return M.TrainsConfig(n_inputs=6, n_steps=50, step_ticks=10, substeps=8, probe_period=3, layers=(L0, L1))


def same_cfg(a: M.TrainsConfig, b: M.TrainsConfig) -> bool:
    if (a.n_inputs, a.n_steps, a.step_ticks, a.substeps, a.probe_period) != (b.n_inputs, b.n_steps, b.step_ticks, b.substeps, b.probe_period):
        return False
    for x, y in zip(a.layers, b.layers, strict=True):
        for f in x.__dataclass_fields__:
            u, v = getattr(x, f), getattr(y, f)
            if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
                if (u is None) != (v is None) or not np.array_equal(u, v):
                    return False
            elif isinstance(u, float):
                if np.float32(u) != np.float32(v):  # floats cross the wire as float32
                    return False
            elif u != v:
                return False
    return True


@pytest.mark.parametrize("rec", [True, False])
def test_train_config_round_trips(rec):
    cfg = tcfg(np.random.default_rng(0), rec)
    p = cfg.pack()
    assert same_cfg(M.TrainsConfig.unpack(p), cfg)
    for cut in (3, len(p) - 1):
        with pytest.raises(ProtocolError):
            M.TrainsConfig.unpack(p[:cut])
    with pytest.raises(ProtocolError, match="trailing"):
        M.TrainsConfig.unpack(p + b"\0")


def test_raster_events_round_trip_with_repeated_spikes():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 3, (40, 7, 5)) * (rng.random((40, 7, 5)) < 0.2)
    r[:, 3] = 0  # a silent sample
    counts, idx = M.raster_events(r)
    assert counts[3] == 0 and counts.sum() == r.sum()
    assert np.array_equal(M.events_raster(counts, idx, 40, 5), r)
    p = M.pack_run_trains(7, 100, 5, 40, counts, idx, probe_mask=0b10)
    seed, first, k, steps, c2, i2, mask = M.unpack_run_trains(p)
    assert (seed, first, k, steps, mask) == (7, 100, 5, 40, 0b10)
    assert np.array_equal(c2, counts) and np.array_equal(i2, idx)
    ev = M.pack_train_events(5, 5, 40, counts, idx)
    first, m, steps, c3, i3 = M.unpack_train_events(ev)
    assert (first, m, steps) == (5, 5, 40) and np.array_equal(c3, counts) and np.array_equal(i3, idx)
    assert len(ev) == M.train_events_bytes(counts, 5, 40)
    # sparse: far smaller than a dense u8 raster
    assert len(ev) < r.size / 3


def test_malformed_event_payloads_are_refused():
    counts = np.array([2, 1])
    idx = np.array([3, 9, 4])
    good = M.pack_train_events(0, 4, 5, counts, idx)
    M.unpack_train_events(good)
    with pytest.raises(ProtocolError, match="ascending"):
        M.unpack_train_events(M.pack_train_events(0, 4, 5, counts, np.array([9, 3, 4])))
    with pytest.raises(ProtocolError, match="beyond"):
        M.unpack_train_events(M.pack_train_events(0, 2, 5, counts, np.array([3, 12, 4])))  # 2 x 5 slots
    with pytest.raises(ProtocolError):
        M.unpack_train_events(good[:-1])
    with pytest.raises(ProtocolError, match="trailing"):
        M.unpack_train_events(good + b"\0")
    bad = bytearray(good)
    bad[M.TRAIN_EVENTS_HEADER - 4] += 1  # the header's event total
    with pytest.raises(ProtocolError):
        M.unpack_train_events(bytes(bad))
    with pytest.raises(ProtocolError, match="flags"):
        p = bytearray(M.pack_run_trains(0, 0, 4, 5, counts, idx))
        p[14] = 0x80
        M.unpack_run_trains(bytes(p))


@pytest.mark.parametrize("bits", [8, 6, 10])
def test_probe_codes_round_trip(bits):
    rng = np.random.default_rng(2)
    c = rng.integers(0, 1 << bits, (3, 17, 5))
    p = M.pack_probe_codes(9, c, bits, 0b11)
    assert len(p) == M.probe_codes_bytes(3, 17, 5, bits)
    first, mask, c2 = M.unpack_probe_codes(p)
    assert first == 9 and mask == 3 and np.array_equal(c2, c)
    with pytest.raises(ProtocolError):
        M.unpack_probe_codes(p[:-1])


def test_hello_reply_1_4_carries_the_train_limits_and_is_checked():
    fw = Firmware.__new__(Firmware)  # info() only needs the spec and identity
    fw.spec, fw.chip_id, fw.boot_id, fw.config_crc, fw.baud = DEFAULT_SPEC, 3, 9, 0, 0
    fw.link = type("L", (), {"max_payload": 1024})()
    info = fw.info()
    back = M.ChipInfo.unpack(info.pack()).validate()
    for f in M.ChipInfo._TRAIN_FIELDS:
        assert np.float32(getattr(back, f)) == np.float32(getattr(info, f)), f
    assert back.has_trains and back.adc_bits == 8 and back.train_max_steps == 4096 and back.protocol == "1.5"
    # a 1.3 reply (no limits) reads as a chip without the mode
    import dataclasses

    old = M.ChipInfo.unpack(dataclasses.replace(info, protocol_minor=3).pack())
    assert not old.has_trains and old.train_max_steps == 0
    old.validate()
    with pytest.raises(ProtocolError, match="spike-train limits"):
        M.ChipInfo.unpack(info.pack()[:-3])
    with pytest.raises(ChipLimitError, match="adc_bits"):
        dataclasses.replace(info, adc_bits=0).validate()


def test_train_events_are_cut_to_frames():
    fw = Firmware.__new__(Firmware)
    fw.spec = DEFAULT_SPEC
    fw.link = type("L", (), {"max_payload": 256})()
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 120, 200)
    counts[17] = 900  # one sample larger than a frame: a piece of its own (the link cuts it)
    pieces = fw._train_pieces(counts, 50, 100, 0, 34)
    assert pieces[0][0] == 0 and pieces[-1][1] == 200
    assert all(b == c for (_, b), (c, _) in zip(pieces, pieces[1:]))
    for a, b in pieces:
        size = M.train_events_bytes(counts[a:b], 50, 100)
        assert size <= 256 or b == a + 1
    assert (17, 18) in pieces
    # with probes: a PROBE_CODES message holds at most PROBE_FRAMES frames (or one sample)
    for a, b in fw._train_pieces(counts, 50, 100, 20, 34):
        assert M.probe_codes_bytes(b - a, 34, 20, 8) <= fw.PROBE_FRAMES * 256 or b == a + 1


# ------------------------------------------------------------------ over a damaged link
def trains_net():
    rng = np.random.default_rng(0)
    hid = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=5.0, i0=0.1)
    out = NeuronParams.qif_trains(dt=1.0, current_decay=0.2, tau_mem=5.0, spiking=False)
    return Network(layers=(Layer(rng.normal(0, 1.0, (10, 30)), hid, recurrent=rng.normal(0, 0.2, (30, 30))),
                           Layer(rng.normal(0, 0.4, (30, 3)), out)),
                   encoding=InputEncoding(n_features=10), decoding=OutputDecoding(classes=("a", "b", "c"), kind="max-membrane"),
                   t_max=40.0)


@pytest.fixture(scope="module")
def rig():
    proxy = LinkProxy(["--chip-id", "0x5EED", "--baud", "0"], seed=2)  # default mismatch and noise
    url = f"qif://{proxy.host_path}?ack_timeout=0.08&timeout=1.0&frame=256&retries=15&recoveries=6&connect_timeout=5"
    be = QifSerialBackend(parse_target(url))
    be.load(trains_net())
    r = (np.random.default_rng(4).random((40, 48, 10)) < 0.08).astype(np.uint8)
    be.run_index = 0
    clean = be.run_raster(r, probe=True)
    yield proxy, be, r, clean
    be.close()
    proxy.close()


def replay(be, r):
    be.run_index = 0
    return be.run_raster(r, probe=True)


def same(a, b) -> bool:
    ev = all(np.array_equal(x.step, y.step) and np.array_equal(x.sample, y.sample) and np.array_equal(x.neuron, y.neuron)
             for x, y in zip(a.events, b.events, strict=True))
    return ev and all(np.array_equal(p, q) for p, q in zip(a.probes, b.probes, strict=True)) and np.array_equal(a.scores, b.scores)


def test_clean_spike_train_run_is_plausible_and_repeatable(rig):
    proxy, be, r, clean = rig
    assert clean.info["recoveries"] == 0 and len(clean.events[0]) > 200
    assert clean.info["result_bytes"] > 0 and clean.info["probe_bytes"] > 0
    assert same(replay(be, r), clean)


@pytest.mark.parametrize("faults", [dict(ber=2e-4), dict(p_drop=1e-3, p_dup=1e-3), dict(p_truncate=0.05)],
                         ids=["bit-flips", "drops+dups", "truncated"])
def test_damaged_link_gives_the_clean_results(rig, faults):
    proxy, be, r, clean = rig
    st = be.client.link.stats
    before = st["retransmits"] + st["frame_errors"]
    proxy.set_faults(**faults)
    try:
        m = replay(be, r)
    finally:
        proxy.set_faults()
    assert same(m, clean)
    assert st["retransmits"] + st["frame_errors"] > before


def test_chip_restart_mid_spike_train_batch_is_survived(rig):
    proxy, be, r, clean = rig
    restarts = proxy.restarts
    proxy.restart_after(6000)
    m = replay(be, r)
    assert proxy.restarts == restarts + 1
    assert same(m, clean) and m.info["recoveries"] >= 1
    assert be.client.events["reconfigured"] >= 1  # the TRAIN_CONFIG was sent again


# ------------------------------------------------------------------ firmware refusals
@pytest.fixture
def small_chip():
    """The 1.4 firmware with a 50-spike event buffer, in a thread behind a pty."""
    import dataclasses
    import os
    import threading
    import tty

    from hwloop.firmware_models.wire.transport import FdTransport

    master, slave = os.openpty()
    tty.setraw(slave)
    fw = Firmware(FdTransport(master), spec=dataclasses.replace(DEFAULT_SPEC, max_events=50), chip_id=5,
                  mismatch=0.05, noise=0.01)
    stop = threading.Event()
    th = threading.Thread(target=fw.serve, args=(stop.is_set,), daemon=True)
    th.start()
    yield os.ttyname(slave)
    stop.set()
    th.join(5)
    os.close(master)
    os.close(slave)


def test_firmware_refuses_what_it_cannot_run(small_chip):
    from hwloop.backends import open_target
    from hwloop.errors import TargetError
    from hwloop.firmware_models.wire.errors import RemoteError

    with open_target(f"qif://{small_chip}?baud=0") as board:
        assert board.chip_info.max_events == 50
        board.load(trains_net())
        r = np.ones((40, 2, 10), np.uint8)  # every input every step: hundreds of spikes per sample
        with pytest.raises(TargetError, match="EVENT_OVERFLOW.*event buffer holds 50"):
            board.run_raster(r)
        c = board.client
        counts, idx = M.raster_events(np.zeros((40, 1, 10), np.uint8))
        with pytest.raises(RemoteError, match="RUN_TRAINS of 39 steps"):
            c.request(M.RUN_TRAINS, M.pack_run_trains(0, 0, 10, 39, counts, idx), (M.RUN_DONE,))
        with pytest.raises(RemoteError, match="probe mask 0x4"):
            c.request(M.RUN_TRAINS, M.pack_run_trains(0, 0, 10, 40, counts, idx, probe_mask=4), (M.RUN_DONE,))
        # a first-spike CONFIG replaces the spike-train configuration: RUN_TRAINS is then NOT_CONFIGURED
        from hwloop.backends.qif.compiler import compile_network
        from test_link_versions import net as ttfs_net

        c.configure(compile_network(ttfs_net(), c.info).config.pack())
        with pytest.raises(RemoteError) as e:
            c.request(M.RUN_TRAINS, M.pack_run_trains(0, 0, 10, 40, counts, idx), (M.RUN_DONE,))
        assert e.value.name == "NOT_CONFIGURED"
        # and the host's recovery re-sends the spike-train configuration when a run finds it gone
        board.load(trains_net())
        c.configure(compile_network(ttfs_net(), c.info).config.pack())
        c._config, c._config_type = board._deployed.config.pack(), M.TRAIN_CONFIG  # the host still believes trains
        c._config_crc = M.config_crc(c._config)
        m = board.run_raster(np.zeros((40, 3, 10), np.uint8))
        assert m.info["recoveries"] == 1 and c.events["reconfigured"] >= 1


def test_bench_link_measures_spike_train_traffic():
    """bench/bench_link.py --trains: a row per probe setting, bytes that crossed, the link's bound."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_link.py"
    spec = importlib.util.spec_from_file_location("bench_link_trains", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    plain = bench.measure_trains(921600, 16, "&mismatch=0&noise=0", probe=False)
    probed = bench.measure_trains(921600, 16, "&mismatch=0&noise=0", probe=True, probe_period=4)
    for row in (plain, probed):
        assert row["ok"] and row["protocol"] == "1.5" and row["samples"] == 16 and 0 < row["ratio"] < 1.2
        assert row["bytes_per_sample"] == pytest.approx(row["request_bytes_per_sample"] + row["event_bytes_per_sample"]
                                                        + row["probe_bytes_per_sample"], abs=0.2)
    assert plain["probe_bytes_per_sample"] == 0
    # every layer's 138 neurons at 8 bits, 25 of the 100 steps, plus the header share
    assert 25 * 138 <= probed["probe_bytes_per_sample"] < 25 * 138 + 20
    assert "ratio" in bench._fmt_trains(probed)
