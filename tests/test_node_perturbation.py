"""Node perturbation (Fiete & Seung 2006) through per-neuron current injection:
its weight gradient points the way of the model's exact gradient, at a cost of
trials + 1 chip runs whatever the number of weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwloop.backends import open_target
from hwloop.data import load_dataset
from hwloop.errors import TargetError
from hwloop.network import Network
from hwloop.session.config import LoopConfig
from hwloop.session.estimators import ModelGradient, NodePerturbationGradient
from hwloop.session.parts import SessionLoss


def _setup(n=200):
    net = Network.load("hwloop/pretrained/yinyang-qif.hwnet")
    d = load_dataset("yinyang", "train")
    xb = torch.as_tensor(net.encoding.encode(d.x[:n]), dtype=torch.float64)
    yb = torch.as_tensor(d.y[:n])
    weights = [torch.as_tensor(np.array(l.weight), dtype=torch.float64).requires_grad_(True) for l in net.layers]
    return net, xb, yb, weights


def _cos(a, b):
    a = torch.cat([g.reshape(-1) for g in a]).double()
    b = torch.cat([g.reshape(-1) for g in b]).double()
    return float(a @ b / (a.norm() * b.norm()))


def test_node_perturbation_follows_the_model_gradient_on_the_chip():
    net, xb, yb, weights = _setup()
    loss = SessionLoss(LoopConfig(dataset="yinyang"), net)
    with open_target("qif-emu?baud=0&chip_id=3") as chip:
        exact = ModelGradient(net, loss).estimate(chip, weights, xb, yb, 0).grads
        est = NodePerturbationGradient(net, loss, sigma=0.2, trials=16, seed=1).estimate(chip, weights, xb, yb, 0)
    assert est.target_runs == 17
    c = _cos(est.grads, exact)
    print("cosine", c)
    assert c > 0.3


def test_node_perturbation_refuses_a_target_that_cannot_inject():
    net, xb, yb, weights = _setup(10)
    loss = SessionLoss(LoopConfig(dataset="yinyang"), net)
    with open_target("software") as sw:
        with pytest.raises(TargetError, match="inject"):
            NodePerturbationGradient(net, loss, 0.05, 2, 0).estimate(sw, weights, xb, yb, 0)
    _ = np
