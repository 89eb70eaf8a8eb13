"""Run a network on a target over a data set and summarise what came back."""

from __future__ import annotations

import sys
import time

import numpy as np

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
    outs: list[list[np.ndarray]] = []
    target_s = host_s = 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(t_in), desc=desc, unit="sample", file=sys.stderr, dynamic_ncols=True)
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


def evaluate_network(net: Network, dataset: str, split: str = "test", target: str = "software",
                     limit: int | None = None, root: str | None = None, batch_size: int = 1000,
                     progress: bool = False) -> dict:
    from hwloop.backends import open_target

    from .data import load_dataset
    from .data.decoding import classification_report

    ds = load_dataset(dataset, split, root=root)
    x, y = ds.x, ds.y
    if limit is not None:
        x, y = x[:limit], y[:limit]
    t_in = net.encoding.encode(x)
    t0 = time.perf_counter()
    with open_target(target) as backend:
        compiled = backend.load(net)
        times, target_s, host_s = run_batches(backend, t_in, batch_size, progress, desc=f"eval {target}")
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
        "target_seconds": target_s,
        "host_seconds": host_s,
        "samples_per_second": len(y) / wall if wall > 0 else float("inf"),
        # a target whose compiler reports its quantisation (Loihi: registers and
        # weight error per layer) has it here, so the figures can be rerun
        **({"mapping": compiled.report, "mapping_text": compiled.format_report()}
           if hasattr(compiled, "format_report") else {}),
    }
