"""Recurrent weights trained in the loop (issue 15): a spike-train session on a
network with recurrent layers trains the recurrent matrices with the
feed-forward ones -- master weights, Adam state, checkpoints, exact resume,
selection and the deployed network all carry them -- unless told to freeze them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hwloop.network import Network
from hwloop.session import LoopConfig, run_session
from hwloop.session.checkpoint import decode_checkpoint
from session_compare import assert_same_session

DATA = {"samples_per_class": 40, "n_classes": 3}


@pytest.fixture(scope="module")
def rec_net(tmp_path_factory):
    """A small recurrent CUBA network on Randman (3 classes, 16 recurrent hidden), trained briefly in software."""
    from hwloop.trains_training import defaults_for, to_network, train

    cfg = defaults_for("randman", hidden=(16,), recurrent=True, epochs=3, seed=0, threads=1, dtype="float64",
                       batch_size=40, data_options=dict(DATA))
    path = tmp_path_factory.mktemp("net") / "rec.hwnet"
    to_network(train(cfg)).save(path)
    net = Network.load(path)
    assert net.layers[0].recurrent is not None and net.layers[-1].recurrent is None
    return str(path)


def _cfg(init, **kw) -> LoopConfig:
    base = dict(target="software", dataset="randman", init=init, epochs=1, batch_size=30, lr=5e-3, seed=1,
                eval_every=2, eval_limit=45, compare_software=True)
    base.update(kw)
    return LoopConfig(**base)


def _checkpoint(d: Path) -> dict:
    return decode_checkpoint((d / "checkpoint.ckpt").read_bytes())


def test_a_software_session_trains_and_deploys_the_recurrent_weights(rec_net, tmp_path):
    d = tmp_path / "s"
    res = run_session(d, _cfg(rec_net), progress=False)
    assert res["ok"] and not res["interrupted"]
    assert json.loads((d / "config.json").read_text())["train_recurrent"] is True
    start, end = Network.load(d / "init.hwnet"), Network.load(d / "network.hwnet")
    r0, r1 = start.layers[0].recurrent, end.layers[0].recurrent
    assert r1 is not None and r1.shape == r0.shape
    assert float(np.abs(r1 - r0).max()) > 1e-4  # trained
    assert end.layers[1].recurrent is None
    st = _checkpoint(d)
    # master weights, EMA slot and Adam state: one per layer, then the recurrent matrix
    assert len(st["weights"]) == len(st["averaged"]) == len(st["adam"]) == 3
    assert st["adam"][2] is not None and float(st["adam"][2]["exp_avg_sq"].max()) > 0
    np.testing.assert_array_equal(st["weights"][2].numpy(), r1)  # the deployed network is the master's
    for a, b in zip(st["weights"][:2], end.weights()):
        np.testing.assert_array_equal(a.numpy(), b)
    # the selected network carries the recurrent matrix of its step
    best = Network.load(d / "best.hwnet")
    sel = st["selection"]["best_step"]
    if sel == st["step"]:
        np.testing.assert_array_equal(best.layers[0].recurrent, r1)
    elif sel == 0:
        np.testing.assert_array_equal(best.layers[0].recurrent, r0)
    # the evaluator deploys the recurrent matrix too: the software figure of the
    # trained weights is the target's on `software`
    evals = [json.loads(x) for x in (d / "log.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["kind"] == "eval"]
    assert evals and all(r["software_val_accuracy"] == r["val_accuracy"] for r in evals)


def test_frozen_recurrent_weights_stay_the_start_networks(rec_net, tmp_path):
    d = tmp_path / "f"
    run_session(d, _cfg(rec_net, train_recurrent=False, compare_software=False), progress=False)
    start, end = Network.load(d / "init.hwnet"), Network.load(d / "network.hwnet")
    np.testing.assert_array_equal(end.layers[0].recurrent, start.layers[0].recurrent)
    assert not np.array_equal(end.layers[0].weight, start.layers[0].weight)
    assert len(_checkpoint(d)["weights"]) == 2  # the layout of every session before this option


def test_a_config_written_before_the_option_keeps_its_recurrent_weights_frozen():
    old = _cfg("x.hwnet").to_json()
    del old["train_recurrent"]
    assert LoopConfig.from_json(old).train_recurrent is False
    assert LoopConfig().train_recurrent is True


def test_freeze_recurrent_on_the_command_line_and_its_bad_value(rec_net, tmp_path):
    from hwloop.session import SessionError

    with pytest.raises(SessionError, match="train_recurrent must be true or false"):
        run_session(tmp_path / "b", _cfg(rec_net, train_recurrent="yes"), progress=False)
    from hwloop.cli import main

    rc = main(["loop", "--dir", str(tmp_path / "c"), "--target", "software", "--init", rec_net, "--epochs", "1",
               "--batch-size", "60", "--eval-limit", "15", "--freeze-recurrent", "--no-final-test", "--quiet"])
    assert rc == 0
    assert json.loads((tmp_path / "c" / "config.json").read_text())["train_recurrent"] is False


def test_network_with_and_its_layout_errors(rec_net):
    from hwloop.errors import NetworkSpecError
    from hwloop.inloop import network_with, split_weights, trainable_weights

    net = Network.load(rec_net)
    ws = trainable_weights(net, recurrent=True)
    assert len(ws) == 3 and torch.equal(ws[2], torch.tensor(net.layers[0].recurrent))
    ws[2] = ws[2] + 0.5
    out = network_with(net, ws)
    np.testing.assert_array_equal(out.layers[0].recurrent, net.layers[0].recurrent + 0.5)
    assert network_with(net, ws[:2]).layers[0].recurrent is not None  # the template's
    np.testing.assert_array_equal(network_with(net, ws[:2]).layers[0].recurrent, net.layers[0].recurrent)
    ff, rec = split_weights(net, ws)
    assert rec[1] is None and rec[0] is ws[2]
    with pytest.raises(NetworkSpecError, match="recurrent"):
        network_with(net, ws + [ws[2]])
    with pytest.raises(NetworkSpecError, match="recurrent weight shape"):
        network_with(net, ws[:2] + [torch.zeros(3, 3, dtype=torch.float64)])


def test_resume_of_a_recurrent_session_on_bitexact_is_exact(rec_net, tmp_path):
    """Killed after step 3 (before that step's checkpoint) and resumed: the same
    session as the uninterrupted one, recurrent matrices bit for bit."""
    target = "bitexact?weight_bits=4"
    cmd = [sys.executable, "-m", "hwloop", "loop", "--dir", str(tmp_path / "crash"), "--target", target,
           "--init", rec_net, "--epochs", "1", "--batch-size", "30", "--lr", "0.005", "--seed", "1",
           "--eval-limit", "45", "--eval-every", "2", "--quiet", "--crash-after-step", "3"]
    # the crashed process runs with this one's thread count: a float64 matrix product's
    # rounding may depend on how many threads split it (the fixture's training set it)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 3, proc.stderr
    saved = json.loads((tmp_path / "crash" / "config.json").read_text())
    assert saved["train_recurrent"] is True and saved["model"] == "cuba"
    run_session(tmp_path / "crash", resume=True, progress=False)
    ref = LoopConfig(**{**saved, "max_missing": tuple(saved["max_missing"])})
    run_session(tmp_path / "ref", ref, progress=False)
    assert_same_session(tmp_path / "ref", tmp_path / "crash")
    start = Network.load(tmp_path / "ref" / "init.hwnet")
    for name in ("network.hwnet", "best.hwnet"):
        a, b = (Network.load(tmp_path / s / name).layers[0].recurrent for s in ("ref", "crash"))
        np.testing.assert_array_equal(a, b, err_msg=name)
    end = Network.load(tmp_path / "ref" / "network.hwnet")
    assert float(np.abs(end.layers[0].recurrent - start.layers[0].recurrent).max()) > 1e-4
    # bitexact runs the deployed recurrent matrix: the trained and the start one measure differently
    with_start = end.with_weights(end.weights())
    import dataclasses

    with_start = dataclasses.replace(with_start, layers=(dataclasses.replace(end.layers[0],
                                                                            recurrent=start.layers[0].recurrent),
                                                         end.layers[1]))
    from hwloop.session.trains_parts import TrainsData

    data = TrainsData(ref, start)
    raster = data.val.raster[:, :45].numpy()
    a, b = end.run(target, raster=raster), with_start.run(target, raster=raster)
    assert any(not np.array_equal(x.raster(np.float64), y.raster(np.float64)) for x, y in zip(a.events, b.events))


def test_ema_and_the_spike_only_signal_carry_the_recurrent_matrix(rec_net, tmp_path):
    d = tmp_path / "e"
    run_session(d, _cfg(rec_net, ema=0.9, signal="spikes", compare_software=False, final_test=False),
                progress=False)
    st = _checkpoint(d)
    end = Network.load(d / "network.hwnet")
    assert not torch.equal(st["averaged"][2], st["weights"][2])
    np.testing.assert_array_equal(end.layers[0].recurrent, st["averaged"][2].numpy())  # the EMA is deployed
    start = Network.load(d / "init.hwnet")
    assert float(np.abs(end.layers[0].recurrent - start.layers[0].recurrent).max()) > 1e-4


def _strip_option(d: Path) -> None:
    """Make ``d`` look like a session of a hwloop before ``train_recurrent``: the
    key gone from config.json and from the checkpoints' recorded configuration."""
    from hwloop.session.checkpoint import encode_checkpoint

    cfg = json.loads((d / "config.json").read_text())
    del cfg["train_recurrent"]
    (d / "config.json").write_text(json.dumps(cfg))
    for name in ("checkpoint.ckpt", "checkpoint.prev.ckpt"):
        if (d / name).exists():
            st = decode_checkpoint((d / name).read_bytes())
            del st["config"]["train_recurrent"]
            (d / name).write_bytes(encode_checkpoint(st))


def test_a_recurrent_session_of_an_older_hwloop_resumes_as_it_ran(rec_net, tmp_path):
    """Before the option a recurrent network's session trained the feed-forward
    matrices only; such a session resumes so (frozen), exactly as it would have
    ended; a config.json changed to train them is refused by name."""
    cmd = [sys.executable, "-m", "hwloop", "loop", "--dir", str(tmp_path / "old"), "--target", "software",
           "--init", rec_net, "--epochs", "1", "--batch-size", "30", "--lr", "0.005", "--seed", "1",
           "--eval-limit", "45", "--eval-every", "2", "--freeze-recurrent", "--quiet", "--crash-after-step", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 3, proc.stderr
    _strip_option(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    changed = {**saved, "train_recurrent": True}
    (tmp_path / "old" / "config.json").write_text(json.dumps(changed))
    from hwloop.session import SessionError

    with pytest.raises(SessionError, match=r"train_recurrent: False in the checkpoint, True now"):
        run_session(tmp_path / "old", resume=True, progress=False)
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    run_session(tmp_path / "old", resume=True, progress=False)
    assert len(_checkpoint(tmp_path / "old")["weights"]) == 2
    ref = LoopConfig(**{**saved, "max_missing": tuple(saved["max_missing"]), "train_recurrent": False})
    run_session(tmp_path / "ref", ref, progress=False)
    assert_same_session(tmp_path / "ref", tmp_path / "old")
    start = Network.load(tmp_path / "old" / "init.hwnet")
    np.testing.assert_array_equal(Network.load(tmp_path / "old" / "network.hwnet").layers[0].recurrent,
                                  start.layers[0].recurrent)
