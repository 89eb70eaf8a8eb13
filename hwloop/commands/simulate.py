"""hwloop simulate: every layer's spike times for given inputs; for a
spike-train network every layer's spikes as events (and membranes with --probe)."""

from __future__ import annotations

import io

import numpy as np

from ..errors import HwloopError


def register(sub):
    p = sub.add_parser("simulate", help="spike times of every layer for inputs from a .npy file")
    p.add_argument("network", help=".hwnet file")
    p.add_argument("--inputs", required=True,
                   help=".npy of shape (N, n_features): feature values (encoded with the network's encoding), "
                        "or input spike times with --times")
    p.add_argument("--times", action="store_true", help="--inputs already holds input spike times")
    p.add_argument("--out", required=True,
                   help="output .npz: input_times, layer_0, layer_1, ... (written atomically; missing folders "
                        "are created)")
    p.add_argument("--target", default="software", help="target URL (see `hwloop devices --options`)")
    p.add_argument("--probe", action="store_true",
                   help="spike-train networks: also write every layer's membrane per step (layer_I_membrane)")
    p.add_argument("--raster", action="store_true",
                   help="spike-train networks: also write every layer's dense 0/1 raster (layer_I_raster)")
    p.set_defaults(func=run)
    return p


def _load_inputs(path: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise HwloopError(f"{path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise HwloopError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiu":
        raise HwloopError(f"{path}: expected a numeric array")
    return x.astype(np.float64)


def run(args) -> dict:
    from hwloop.backends import open_target

    from ..evaluation import run_batches
    from ..fileio import atomic_write_bytes, check_output_path
    from ..network import Network

    out = check_output_path(args.out)  # before any work: not a directory, not through a file
    net = Network.load(args.network)
    x = _load_inputs(args.inputs)
    if net.is_spike_train:
        return _run_trains(args, net, x, out)
    if args.probe or args.raster:
        raise HwloopError("--probe and --raster are for spike-train networks; this one is "
                          f"{net.model} (first spike times only)")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != net.encoding.n_features:
        raise HwloopError(f"{args.inputs}: expected shape (N, {net.encoding.n_features}), got {x.shape}")
    if x.shape[0] == 0:
        raise HwloopError(f"{args.inputs}: holds no samples (shape {x.shape}); nothing to simulate")
    what = "input spike times" if args.times else "feature values"
    if np.isnan(x).any():
        raise HwloopError(f"{args.inputs}: {what} contain NaN")
    t_in = x if args.times else net.encoding.encode(x)
    with open_target(args.target) as backend:
        backend.load(net)
        times, target_s, host_s = run_batches(backend, t_in)
    arrays = {"input_times": t_in, **{f"layer_{i}": t for i, t in enumerate(times)}}
    buf = io.BytesIO()  # built in memory: a write that fails (disk full) leaves no half-closed zip behind
    np.savez(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())
    if not args.json:
        print(f"wrote {out}: {len(t_in)} samples, layers " + ", ".join(str(t.shape) for t in times))
    return {"out": str(out), "n": len(t_in), "layers": [list(t.shape) for t in times],
            "target_seconds": target_s}


def _run_trains(args, net, x: np.ndarray, out) -> dict:
    """A spike-train network: inputs are features (N, n), times (--times) or a raster (n_steps, N, n)."""
    from hwloop.backends import open_target, times_to_raster

    from ..fileio import atomic_write_bytes

    n = net.encoding.n_features
    if x.ndim == 3:
        if args.times:
            raise HwloopError(f"{args.inputs}: a 3-D array is an input raster; --times is for (N, {n}) spike times")
        if x.shape[0] != net.n_steps or x.shape[2] != n or x.shape[1] == 0:
            raise HwloopError(f"{args.inputs}: an input raster must have shape ({net.n_steps}, N, {n}), got {x.shape}")
        raster = x
    else:
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != n or x.shape[0] == 0:
            raise HwloopError(f"{args.inputs}: expected shape (N, {n}) or a raster ({net.n_steps}, N, {n}), "
                              f"got {x.shape}")
        if np.isnan(x).any():
            raise HwloopError(f"{args.inputs}: inputs contain NaN")
        if args.times and (x < 0).any():
            raise HwloopError(f"{args.inputs}: input spike times must be >= 0 (inf = no spike)")
        raster = times_to_raster(x if args.times else net.encoding.encode(x), net.dt, net.n_steps)
    with open_target(args.target) as backend:
        backend.load(net)
        m = backend.run_raster(raster, probe=args.probe)
    arrays = {"input_raster": raster.astype(np.uint8), "dt": np.float64(net.dt)}
    for i, ev in enumerate(m.events):
        arrays[f"layer_{i}_events"] = np.stack([ev.step, ev.sample, ev.neuron], axis=1).astype(np.int32)
        arrays[f"layer_{i}_first"] = m.times[i]
        if args.raster:
            arrays[f"layer_{i}_raster"] = ev.raster()
        if args.probe:
            arrays[f"layer_{i}_membrane"] = m.probes[i]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())
    events = [len(ev) for ev in m.events]
    if not args.json:
        print(f"wrote {out}: {raster.shape[1]} samples, {net.n_steps} steps of {net.dt:g} {net.time_unit}; "
              f"spike events per layer " + ", ".join(map(str, events)) + (" (+ membranes)" if args.probe else ""))
    return {"out": str(out), "n": int(raster.shape[1]), "n_steps": net.n_steps, "dt": net.dt,
            "events": events, "probe": bool(args.probe), "target_seconds": m.target_time_s}
