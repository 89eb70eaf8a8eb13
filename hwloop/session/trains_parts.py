"""The session parts of a spike-train network (surrogate gradients in the loop):
its loss, its training data as spike rasters, and its evaluator. The rest of the
session (master weights, checkpoints, selection, log) is the one every session uses.

Everything is read from the start network: the training configuration it records
(`hwloop.trains_training.config_from_network`) gives the data set (rebuilt from
its seed, as `hwloop eval` does), the readout and its loss (max over time of the
readout membrane + cross-entropy, spike count, or first spike), and the activity
bounds on the hidden spike counts, so that the session's loss is the software
trainer's loss for the same network.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hwloop.network import Network

from .config import LoopConfig
from .errors import SessionError

DTYPE = torch.float64
#: samples per target run when evaluating
EVAL_BATCH = 500


def trains_config(template: Network):
    """The `TrainsConfig` the start network was trained with (`SessionError` if it records none)."""
    from hwloop.errors import HwloopError
    from hwloop.trains_training import config_from_network

    try:
        tc = config_from_network(template)
    except HwloopError as exc:
        raise SessionError(f"an in-the-loop session of a spike-train network needs its training record: {exc}") from None
    tc.dtype = "float64"
    return tc


class TrainsLoss:
    """The software trainer's loss (`hwloop.trains_training._loss`) of the network's
    readout, on a forward pass shaped as `TrainsOutput` (the substituted one)."""

    def __init__(self, cfg: LoopConfig, template: Network):
        from hwloop.trains_training import TrainsNetwork

        self.tc = trains_config(template)
        window = template.decoding.window
        self.net = TrainsNetwork(weights=[], recurrent=[], params=[], surrogate=None,
                                 window=None if window is None else tuple(window), readout=self.tc.readout,
                                 dt=float(template.dt))

    def __call__(self, out, y: torch.Tensor) -> torch.Tensor:
        from hwloop.trains_training import _loss

        return _loss(self.net, out, y, self.tc)


class _Split:
    def __init__(self, raster: torch.Tensor, labels: torch.Tensor, limit: int | None):
        if limit:
            raster, labels = raster[:, :limit], labels[:limit]
        self.raster = raster.to(torch.uint8)  # (T, N, n_in); 0/1
        self.labels = labels.to(torch.long)


class TrainsData:
    """Training and validation samples as spike rasters; the samples of a step are
    a function of (seed, epoch, step), as in `parts.TrainingData`."""

    def __init__(self, cfg: LoopConfig, template: Network):
        from hwloop.trains_training import load_trains_data

        tc = trains_config(template)
        if cfg.dataset != tc.dataset:
            raise SessionError(f"dataset {cfg.dataset!r}: the start network was trained on {tc.dataset!r} "
                               f"(pass --dataset {tc.dataset})")
        data = load_trains_data(tc)
        self.train = _Split(data.splits["train"].raster, data.splits["train"].labels, cfg.train_limit)
        self.val = _Split(data.splits["val"].raster, data.splits["val"].labels, cfg.eval_limit)
        self.test = _Split(data.splits["test"].raster, data.splits["test"].labels, cfg.eval_limit)
        self.y_val = self.val.labels.numpy()
        self.y_train = self.train.labels
        self.seed, self.batch_size = cfg.seed, cfg.batch_size
        n = self.train.labels.shape[0]
        self.steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size

    def batch(self, step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(epoch, input raster (T, batch, n_in) float64, labels) of training step ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(self.train.labels.shape[0])
        idx = torch.as_tensor(order[k * self.batch_size:(k + 1) * self.batch_size])
        return epoch, self.train.raster[:, idx].to(DTYPE), self.train.labels[idx]


def run_split(backend, raster: torch.Tensor, batch: int = EVAL_BATCH):
    """Predictions (N,) and per-layer silent fractions of ``raster`` (T, N, n) on the deployed network."""
    preds, silent, n = [], None, raster.shape[1]
    for b in range(0, n, batch):
        m = backend.run_raster(raster[:, b:b + batch].numpy())
        preds.append(m.predictions())
        s = np.array([float(np.sum(~np.isfinite(t))) for t in m.times])
        silent = s if silent is None else silent + s
    sizes = np.array([t.shape[1] for t in m.times], dtype=float)
    return np.concatenate(preds), (silent / (n * sizes)).tolist()


class TrainsEvaluator:
    """Validation (and test) accuracy of the deployed weights on the target, with
    the figures `Selection` reads; ``software_val_accuracy``: the same weights on
    the float model."""

    def __init__(self, cfg: LoopConfig, template: Network, data: TrainsData):
        self.cfg, self.template, self.data = cfg, template, data
        self.compare_software = cfg.compare_software

    def _software_accuracy(self, weights) -> float:
        from hwloop.models.trains import Surrogate
        from hwloop.models.trains.qif_trains import trains_network_forward

        from hwloop.inloop import split_weights

        layers = self.template.layers
        params = [layer.neuron.trains_params() for layer in layers]
        ff, rec = split_weights(self.template, [w.detach().to(DTYPE) for w in weights])
        ws = ff
        kind, window = self.template.decoding.kind, self.template.decoding.window or (0, self.template.n_steps)
        correct = 0
        with torch.no_grad():
            for b in range(0, self.data.val.labels.shape[0], EVAL_BATCH):
                r = self.data.val.raster[:, b:b + EVAL_BATCH].to(DTYPE)
                out = trains_network_forward(r, ws, params, Surrogate(), rec, record="output")
                if kind == "max-membrane":
                    scores = out.membranes[-1][window[0]:window[1]].max(dim=0).values
                elif kind == "spike-count":
                    scores = out.spikes[-1][window[0]:window[1]].sum(0)
                else:
                    s = out.spikes[-1]
                    first = torch.where(s.any(0), s.argmax(0).to(DTYPE), torch.full_like(s[0], float("inf")))
                    scores = -first
                from hwloop.backends.base import Measurement

                pred = Measurement(times=[], target="software", scores=scores.numpy()).predictions()
                correct += int(np.sum(pred == self.data.val.labels[b:b + EVAL_BATCH].numpy()))
        return correct / max(1, self.data.val.labels.shape[0])

    def __call__(self, backend, weights) -> dict:
        from hwloop.inloop import network_with

        from .parts import accuracy_figure

        t0 = time.perf_counter()
        backend.load(network_with(self.template, weights))
        pred, silent = run_split(backend, self.data.val.raster)
        correct = pred == self.data.y_val
        acc = float(np.mean(correct))
        fig = accuracy_figure(acc, len(self.data.y_val))
        res = {"val_accuracy": acc, "val_n": fig["n"], "val_ci": fig["ci"], "_correct": correct, "val_silent": silent}
        if self.compare_software:
            res["software_val_accuracy"] = self._software_accuracy(weights)
        res["seconds"] = time.perf_counter() - t0
        return res

    def test(self, backend, weights) -> dict:
        from hwloop.inloop import network_with

        from .parts import accuracy_figure

        backend.load(network_with(self.template, weights))
        pred, _ = run_split(backend, self.data.test.raster)
        return accuracy_figure(float(np.mean(pred == self.data.test.labels.numpy())), len(pred))
