"""hwloop eval: accuracy and spike statistics of a network on a target."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("eval", help="evaluate a network on a data set, on any target")
    p.add_argument("network", help=".hwnet file")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--target", default="software", help="target URL (see `hwloop devices`)")
    p.add_argument("--limit", type=int, default=None, help="first N samples only")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..evaluation import evaluate_network
    from ..network import Network

    net = Network.load(args.network)
    res = evaluate_network(net, args.dataset, args.split, args.target, args.limit, args.data_root,
                           args.batch_size, progress=not args.quiet and not args.json)
    if not args.json:
        print(f"{net.summary()}")
        print(f"{args.target} {args.dataset}/{args.split}: accuracy {res['accuracy']:.4f} "
              f"({res['n_correct']}/{res['n']}; ties {res['n_tie']}, all-silent {res['n_silent']})")
        sp = res["spikes"]
        print(f"spikes per hidden neuron per sample: {sp['spikes_per_hidden_neuron']:.3f}; silent fraction per layer: "
              + ", ".join(f"{layer['silent_fraction']:.3f}" for layer in sp["layers"]))
        print(f"{res['samples_per_second']:.0f} samples/s")
        if "mapping_text" in res:
            print(res["mapping_text"])
    return res
