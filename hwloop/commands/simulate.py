"""hwloop simulate: every layer's spike times for given inputs."""

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
