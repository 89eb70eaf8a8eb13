"""In-the-loop sessions: measured-time gradients, logs, atomic checkpoints, crash + resume."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hwloop.inloop import measured_forward, spsa_gradient
from hwloop.models import network_forward
from hwloop.network import Network
from hwloop.session import LoopConfig, SessionError, run_session
from hwloop.training import default_config, train


@pytest.fixture(scope="module")
def init_net(tmp_path_factory):
    cfg = default_config("lif", "yinyang", epochs=2, hidden=(30,), seed=3)
    res = train(cfg, progress=False)
    path = tmp_path_factory.mktemp("init") / "init.hwnet"
    res.network.save(path)
    return path


def small_cfg(init, **kw):
    base = dict(target="software", dataset="yinyang", init=str(init), epochs=2, batch_size=50,
                train_limit=200, eval_limit=100, lr=0.002, seed=7)
    base.update(kw)
    return LoopConfig(**base)


@pytest.mark.parametrize("grad_at", ["measured", "model"])
def test_measured_forward_on_software_equals_software_training(init_net, grad_at):
    """On the float model itself, hardware-forward/software-backward gives the
    software gradient exactly."""
    from hwloop.backends import open_target

    net = Network.load(init_net)
    x = torch.as_tensor(net.encoding.encode(np.random.default_rng(0).uniform(size=(40, 4))))
    w1 = [torch.tensor(w).requires_grad_(True) for w in net.weights()]
    w2 = [torch.tensor(w).requires_grad_(True) for w in net.weights()]
    with open_target("software") as be:
        t_hw, m = measured_forward(be, net, w1, x, grad_at=grad_at)
    t_sw = network_forward(net.layers, w2, x, net.t_max)
    for a, b in zip(t_hw, t_sw):
        torch.testing.assert_close(a, b)
    sel = torch.isfinite(t_hw[-1])
    t_hw[-1][sel].sum().backward()
    t_sw[-1][sel].sum().backward()
    for a, b in zip(w1, w2):
        torch.testing.assert_close(a.grad, b.grad)
        assert a.grad.abs().sum() > 0


def test_spsa_estimates_a_linear_gradient():
    rng = np.random.default_rng(0)
    target = [torch.tensor([[1.0, -2.0], [0.5, 3.0]])]

    def loss_of(ws):
        return float((ws[0] * target[0]).sum())

    g, runs = spsa_gradient(loss_of, [torch.zeros(2, 2, dtype=torch.float32)], 0.1, 400, rng)
    assert runs == 800
    torch.testing.assert_close(g[0], target[0], atol=0.35, rtol=0)


def test_session_logs_and_improves(init_net, tmp_path):
    res = run_session(tmp_path / "s", small_cfg(init_net), progress=False)
    assert res["ok"] and not res["interrupted"]
    rows = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 9))
    for r in train_rows:
        assert {"loss", "batch_accuracy", "silent", "target_seconds", "host_seconds"} <= set(r)
    evals = [r for r in rows if r["kind"] == "eval"]
    assert len(evals) == 3  # start + one per epoch
    assert (tmp_path / "s" / "summary.json").exists()
    Network.load(tmp_path / "s" / "network.hwnet")
    with pytest.raises(SessionError, match="already complete"):
        run_session(tmp_path / "s", resume=True, progress=False)
    with pytest.raises(SessionError, match="not empty"):
        run_session(tmp_path / "s", small_cfg(init_net), progress=False)


def _final_weights(d):
    return [w for w in Network.load(d / "network.hwnet").weights()]


@pytest.mark.parametrize("gradient", ["model", "spsa"])
def test_crash_and_resume_gives_identical_weights(init_net, tmp_path, gradient):
    cfg = small_cfg(init_net, gradient=gradient, spsa_pairs=2)
    run_session(tmp_path / "ref", cfg, progress=False)
    crash_at = int(np.random.default_rng().integers(1, 8))
    cmd = [sys.executable, "-m", "hwloop", "loop", "--dir", str(tmp_path / "crash"), "--target", "software",
           "--dataset", "yinyang", "--init", str(init_net), "--epochs", "2", "--batch-size", "50",
           "--train-limit", "200", "--eval-limit", "100", "--lr", "0.002", "--seed", "7",
           "--gradient", gradient, "--spsa-pairs", "2", "--quiet", "--crash-after-step", str(crash_at)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert not (tmp_path / "crash" / "summary.json").exists()
    res = run_session(tmp_path / "crash", resume=True, progress=False)
    assert res["steps"] == 8
    for a, b in zip(_final_weights(tmp_path / "ref"), _final_weights(tmp_path / "crash")):
        np.testing.assert_array_equal(a, b)
    steps = [json.loads(line)["step"] for line in (tmp_path / "crash" / "log.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == list(range(1, 9))  # every step logged exactly once


def test_weight_averaging(init_net, tmp_path):
    """--ema: the saved networks are the running average of the weights
    (checked against the recurrence from the init and the raw weights), and
    a crash + resume still ends bit-identical."""
    ema = 0.6
    run_session(tmp_path / "one", small_cfg(init_net, epochs=1, train_limit=50, ema=ema), progress=False)
    from hwloop.session.checkpoint import decode_checkpoint

    ck = decode_checkpoint((tmp_path / "one" / "checkpoint.ckpt").read_bytes())
    init = Network.load(init_net).weights()
    for w0, w1, got in zip(init, ck["weights"], Network.load(tmp_path / "one" / "network.hwnet").weights()):
        np.testing.assert_allclose(got, ema * w0 + (1 - ema) * w1.numpy(), rtol=0, atol=1e-12)
        assert np.abs(w1.numpy() - w0).max() > 0  # the step did move the raw weights
    row = [json.loads(line) for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()][1]
    assert row["io_seconds"] >= 0 and row["deploy_seconds"] > 0

    run_session(tmp_path / "ref", small_cfg(init_net, ema=ema, input_jitter=0.05), progress=False)
    cmd = [sys.executable, "-m", "hwloop", "loop", "--dir", str(tmp_path / "crash"), "--target", "software",
           "--dataset", "yinyang", "--init", str(init_net), "--epochs", "2", "--batch-size", "50",
           "--train-limit", "200", "--eval-limit", "100", "--lr", "0.002", "--seed", "7", "--ema", str(ema),
           "--input-jitter", "0.05", "--quiet", "--crash-after-step", "5"]
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=300).returncode == 3
    run_session(tmp_path / "crash", resume=True, progress=False)
    for a, b in zip(_final_weights(tmp_path / "ref"), _final_weights(tmp_path / "crash")):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(SessionError, match="ema"):
        run_session(tmp_path / "bad", small_cfg(init_net, ema=1.0), progress=False)
    with pytest.raises(SessionError, match="input_jitter"):
        run_session(tmp_path / "bad2", small_cfg(init_net, input_jitter=-0.1), progress=False)


def test_input_jitter_changes_the_batches_reproducibly(init_net, tmp_path):
    runs = {}
    for name, jitter in (("a", 0.1), ("b", 0.1), ("plain", 0.0)):
        run_session(tmp_path / name, small_cfg(init_net, epochs=1, input_jitter=jitter), progress=False)
        runs[name] = _final_weights(tmp_path / name)
    for a, b in zip(runs["a"], runs["b"]):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - p).max() > 0 for a, p in zip(runs["a"], runs["plain"]))


def test_bad_session_inputs(tmp_path, init_net):
    with pytest.raises(SessionError, match="init"):
        run_session(tmp_path / "a", LoopConfig(), progress=False)
    with pytest.raises(SessionError, match="not a session"):
        run_session(tmp_path / "nothing", resume=True, progress=False)
    bad = tmp_path / "bad.hwnet"
    bad.write_text("x")
    from hwloop.errors import NetworkFileError

    with pytest.raises(NetworkFileError):
        run_session(tmp_path / "b", small_cfg(bad), progress=False)
    assert not (tmp_path / "b" / "config.json").exists()
    from hwloop.errors import TargetError

    with pytest.raises(TargetError, match="unknown target"):
        run_session(tmp_path / "c", small_cfg(init_net, target="nope"), progress=False)
    assert not (tmp_path / "c").exists()


def test_report_of_a_session(init_net, tmp_path):
    """`hwloop report`: Markdown + four PNGs; on the software target the
    measured times *are* the model's, so the scatter statistics must say so."""
    from hwloop.report import write_report

    run_session(tmp_path / "s", small_cfg(init_net, epochs=1), progress=False)
    res = write_report(str(tmp_path / "s"), samples=100)
    md = (tmp_path / "s" / "report" / "report.md").read_text()
    for png in ("accuracy_loss.png", "silent.png", "measured_vs_model.png", "raster.png"):
        assert f"({png})" in md
        assert (tmp_path / "s" / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "backend I/O" in md and "host share" in md
    for layer in (0, 1):
        assert res[f"layer{layer}_median_abs_diff"] == pytest.approx(0.0, abs=1e-9)
        assert res[f"layer{layer}_fire_agreement"] == pytest.approx(1.0)
    with pytest.raises(SessionError):
        write_report(str(tmp_path / "nothing"))
