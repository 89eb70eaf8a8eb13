"""NIR graphs in and out (hwloop.interop.nir_io, `hwloop export/import`).

The science check is independent of both the exporter and hwloop's closed
form: `simulate_cubalif` integrates NIR's own CubaLIF ODE (RK4 on a fine grid,
first spike only) straight from the graph's node parameters, and its spike
times must agree with what hwloop computes for the imported / exported network.
"""

from __future__ import annotations

import json

import h5py
import nir  # a dependency: if missing, fail rather than skip
import numpy as np
import pytest

from hwloop.backends import open_target
from hwloop.cli import main as cli_main
from hwloop.errors import NetworkFileError, NetworkSpecError
from hwloop.interop.nir_io import export_nir, import_nir, network_to_nir, nir_to_network
from hwloop.network import InputEncoding, Layer, Network, NeuronParams, OutputDecoding, Provenance


# ------------------------------------------------------------------ helpers
def make_net(seed=0, model="lif", ratio=2.0) -> Network:
    rng = np.random.default_rng(seed)
    tau_s = 5.0
    layers = (
        Layer(rng.normal(0.9, 0.8, size=(4 + 1, 7)), NeuronParams(model, tau_s, ratio * tau_s, 1.0), (1.5,)),
        Layer(rng.normal(0.7, 0.9, size=(7 + 2, 3)), NeuronParams(model, tau_s, tau_s, 0.8, {"note": "x"}),
              (0.5, 4.0)),
    )
    return Network(layers=layers, encoding=InputEncoding(4, t_at_min=0.0, t_at_max=10.0),
                   decoding=OutputDecoding(("a", "b", "c")), t_max=60.0, time_unit="ms",
                   provenance=Provenance(model=model, dataset="toy", seed=seed, accuracy={"test": 0.5},
                                         extra={"cfg": {"lr": 0.1, "sizes": [4, 7, 3]}}))


def run_software(net: Network, t_in: np.ndarray) -> list[np.ndarray]:
    with open_target("software") as b:
        b.load(net)
        return b.run(t_in).times


