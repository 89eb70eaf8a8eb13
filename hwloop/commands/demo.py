"""hwloop demo: the README's main job.

A short in-the-loop training session on the embedded default target, the
emulated analog QIF chip (`qif-emu`, default 5 % device mismatch and
temporal noise), starting from a network trained in software
(`hwloop/pretrained/yinyang-qif.hwnet`). It prints the test accuracy in
software, deployed as is on the chip, and after training in the loop. On a
chip with a stored calibration (`hwloop calibrate`) the session starts from
the calibrated deployment and the trained network is measured there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ._args import POSITIVE, SEED


def register(sub):
    p = sub.add_parser("demo", help="the main job: a short in-the-loop session on the emulated QIF chip")
    p.add_argument("--target", default="qif-emu", help="target URL to train on (see `hwloop devices --options`)")
    p.add_argument("--epochs", type=POSITIVE, default=3, help="epochs of training in the loop")
    p.add_argument("--dir", default=None, help="session directory (default runs/demo-<time>)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the session (batch order)")
    p.add_argument("--train-limit", type=POSITIVE, default=None,
                   help="use only the first N training samples (N >= 1)")
    p.set_defaults(func=run)
    return p


def run(args) -> dict:
    from ..evaluation import evaluate_network
    from ..network import Network
    from ..pretrained import path as pretrained
    from ..session import LoopConfig, run_session

    from hwloop.backends import check_target

    check_target(args.target)  # a bad URL is refused now, not after the software evaluation
    init = pretrained("yinyang-qif.hwnet")
    net = Network.load(init)
    directory = args.dir or time.strftime("runs/demo-%Y%m%d-%H%M%S")
    print(f"start: {net.summary()}")
    sw = evaluate_network(net, "yinyang", "test", "software")["accuracy"]
    print(f"test accuracy in software: {sw:.4f}")
    before = evaluate_network(net, "yinyang", "test", args.target)["accuracy"]
    print(f"deployed as is on {args.target}: {before:.4f}")
    cfg = LoopConfig(target=args.target, dataset="yinyang", init=str(init), epochs=args.epochs, batch_size=50,
                     lr=0.002, lr_gamma=0.6, seed=args.seed, eval_limit=500, ema=0.95,
                     train_limit=args.train_limit)
    print(f"training in the loop for {args.epochs} epochs (session {directory}) ...")
    res = run_session(directory, cfg, progress=True)
    if res.get("interrupted"):
        return res
    # the target the session ran on: a chip with a stored calibration starts calibrated (calib=on added,
    # hwloop/session/runner.py), and the trained network is measured the way it was trained to be deployed
    ran_on = json.loads(Path(directory, "config.json").read_text())["target"]
    best = Network.load(f"{directory}/best.hwnet")
    after = evaluate_network(best, "yinyang", "test", ran_on)["accuracy"]
    print(f"after in-the-loop training on {ran_on}: {after:.4f}  "
          f"(software {sw:.4f}, deployed as is {before:.4f})")
    print(f"report: hwloop report {directory}")
    return {"session": directory, "target": ran_on, "software_accuracy": sw, "before": before, "after": after,
            "seconds": res.get("seconds")}
