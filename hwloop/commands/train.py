"""hwloop train: software training with exact first-spike-time gradients."""

from __future__ import annotations

from pathlib import Path

from ..errors import HwloopError
from ._args import NON_NEGATIVE, POSITIVE, POSITIVE_NUMBER, SEED

MODELS = ("lif", "qif", "nlif")
DATASETS = ("yinyang", "digits", "mnist")
#: the spike-train family (docs/models-cuba.md): --model cuba; the QIF chip's
#: discrete-time QIF neuron (docs/models-qif-trains.md): --model qif-trains
TRAINS_MODELS = ("cuba", "qif-trains")
TRAINS_DATASETS = ("randman", "yinyang", "digits", "delayed-xor")
RULES = ("bptt", "superspike")


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
    p.add_argument("--model", default="lif", choices=MODELS + TRAINS_MODELS,
                   help="neuron model (cuba: the discrete-time spike-train family, docs/models-cuba.md; "
                        "qif-trains: the discrete-time QIF of the QIF chip, docs/models-qif-trains.md)")
    p.add_argument("--dataset", default=None,
                   help="yinyang | digits | mnist (needs --data-root); with --model cuba: randman | yinyang | "
                        "digits | delayed-xor (default: yinyang; randman with --model cuba or qif-trains)")
    g = p.add_argument_group("spike-train family (--model cuba or qif-trains, --rule superspike)")
    g.add_argument("--rule", default="bptt", choices=RULES,
                   help="bptt: backpropagation through time with a surrogate derivative; superspike: the online "
                        "SuperSpike rule on the spike-pattern task (docs/superspike.md)")
    g.add_argument("--feedback", default="symmetric", choices=("symmetric", "random", "uniform"),
                   help="SuperSpike's hidden-layer feedback")
    g.add_argument("--trials", type=POSITIVE, default=1000, help="SuperSpike: training trials")
    g.add_argument("--recurrent", action="store_true", help="cuba: recurrent hidden layers")
    g.add_argument("--surrogate", default=None, choices=("superspike", "sigmoid", "linear", "exponential"),
                   help="cuba: surrogate derivative shape (default superspike)")
    g.add_argument("--beta", type=POSITIVE_NUMBER, default=None,
                   help="cuba: surrogate scale (default 20; qif-trains: 1)")
    g.add_argument("--readout", default=None, choices=("max", "count", "first"),
                   help="cuba: readout (max-over-time membrane, spike count, first spike; default max)")
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
    p.add_argument("--out", "-o", required=True,
                   help="output network file (.hwnet); with --rule superspike a .json of the distances")
    p.add_argument("--history", default=None, help="also write per-epoch history as JSON lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    import sys

    from ..fileio import check_output_path

    # refuse unwritable outputs now, not after the training has run
    check_output_path(args.out)
    if args.history:
        check_output_path(args.history)
    if args.rule == "superspike":
        return _run_superspike(args)
    if args.model in TRAINS_MODELS:
        return _run_trains(args)
    for flag, given in (("--recurrent", args.recurrent), ("--surrogate", args.surrogate), ("--beta", args.beta),
                        ("--readout", args.readout)):
        if given:
            raise HwloopError(f"{flag} is for the spike-train family (--model cuba or qif-trains), "
                              f"not --model {args.model}")
    if args.dataset is None:
        args.dataset = "yinyang"
    hidden = _hidden(args)
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
    out = _save_and_show(args, result.network, result)
    if not args.json:
        silent = result.metrics["silent_at_init"]
        if silent["layers"]:
            print("hidden neurons silent on the whole training set at initialisation: "
                  f"{silent['hidden']:.1%} (per layer " + ", ".join(f"{f:.1%}" for f in silent["layers"]) + ")")
    return {"network": str(Path(out)), **result.metrics}


def _hidden(args) -> tuple[int, ...] | None:
    if not args.hidden:
        return None
    try:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
    except ValueError:
        raise HwloopError(f"--hidden expects comma-separated integers, got {args.hidden!r}") from None
    if not hidden or min(hidden) < 1:
        raise HwloopError(f"--hidden expects sizes >= 1, got {args.hidden!r}")
    return hidden


def _run_trains(args) -> dict:
    """--model cuba / qif-trains: BPTT with a surrogate derivative (hwloop.trains_training)."""
    import sys

    dataset = args.dataset or "randman"
    if dataset not in TRAINS_DATASETS:
        raise HwloopError(f"--model {args.model} trains on {' | '.join(TRAINS_DATASETS)}, not {dataset!r}")
    from ..trains_training import defaults_for, to_network, train

    cfg = defaults_for(dataset, model=args.model, seed=args.seed, hidden=_hidden(args), epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, recurrent=args.recurrent or None,
                       surrogate=args.surrogate, beta=args.beta, readout=args.readout, dtype=args.dtype, threads=args.threads)
    if not args.quiet and not args.json:
        print(f"training {cfg.model} on {cfg.dataset}: hidden {','.join(map(str, cfg.hidden))}"
              f"{' recurrent' if cfg.recurrent else ''}, {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, "
              f"surrogate {cfg.surrogate} beta {cfg.beta:g}, readout {cfg.readout}, seed {cfg.seed}", file=sys.stderr)
    result = train(cfg, progress=not args.quiet and not args.json)
    out = _save_and_show(args, to_network(result), result)
    return {"network": str(Path(out)), **result.metrics}


def _run_superspike(args) -> dict:
    """--rule superspike: the online rule on the spike-pattern task; --out gets the distances as JSON."""
    import json
    import sys

    import numpy as np

    from ..data.tasks import PatternTask, pattern_task
    from ..fileio import atomic_write_bytes
    from ..losses import van_rossum_distance
    from ..models.trains.superspike import SuperSpikeConfig, train_pattern

    if args.dataset not in (None, "pattern"):
        raise HwloopError(f"--rule superspike trains the spike-pattern task (--dataset pattern), not {args.dataset!r}")
    task = PatternTask()
    x, y = pattern_task(task, seed=0)
    kw = {"feedback": args.feedback}
    hidden = _hidden(args)
    if hidden:
        if len(hidden) != 1:
            raise HwloopError("--rule superspike takes one hidden layer (--hidden N)")
        kw["n_hidden"] = hidden[0]
    cfg = SuperSpikeConfig(**kw)
    silent = float(van_rossum_distance(np.zeros_like(y), y, task.dt))
    every = max(1, args.trials // 20)

    def tick(k, d):
        if not args.quiet and not args.json and (k + 1) % every == 0:
            print(f"trial {k + 1}/{args.trials}: van Rossum distance {d:.1f}", file=sys.stderr, flush=True)

    res = train_pattern(x, y, cfg, trials=args.trials, seed=args.seed, on_trial=tick)
    start, final = float(res["start_distance"]), float(res["final_distance"])
    summary = {"rule": "superspike", "feedback": args.feedback, "seed": args.seed, "trials": args.trials,
               "task": {"n_out": task.n_out, "dt": task.dt}, "silent_distance": silent,
               "start_distance": start, "final_distance": final,
               "fall": start / final if final > 0 else None,
               "output_spikes": float(res["output"].sum()), "target_spikes": float(y.sum())}
    record = {**summary, "distances": [float(d) for d in res["distances"]]}
    atomic_write_bytes(args.out, json.dumps(record).encode())
    if args.history:
        atomic_write_bytes(args.history, "".join(json.dumps({"trial": k + 1, "distance": float(d)}) + "\n"
                                                 for k, d in enumerate(res["distances"])).encode())
    if not args.json:
        fall = f"{start / final:.1f}x" if final > 0 else "to zero"
        print(f"wrote {args.out}: SuperSpike, {args.feedback} feedback, {args.trials} trials")
        print(f"van Rossum distance {start:.1f} -> {final:.1f} ({fall}; a silent output scores {silent:.1f})")
    return {"out": str(args.out), **summary}


def _save_and_show(args, net, result):
    """Save the trained network (and --history), print the summary lines; the path written."""
    import json

    from ..fileio import atomic_write_bytes

    out = net.save(args.out)
    if args.history:
        atomic_write_bytes(args.history, "".join(json.dumps(row) + "\n" for row in result.history).encode())
    acc = result.metrics["accuracy"]
    if not args.json:
        print(f"wrote {out}: {net.summary()}")
        print(f"accuracy  train {acc['train']:.4f}  val {acc['val']:.4f}  test {acc['test']:.4f}"
              f"  (best epoch {result.metrics['best_epoch']}, {result.metrics['train_seconds']:.1f} s)")
    return out
