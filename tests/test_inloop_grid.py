"""In-the-loop training on a time grid (bitexact, lava-sim): the worst-case
output times, the gradient at model times, and lava-sim sessions matching
bitexact step for step."""

import json

import numpy as np
import pytest
import torch

from hwloop.backends import open_target
from hwloop.inloop import measured_forward, worst_case_output
from hwloop.models import network_forward
from hwloop.network import Network
from hwloop.session import LoopConfig, SessionError, run_session
from hwloop.training import default_config, train


@pytest.fixture(scope="module")
def init_net(tmp_path_factory):
    cfg = default_config("lif", "yinyang", epochs=3, hidden=(30,), seed=5)
    res = train(cfg, progress=False)
    path = tmp_path_factory.mktemp("grid") / "init.hwnet"
    res.network.save(path)
    return path


def _batch(net, n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(net.encoding.encode(rng.uniform(size=(n, 4))))
    y = torch.as_tensor(rng.integers(0, 3, size=n))
    return x, y


def test_worst_case_output_takes_the_worse_time_per_output(init_net):
    """Label: the later of measured and model time; others: the earlier; each
    value is one of the two; and the gradient flows into both layers."""
    net = Network.load(init_net)
    x, y = _batch(net)
    w = [torch.tensor(a).requires_grad_(True) for a in net.weights()]
    with open_target("bitexact?steps=40") as be:
        times, _ = measured_forward(be, net, w, x, grad_at="model")
    with torch.no_grad():
        hidden = times[0].detach()
        t_model = network_forward(net.layers[1:], [w[1].detach()], hidden, net.t_max)[0]
    out = worst_case_output(net, w, x, times, y)
    meas = times[-1].detach()
    label = torch.nn.functional.one_hot(y, 3).bool()
    both = torch.isfinite(meas) & torch.isfinite(t_model)
    o = out.detach()
    assert torch.all((o == meas) | (o == t_model))
    assert torch.all(o[label & both] >= torch.maximum(meas, t_model)[label & both])
    assert torch.all(o[~label & both] <= torch.minimum(meas, t_model)[~label & both])
    # a label that either side leaves silent counts as silent; another output as the one that fired
    assert torch.all(torch.isinf(o[label & ~both]))
    assert torch.all(o[~label & ~both] == torch.minimum(meas, t_model)[~label & ~both])
    # on a 40-step grid the two really differ somewhere, and the choice matters
    assert (meas != t_model)[both].float().mean() > 0.5
    sel = torch.isfinite(out)
    out[sel].sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in w)


def test_worst_case_output_on_software_is_the_measured_output(init_net):
    """Where target and model agree exactly (software), nothing changes."""
    net = Network.load(init_net)
    x, y = _batch(net, n=60, seed=1)
    w = [torch.tensor(a).requires_grad_(True) for a in net.weights()]
    with open_target("software") as be:
        times, _ = measured_forward(be, net, w, x, grad_at="model")
    out = worst_case_output(net, w, x, times, y)
    torch.testing.assert_close(out, times[-1], rtol=0, atol=1e-12)


def _cosine(a, b):
    fa = torch.cat([t.flatten() for t in a])
    fb = torch.cat([t.flatten() for t in b])
    return float(fa @ fb / (fa.norm() * fb.norm()))


def _loss_grad(times, y, net):
    from hwloop.training import ttfs_loss

    return ttfs_loss(times[-1], y, net.t_max, net.layers[-1].neuron.tau_syn, 0.2, 0.005, 2.6)


def test_gradient_at_model_times_converges_to_software_on_a_fine_grid(init_net):
    """On a fine grid the in-the-loop gradient at model times approaches the
    software gradient (independent check of the whole hardware-forward,
    software-backward path on a quantising target); on a coarse grid it
    departs from it."""
    net = Network.load(init_net)
    x, y = _batch(net, n=400, seed=2)
    w_sw = [torch.tensor(a).requires_grad_(True) for a in net.weights()]
    g_sw = torch.autograd.grad(_loss_grad(network_forward(net.layers, w_sw, x, net.t_max), y, net), w_sw)
    cos = {}
    for steps in (25, 2000):
        w = [torch.tensor(a).requires_grad_(True) for a in net.weights()]
        with open_target(f"bitexact?steps={steps}") as be:
            times, _ = measured_forward(be, net, w, x, grad_at="model")
        cos[steps] = _cosine(torch.autograd.grad(_loss_grad(times, y, net), w), g_sw)
    assert cos[2000] > 0.95, cos
    assert cos[25] < cos[2000], cos


