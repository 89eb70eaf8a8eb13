"""Run a network on a target over a data set and summarise what came back.

Speed is reported for the running alone: ``samples_per_second`` is the
number of samples over ``run_seconds``, the time spent in `run_batches`
(what the progress bar measures too, so the two agree); opening the target
(spawning an emulator, starting Lava), compiling and deploying are
``setup_seconds``; ``seconds`` is the whole call.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .errors import DatasetError, HwloopError
from .network import Network


def spike_statistics(times: list[np.ndarray]) -> dict:
    """Per layer: fraction of silent neurons and spikes per neuron per sample;
    overall spikes per hidden neuron per sample (the seed papers' sparsity figure)."""
    layers = []
    for t in times:
        fired = np.isfinite(t)
        layers.append({"silent_fraction": float(1.0 - fired.mean()), "spikes_per_neuron": float(fired.mean())})
    hidden = times[:-1]
    if hidden:
        n_spikes = sum(float(np.isfinite(t).sum()) for t in hidden)
        n_slots = sum(t.size for t in hidden)
        per_hidden = n_spikes / max(1, n_slots)
    else:
        per_hidden = float("nan")
    return {"layers": layers, "spikes_per_hidden_neuron": per_hidden}


def run_batches(backend, t_in: np.ndarray, batch_size: int = 1000, progress: bool = False, desc: str = "run"):
    """Run ``t_in`` through a loaded backend in batches; concatenated times per layer,
    plus the target's and the host's seconds."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise HwloopError(f"batch size must be an integer >= 1, got {batch_size!r}")
    if len(t_in) == 0:
        raise HwloopError("no samples to run (0 input rows)")
    outs: list[list[np.ndarray]] = []
    target_s = host_s = 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        # smoothing=0: the rate shown is samples over the bar's whole life, the
        # same figure evaluate_network reports as samples_per_second
        bar = tqdm(total=len(t_in), desc=desc, unit="sample", file=sys.stderr, dynamic_ncols=True, smoothing=0)
    for b in range(0, len(t_in), batch_size):
        m = backend.run(t_in[b:b + batch_size])
        outs.append(m.times)
        target_s += m.target_time_s
        host_s += m.host_time_s
        if bar is not None:
            bar.update(min(batch_size, len(t_in) - b))
    if bar is not None:
        bar.close()
    times = [np.concatenate([o[i] for o in outs], axis=0) for i in range(len(outs[0]))]
    return times, target_s, host_s


def check_network_fits(net: Network, ds) -> None:
    """Refuse a network whose inputs or outputs do not match the data set's
    features and classes (a 5000-output network on 3 classes would otherwise
    run and report an accuracy)."""
    n_features = int(ds.x.shape[1])
    if net.encoding.n_features != n_features:
        raise DatasetError(f"the network takes {net.encoding.n_features} input features, but {ds.name} has "
                           f"{n_features}; it was not made for this data set")
    n_out, n_classes = len(net.decoding.classes), len(ds.classes)
    if n_out != n_classes:
        raise DatasetError(f"the network has {n_out} outputs (classes), but {ds.name} has {n_classes} "
                           f"({', '.join(ds.classes)}); it was not made for this data set")


def check_limit(limit, what: str = "limit") -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DatasetError(f"{what} must be an integer >= 1 (or None: all samples), got {limit!r}")


def evaluate_network(net: Network, dataset: str, split: str = "test", target: str = "software",
                     limit: int | None = None, root: str | None = None, batch_size: int = 1000,
                     progress: bool = False) -> dict:
    from hwloop.backends import open_target

    from .data import load_dataset
    from .data.decoding import classification_report

    check_limit(limit)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise HwloopError(f"batch size must be an integer >= 1, got {batch_size!r}")
    ds = load_dataset(dataset, split, root=root)
    check_network_fits(net, ds)
    x, y = ds.x, ds.y
    if limit is not None:
        x, y = x[:limit], y[:limit]
    t_in = net.encoding.encode(x)
    t0 = time.perf_counter()
    with open_target(target) as backend:
        compiled = backend.load(net)
        t1 = time.perf_counter()
        times, target_s, host_s = run_batches(backend, t_in, batch_size, progress, desc=f"eval {target}")
        run_s = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    report = classification_report(times[-1], y)
    return {
        "target": target,
        "dataset": dataset,
        "split": split,
        "n": int(len(y)),
        **{k: v for k, v in report.items() if k != "n"},
        "spikes": spike_statistics(times),
        "seconds": wall,
        "setup_seconds": wall - run_s,
        "run_seconds": run_s,
        "target_seconds": target_s,
        "host_seconds": host_s,
        "samples_per_second": len(y) / run_s if run_s > 0 else float("inf"),
        # a target whose compiler reports its quantisation (Loihi: registers and
        # weight error per layer) has it here, so the figures can be rerun
        **({"mapping": compiled.report, "mapping_text": compiled.format_report()}
           if hasattr(compiled, "format_report") else {}),
    }
