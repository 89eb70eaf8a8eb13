"""hwloop loop: an in-the-loop training session on a target."""

from __future__ import annotations


def register(sub):
    p = sub.add_parser("loop", help="train in the loop: forward on the target, gradients at the measured spikes",
                       description="Run (or --resume) an in-the-loop training session in a session directory.")
    p.add_argument("--target", default=None,
                   help="target URL (default: software). A QIF chip with a stored calibration (hwloop calibrate) "
                        "starts a QIF network from the calibrated deployment, and says so; calib=off in the URL "
                        "deploys as is")
    p.add_argument("--dataset", default=None, help="data set (default yinyang)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--init", default=None, help="network to start from (.hwnet)")
    p.add_argument("--dir", default=None,
                   help="session directory (default: a fresh runs/loop-<target>-<n>, printed as it starts)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the session in DIR (with --epochs N: run it to N epochs, also once finished)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 3)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per step (default 150)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.001)")
    p.add_argument("--lr-gamma", type=float, default=None,
                   help="learning rate factor after every epoch, in (0, 1] (default 1)")
    p.add_argument("--lr-schedule", choices=["epoch", "plateau"], default=None,
                   help="when --lr-gamma applies: after every epoch, or after every evaluation that did not raise "
                        "the best validation accuracy (default epoch)")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="stop after N evaluations in a row without a new best validation accuracy "
                        "(default 0: run every epoch)")
    p.add_argument("--no-final-test", dest="final_test", action="store_const", const=False, default=None,
                   help="skip measuring the start and the selected network on the test split at the end "
                        "(summary.json's test_start / test_selected)")
    p.add_argument("--seed", type=int, default=None, help="sample order, perturbations, jitter (default 0)")
    p.add_argument("--gradient", choices=["model", "spsa", "node-perturbation"], default=None,
                   help="model gradient at the measured times, model-free SPSA, or model-free node perturbation "
                        "(Fiete & Seung; needs a target that injects current, e.g. qif-emu) (default model)")
    p.add_argument("--spsa-pairs", type=int, default=None, help="SPSA directions per step (default 4)")
    p.add_argument("--grad-at", choices=["measured", "model"], default=None,
                   help="evaluate the model gradient at the measured output times or at the model's times for "
                        "the measured inputs (robust on time grids); default: model on Loihi targets "
                        "(bitexact, lava-sim, lava-hw), measured elsewhere")
    p.add_argument("--loss-times", choices=["measured", "worst"], default=None,
                   help="output times the loss sees: the measured ones, or per output the worse of measured and "
                        "the model's for the measured inputs (the later for the label, the earlier for the "
                        "others; steadies training on a time grid, docs/in-the-loop.md); default: worst on "
                        "Loihi targets, measured elsewhere")
    p.add_argument("--max-missing", default=None, metavar="F[,F...]",
                   help="LIF weight bumping: per layer, the fraction of a batch a neuron may miss before its "
                        "inputs are raised (last value repeats; 1 turns it off for a layer; default 0.3,1 on Loihi "
                        "targets, 0.3,0 elsewhere)")
    p.add_argument("--ema", type=float, default=None,
                   help="average the weights over steps with this decay (e.g. 0.98); evaluation and "
                        "best.hwnet use the average (default 0: off)")
    p.add_argument("--input-jitter", type=float, default=None,
                   help="Gaussian jitter of the training input times, std in units of tau_syn (default 0)")
    g = p.add_argument_group("spike-train networks (surrogate gradients in the loop, docs/in-the-loop.md)")
    g.add_argument("--model", choices=_trains_models(), default=None,
                   help="the start network's neuron model: the measured spikes (and membranes) replace the "
                        "simulated ones in the surrogate model's forward pass (default: taken from --init; "
                        "an error if it does not match)")
    g.add_argument("--signal", choices=["spikes", "spikes+membranes", "spikes+readout"], default=None,
                   help="what the target's measurements replace: spikes only, spikes and every layer's "
                        "membranes, or spikes and the readout's membrane (default: spikes+membranes on "
                        "software, bitexact, lava-sim; spikes+readout on the QIF chip, whose link would "
                        "carry every hidden membrane; spikes on targets without probes)")
    g.add_argument("--surrogate", choices=["superspike", "sigmoid", "linear", "exponential"], default=None,
                   help="shape of the surrogate derivative (default: the network's training's)")
    g.add_argument("--surrogate-beta", type=float, default=None,
                   help="scale (steepness) of the surrogate derivative (default: the network's training's)")
    g.add_argument("--freeze-recurrent", dest="train_recurrent", action="store_const", const=False, default=None,
                   help="keep the recurrent layers' recurrent matrices those of the start network (default: "
                        "trained with the feed-forward ones)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--eval-limit", type=int, default=None, help="validation samples per evaluation (default all)")
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="evaluate on the validation split every N steps as well as at the end of every epoch "
                        "(default 0: once per epoch)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--crash-after-step", type=int, default=None, help=argparse_suppress())
    p.set_defaults(func=run)
    return p


