"""`hwloop report`: the data each figure is drawn from (not its pixels).

The fixes of issue 13 ("Reports"): a raster per layer with labels, the true
and predicted class and the bias spikes, drawn from the session's best
network and saying so; missed and extra spikes marked and counted in the
measured-vs-model figure; a smoothed loss curve with epoch marks; progress
on stderr while the target runs again.
"""

import json
import shutil

import numpy as np
import pytest

from hwloop.cli import main
from hwloop.errors import HwloopError
from hwloop.network import Network
from hwloop.session import LoopConfig, run_session
from hwloop.training import default_config, train


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A finished two-epoch session on the software target."""
    root = tmp_path_factory.mktemp("report")
    res = train(default_config("lif", "yinyang", epochs=2, hidden=(20,), seed=5, threads=1), progress=False)
    res.network.save(root / "init.hwnet")
    cfg = LoopConfig(target="software", dataset="yinyang", init=str(root / "init.hwnet"), epochs=2, batch_size=50,
                     train_limit=200, eval_limit=100, lr=0.002, seed=1)
    run_session(root / "s", cfg, progress=False)
    return root / "s"


# ------------------------------------------------------------- loss curve
def _rows(losses, per_epoch):
    return [{"step": i + 1, "epoch": i // per_epoch + 1, "loss": v} for i, v in enumerate(losses)]


def test_loss_curve_is_a_trailing_mean_with_epoch_boundaries():
    from hwloop.report import loss_curve

    losses = [4.0, 2.0, 6.0, 0.0, 1.0, 3.0, 5.0]
    c = loss_curve(_rows(losses, 3), window=2)
    assert c["steps"] == [1, 2, 3, 4, 5, 6, 7]
    assert c["loss"] == losses  # the raw values are kept
    assert c["smoothed"] == pytest.approx([4.0, 3.0, 4.0, 3.0, 0.5, 2.0, 4.0])
    # epochs 1 and 2 end at steps 3 and 6; the unfinished third has no mark
    assert c["epoch_ends"] == [[1, 3], [2, 6]]
    assert c["window"] == 2


def test_loss_curve_default_window_is_a_fifth_of_an_epoch():
    from hwloop.report import loss_curve

    c = loss_curve(_rows(np.arange(40.0).tolist(), 20))
    assert c["window"] == 4
    assert c["smoothed"][10] == pytest.approx(np.mean([7.0, 8.0, 9.0, 10.0]))
    assert loss_curve(_rows([1.0, 2.0], 2))["window"] == 1
    with pytest.raises(HwloopError, match="window"):
        loss_curve(_rows([1.0, 2.0], 2), window=0)


# ---------------------------------------------------- measured vs model
def test_spike_agreement_counts_missed_and_extra_spikes():
    from hwloop.report import spike_agreement

    inf = np.inf
    model = [np.array([[1.0, 2.0, inf, inf], [0.5, inf, 3.0, 1.0]])]
    meas = [np.array([[1.25, inf, 2.5, inf], [0.5, inf, inf, 1.5]])]
    (a,) = spike_agreement(meas, model)
    assert (a["both"], a["missed"], a["extra"], a["silent_both"]) == (3, 2, 1, 2)
    assert a["missed_at"].tolist() == [2.0, 3.0]  # where the model fired and the target did not
    assert a["extra_at"].tolist() == [2.5]  # where the target fired and the model did not
    assert sorted(map(tuple, a["pairs"].tolist())) == [(0.5, 0.5), (1.0, 1.25), (1.0, 1.5)]
    assert a["fire_agreement"] == pytest.approx(5 / 8)
    assert a["median_abs_diff"] == pytest.approx(0.25)
    (none,) = spike_agreement([np.full((2, 2), inf)], [np.full((2, 2), inf)])
    assert none["median_abs_diff"] is None and none["fire_agreement"] == 1.0


# ------------------------------------------------------------------ raster
def test_raster_has_a_labelled_panel_per_layer_bias_spikes_and_the_classes():
    from hwloop.backends import open_target
    from hwloop.data import load_dataset
    from hwloop.data.decoding import decode
    from hwloop.pretrained import path
    from hwloop.report import raster

    net = Network.load(path("yinyang-lif.hwnet"))
    ds = load_dataset("yinyang", "val")
    t_in = net.encoding.encode(ds.x[:20])
    with open_target("software") as be:
        be.load(net)
        times = be.run(t_in).times
    pred, _ = decode(times[-1])
    k = int(np.nonzero(pred != ds.y[:20])[0][0]) if (pred != ds.y[:20]).any() else 3
    r = raster(net, t_in, times, sample=k, label=int(ds.y[k]))
    names = [p["name"] for p in r["panels"]]
    assert names == ["input (4 features)", "layer 0: hidden (120 lif)", "layer 1: output (3 lif)"]
    inp, hid, outp = r["panels"]
    # every spike of the sample, in its own panel, rows = neuron index
    assert inp["spikes"] == [[j, float(t_in[k, j])] for j in range(4)]
    fired = np.nonzero(np.isfinite(times[0][k]))[0]
    assert [s[0] for s in hid["spikes"]] == fired.tolist()
    # bias spikes with the sources they belong to: layer 0's with the inputs, layer 1's with the hidden layer
    assert inp["bias"] == [[4, net.layers[0].bias_times[0], 0]]
    assert hid["bias"] == [[120, net.layers[1].bias_times[0], 1]]
    assert outp["bias"] == []
    assert inp["neurons"][-1] == "bias -> layer 0" and len(hid["neurons"]) == 121
    assert outp["neurons"] == ["yin", "yang", "dot"]
    assert r["true_class"] == net.decoding.classes[ds.y[k]]
    if pred[k] >= 0:
        assert r["predicted_class"] == net.decoding.classes[pred[k]]
    assert r["correct"] == bool(pred[k] == ds.y[k])
    with pytest.raises(HwloopError, match="out of range"):
        raster(net, t_in, times, sample=20)


def test_raster_names_an_undecided_sample():
    from hwloop.pretrained import path
    from hwloop.report import raster

    net = Network.load(path("yinyang-lif.hwnet"))
    t_in = np.zeros((2, 4))
    times = [np.full((2, 120), np.inf), np.array([[1.0, 1.0, 2.0], [np.inf] * 3])]
    assert raster(net, t_in, times, 0)["predicted_class"] == "undecided (tie)"
    assert raster(net, t_in, times, 1)["predicted_class"] == "undecided (all outputs silent)"


# ------------------------------------------------------- the whole report
def test_report_uses_the_best_network_and_says_so(session, tmp_path):
    """best.hwnet is made different from network.hwnet on purpose; the
    target-side figures must come from best.hwnet by default."""
    from hwloop.backends import open_target
    from hwloop.data import load_dataset
    from hwloop.report import write_report

    s = tmp_path / "s"
    shutil.copytree(session, s)
    final = Network.load(s / "network.hwnet")
    best = final.with_weights([w * 1.3 for w in final.weights()])
    best.save(s / "best.hwnet")
    t_in = final.encoding.encode(load_dataset("yinyang", "val").x[:50])

    def first_hidden_spikes(net):
        with open_target("software") as be:
            be.load(net)
            t = be.run(t_in).times[0][0]
        return [[int(j), float(t[j])] for j in np.nonzero(np.isfinite(t))[0]]

    assert first_hidden_spikes(best) != first_hidden_spikes(final)
    res = write_report(str(s), str(tmp_path / "best"), samples=50)
    data = json.loads((tmp_path / "best" / "data.json").read_text())
    assert res["network"] == data["network"] == "best.hwnet"
    assert data["raster"]["panels"][1]["spikes"] == first_hidden_spikes(best)
    md = (tmp_path / "best" / "report.md").read_text()
    assert "`best.hwnet`, the selected network" in md and "**selected**" in md and "95 % interval" in md
    res = write_report(str(s), str(tmp_path / "final"), samples=50, network="final")
    data = json.loads((tmp_path / "final" / "data.json").read_text())
    assert res["network"] == "network.hwnet"
    assert data["raster"]["panels"][1]["spikes"] == first_hidden_spikes(final)
    assert "`network.hwnet`, the weights the session ended with" in (tmp_path / "final" / "report.md").read_text()
    with pytest.raises(HwloopError, match="network must be one of"):
        write_report(str(s), str(tmp_path / "x"), network="latest")


def test_report_data_and_markdown_agree(session, tmp_path):
    from hwloop.report import write_report

    res = write_report(str(session), str(tmp_path), samples=60, sample=7, smooth=3)
    data = json.loads((tmp_path / "data.json").read_text())
    md = (tmp_path / "report.md").read_text()
    # 200 training samples in batches of 50: 4 steps per epoch, 2 epochs
    assert data["loss_curve"]["epoch_ends"] == [[1, 4]]
    assert data["loss_curve"]["window"] == 3 and len(data["loss_curve"]["smoothed"]) == 8
    sizes = (20, 3)
    for i, a in enumerate(data["agreement"]):
        assert a["both"] + a["missed"] + a["extra"] + a["silent_both"] == 60 * sizes[i]
        assert (res[f"layer{i}_missed"], res[f"layer{i}_extra"]) == (a["missed"], a["extra"]) == (0, 0)
        assert f"| {i} | {a['both']} | 0 | 0 |" in md
    assert data["raster"]["sample"] == 7 and data["samples"] == 60
    assert f"Validation sample 7: true class {data['raster']['true_class']}" in md
    with pytest.raises(HwloopError, match="sample"):
        write_report(str(session), str(tmp_path), samples=10, sample=10)


def test_report_shows_progress_on_stderr(session, tmp_path, capsys):
    assert main(["report", str(session), "--out", str(tmp_path / "a"), "--samples", "40"]) == 0
    err = capsys.readouterr().err
    assert "report: running 40 validation samples of yinyang on software with best.hwnet" in err
    assert "40/40" in err  # the progress bar
    assert main(["report", str(session), "--out", str(tmp_path / "b"), "--samples", "40", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_report_cli_options(session, tmp_path, capsys):
    assert main(["report", str(session), "--out", str(tmp_path), "--samples", "30", "--sample", "2",
                 "--network", "final", "--smooth", "2", "--quiet", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["ok"] and res["network"] == "network.hwnet"
    data = json.loads((tmp_path / "data.json").read_text())
    assert data["raster"]["sample"] == 2 and data["loss_curve"]["window"] == 2
    assert main(["report", str(session), "--out", str(tmp_path), "--samples", "0", "--quiet"]) == 2
    assert "samples must be >= 1" in capsys.readouterr().err
