"""hwloop train: software training with exact first-spike-time gradients."""

from __future__ import annotations

from pathlib import Path

from ..errors import HwloopError


def _floats(s: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise HwloopError(f"expected comma-separated numbers, got {s!r}") from None


def register(sub):
    p = sub.add_parser("train", help="train a network in software, write a .hwnet file",
                       description="Train a first-spike-time network in software (exact gradients).")
    p.add_argument("--model", default="lif", choices=["lif", "qif", "nlif"])
    p.add_argument("--dataset", default="yinyang", help="yinyang | digits | mnist (needs --data-root)")
    p.add_argument("--data-root", default=None, help="folder with MNIST IDX files")
    p.add_argument("--hidden", default=None, help="hidden layer sizes, e.g. 120 or 100,100")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tau-ratio", type=float, default=None, help="LIF tau_mem/tau_syn: 1 or 2")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: results are bit-reproducible for a seed)")
    p.add_argument("--out", "-o", required=True, help="output network file (.hwnet)")
    p.add_argument("--history", default=None, help="also write per-epoch history as JSON lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    import json

    from ..training import default_config, train

    hidden = None
    if args.hidden:
        try:
            hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
        except ValueError:
            raise HwloopError(f"--hidden expects comma-separated integers, got {args.hidden!r}") from None
    cfg = default_config(args.model, args.dataset, data_root=args.data_root, hidden=hidden,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         tau_ratio=args.tau_ratio, dtype=args.dtype, threads=args.threads)
    result = train(cfg, progress=not args.quiet)
    out = result.network.save(args.out)
    if args.history:
        with open(args.history, "w") as fh:
            for row in result.history:
                fh.write(json.dumps(row) + "\n")
    acc = result.metrics["accuracy"]
    if not args.json:
        print(f"wrote {out}: {result.network.summary()}")
        print(f"accuracy  train {acc['train']:.4f}  val {acc['val']:.4f}  test {acc['test']:.4f}"
              f"  (best epoch {result.metrics['best_epoch']}, {result.metrics['train_seconds']:.1f} s)")
        silent = result.metrics["silent_at_init"]
        if silent["layers"]:
            print("hidden neurons silent on the whole training set at initialisation: "
                  f"{silent['hidden']:.1%} (per layer " + ", ".join(f"{f:.1%}" for f in silent["layers"]) + ")")
    return {"network": str(Path(out)), **result.metrics}