def simulate_cubalif(layers, t_in, area, t_max, h):
    """First spike times of a chain of NIR CubaLIF layers, by RK4 on a grid.

    ``layers``: per layer ``dict(W=(n_out, n_src), bias=[(W_b, times)], tau_syn, tau_mem, r, v_leak,
    v_threshold, w_in)`` (parameters broadcast to n_out). A spike through weight W adds
    ``w_in * W * area / tau_syn`` to I at the start of the grid step holding its time.
    """
    B = t_in.shape[0]
    state = []
    for L in layers:
        n = L["W"].shape[0]
        p = {k: np.broadcast_to(np.asarray(L[k], float).reshape(-1), (n,)) for k in
             ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in")}
        state.append(dict(p=p, I=np.zeros((B, n)), v=np.tile(p["v_leak"], (B, 1)), t=np.full((B, n), np.inf)))

    def deriv(I, v, p):
        return -I / p["tau_syn"], (p["v_leak"] - v + p["r"] * I) / p["tau_mem"]

    n_steps = int(np.ceil(t_max / h))
    for k in range(n_steps):
        t0, t1 = k * h, (k + 1) * h
        for li, (L, s) in enumerate(zip(layers, state)):
            if li == 0:  # (B, n_src): input spikes arriving during this step, applied at its start
                hit = (t_in >= t0) & (t_in < t1)
            else:  # spikes the previous layer emitted during this same step (it was updated first)
                hit = state[li - 1]["new"]
            if hit.any():
                s["I"] += s["p"]["w_in"] * (hit.astype(float) @ L["W"].T) * area / s["p"]["tau_syn"]
            for W_b, times in L.get("bias", []):
                bh = (np.asarray(times) >= t0) & (np.asarray(times) < t1)
                if bh.any():
                    s["I"] += s["p"]["w_in"] * (W_b @ bh.astype(float)) * area / s["p"]["tau_syn"]
            I, v, p = s["I"], s["v"], s["p"]
            k1 = deriv(I, v, p)
            k2 = deriv(I + h / 2 * k1[0], v + h / 2 * k1[1], p)
            k3 = deriv(I + h / 2 * k2[0], v + h / 2 * k2[1], p)
            k4 = deriv(I + h * k3[0], v + h * k3[1], p)
            I_new = I + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            v_new = v + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
            cross = (v <= p["v_threshold"]) & (v_new > p["v_threshold"]) & np.isinf(s["t"])
            frac = (p["v_threshold"] - v) / np.where(cross, v_new - v, 1.0)
            s["t"] = np.where(cross, t0 + frac * h, s["t"])
            s["new"] = cross
            s["I"], s["v"] = I_new, v_new
    return [s["t"] for s in state]


def assert_times_close(a, b, atol):
    assert a.shape == b.shape
    assert np.array_equal(np.isinf(a), np.isinf(b)), "silent neurons differ"
    fin = np.isfinite(a)
    assert fin.sum() > 0, "nothing spiked: the comparison would be empty"
    np.testing.assert_allclose(a[fin], b[fin], rtol=0, atol=atol)


def snntorch_like_graph(rng, alpha=0.9, beta=0.95, dt=1e-4, scalar_params_layer2=True, bias=0.0):
    """Input -> Affine -> CubaLIF -> Affine -> CubaLIF -> Output, built the way snnTorch's
    exporter builds it: tau = dt/(1-decay), r = tau_mem/dt, w_in = tau_syn/dt, v_leak = 0,
    Affine (nn.Linear) nodes, per-layer neuron parameters of shape (1,) broadcast over the
    layer (layer 2), no hwloop metadata."""
    W1 = rng.normal(0.12, 0.1, size=(6, 4))
    W2 = rng.normal(0.1, 0.08, size=(3, 6))

    def cuba(n, scalar):
        tau_syn = np.asarray(dt / (1 - alpha))
        tau_mem = np.asarray(dt / (1 - beta))
        shape = (1,) if scalar else (n,)
        full = lambda x: np.broadcast_to(np.asarray(x, float), shape).copy()  # noqa: E731
        return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(tau_mem / dt),
                           v_leak=full(0.0), v_threshold=full(1.0), w_in=full(tau_syn / dt))

    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "0": nir.Affine(weight=W1, bias=np.full(6, bias)),
        "1": cuba(6, False),
        "2": nir.Affine(weight=W2, bias=np.zeros(3)),
        "3": cuba(3, scalar_params_layer2),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def nir_layers_of(graph, chain):
    out = []
    for fc, lif, bias in chain:
        node = graph.nodes[lif]
        L = {k: getattr(node, k) for k in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in")}
        L["W"] = np.asarray(graph.nodes[fc].weight, float)
        L["bias"] = [(np.asarray(graph.nodes[b_fc].weight, float),
                      np.asarray(graph.nodes[b_in].metadata["hwloop_bias_times"], float)) for b_in, b_fc in bias]
        out.append(L)
    return out


# ------------------------------------------------------------- round trip
def test_round_trip_identical_weights_params_and_spike_times(tmp_path):
    net = make_net(seed=1)
    path = export_nir(net, tmp_path / "net.nir")
    imp = import_nir(path)
    back = imp.network
    assert imp.foreign is False and imp.notes == []
    for a, b in zip(net.layers, back.layers):
        assert np.array_equal(a.weight, b.weight)  # bit-identical, not just close
        assert a.neuron == b.neuron
        assert a.bias_times == b.bias_times
    assert back.encoding == net.encoding
    assert back.decoding == net.decoding
    assert (back.t_max, back.time_unit) == (net.t_max, net.time_unit)
    assert back.provenance == net.provenance

    t_in = net.encoding.encode(np.random.default_rng(2).uniform(0, 1, size=(64, 4)))
    ta, tb = run_software(net, t_in), run_software(back, t_in)
    assert np.isfinite(ta[-1]).sum() > 0
    for x, y in zip(ta, tb):
        assert np.array_equal(x, y)


def test_exported_file_is_plain_nir_that_nir_itself_reads_and_type_checks(tmp_path):
    net = make_net(seed=3)
    path = export_nir(net, tmp_path / "net.nir")
    g = nir.read(str(path))  # nir's own reader with its type check on
    # one Input: 4 features, then layer 0's bias source, then layer 1's two (channels 4, 5, 6)
    assert set(g.nodes) == {"input", "fc0", "lif0", "fc1", "lif1", "fc1_bias", "output"}
    assert g.nodes["input"].input_type["input"].tolist() == [7]
    assert json.loads(g.metadata["hwloop_input_channels"]) == {"features": 4, "bias": [[0, 1.5], [1, 0.5], [1, 4.0]],
                                                               "cancel": []}
    lif0 = g.nodes["lif0"]
    assert isinstance(lif0, nir.CubaLIF)
    np.testing.assert_array_equal(lif0.w_in, np.full(7, 5.0))
    np.testing.assert_array_equal(lif0.tau_mem, np.full(7, 10.0))
    w0 = g.nodes["fc0"].weight
    np.testing.assert_array_equal(w0[:, :4], net.layers[0].weight[:4].T)
    np.testing.assert_array_equal(w0[:, 4], net.layers[0].weight[4])
    assert not w0[:, 5:].any()  # layer 1's bias channels do not reach layer 0
    wb = g.nodes["fc1_bias"].weight
    np.testing.assert_array_equal(wb[:, 5:], net.layers[1].weight[7:].T)
    assert not wb[:, :5].any()
    assert g.metadata["hwloop_t_max"] == 60.0 and g.metadata["hwloop_time_unit"] == "ms"
    assert json.loads(g.metadata["hwloop_decoding"])["classes"] == ["a", "b", "c"]
    # no stray temporary files from the atomic write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.nir"]


def test_exported_graph_run_as_nir_ode_spikes_at_our_times():
    """What another tool integrating NIR's CubaLIF ODE would see: our times."""
    net = make_net(seed=4)
    g = network_to_nir(net)
    t_in = net.encoding.encode(np.random.default_rng(5).uniform(0, 1, size=(6, 4)))
    ours = run_software(net, t_in)
    h = 4e-3  # ms; tau_s = 5 ms
    # drive the one input the way its metadata says: features, then the bias channels at their times
    bias_t = np.array([t for _, t in json.loads(g.metadata["hwloop_input_channels"])["bias"]])
    x = np.concatenate([t_in, np.broadcast_to(bias_t, (len(t_in), bias_t.size))], axis=1)
    L0 = nir_layers_of(g, [("fc0", "lif0", [])])[0]
    L1 = nir_layers_of(g, [("fc1", "lif1", [])])[0]
    W1b = np.asarray(g.nodes["fc1_bias"].weight, float)
    L1["bias"] = [(W1b[:, j:j + 1], bias_t[j - 4:j - 3]) for j in range(5, 7)]
    ode = simulate_cubalif([L0, L1], x, area=1.0, t_max=net.t_max, h=h)
    for a, b in zip(ours, ode):
        assert_times_close(a, b, atol=6 * h)


# ---------------------------------------------------------- foreign graphs
def test_snntorch_style_graph_imports_and_matches_the_nir_ode(tmp_path):
    rng = np.random.default_rng(7)
    dt = 1e-4
    g = snntorch_like_graph(rng, dt=dt)
    path = tmp_path / "snn.nir"
    nir.write(str(path), g)
    t_max = 0.01
    imp = import_nir(path, t_max=t_max, time_unit="s", dt=dt)
    net = imp.network
    assert imp.foreign and net.time_unit == "s" and net.sizes == (4, 6, 3)
    assert any("first spike" in n for n in imp.notes)
    assert net.layers[0].neuron.tau_mem == 2 * net.layers[0].neuron.tau_syn  # snapped exactly
    # the jump-per-spike weight is W * r * w_in * dt / tau_syn = W * tau_mem / dt here
    np.testing.assert_allclose(net.layers[0].weight, g.nodes["0"].weight.T * (0.002 / dt), rtol=1e-12)

    t_in = rng.uniform(0, 0.003, size=(5, 4))
    ours = run_software(net, t_in)
    h = 5e-7
    ode = simulate_cubalif(nir_layers_of(g, [("0", "1", []), ("2", "3", [])]), t_in, area=dt, t_max=t_max, h=h)
    for a, b in zip(ours, ode):
        assert_times_close(a, b, atol=6 * h)

    # without dt the spikes are unit Dirac impulses: every weight 1/dt times larger
    dirac = import_nir(path, t_max=t_max, time_unit="s").network
    np.testing.assert_allclose(dirac.layers[1].weight, net.layers[1].weight / dt, rtol=1e-12)


def test_per_neuron_thresholds_and_leak_fold_into_weights():
    rng = np.random.default_rng(11)
    W = rng.normal(1.0, 0.5, size=(5, 3))
    thr = np.array([1.0, 1.5, 0.8, 2.0, 1.2])
    leak = np.array([0.0, 0.2, -0.1, 0.5, 0.0])
    nodes = {
        "in": nir.Input(input_type={"input": np.array([3])}),
        "w": nir.Linear(weight=W),
        "n": nir.CubaLIF(tau_syn=np.full(5, 2.0), tau_mem=np.full(5, 2.0), r=np.linspace(0.5, 1.5, 5),
                         v_leak=leak, v_threshold=thr, w_in=np.full(5, 3.0)),
        "out": nir.Output(output_type={"output": np.array([5])}),
    }
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "w"), ("w", "n"), ("n", "out")], type_check=False)
    imp = nir_to_network(g, t_max=20.0, time_unit="ms", classes=list("abcde"))
    assert imp.network.layers[0].neuron.threshold == 1.0
    assert any("folded" in n for n in imp.notes)
    t_in = rng.uniform(0, 3, size=(8, 3))
    ours = run_software(imp.network, t_in)
    L = {"W": W, "tau_syn": 2.0, "tau_mem": 2.0, "r": np.linspace(0.5, 1.5, 5), "v_leak": leak,
         "v_threshold": thr, "w_in": 3.0}
    h = 1e-3
    ode = simulate_cubalif([L], t_in, area=1.0, t_max=20.0, h=h)
    assert_times_close(ours[0], ode[0], atol=6 * h)