def test_loss_times_and_max_missing_options(tmp_path, init_net):
    with pytest.raises(SessionError, match="loss_times"):
        LoopConfig(init=str(init_net), loss_times="best").validate()
    from hwloop.commands.loop import _fractions

    assert _fractions("0.3,1") == (0.3, 1.0)
    with pytest.raises(SessionError, match="max-missing"):
        _fractions("0.3,x")
    with pytest.raises(SessionError, match="max-missing"):
        _fractions("1.5")


def _short_session(directory, target, init):
    cfg = LoopConfig(target=target, dataset="yinyang", init=str(init), epochs=1, batch_size=50, train_limit=100,
                     eval_limit=100, lr=0.001, seed=0, grad_at="model", loss_times="worst", max_missing=(0.3, 1.0))
    run_session(directory, cfg, progress=False)
    rows = [json.loads(line) for line in (directory / "log.jsonl").read_text().splitlines()]
    return rows, Network.load(directory / "network.hwnet")


def test_worst_loss_session_on_bitexact_runs_and_logs(tmp_path, init_net):
    rows, net = _short_session(tmp_path / "bx", "bitexact?steps=50", init_net)
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert len(train_rows) == 2 and all(np.isfinite(r["loss"]) for r in train_rows)
    assert all(r["bumped"] in ([], [0]) for r in train_rows)  # output bumping off
    assert not np.allclose(net.layers[-1].weight, Network.load(tmp_path / "bx" / "init.hwnet").layers[-1].weight)


def test_lava_sim_session_matches_bitexact_step_for_step(tmp_path, init_net):
    """lava-sim (fixed point) and bitexact are spike-for-spike identical, so
    the same session gives the same per-step losses and the same weights."""
    from hwloop.backends.loihi import lava_compat

    if not lava_compat.lava_installed():
        pytest.skip("lava-nc not installed (pip install -e '.[lava]'; see docs/loihi.md)")
    rows_l, net_l = _short_session(tmp_path / "lava", "lava-sim?steps=50", init_net)
    rows_b, net_b = _short_session(tmp_path / "bx", "bitexact?steps=50", init_net)
    keys = ("step", "kind", "loss", "batch_accuracy", "silent", "bumped", "val_accuracy", "software_val_accuracy")
    assert len(rows_l) == len(rows_b) == 4
    for a, b in zip(rows_l, rows_b):
        assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}
    for la, lb in zip(net_l.layers, net_b.layers):
        np.testing.assert_array_equal(la.weight, lb.weight)


@pytest.mark.parametrize("target, extra, expect", [
    ("bitexact?steps=50", [], ("model", "worst", [0.3, 1.0])),
    ("bitexact?steps=50", ["--grad-at", "measured", "--max-missing", "0.3,0"], ("measured", "worst", [0.3, 0.0])),
    ("software", [], ("measured", "measured", [0.3, 0.0])),
])
def test_loop_command_uses_grid_settings_on_loihi_targets(tmp_path, init_net, target, extra, expect):
    """`hwloop loop` on a Loihi target defaults to the grid settings; options
    given on the command line win; other targets keep the plain defaults."""
    from hwloop.cli import main

    d = tmp_path / "s"
    rc = main(["loop", "--target", target, "--dataset", "yinyang", "--init", str(init_net), "--dir", str(d),
               "--epochs", "1", "--batch-size", "50", "--train-limit", "50", "--eval-limit", "50", "--quiet",
               "--json", *extra])
    assert rc == 0
    cfg = json.loads((d / "config.json").read_text())
    assert (cfg["grad_at"], cfg["loss_times"], cfg["max_missing"]) == expect
