"""hwloop eval: accuracy and spike statistics of a network on a target."""

from __future__ import annotations

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
    dataset, source = dataset_from_network(net, args.dataset, "hwloop eval")
    res = evaluate_network(net, dataset, args.split, args.target, args.limit, args.data_root,
                           args.batch_size, progress=not args.quiet and not args.json)
    res["dataset_from"] = source
    if not args.json:
        print(f"{net.summary()}")
        if source != "option":
            print(f"data set from the network file (--dataset overrides): {dataset}")
        print(f"{args.target} {dataset}/{args.split}: accuracy {res['accuracy']:.4f} "
              f"({res['n_correct']}/{res['n']}; ties {res['n_tie']}, all-silent {res['n_silent']})")
        sp = res["spikes"]
        print(f"spikes per hidden neuron per sample: {sp['spikes_per_hidden_neuron']:.3f}; silent fraction per layer: "
              + ", ".join(f"{layer['silent_fraction']:.3f}" for layer in sp["layers"]))
        print(f"{res['samples_per_second']:.0f} samples/s running ({res['run_seconds']:.2f} s); "
              f"{res['setup_seconds']:.2f} s to open, compile, deploy and close the target")
        if "mapping_text" in res:
            print(res["mapping_text"])
    return res