def _trains_dataset(init: str) -> str | None:
    """The data set a spike-train start network was trained on (None: not one, or unreadable)."""
    from ..errors import HwloopError
    from ..network import Network

    try:
        net = Network.load(init)
    except HwloopError:
        return None
    return net.provenance.dataset if net.is_spike_train and net.provenance.dataset else None


def _trains_models() -> list[str]:
    from ..session.trains_forward import FORWARDS

    return sorted(FORWARDS)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


#: the options that configure a session (recorded in its config.json)
CONFIG_OPTIONS = ("target", "dataset", "data_root", "init", "epochs", "batch_size", "lr", "lr_gamma", "lr_schedule",
                  "patience", "final_test", "seed",
                  "gradient", "spsa_pairs", "grad_at", "loss_times", "max_missing", "train_limit", "eval_limit",
                  "ema", "input_jitter", "eval_every", "model", "signal", "surrogate", "surrogate_beta",
                  "train_recurrent")


def run(args) -> dict:
    import sys

    from ..session import LoopConfig, SessionError, run_session
    from ..session.runner import checked_config

    if args.resume:
        given = [k for k in (*CONFIG_OPTIONS, "dir") if k != "epochs" and getattr(args, k) is not None]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise SessionError(f"--resume takes its configuration from the session; drop {flags} "
                               "(only --epochs may be given, to run the session to that many epochs)")
        return run_session(args.resume, resume=True, progress=not args.quiet,
                           crash_after_step=args.crash_after_step, epochs=args.epochs)
    cfg = LoopConfig()
    for key in CONFIG_OPTIONS:
        v = getattr(args, key)
        if v is not None and key != "max_missing":
            setattr(cfg, key, v)
    if args.max_missing is not None:
        cfg.max_missing = _fractions(args.max_missing)
    if args.dataset is None and args.init is not None:
        cfg.dataset = _trains_dataset(args.init) or cfg.dataset
    # options not given stay None: the session fills in the target's defaults
    # (the same as a LoopConfig built in Python gets) and records them in config.json
    cfg = checked_config(cfg)  # bad numbers and unknown targets refused before a directory is made
    directory = args.dir
    if directory is None:
        directory = fresh_directory(cfg.target)
        print(f"session directory: {directory}", file=sys.stderr)
    res = run_session(directory, cfg, progress=not args.quiet, crash_after_step=args.crash_after_step)
    if not args.json:
        from ..session.files import SessionDir

        # the target the session ran (calib=on where it started from the chip's stored calibration)
        print(outcome_line(res, SessionDir(res["session"]).load_config().target))
    return res


def outcome_line(res: dict, target: str) -> str:
    """One line: which network the session selected, and its test figure next to the start's."""
    text = (f"session {res['session']}: selected the {res.get('selected', '?')} network (step "
            f"{res.get('selected_step', '?')}), validation accuracy on {target} "
            f"{res.get('best_val_accuracy', float('nan')):.4f} (start {res.get('start_val_accuracy', float('nan')):.4f})")
    if "test_selected" in res:
        text += (f"; test {res['test_selected']['accuracy']:.4f} (start {res['test_start']['accuracy']:.4f}, "
                 f"n={res['test_selected']['n']})")
    if res.get("stopped_early"):
        text += f"; stopped early after {res['steps']} steps"
    return text


def fresh_directory(target: str, root: str = "runs") -> str:
    """``runs/loop-<target>-<n>`` with n one past the highest taken, created
    here (so two sessions started together do not pick the same one)."""
    import os
    import re
    from pathlib import Path

    from ..session import SessionError

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", target.split("?")[0]).strip("._") or "target"
    base = Path(root)
    pattern = re.compile(rf"loop-{re.escape(slug)}-(\d+)$")
    try:
        taken = [int(m.group(1)) for p in base.iterdir() if (m := pattern.match(p.name))] if base.is_dir() else []
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SessionError(f"{base}: cannot use it for session directories ({exc.strerror or exc})") from None
    n = max(taken, default=0) + 1
    while True:
        path = base / f"loop-{slug}-{n}"
        try:
            os.mkdir(path)
            return str(path)
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise SessionError(f"{path}: cannot create ({exc.strerror or exc})") from None


def _fractions(text: str) -> tuple[float, ...]:
    from ..session import SessionError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise SessionError(f"--max-missing: expected comma-separated fractions, got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise SessionError(f"--max-missing: fractions must lie in [0, 1], got {text!r}")
    return values
