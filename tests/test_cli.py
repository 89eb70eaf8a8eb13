"""The CLI end to end on small runs: JSON last line, errors as one line."""

import json

import numpy as np
import pytest

from hwloop.cli import main


def run_json(capsys, argv):
    code = main(argv + ["--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "yy.hwnet"
    code = main(["train", "--dataset", "yinyang", "--epochs", "3", "--seed", "1", "--out", str(path),
                 "--quiet"])
    assert code == 0
    return path


def test_train_json(capsys, tmp_path):
    code, res = run_json(capsys, ["train", "--dataset", "yinyang", "--epochs", "2", "--hidden", "20",
                                  "--out", str(tmp_path / "n.hwnet"), "--quiet",
                                  "--history", str(tmp_path / "h.jsonl")])
    assert code == 0 and res["ok"] is True
    assert set(res["accuracy"]) == {"train", "val", "test"}
    assert (tmp_path / "n.hwnet").exists()
    rows = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_eval_and_simulate(capsys, tmp_path, small_net):
    code, res = run_json(capsys, ["eval", str(small_net), "--dataset", "yinyang", "--limit", "200"])
    assert code == 0 and res["n"] == 200
    assert 0.0 <= res["accuracy"] <= 1.0
    assert len(res["spikes"]["layers"]) == 2
    assert "mapping" not in res  # the float model quantises nothing
    code, res = run_json(capsys, ["eval", str(small_net), "--dataset", "yinyang", "--limit", "50",
                                  "--target", "bitexact?steps=150"])
    assert code == 0 and [r["layer"] for r in res["mapping"]] == [0, 1]
    assert all(0 < r["weight_err_rms"] <= r["w_max"] / 127 for r in res["mapping"])
    assert "150 steps" in res["mapping_text"]
    x = np.random.default_rng(0).uniform(size=(7, 2))
    x = np.concatenate([x, 1 - x], axis=1)
    np.save(tmp_path / "x.npy", x)
    code, res = run_json(capsys, ["simulate", str(small_net), "--inputs", str(tmp_path / "x.npy"),
                                  "--out", str(tmp_path / "t.npz")])
    assert code == 0 and res["layers"] == [[7, 120], [7, 3]]
    z = np.load(tmp_path / "t.npz")
    assert z["layer_1"].shape == (7, 3) and z["input_times"].shape == (7, 4)


def test_errors_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.hwnet"
    bad.write_bytes(b"garbage")
    code, res = run_json(capsys, ["eval", str(bad), "--dataset", "yinyang"])
    assert code == 2 and res["ok"] is False and "not an hwloop network" in res["error"]
    code = main(["eval", str(bad), "--dataset", "yinyang"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("hwloop eval: error:")


def test_simulate_bad_inputs(capsys, tmp_path, small_net):
    np.save(tmp_path / "x.npy", np.zeros((3, 5)))
    code, res = run_json(capsys, ["simulate", str(small_net), "--inputs", str(tmp_path / "x.npy"),
                                  "--out", str(tmp_path / "t.npz")])
    assert code == 2 and "expected shape (N, 4)" in res["error"]
    assert not (tmp_path / "t.npz").exists()


def test_unknown_target(capsys, small_net):
    code, res = run_json(capsys, ["eval", str(small_net), "--dataset", "yinyang", "--target", "nope"])
    assert code == 2 and "unknown target" in res["error"]


def test_devices(capsys):
    code, res = run_json(capsys, ["devices"])
    assert code == 0
    urls = [r["url"] for r in res["targets"]]
    assert "software" in urls


@pytest.mark.slow
def test_demo_runs_in_the_loop_on_the_chip(capsys, tmp_path):
    """The README's main job, shortened: before/after accuracies on qif-emu."""
    code, res = run_json(capsys, ["demo", "--epochs", "1", "--train-limit", "200",
                                  "--dir", str(tmp_path / "demo")])
    assert code == 0
    assert res["software_accuracy"] > 0.9
    assert 0.0 <= res["before"] <= 1.0 and 0.0 <= res["after"] <= 1.0
    assert (tmp_path / "demo" / "summary.json").exists()
