"""hwloop demo: the README's main job.

Until in-the-loop sessions land this is software training of a LIF
first-spike-time network on Yin-Yang (4+bias-120-3, the Göltz et al. set-up),
evaluated on the test split through the `software` target.
"""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("demo", help="the main job: train a Yin-Yang LIF network and evaluate it")
    p.add_argument("--epochs", type=int, default=None, help="default: the Yin-Yang default (300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo/yinyang-lif.hwnet")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..evaluation import evaluate_network
    from ..training import default_config, train

    cfg = default_config("lif", "yinyang", epochs=args.epochs, seed=args.seed)
    print(f"training LIF 4(+bias)-120-3 on Yin-Yang for {cfg.epochs} epochs (seed {cfg.seed})")
    result = train(cfg, progress=True)
    net = result.network
    net.save(args.out)
    res = evaluate_network(net, "yinyang", "test", "software")
    print(f"wrote {args.out}")
    print(f"test accuracy {res['accuracy']:.4f} on `software`; "
          f"spikes per hidden neuron per sample {res['spikes']['spikes_per_hidden_neuron']:.2f}; "
          f"training took {result.metrics['train_seconds']:.1f} s")
    return {"network": args.out, "test_accuracy": res["accuracy"], **result.metrics}