# ------------------------------------------------------------------- errors
def _chain(rng, tau_mem=2.0, extra_nodes=None, extra_edges=(), w2_cols=5):
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc0": nir.Linear(weight=rng.normal(size=(5, 3))),
        "lif0": nir.CubaLIF(tau_syn=np.ones(5), tau_mem=np.full(5, tau_mem), r=np.ones(5), v_leak=np.zeros(5),
                            v_threshold=np.ones(5)),
        "fc1": nir.Linear(weight=rng.normal(size=(2, w2_cols))),
        "lif1": nir.CubaLIF(tau_syn=np.ones(2), tau_mem=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2),
                            v_threshold=np.ones(2)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    nodes.update(extra_nodes or {})
    edges = [("input", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"), ("lif1", "output"),
             *extra_edges]
    return nir.NIRGraph(nodes=nodes, edges=list(edges), type_check=False)


def _import_graph(tmp_path, g, **kw):
    path = tmp_path / "g.nir"
    nir.write(str(path), g)
    kw.setdefault("t_max", 10.0)
    kw.setdefault("time_unit", "ms")
    return import_nir(path, **kw)


def test_valid_chain_imports(tmp_path):
    # the baseline the error cases below are mutations of
    net = _import_graph(tmp_path, _chain(np.random.default_rng(0))).network
    assert net.sizes == (3, 5, 2)


def test_recurrent_edge_is_refused(tmp_path):
    rec = {"rec": nir.Linear(weight=np.eye(5))}
    g = _chain(np.random.default_rng(0), extra_nodes=rec, extra_edges=[("lif0", "rec"), ("rec", "lif0")])
    with pytest.raises(NetworkSpecError, match=r"recurrent edge .*'rec' -> 'lif0'|recurrent edge .*lif0"):
        _import_graph(tmp_path, g)


def test_unknown_node_type_is_named(tmp_path):
    g = _chain(np.random.default_rng(0), extra_nodes={"thr": nir.Threshold(threshold=np.ones(2))},
               extra_edges=[("lif1", "thr")])
    with pytest.raises(NetworkSpecError, match=r"node 'thr' \(Threshold\): unsupported node type Threshold"):
        _import_graph(tmp_path, g)
    lif_only = _chain(np.random.default_rng(0))
    lif_only.nodes["lif0"] = nir.LIF(tau=np.ones(5), r=np.ones(5), v_leak=np.zeros(5), v_threshold=np.ones(5))
    with pytest.raises(NetworkSpecError, match=r"node 'lif0' \(LIF\): unsupported node type LIF.*tau_syn = 0"):
        _import_graph(tmp_path, lif_only)


def test_shape_mismatch_names_node_and_sizes(tmp_path):
    g = _chain(np.random.default_rng(0), w2_cols=4)
    with pytest.raises(NetworkSpecError, match=r"node 'fc1' \(Linear\): weight has 4 columns but its source "
                                               r"'lif0' has 5 outputs"):
        _import_graph(tmp_path, g)
    g = _chain(np.random.default_rng(0))
    for key in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
        setattr(g.nodes["lif1"], key, np.ones(3) * (key.startswith("tau") or key in ("r", "v_threshold")))
    with pytest.raises(NetworkSpecError, match=r"node 'lif1' \(CubaLIF\): tau_syn has 3 entries but the "
                                               r"layer has 2 neurons"):
        _import_graph(tmp_path, g)
    # parameters of one node disagreeing among themselves: nir cannot even build the node
    g = _chain(np.random.default_rng(0))
    g.nodes["lif1"].v_threshold = np.ones(3)
    with pytest.raises(NetworkFileError, match=r"node 'lif1' \(CubaLIF\) is malformed"):
        _import_graph(tmp_path, g)


def test_unsupported_tau_ratio_is_refused(tmp_path):
    g = _chain(np.random.default_rng(0), tau_mem=1.5)
    with pytest.raises(NetworkSpecError, match=r"node 'lif0' \(CubaLIF\): tau_mem/tau_syn = 1.5 .*ratios 1 and 2"):
        _import_graph(tmp_path, g)


def test_per_neuron_time_constants_are_refused(tmp_path):
    g = _chain(np.random.default_rng(0))
    g.nodes["lif0"].tau_syn = np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    with pytest.raises(NetworkSpecError, match=r"node 'lif0' \(CubaLIF\): tau_syn differs between neurons"):
        _import_graph(tmp_path, g)


def test_qif_network_exports_flagged_and_is_refused_on_import(tmp_path):
    net = make_net(seed=0, model="qif")
    path = export_nir(net, tmp_path / "qif.nir")
    g = nir.read(str(path))
    assert g.nodes["lif0"].metadata["hwloop_model"] == "qif"
    assert "NOT a CubaLIF" in g.nodes["lif0"].metadata["hwloop_warning"]
    assert "NOT a CubaLIF" in g.metadata["hwloop_warning"]
    with pytest.raises(NetworkSpecError, match=r"node 'lif0' \(CubaLIF\): is marked hwloop_model='qif'"):
        import_nir(path)


def test_corrupt_and_missing_files_are_file_errors(tmp_path):
    good = export_nir(make_net(seed=0), tmp_path / "good.nir")
    data = good.read_bytes()
    trunc = tmp_path / "trunc.nir"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(NetworkFileError, match=r"trunc.nir: not a NIR file"):
        import_nir(trunc)
    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"this is not hdf5" * 100)
    with pytest.raises(NetworkFileError, match=r"junk.nir: not a NIR file"):
        import_nir(junk)
    with pytest.raises(NetworkFileError, match=r"nope.nir: no such file"):
        import_nir(tmp_path / "nope.nir")
    other = tmp_path / "other.h5"  # valid HDF5, but not a NIR graph
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(NetworkFileError, match=r"other.h5: not a valid NIR graph"):
        import_nir(other)


