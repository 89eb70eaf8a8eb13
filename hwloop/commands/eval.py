"""hwloop eval: accuracy and spike statistics of a network on a target."""

from __future__ import annotations

import sys

from ._args import POSITIVE


def register(sub):
    p = sub.add_parser("eval", help="evaluate a network on a data set, on any target",
                       description="Evaluate NETWORK on a data set split, on any target. The speed reported is "
                                   "samples per second of running, as the progress bar shows it; opening the "
                                   "target, compiling and deploying are reported apart.")
    p.add_argument("network", help=".hwnet file")
    p.add_argument("--dataset", default=None,
                   help="yinyang | digits | mnist (default: the data set the network's file records)")
    p.add_argument("--data-root", default=None, help="folder with MNIST IDX files")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="data set split")
    p.add_argument("--target", default="software", help="target URL (see `hwloop devices --options`)")
    p.add_argument("--limit", type=POSITIVE, default=None, help="first N samples only (N >= 1)")
    p.add_argument("--batch-size", type=POSITIVE, default=1000, help="samples per run on the target")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def dataset_from_network(net, given: str | None, command: str) -> tuple[str, str]:
    """The data set to use and where it came from ("option" or "network file")."""
    from ..errors import DatasetError

    if given:
        return given, "option"
    if net.provenance.dataset:
        return net.provenance.dataset, "network file"
    raise DatasetError(f"the network file records no data set; give one with {command} --dataset NAME")


def run(args) -> dict:
    from ..evaluation import evaluate_network
    from ..network import Network

    net = Network.load(args.network)
    if net.is_spike_train:
        return _run_trains(args, net)
    dataset, source = dataset_from_network(net, args.dataset, "hwloop eval")
    from ..calibration import eval_target

    target, notice = eval_target(net, args.target, args.network)  # a network trained through a calibration
    if notice is not None:
        print(notice, file=sys.stderr)
    res = evaluate_network(net, dataset, args.split, target, args.limit, args.data_root,
                           args.batch_size, progress=not args.quiet and not args.json)
    res["dataset_from"] = source
    if notice is not None:
        res["notices"] = [notice]
    if not args.json:
        print(f"{net.summary()}")
        if source != "option":
            print(f"data set from the network file (--dataset overrides): {dataset}")
        print(f"{target} {dataset}/{args.split}: accuracy {res['accuracy']:.4f} "
              f"({res['n_correct']}/{res['n']}; ties {res['n_tie']}, all-silent {res['n_silent']})")
        sp = res["spikes"]
        print(f"spikes per hidden neuron per sample: {sp['spikes_per_hidden_neuron']:.3f}; silent fraction per layer: "
              + ", ".join(f"{layer['silent_fraction']:.3f}" for layer in sp["layers"]))
        print(f"{res['samples_per_second']:.0f} samples/s running ({res['run_seconds']:.2f} s); "
              f"{res['setup_seconds']:.2f} s to open, compile, deploy and close the target")
        if "mapping_text" in res:
            print(res["mapping_text"])
    return res


def _run_trains(args, net) -> dict:
    """A spike-train network: its data set rebuilt as rasters from the configuration the file records."""
    import sys
    import time

    import numpy as np

    from hwloop.backends import open_target

    from ..errors import DatasetError
    from ..trains_training import config_from_network, load_trains_data

    cfg = config_from_network(net)
    if args.dataset and args.dataset != cfg.dataset:
        raise DatasetError(f"this spike-train network was trained on {cfg.dataset!r}; its input encoding is that "
                           f"data set's, so --dataset {args.dataset} cannot be evaluated")
    cfg.dtype = "float64"
    split = load_trains_data(cfg).splits[args.split]
    raster, labels = split.raster.numpy(), split.labels.numpy()
    if args.limit is not None:
        raster, labels = raster[:, :args.limit], labels[:args.limit]
    n = labels.shape[0]
    t0 = time.perf_counter()
    preds, argmax, counts, run_s = [], [], None, 0.0
    with open_target(args.target) as backend:
        backend.load(net)
        setup = time.perf_counter() - t0
        for b in range(0, n, args.batch_size):
            t1 = time.perf_counter()
            m = backend.run_raster(raster[:, b:b + args.batch_size])
            run_s += time.perf_counter() - t1
            preds.append(m.predictions())
            argmax.append(np.argmax(m.scores if m.scores is not None else -m.output, axis=1))
            c = [ev.counts().sum(0) for ev in m.events]
            counts = c if counts is None else [a + x for a, x in zip(counts, c)]
            if not args.quiet and not args.json:
                print(f"eval {min(n, b + args.batch_size)}/{n}", file=sys.stderr, flush=True)
    pred = np.concatenate(preds)
    correct = int((pred == labels).sum())
    # the trainer's rule (torch argmax): a tie goes to the lowest class index instead of being undecided
    am = np.concatenate(argmax)
    correct_argmax = int((am == labels).sum())
    tie_correct = int(((pred < 0) & (am == labels)).sum())
    per_neuron = [float(c.sum()) / (n * c.shape[0]) for c in counts]
    res = {"network": args.network, "dataset": cfg.dataset, "dataset_from": "network file", "split": args.split,
           "target": args.target, "n": n, "n_correct": correct, "n_undecided": int((pred < 0).sum()),
           "accuracy": correct / n, "accuracy_ties_to_first_class": correct_argmax / n,
           "n_undecided_correct_by_tie": tie_correct,
           "spikes_per_neuron_per_sample": per_neuron,
           "samples_per_second": n / run_s if run_s > 0 else None, "run_seconds": run_s,
           "setup_seconds": setup, "recorded_accuracy": dict(net.provenance.accuracy).get(args.split)}
    if not args.json:
        print(net.summary())
        print(f"{args.target} {cfg.dataset}/{args.split}: accuracy {res['accuracy']:.4f} ({correct}/{n}; "
              f"undecided {res['n_undecided']})")
        if res["n_undecided"]:
            print(f"with ties going to the lowest class index, as the trainer counts them: "
                  f"{res['accuracy_ties_to_first_class']:.4f}")
        print("spikes per neuron per sample, per layer: " + ", ".join(f"{v:.3f}" for v in per_neuron))
        print(f"{res['samples_per_second'] or 0:.0f} samples/s running ({run_s:.2f} s)")
    return res
