"""CLI of the spike-train family: train --model cuba, eval, simulate (events,
--probe), train --rule superspike; --json everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwloop.cli import main


def run_json(capsys, argv):
    code = main(argv + ["--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    return json.loads(out[-1])


@pytest.fixture(scope="module")
def cuba_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cuba") / "xor.hwnet"
    code = main(["train", "--model", "cuba", "--dataset", "delayed-xor", "--epochs", "1", "--hidden", "12",
                 "--recurrent", "--out", str(path), "--quiet"])
    assert code == 0
    return path


def test_train_cuba_writes_a_version_2_network(cuba_file):
    from hwloop.network import Network

    net = Network.load(cuba_file)
    assert net.is_spike_train and net.layers[0].recurrent is not None and net.provenance.dataset == "delayed-xor"


def test_eval_cuba_reproduces_the_recorded_accuracy(capsys, cuba_file):
    res = run_json(capsys, ["eval", str(cuba_file)])
    assert res["dataset"] == "delayed-xor" and res["n"] > 0
    # the trainer counts a tie as the lowest class (argmax); eval reports ties as undecided, and both figures
    assert res["accuracy_ties_to_first_class"] == pytest.approx(res["recorded_accuracy"], abs=1e-12)
    assert res["accuracy"] == pytest.approx(res["accuracy_ties_to_first_class"] - res["n_undecided_correct_by_tie"]
                                            / res["n"], abs=1e-12)


def test_simulate_cuba_events_and_probe(capsys, tmp_path, cuba_file):
    from hwloop.network import Network

    net = Network.load(cuba_file)
    x = np.random.default_rng(0).uniform(size=(5, net.encoding.n_features))
    np.save(tmp_path / "x.npy", x)
    res = run_json(capsys, ["simulate", str(cuba_file), "--inputs", str(tmp_path / "x.npy"),
                            "--out", str(tmp_path / "o.npz"), "--probe", "--raster"])
    assert res["n"] == 5 and res["probe"] and len(res["events"]) == 2
    z = np.load(tmp_path / "o.npz")
    ev = z["layer_0_events"]
    assert ev.shape == (res["events"][0], 3)
    r = z["layer_0_raster"]
    assert r.sum() == len(ev) and (r[ev[:, 0], ev[:, 1], ev[:, 2]] == 1).all()
    assert z["layer_0_membrane"].shape == (net.n_steps, 5, net.layers[0].n_out)
    m = net.run("software", x)
    assert np.array_equal(z["layer_1_first"], m.times[1])
    # without --probe no membranes are written
    run_json(capsys, ["simulate", str(cuba_file), "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.npz")])
    assert "layer_0_membrane" not in np.load(tmp_path / "p.npz").files


def test_cuba_refused_by_other_targets_and_bad_flags(capsys, tmp_path, cuba_file):
    assert main(["eval", str(cuba_file), "--target", "qif-emu"]) == 2
    assert "first-spike-time networks only" in capsys.readouterr().err
    assert main(["train", "--model", "cuba", "--dataset", "mnist", "--out", str(tmp_path / "a.hwnet")]) == 2
    assert "randman | yinyang | digits" in capsys.readouterr().err
    assert main(["train", "--recurrent", "--out", str(tmp_path / "b.hwnet")]) == 2
    assert "--model cuba" in capsys.readouterr().err


def test_train_superspike_json(capsys, tmp_path):
    res = run_json(capsys, ["train", "--rule", "superspike", "--feedback", "random", "--trials", "2",
                            "--hidden", "8", "--out", str(tmp_path / "ss.json")])
    assert res["feedback"] == "random" and res["trials"] == 2 and res["start_distance"] > 0
    rec = json.loads((tmp_path / "ss.json").read_text())
    assert len(rec["distances"]) == 2


def test_export_refuses_a_spike_train_network(capsys, tmp_path, cuba_file):
    assert main(["export", str(cuba_file), str(tmp_path / "x.nir"), "--format", "nir"]) == 2
    assert "cannot be exported yet" in capsys.readouterr().err
    assert not (tmp_path / "x.nir").exists()