def test_other_unrunnable_graphs_say_why(tmp_path):
    rng = np.random.default_rng(0)
    # a constant-current bias cannot be represented
    g = snntorch_like_graph(rng, bias=0.1)
    with pytest.raises(NetworkSpecError, match=r"node '0' \(Affine\): has a nonzero bias"):
        _import_graph(tmp_path, g, dt=1e-4)
    # skip connection input -> second layer
    g = _chain(rng, extra_nodes={"skip": nir.Linear(weight=np.ones((2, 3)))},
               extra_edges=[("input", "skip"), ("skip", "lif1")])
    with pytest.raises(NetworkSpecError, match=r"node 'input' \(Input\): feeds 2 nodes"):
        _import_graph(tmp_path, g)
    # foreign graph without trial length
    with pytest.raises(NetworkSpecError, match=r"no hwloop metadata .*--t-max"):
        _import_graph(tmp_path, _chain(rng), t_max=None)
    # wrong number of class names
    with pytest.raises(NetworkSpecError, match=r"3 class names given but 'output' has 2 neurons"):
        _import_graph(tmp_path, _chain(rng), classes=["a", "b", "c"])
    # a neuron sitting above threshold at rest
    g = _chain(rng)
    g.nodes["lif1"].v_leak = np.array([0.0, 1.5])
    with pytest.raises(NetworkSpecError, match=r"node 'lif1' \(CubaLIF\): neuron 1: v_threshold - v_leak"):
        _import_graph(tmp_path, g)


