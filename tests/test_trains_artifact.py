"""A trained spike-train network saves as a version-2 .hwnet, loads, and runs
on the software target with the trainer's own accuracy."""

from __future__ import annotations

import numpy as np
import torch

from hwloop.network import Network
from hwloop.trains_training import TrainsConfig, config_from_network, evaluate, load_trains_data, to_network, train


def test_trained_cuba_network_saves_loads_and_runs_like_the_trainer(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLOOP_CACHE_DIR", str(tmp_path))
    cfg = TrainsConfig(dataset="randman", hidden=(16,), recurrent=True, epochs=1, batch_size=50, lr=5e-3, threads=1,
                       dtype="float64", data_options={"n_classes": 3, "samples_per_class": 40, "n_units": 10,
                                                      "n_steps": 40, "seed": 2})
    res = train(cfg)
    net = to_network(res)
    path = net.save(tmp_path / "c.hwnet")
    back = Network.load(path)
    assert back.layers == net.layers and back.layers[0].recurrent is not None
    assert back.n_steps == 40 and back.decoding.kind == "max-membrane"
    cfg2 = config_from_network(back)
    assert cfg2.hidden == (16,) and cfg2.recurrent and cfg2.data_options == cfg.data_options
    data = load_trains_data(cfg2)
    test = data.splits["test"]
    m = back.run("software", raster=test.raster.numpy())
    acc = float((m.predictions() == test.labels.numpy()).mean())
    assert abs(acc - res.metrics["accuracy"]["test"]) < 1e-12
    ref = evaluate(res.network, test)
    assert abs(acc - ref["accuracy"]) < 1e-12
    # Randman's features through the network's own InputEncoding give the same raster
    from hwloop.data import randman
    spec = randman.STORK.__class__(**{**res.metrics["data"]["randman"]})
    d = randman.load("test", spec)
    m2 = back.run("software", d.x)
    assert np.array_equal(m2.predictions(), m.predictions())
    assert torch.equal(torch.from_numpy(m2.events[0].raster()), torch.from_numpy(m.events[0].raster()))
