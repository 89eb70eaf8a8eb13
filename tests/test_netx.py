"""Lava-DL netx export (hwloop.interop.netx, `hwloop export --format netx`).

The exported file is read back by our own small reader of the layout and run
on the bit-accurate core model; it must spike exactly like the compiled
network it came from, on the `bitexact` target.
"""

from __future__ import annotations

import json

import h5py  # a dependency: if missing, fail rather than skip
import numpy as np
import pytest

from hwloop.backends import open_target
from hwloop.backends.loihi.mapping import compile_network
from hwloop.firmware_models.loihi import simulate
from hwloop.cli import main as cli_main
from hwloop.errors import DesignRuleError, NetworkFileError
from hwloop.interop.netx import export_netx, netx_core, read_netx
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding

STEPS = 240


def make_net(seed=0, model="lif") -> Network:
    rng = np.random.default_rng(seed)
    layers = (
        Layer(rng.normal(0.9, 0.8, size=(4 + 1, 9)), NeuronParams(model, 5.0, 10.0, 1.0), (1.5,)),
        Layer(rng.normal(0.6, 0.9, size=(9 + 2, 3)), NeuronParams(model, 5.0, 5.0, 0.8), (0.5, 4.0)),
    )
    return Network(layers=layers, encoding=InputEncoding(4, t_at_min=0.0, t_at_max=10.0),
                   decoding=OutputDecoding(("a", "b", "c")), t_max=60.0, time_unit="ms")


def test_netx_file_has_the_layout(tmp_path):
    net = make_net(1)
    path, info = export_netx(net, tmp_path / "net.net", steps=STEPS)
    compiled, core, n_channels = netx_core(net, STEPS)
    assert n_channels == 4 + 1  # the features, then layer 0's bias source
    with h5py.File(path, "r") as f:
        assert int(f["simulation/tSample"][()]) == STEPS
        assert float(f["simulation/Ts"][()]) == compiled.dt
        assert sorted(f["layer"].keys(), key=int) == ["0", "1", "2"]
        assert f["layer/0/type"][()].decode("ascii") == "input"
        assert f["layer/0/shape"][()].tolist() == [5]  # 1-D: netx's Dense input port is (n,)
        assert "neuron" not in f["layer/0"]  # no relay neurons: Network.inp feeds layer 1's synapses
        for k, (ours, orig) in enumerate(zip(core.layers, compiled.core.layers), start=1):
            g = f[f"layer/{k}"]
            assert g["type"][()].decode("ascii") == "dense"
            assert g["shape"][()].tolist() == [ours.n_out]
            assert g["weight"].dtype.kind == "i"
            np.testing.assert_array_equal(g["weight"][()], ours.weight.T)  # (n_out, n_in) mantissas
            n = g["neuron"]
            assert n["type"][()].decode("ascii") == "CUBA"
            assert int(n["iDecay"][()]) == orig.du + 1  # netx: du = iDecay - 1
            assert int(n["vDecay"][()]) == orig.dv
            # netx derives weight exponent 0 from 8-bit mantissas: the threshold carries 2^-e instead
            assert int(n["wgtExp"][()]) == 0
            assert int(n["vThMant"][()]) == round(orig.vth * 2.0 ** -orig.weight_exp)
            assert int(n["refDelay"][()]) >= STEPS
            assert "bias" not in g  # our biases are spikes, not constant currents
        np.testing.assert_array_equal(f["layer/1/weight"][()][:, 4], compiled.core.layers[0].bias_weight[0])
        assert "hwlBiasStep" not in f["layer/1"]  # layer 0's bias is an input channel now
        np.testing.assert_array_equal(f["layer/2/hwlBiasStep"][()], compiled.core.layers[1].bias_steps)
        assert json.loads(f["hwloop/classes"][()].decode()) == ["a", "b", "c"]
        assert json.loads(f["hwloop/input_channels"][()].decode()) == {
            "features": 4, "bias_steps": compiled.core.layers[0].bias_steps.tolist()}
    assert info["steps"] == STEPS and info["dt"] == compiled.dt and info["hidden_bias_ignored"] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.net"]  # atomic: no temporaries left


def test_netx_read_back_is_the_netx_core_and_close_to_the_compiled_network(tmp_path):
    net = make_net(2)
    path, _ = export_netx(net, tmp_path / "net.net", steps=STEPS)
    core, info = read_netx(path)
    compiled, ref, _ = netx_core(net, STEPS)
    assert core.steps == ref.steps
    for a, b in zip(core.layers, ref.layers):
        for key in ("weight", "bias_weight", "bias_steps", "bias_mant"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert (a.du, a.dv, a.vth, a.weight_exp) == (b.du, b.dv, b.vth, b.weight_exp)

    # exponent 0 with the threshold scaled by 2^-e is the compiled layer up to vth rounding and the
    # decays' truncation at a finer grain: measured against the compiled network on the core model
    t_in = net.encoding.encode(np.random.default_rng(3).uniform(0, 1, size=(400, 4)))
    k_in = compiled.to_steps(t_in)
    b0 = info["input_channels"]["bias_steps"]
    k_all = np.concatenate([k_in, np.broadcast_to(np.array(b0, np.int64), (len(k_in), len(b0)))], axis=1)
    ours = simulate(core, k_all, engine="numpy")
    orig = simulate(compiled.core, k_in, engine="numpy")
    assert (ours[0] >= 0).sum() > 0, "nothing spiked: the comparison would be empty"
    same0 = (ours[0] == orig[0]).mean()
    assert same0 >= 0.95, f"first layer: {same0:.3f} of first-spike steps identical"
    pa = np.argmin(np.where(ours[-1] >= 0, ours[-1], 1 << 30), axis=1)
    pb = np.argmin(np.where(orig[-1] >= 0, orig[-1], 1 << 30), axis=1)
    assert (pa == pb).mean() >= 0.95


def test_netx_export_refuses_what_loihi_cannot_run_and_writes_nothing(tmp_path):
    with pytest.raises(DesignRuleError, match="neuron-model"):
        export_netx(make_net(0, model="qif"), tmp_path / "qif.net", steps=STEPS)
    assert list(tmp_path.iterdir()) == []


def test_read_netx_rejects_bad_files(tmp_path):
    path, _ = export_netx(make_net(0), tmp_path / "net.net", steps=STEPS)
    data = path.read_bytes()
    bad = tmp_path / "trunc.net"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(NetworkFileError, match=r"trunc.net: not an HDF5 file"):
        read_netx(bad)
    with h5py.File(path, "a") as f:
        del f["layer/2/neuron/vThMant"]
    with pytest.raises(NetworkFileError, match=r"net.net: not a readable netx network .*vThMant"):
        read_netx(path)


def test_cli_export_netx(tmp_path, capsys):
    src = make_net(4).save(tmp_path / "n.hwnet")
    out = tmp_path / "n.net"
    assert cli_main(["export", str(src), str(out), "--format", "netx", "--steps", str(STEPS), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["ok"] and res["steps"] == STEPS and len(res["report"]) == 2
    assert any("hwlBias" in w for w in res["warnings"])
    core, _ = read_netx(out)
    assert [layer.n_out for layer in core.layers] == [9, 3]
    assert any("hidden" in w and "bias" in w for w in res["warnings"])