# ---------------------------------------------------------------------- CLI
def test_cli_export_import_round_trip(tmp_path, capsys):
    net = make_net(seed=2)
    src = net.save(tmp_path / "net.hwnet")
    out_nir = tmp_path / "net.nir"
    assert cli_main(["export", str(src), str(out_nir), "--format", "nir", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["ok"] and res["format"] == "nir" and out_nir.exists()
    back = tmp_path / "back.hwnet"
    assert cli_main(["import", str(out_nir), "--out", str(back), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["ok"] and res["foreign"] is False and res["sizes"] == [4, 7, 3]
    loaded = Network.load(back)
    for a, b in zip(net.layers, loaded.layers):
        assert np.array_equal(a.weight, b.weight)


def test_cli_import_foreign_needs_units_and_reports_errors(tmp_path, capsys):
    path = tmp_path / "snn.nir"
    nir.write(str(path), snntorch_like_graph(np.random.default_rng(1)))
    out = tmp_path / "x.hwnet"
    assert cli_main(["import", str(path), "--out", str(out)]) == 2
    assert "--t-max" in capsys.readouterr().err
    assert not out.exists()
    rc = cli_main(["import", str(path), "--out", str(out), "--t-max", "0.01", "--time-unit", "s", "--dt", "1e-4",
                   "--classes", "x,y,z", "--t-at-max", "0.004", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["foreign"] is True
    net = Network.load(out)
    assert net.decoding.classes == ("x", "y", "z") and net.encoding.t_at_max == 0.004


def test_cli_export_for_a_consumer_and_its_errors(tmp_path, capsys):
    net = make_net(seed=2)
    src = net.save(tmp_path / "net.hwnet")
    out = tmp_path / "snn.nir"
    assert cli_main(["export", str(src), str(out), "--format", "nir", "--for", "snntorch", "--dt", "0.05",
                     "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["consumer"] == "snntorch" and res["dt"] == 0.05
    assert any("fire again" in w for w in res["warnings"])
    g = nir.read(str(out))
    assert g.metadata["hwloop_consumer"] == "snntorch" and g.metadata["hwloop_dt"] == 0.05
    lif0 = g.nodes["lif0"]
    # what snnTorch's import_from_nir asserts and divides by: r == tau_mem / 1e-4, w_in * 1e-4 / tau_syn == 1
    np.testing.assert_allclose(lif0.r, lif0.tau_mem / 1e-4, rtol=1e-12)
    np.testing.assert_allclose(lif0.w_in * 1e-4 / lif0.tau_syn, 1.0, rtol=1e-12)
    # its decay 1 - 1e-4 / tau is exactly our exp(-dt / tau)
    np.testing.assert_allclose(1 - 1e-4 / lif0.tau_syn, np.exp(-0.05 / 5.0), rtol=1e-12)
    back = import_nir(out).network
    for a, b in zip(net.layers, back.layers):
        assert np.array_equal(a.weight, b.weight) and a.neuron == b.neuron and a.bias_times == b.bias_times

    assert cli_main(["export", str(src), str(out), "--format", "nir", "--for", "norse", "--dt", "20"]) == 2
    assert "longer than the shortest time constant" in capsys.readouterr().err
    assert cli_main(["export", str(src), str(out), "--format", "nir", "--dt", "0.1"]) == 2
    assert "continuous-time" in capsys.readouterr().err
    assert cli_main(["export", str(src), str(tmp_path / "x.net"), "--format", "netx", "--for", "snntorch"]) == 2
    assert "--format nir only" in capsys.readouterr().err


def test_edited_export_is_refused_naming_the_attribute(tmp_path):
    path = export_nir(make_net(seed=1), tmp_path / "net.nir", consumer="rockpool")
    with h5py.File(path, "a") as f:
        f["node/nodes/lif1/v_threshold"][...] = 7.0
    with pytest.raises(NetworkSpecError, match=r"node 'lif1' \(CubaLIF\): v_threshold = 7 does not match "
                                               r"the hwloop_neuron metadata"):
        import_nir(path)


def test_version_1_files_with_bias_input_nodes_still_import(tmp_path):
    """Files written before the one-input layout (bias sources as their own Input nodes)."""
    net = make_net(seed=5)
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}, metadata={"hwloop_role": "features"})}
    edges, prev = [], "input"
    for i, layer in enumerate(net.layers):
        p, n = layer.neuron, layer.n_out
        ones = np.ones(n)
        nodes[f"fc{i}"] = nir.Linear(weight=layer.weight[:layer.n_in].T.copy())
        nodes[f"lif{i}"] = nir.CubaLIF(tau_syn=ones * p.tau_syn, tau_mem=ones * p.tau_mem, r=ones, v_leak=0 * ones,
                                       v_threshold=ones * p.threshold, v_reset=0 * ones, w_in=ones * p.tau_syn,
                                       metadata={"hwloop_model": "lif", "hwloop_options": json.dumps(p.options)})
        nodes[f"bias{i}"] = nir.Input(input_type={"input": np.array([len(layer.bias_times)])},
                                      metadata={"hwloop_role": "bias", "hwloop_bias_times": np.array(layer.bias_times)})
        nodes[f"fc{i}_bias"] = nir.Linear(weight=layer.weight[layer.n_in:].T.copy())
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}"), (f"bias{i}", f"fc{i}_bias"), (f"fc{i}_bias", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = nir.Output(output_type={"output": np.array([3])})
    edges.append((prev, "output"))
    import dataclasses

    meta = {"hwloop_format": "hwloop-nir", "hwloop_format_version": 1, "hwloop_time_unit": "ms",
            "hwloop_t_max": 60.0, "hwloop_encoding": json.dumps(dataclasses.asdict(net.encoding)),
            "hwloop_decoding": json.dumps({"kind": "first-spike", "classes": ["a", "b", "c"]})}
    path = tmp_path / "v1.nir"
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False))
    back = import_nir(path).network
    for a, b in zip(net.layers, back.layers):
        assert np.array_equal(a.weight, b.weight) and a.bias_times == b.bias_times
        assert (a.neuron.tau_syn, a.neuron.tau_mem, a.neuron.threshold) == \
            (b.neuron.tau_syn, b.neuron.tau_mem, b.neuron.threshold)


def test_input_shape_with_singleton_axes_is_flat(tmp_path):
    """Rockpool's to_nir writes (batch, time, channels)-like input shapes such as [1, 1, n]."""
    g = _chain(np.random.default_rng(0))
    g.nodes["input"] = nir.Input(input_type={"input": np.array([1, 1, 3])})
    assert _import_graph(tmp_path, g).network.sizes == (3, 5, 2)
    g.nodes["input"] = nir.Input(input_type={"input": np.array([3, 2])})
    with pytest.raises(NetworkSpecError, match=r"node 'input' \(Input\): input shape \[3, 2\] is not flat"):
        _import_graph(tmp_path, g)
