"""netx export of spike-train (CUBA) layers: the file layout stock lava-dl reads, our reader's round
trip, the exponent and weight rules netx imposes, and refusals. No Lava simulation here (that is
tests/test_netx_trains_lava.py); one test checks our mirror of netx's and Lava's weight handling
against the real functions of the installed lava-dl and lava-nc."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwloop.errors import DesignRuleError, NetworkFileError
from hwloop.firmware_models.loihi.trains import TrainLayer, simulate_trains
from hwloop.interop.netx import (export_netx_trains, netx_train_layers, netx_weight_problem, read_netx,
                                 read_netx_trains)


def even(rng, lo, hi, shape):
    """Stored mixed-sign weights as Lava keeps them: even, lo..hi."""
    return 2 * rng.integers(lo // 2, hi // 2 + 1, shape)


def random_layers(seed, sizes=(5, 7, 3), recurrent=(False, True)):
    rng = np.random.default_rng(seed)
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        rec = even(rng, -120, 120, (n_out, n_out)) if recurrent[k] else None
        layers.append(TrainLayer(even(rng, -200, 254, (n_in, n_out)), 0, du=int(rng.integers(0, 4096)),
                                 dv=int(rng.integers(0, 4096)), vth=int(rng.integers(50, 2000)), recurrent=rec))
    return layers


def same_layers(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.weight, y.weight)
        assert (x.recurrent is None) == (y.recurrent is None)
        if x.recurrent is not None:
            np.testing.assert_array_equal(x.recurrent, y.recurrent)
        assert (x.weight_exp, x.rec_exp, x.du, x.dv, x.vth) == (y.weight_exp, y.rec_exp, y.du, y.dv, y.vth)


def test_trains_file_has_the_layout_netx_reads(tmp_path):
    layers = random_layers(0)
    meta = {"classes": ["a", "b", "c"], "t_max": 50.0, "decoding": {"kind": "spike-count", "classes": ["a", "b", "c"]}}
    path, info = export_netx_trains(layers, tmp_path / "t.net", steps=50, dt=1.0, meta=meta)
    assert info["exact"] and info["recurrent"] == [False, True]
    with h5py.File(path, "r") as f:
        assert int(f["simulation/tSample"][()]) == 50 and float(f["simulation/Ts"][()]) == 1.0
        assert sorted(f["layer"].keys(), key=int) == ["0", "1", "2"]
        assert f["layer/0/type"][()].decode("ascii") == "input"
        assert f["layer/0/shape"][()].tolist() == [5] and "neuron" not in f["layer/0"]
        for k, (layer, kind) in enumerate(zip(layers, ("dense", "dense_rec")), start=1):
            g = f[f"layer/{k}"]
            assert g["type"][()].decode("ascii") == kind
            assert g["shape"][()].tolist() == [layer.n_out]
            np.testing.assert_array_equal(g["weight"][()], layer.weight.T)  # lava's (to, from)
            if layer.recurrent is not None:
                np.testing.assert_array_equal(g["weight_rec"][()], layer.recurrent.T)
            else:
                assert "weight_rec" not in g
            n = g["neuron"]
            assert n["type"][()].decode("ascii") == "CUBA"
            assert int(n["iDecay"][()]) == layer.du + 1  # netx hands LIF du = iDecay - 1
            assert int(n["vDecay"][()]) == layer.dv and int(n["vThMant"][()]) == layer.vth
            assert "bias" not in g and "delay" not in g
        assert f["hwloop/family"][()].decode() == "trains"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_layers=st.integers(1, 3), data=st.data())
def test_trains_round_trip_export_read_same_layers(tmp_path_factory, seed, n_layers, data):
    sizes = tuple(data.draw(st.lists(st.integers(1, 9), min_size=n_layers + 1, max_size=n_layers + 1)))
    rec = tuple(data.draw(st.lists(st.booleans(), min_size=n_layers, max_size=n_layers)))
    layers = random_layers(seed, sizes, rec)
    path, info = export_netx_trains(layers, tmp_path_factory.mktemp("rt") / "t.net", steps=20, dt=0.5)
    back, meta = read_netx_trains(path)
    same_layers(layers, back)
    assert (meta["steps"], meta["dt"], meta["n_inputs"]) == (20, 0.5, sizes[0])
    assert meta["netx_exact"] == [True] * n_layers


def test_positive_exponent_is_rewritten_exactly_into_the_mantissas(tmp_path):
    rng = np.random.default_rng(3)
    w = even(rng, -60, 60, (4, 3))
    layer = TrainLayer(w, 1, du=100, dv=200, vth=300, recurrent=even(rng, -30, 30, (3, 3)), rec_exp=2)
    (new,), (note,) = netx_train_layers([layer])
    assert note["exact"] and (new.weight_exp, new.rec_exp, new.vth) == (0, 0, 300)
    np.testing.assert_array_equal(new.weight, w * 2)
    np.testing.assert_array_equal(new.recurrent, layer.recurrent * 4)
    x = (rng.random((80, 3, 4)) < 0.3).astype(np.uint8)
    for a, b in zip(simulate_trains([layer], x)[0], simulate_trains([new], x)[0]):
        np.testing.assert_array_equal(a, b)  # the same integers, spike for spike


def test_negative_exponent_moves_into_the_threshold_or_is_refused_when_strict(tmp_path):
    rng = np.random.default_rng(4)
    layer = TrainLayer(even(rng, -200, 254, (4, 3)), -2, du=100, dv=200, vth=301)
    (new,), (note,) = netx_train_layers([layer])
    assert not note["exact"] and new.weight_exp == 0 and new.vth == 301 * 4
    np.testing.assert_array_equal(new.weight, layer.weight)
    _, info = export_netx_trains([layer], tmp_path / "a.net", steps=10)
    assert info["exact"] is False and info["netx_vth"] == [1204]
    with pytest.raises(DesignRuleError) as e:
        export_netx_trains([layer], tmp_path / "b.net", steps=10, strict=True)
    assert e.value.rule == "netx-weight-exponent" and e.value.layer == 0
    assert not (tmp_path / "b.net").exists()
    big = TrainLayer(layer.weight, -8, du=0, dv=0, vth=1000)  # 1000 * 2^8 > 2^17 - 1
    with pytest.raises(DesignRuleError, match="threshold"):
        netx_train_layers([big])


def test_weights_netx_cannot_pass_on_are_refused_by_rule(tmp_path):
    zero = TrainLayer(np.zeros((3, 2), np.int64), 0, du=1, dv=1, vth=10)
    with pytest.raises(DesignRuleError) as e:
        export_netx_trains([zero], tmp_path / "z.net", steps=10)
    assert e.value.rule == "netx-weights" and "0" in str(e.value)
    assert not (tmp_path / "z.net").exists()
    assert "clips it to 254" in netx_weight_problem([np.array([[255, -2]])])
    assert "-255" in netx_weight_problem([np.array([[-256, -2]])])  # inhibitory-only: lava clips to -255
    assert netx_weight_problem([np.array([[254, -256, 6]])]) is None
    assert "undefined" in netx_weight_problem([np.array([[201, -5]]), np.array([[7, 1]])])  # odd, one part single-signed
    assert netx_weight_problem([np.array([[3, -5]]), np.array([[7, 1]])]) is None  # small: netx shifts them up


def test_export_refuses_bad_arguments(tmp_path):
    layers = random_layers(1)
    with pytest.raises(DesignRuleError, match="sources"):
        export_netx_trains([layers[1], layers[0]], tmp_path / "x.net", steps=10)
    with pytest.raises(DesignRuleError):
        export_netx_trains([], tmp_path / "x.net", steps=10)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(Exception, match="steps"):
            export_netx_trains(layers, tmp_path / "x.net", steps=bad)
    assert not (tmp_path / "x.net").exists()


def test_readers_refuse_the_other_family_and_bad_files(tmp_path):
    path, _ = export_netx_trains(random_layers(2), tmp_path / "t.net", steps=10)
    with pytest.raises(NetworkFileError, match="read_netx_trains"):
        read_netx(path)
    with pytest.raises(NetworkFileError, match="no such file"):
        read_netx_trains(tmp_path / "missing.net")
    (tmp_path / "junk.net").write_bytes(b"not hdf5")
    with pytest.raises(NetworkFileError, match="not an HDF5"):
        read_netx_trains(tmp_path / "junk.net")
    with h5py.File(path, "a") as f:
        f["layer/1"].create_dataset("bias", data=np.ones(7, np.int64))
    with pytest.raises(NetworkFileError, match="layer 1.*bias"):
        read_netx_trains(path)
    with h5py.File(path, "a") as f:
        del f["layer/1/bias"]
        del f["layer/2/neuron/vThMant"]
    with pytest.raises(NetworkFileError, match="vThMant"):
        read_netx_trains(path)


def test_read_netx_trains_reads_a_plain_netx_file_without_hwloop_keys(tmp_path):
    """A dense_rec file written by someone else (no hwloop group) is read as netx runs it."""
    rng = np.random.default_rng(5)
    w, r = even(rng, -100, 100, (3, 4)), even(rng, -50, 50, (3, 3))  # lava's (to, from)
    with h5py.File(tmp_path / "p.net", "w") as f:
        f.create_dataset("simulation/Ts", data=1.0)
        f.create_dataset("simulation/tSample", data=30)
        f.create_dataset("layer/0/type", data=np.bytes_(b"input"))
        f.create_dataset("layer/0/shape", data=np.array([4]))
        g = f.create_group("layer/1")
        g.create_dataset("type", data=np.bytes_(b"dense_rec"))
        g.create_dataset("shape", data=np.array([3]))
        g.create_dataset("weight", data=w)
        g.create_dataset("weight_rec", data=r)
        for key, v in (("iDecay", 1024), ("vDecay", 128), ("vThMant", 80), ("refDelay", 1), ("wgtExp", 3)):
            g.create_dataset(f"neuron/{key}", data=v)
        g.create_dataset("neuron/type", data=np.bytes_(b"CUBA"))
    with pytest.raises(NetworkFileError, match="read_netx_trains"):
        read_netx(tmp_path / "p.net")  # dense_rec: not a first-spike network
    (layer,), info = read_netx_trains(tmp_path / "p.net")
    np.testing.assert_array_equal(layer.weight, w.T)
    np.testing.assert_array_equal(layer.recurrent, r.T)
    # netx ignores wgtExp: the layer runs at exponent 0
    assert (layer.weight_exp, layer.rec_exp, layer.du, layer.dv, layer.vth) == (0, 0, 1023, 128, 80)
    assert info["n_inputs"] == 4 and "family" not in info


# ------------------------------------------------------------- our mirror against the real functions

def _real_netx_pipeline(parts):
    """What the installed lava-dl (netx.utils.optimize_weight_bits on the concatenation, as
    netx.hdf5.create_dense does) and lava-nc (Dense fixed point: sign mode, 8-bit clip, truncation by
    num_weight_bits) make of stored weights: whether every part's synapse ends up holding exactly
    ``part << -exp`` (then Lava's sum shifted back by ``exp`` is ``s @ part`` for every spike vector
    ``s``); None when the real code cannot run on them."""
    import warnings

    from hwloop.interop.lava_dl_compat import import_netx

    import_netx()
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    cat = np.hstack(parts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w, bits, exp, _ = optimize_weight_bits(cat.copy())
        except (OverflowError, ValueError):
            return None
    ok, start = exp <= 0, 0
    for part in parts:
        wp = w[:, start:start + part.shape[1]]
        start += part.shape[1]
        mode = determine_sign_mode(wp)
        if 8 - bits + int(mode.name == "MIXED") < 0:
            return None  # lava would shift by a negative count
        wt = truncate_weights(clip_weights(wp, mode, num_bits=8), mode, bits)
        ok = ok and bool(np.array_equal(wt, part << -exp))
    return ok


@pytest.mark.lava
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_weight_mirror_agrees_with_real_netx_and_lava(data):
    n_out = data.draw(st.integers(1, 4))
    lo = data.draw(st.sampled_from([-300, -256, -129, -64, 0, 1]))
    hi = data.draw(st.sampled_from([-1, 0, 1, 63, 127, 128, 254, 255]))
    if hi < lo:
        lo, hi = hi, lo
    parts = []
    for _ in range(data.draw(st.integers(1, 2))):
        n_src = data.draw(st.integers(1, 4))
        vals = data.draw(st.lists(st.integers(lo, hi), min_size=n_out * n_src, max_size=n_out * n_src))
        step = data.draw(st.sampled_from([1, 2, 4]))
        parts.append(np.array(vals, np.int64).reshape(n_out, n_src) // step * step)
    ours = netx_weight_problem(parts)
    real = _real_netx_pipeline(parts)
    if real is None:
        assert ours is not None
    elif int(np.hstack(parts).max()) <= 255 and int(np.hstack(parts).min()) >= -256:
        assert (ours is None) == real, (parts, ours)


# ------------------------------------------------------------------------------- hwloop export (CLI)

def cuba_net(recurrent=True, spiking_out=False):
    from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

    rng = np.random.default_rng(8)
    hid = NeuronParams.cuba(dt=1.0, current_decay=0.2, voltage_decay=0.1, threshold=1.0)
    out = NeuronParams.cuba(dt=1.0, current_decay=0.2, voltage_decay=0.05, threshold=1.0, spiking=spiking_out)
    layers = (Layer(rng.normal(0.3, 0.4, (6, 9)), hid, recurrent=rng.normal(0, 0.2, (9, 9)) if recurrent else None),
              Layer(rng.normal(0.2, 0.4, (9, 3)), out))
    kind = "spike-count" if spiking_out else "max-membrane"
    return Network(layers=layers, encoding=InputEncoding(6, t_at_min=0.0, t_at_max=20.0),
                   decoding=OutputDecoding(("a", "b", "c"), kind=kind), t_max=40.0)


def test_cli_exports_a_cuba_network_as_the_compiled_integers_in_netx_form(tmp_path, capsys):
    import json as _json

    from hwloop.backends.loihi.trains_mapping import compile_trains
    from hwloop.cli import main as cli_main

    net = cuba_net()
    src = net.save(tmp_path / "c.hwnet")
    assert cli_main(["export", str(src), str(tmp_path / "c.net"), "--format", "netx", "--json"]) == 0
    res = _json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["format"] == "netx" and res["recurrent"] == [True, False] and res["spiking"] == [True, False]
    assert any("readout layer does not spike" in w for w in res["warnings"])
    layers, info = read_netx_trains(tmp_path / "c.net")
    # by default the export compiles at exponent 0: the file is bitexact?weight_exp=0's integers, unchanged
    expected = compile_trains(net, weight_exp=0)[0]
    same_layers(layers, expected)
    assert res["exact"] and res["target"] == "bitexact?weight_exp=0"
    assert all(n["exact"] for n in res["notes"]) and not any("exponent 0 only" in w for w in res["warnings"])
    assert (info["steps"], info["dt"], info["classes"]) == (40, 1.0, ["a", "b", "c"])
    assert info["decoding"]["kind"] == "max-membrane" and info["encoding"]["n_features"] == 6
    assert info["netx_exact"] == [n["exact"] for n in res["notes"]]
    assert info["compiled_weight_exp"] == res["weight_exp"]


def test_cli_export_of_a_cuba_network_refuses_nir_and_steps(tmp_path, capsys):
    from hwloop.cli import main as cli_main

    src = cuba_net(recurrent=False, spiking_out=True).save(tmp_path / "c.hwnet")
    assert cli_main(["export", str(src), str(tmp_path / "c.nir"), "--format", "nir"]) == 2
    assert "--format netx" in capsys.readouterr().err
    assert cli_main(["export", str(src), str(tmp_path / "c.net"), "--format", "netx", "--steps", "100"]) == 2
    assert "own 40 steps" in capsys.readouterr().err
    assert not (tmp_path / "c.nir").exists() and not (tmp_path / "c.net").exists()
    assert cli_main(["export", str(src), str(tmp_path / "c.net"), "--format", "netx"]) == 0
    assert "spike trains" in capsys.readouterr().out


def test_unequal_exponents_share_netx_one_exponent():
    """netx gives a recurrent layer's two matrices one exponent: the finer matrix's mantissas are
    rounded (to even, as Lava keeps them) when the coarser one cannot be shifted into range."""
    rng = np.random.default_rng(9)
    w = even(rng, -250, 254, (5, 4))
    w[0, 0] = 254  # top-filled, as the Loihi mapping makes them
    r = even(rng, -250, 254, (4, 4))
    layer = TrainLayer(w, 5, du=10, dv=10, vth=9000, recurrent=r, rec_exp=3)
    (new,), (note,) = netx_train_layers([layer])
    assert not note["exact"] and new.vth == round(9000 / 32) and "2^-2" in note["how"]
    np.testing.assert_array_equal(new.weight, w)
    np.testing.assert_array_equal(new.recurrent, np.clip(2 * np.rint(r / 4 / 2), -256, 254))
    assert not (new.recurrent % 2).any()
    small = TrainLayer(w // 4 * 2, 2, du=10, dv=10, vth=9000, recurrent=r, rec_exp=0)  # |w| <= 127: fits at 1
    (new,), (note,) = netx_train_layers([small])
    assert new.vth == 9000 // 2 and "exponent 1" in note["how"]
    np.testing.assert_array_equal(new.weight, small.weight * 2)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), e=st.integers(-3, 7), er=st.integers(-3, 7), top=st.sampled_from([60, 126, 254]),
       rec=st.booleans())
def test_rewrite_is_netx_runnable_and_exact_when_it_says_so(seed, e, er, top, rec):
    rng = np.random.default_rng(seed)
    layer = TrainLayer(even(rng, -top, top, (5, 4)), e, du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
                       vth=int(rng.integers(16, 4000)), recurrent=even(rng, -top, top, (4, 4)) if rec else None,
                       rec_exp=er if rec else 0)
    try:
        (new,), (note,) = netx_train_layers([layer])
    except DesignRuleError as exc:
        assert exc.rule == "netx-weight-exponent" and "threshold" in str(exc)  # vth * 2^-m out of range only
        return
    assert new.weight_exp == 0 and new.rec_exp == 0
    assert netx_weight_problem([new.weight.T] + ([new.recurrent.T] if rec else [])) is None
    exps = [e] + ([er] if rec else [])
    if note["exact"]:
        assert min(exps) >= 0
        x = (rng.random((60, 2, 5)) < 0.3).astype(np.uint8)
        for a, b in zip(simulate_trains([layer], x, probe=True), simulate_trains([new], x, probe=True)):
            np.testing.assert_array_equal(a[0], b[0])
    else:
        assert not all(v == 0 for v in exps)


def test_cli_export_weight_exp_auto_writes_the_rewrite_of_the_default_mapping(tmp_path, capsys):
    import json as _json

    from hwloop.backends.loihi.trains_mapping import compile_trains
    from hwloop.cli import main as cli_main

    net = cuba_net()
    src = net.save(tmp_path / "c.hwnet")
    assert cli_main(["export", str(src), str(tmp_path / "c.net"), "--format", "netx", "--weight-exp", "auto",
                     "--json"]) == 0
    res = _json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    layers, _ = read_netx_trains(tmp_path / "c.net")
    expected, _ = netx_train_layers(compile_trains(net)[0])
    same_layers(layers, expected)
    assert res["weight_exp"] == [[l.weight_exp, l.rec_exp] for l in compile_trains(net)[0]]
    assert res.get("target") == ("bitexact" if res["exact"] else None)
