"""hwloop train: software training with exact first-spike-time gradients."""

from __future__ import annotations

from pathlib import Path

from ..errors import HwloopError
from ._args import NON_NEGATIVE, POSITIVE, POSITIVE_NUMBER, SEED

MODELS = ("lif", "qif", "nlif")
DATASETS = ("yinyang", "digits", "mnist")


def defaults_by_model(field: str) -> str:
    """The trainer's default for ``field`` per model and data set, in words
    (``hwloop.training.default_config`` decides them), e.g.
    ``", on yinyang/digits/mnist: lif/nlif 300/150/50; qif 60/60/50"``."""
    from ..training import default_config

    def show(v) -> str:
        if isinstance(v, tuple):
            return ",".join(str(x) for x in v)
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    per_model = {m: [show(getattr(default_config(m, d), field)) for d in DATASETS] for m in MODELS}
    groups: dict[tuple, list[str]] = {}
    for m, values in per_model.items():
        groups.setdefault(tuple(values), []).append(m)
    parts = []
    for values, models in groups.items():
        vals = values[0] if len(set(values)) == 1 else "/".join(values)
        parts.append(f"{'/'.join(models)} {vals}")
    return f", on {'/'.join(DATASETS)}: " + "; ".join(parts)


def register(sub):
    p = sub.add_parser("train", help="train a network in software, write a .hwnet file",
                       description="Train a first-spike-time network in software (exact gradients). Defaults "
                                   "depend on the model and the data set (docs/training.md); the effective "
                                   "settings are printed before training starts.")
    p.add_argument("--model", default="lif", choices=MODELS, help="neuron model")
    p.add_argument("--dataset", default="yinyang", help="yinyang | digits | mnist (needs --data-root)")
    p.add_argument("--data-root", default=None, help="folder with MNIST IDX files")
    a = p.add_argument("--hidden", default=None, help="hidden layer sizes, e.g. 120 or 100,100")
    a.default_help = lambda: defaults_by_model("hidden")
    a = p.add_argument("--epochs", type=NON_NEGATIVE, default=None,
                       help="training epochs (0: write the initialised network)")
    a.default_help = lambda: defaults_by_model("epochs")
    a = p.add_argument("--batch-size", type=POSITIVE, default=None, help="samples per gradient step")
    a.default_help = lambda: defaults_by_model("batch_size")
    a = p.add_argument("--lr", type=POSITIVE_NUMBER, default=None, help="Adam learning rate")
    a.default_help = lambda: defaults_by_model("lr")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the initial weights and the batch order")
    a = p.add_argument("--tau-ratio", type=POSITIVE_NUMBER, default=None, help="tau_mem/tau_syn (LIF: 1 or 2)")
    a.default_help = lambda: defaults_by_model("tau_ratio")
    p.add_argument("--no-bias", action="store_true",
                   help="no bias spikes: every layer sees only the spikes of the layer before it")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="floating-point type of training (default: float64)")
    p.add_argument("--threads", type=NON_NEGATIVE, default=1,
                   help="torch threads (1: results are bit-reproducible for a seed; 0: torch's own choice)")
    p.add_argument("--out", "-o", required=True, help="output network file (.hwnet)")
    p.add_argument("--history", default=None, help="also write per-epoch history as JSON lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    import json
    import sys

    from ..fileio import atomic_write_bytes, check_output_path

    # refuse unwritable outputs now, not after the training has run
    check_output_path(args.out)
    if args.history:
        check_output_path(args.history)
    hidden = None
    if args.hidden:
        try:
            hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
        except ValueError:
            raise HwloopError(f"--hidden expects comma-separated integers, got {args.hidden!r}") from None
        if not hidden or min(hidden) < 1:
            raise HwloopError(f"--hidden expects sizes >= 1, got {args.hidden!r}")
    from ..training import default_config, train  # torch: imported once the command line is known good

    cfg = default_config(args.model, args.dataset, data_root=args.data_root, hidden=hidden,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         tau_ratio=args.tau_ratio, dtype=args.dtype, threads=args.threads,
                         bias_time=-1.0 if args.no_bias else None)
    if not args.quiet and not args.json:
        print(f"training {cfg.model} on {cfg.dataset}: hidden {','.join(map(str, cfg.hidden))}, "
              f"{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, seed {cfg.seed}, "
              f"{'no bias' if cfg.bias_time < 0 else f'bias spike at {cfg.bias_time:g} tau'}", file=sys.stderr)
    result = train(cfg, progress=not args.quiet)
    out = result.network.save(args.out)
    if args.history:
        atomic_write_bytes(args.history, "".join(json.dumps(row) + "\n" for row in result.history).encode())
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
