"""Calibration by current injection (issue #16): how well it recovers the
emulator's true per-neuron parameters, what it costs in chip runs, and what
it buys a software-trained network deployed with no in-the-loop training.

For each chip id: `hwloop calibrate` (the library call behind it) on
``qif-emu`` at its default mismatch and noise, the fitted parameters against
the emulator's truth (`hwloop.calibration.truth_of` reads the die's mismatch
pattern; the calibration itself never does), then the network evaluated on
the chip as is and with ``calib=on``, beside its software accuracy.

    python bench/bench_calibration.py [--chips 1,2,3] [--net hwloop/pretrained/yinyang-qif.hwnet] [--limit N]

``--loop`` instead measures the sample cost of in-the-loop training from each
start: per chip, two sessions with the same settings (the docs' `qif-emu`
recipe, shortened), one on ``calib=off`` and one on ``calib=on``, validation
accuracy on the chip every ``--eval-every`` steps, and the training target
samples (samples x target runs, as `bench_gradients.py` counts them) until
the validation accuracy reaches software - 0.5 points (and, with
``--margins``, lower thresholds; software: the start
network on the same validation samples). Validation is noisy (1000 samples:
about +-0.5 points), so a threshold counts as reached at an evaluation only
when the next evaluation is at or above it too (two in a row; the samples
are counted up to the second). The calibrated start is charged its
calibration's samples as well.

    python bench/bench_calibration.py --loop [--chips 1,2,3] [--epochs 4] [--eval-every 20] [--out runs/bench-cal-loop]
        [--modes off,on] [--reuse]

(``--modes on`` runs the calibrated sessions only, reading the uncalibrated ones
from an earlier run in ``--out``; the summary is the same as one run of both.)

``--ablation`` asks where the calibrated accuracy comes from, on the
emulator's analog core in-process (one noise seed, or the mean over
``--seeds``; the truth read from the
die's mismatch pattern): the network on an ideal die with 6-bit and with
finer codes, then on each chip compensated with the true parameters through
the old single-line compile (with and without an exact initial voltage) and
through `compile_calibrated`, and with the fitted parameters (without the
first layer's copies, and with the true second-layer rows).

    python bench/bench_calibration.py --ablation [--chips 2] [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", default="1,2,3")
    ap.add_argument("--net", default="hwloop/pretrained/yinyang-qif.hwnet")
    ap.add_argument("--limit", type=int, default=None, help="test samples (default: the whole split)")
    ap.add_argument("--neurons", type=int, default=None, help="neurons to calibrate (default: all)")
    ap.add_argument("--ablation", action="store_true", help="where the calibrated accuracy comes from (in-process)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[12345],
                    help="--ablation: noise seeds each cell is averaged over (their spread is printed)")
    ap.add_argument("--loop", action="store_true",
                    help="sample cost of in-the-loop training, uncalibrated vs calibrated")
    ap.add_argument("--epochs", type=int, default=4, help="--loop: epochs per session (the cap)")
    ap.add_argument("--eval-every", type=int, default=20, help="--loop: steps between validation runs")
    ap.add_argument("--margins", type=float, nargs="+", default=[0.005, 0.01, 0.02],
                    help="--loop: thresholds = software - margin (the first is the issue's)")
    ap.add_argument("--reuse", action="store_true", help="--loop: keep session directories that ran to the end")
    ap.add_argument("--modes", default="off,on",
                    help="--loop: the sessions to run now (calib=off, calib=on); a mode left out must have run "
                         "to the end in --out before, and is read from there (one heavy run at a time)")
    ap.add_argument("--out", default="runs/bench-cal-loop", help="--loop: session directories")
    ap.add_argument("--train-limit", type=int, default=None, help="--loop: first N training samples (smoke runs)")
    ap.add_argument("--eval-limit", type=int, default=None, help="--loop: first N validation samples (smoke runs)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HWLOOP_CALIBRATION_DIR", tempfile.mkdtemp(prefix="hwloop-cal-"))
    if a.loop:
        return loop_cost(a)
    if a.ablation:
        return ablation(a)

    from hwloop.backends import open_target
    from hwloop.calibration import calibrate, truth_of
    from hwloop.evaluation import evaluate_network
    from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH
    from hwloop.network import Network

    net = Network.load(a.net)
    ds = net.provenance.dataset or "yinyang"
    sw = evaluate_network(net, ds, "test", "software", a.limit)["accuracy"]
    print(f"network {a.net} ({ds}); software accuracy {100 * sw:.1f} %")
    print("fit columns: rms error of the fit / spread (std) of the truth")
    print(f"{'chip':>5} {'runs':>5} {'samples':>7} | "
          f"{'tau gain':>12} {'D':>12} {'u0':>12} {'syn gain':>12} {'row gain':>12} {'row (l 1)':>12} | "
          f"{'as is':>6} {'calib':>6} {'software':>8}")
    for chip in (int(c, 0) for c in a.chips.split(",")):
        base = f"qif-emu?baud=0&chip_id={chip}"
        with open_target(base) as b:
            cal = calibrate(b, n_neurons=a.neurons, quiet=True)
        cal.save(os.path.join(os.environ["HWLOOP_CALIBRATION_DIR"], f"qif-{chip:#x}-fw{cal.fw_version}.json"))
        n = cal.g.size
        tr = truth_of(chip, DEFAULT_MISMATCH, n)
        errs = []
        # only row x column is observable and the calibration normalises the first layer's rows
        # to mean 1: the true columns carry that mean
        tr["col"] = tr["col"] * np.mean(tr["row0"][: cal.row0.size])
        for k in ("g", "D", "u0", "col"):
            e = getattr(cal, k) - tr[k]
            errs.append(f"{np.sqrt(np.mean(e ** 2)):.4f}/{np.std(tr[k]):.3f}")
        rows = min(cal.row0.size, n)
        true_rows = tr["row0"][: cal.row0.size] / np.mean(tr["row0"][: cal.row0.size])
        e = cal.row0[:rows] - true_rows[:rows]
        errs.append(f"{np.sqrt(np.mean(e ** 2)):.4f}/{np.std(true_rows):.3f}")
        if cal.row1 is not None:
            r1 = tr["row1"][: cal.row1.size] / np.mean(tr["row1"][: cal.row1.size])
            errs.append(f"{np.sqrt(np.mean((cal.row1 - r1) ** 2)):.4f}/{np.std(r1):.3f}")
        else:
            errs.append("-")
        acc = [evaluate_network(net, ds, "test", f"{base}&calib={c}", a.limit)["accuracy"] for c in ("off", "on")]
        print(f"{chip:>5} {cal.chip_runs:>5} {cal.samples:>7} | " + " ".join(f"{x:>12}" for x in errs)
              + f" | {100 * acc[0]:>5.1f}% {100 * acc[1]:>5.1f}% {100 * sw:>7.1f}%", flush=True)
    return 0


def reached(points, threshold: float):
    """Target samples at the second of the first two evaluations in a row at or above
    ``threshold`` (None: never); ``points`` = (step, samples so far, accuracy)."""
    for (_, _, a0), (_, used, a1) in zip(points, points[1:]):
        if a0 >= threshold and a1 >= threshold:
            return used
    return None


def loop_cost(a) -> int:
    import json
    import shutil
    from pathlib import Path

    from hwloop.backends import open_target
    from hwloop.calibration import calibrate
    from hwloop.data import load_dataset
    from hwloop.evaluation import evaluate_network
    from hwloop.network import Network
    from hwloop.session import LoopConfig, run_session

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_gradients import curve

    net = Network.load(a.net)
    ds = net.provenance.dataset or "yinyang"
    sw = evaluate_network(net, ds, "val", "software", a.eval_limit)["accuracy"]
    margins = a.margins
    ths = [sw - m for m in margins]
    n_train = a.train_limit or len(load_dataset(ds, "train").y)
    last_step = a.epochs * max(1, n_train // 50)
    print(f"network {a.net}; software validation accuracy {100 * sw:.1f} %; thresholds "
          + ", ".join(f"{100 * t:.1f} %" for t in ths)
          + f" (software - {', '.join(f'{100 * m:g}' for m in margins)} points; two evaluations in a row); "
          f"{a.epochs} epochs ({last_step} steps of 50), validation every {a.eval_every} steps", flush=True)
    rows = []
    for chip in (int(c, 0) for c in a.chips.split(",")):
        base = f"qif-emu?chip_id={chip}"
        with open_target(base + "&baud=0") as b:
            cal = calibrate(b, quiet=True)
        cal.save(os.path.join(os.environ["HWLOOP_CALIBRATION_DIR"], f"qif-{chip:#x}-fw{cal.fw_version}.json"))
        row = {"chip": chip, "calibration_samples": cal.samples}
        for mode in ("on", "off"):
            d = Path(a.out) / f"chip{chip}-calib-{mode}"
            done = d.exists() and any(r["step"] == last_step for r in curve_rows(d))
            if mode not in a.modes.split(",") and not done:
                print(f"    {d}: calib={mode} left out of --modes and not run to step {last_step} there: "
                      f"no ratio for chip {chip}", flush=True)
                row[mode] = None
                continue
            if mode in a.modes.split(",") and not (a.reuse and done):
                if d.exists():
                    shutil.rmtree(d)
                cfg = LoopConfig(target=f"{base}&calib={mode}", dataset=ds, init=a.net, epochs=a.epochs,
                                 batch_size=50, lr=0.002, lr_gamma=0.9, ema=0.98, seed=0, eval_every=a.eval_every,
                                 compare_software=False, final_test=False, train_limit=a.train_limit,
                                 eval_limit=a.eval_limit)
                run_session(d, cfg, progress=False)
            pts = curve(d)
            row[mode] = {"start_val": pts[0][2], "final_val": pts[-1][2], "best_val": max(p[2] for p in pts),
                         "samples_cap": pts[-1][1], "samples_to_threshold": [reached(pts, t) for t in ths],
                         "curve": [(s, u, round(v, 4)) for s, u, v in pts]}
        if row["on"] is None or row["off"] is None:
            on = row["on"] or row["off"]
            print(f"chip {chip}: start {100 * on['start_val']:.1f} -> best {100 * on['best_val']:.1f} %; samples to "
                  + ", ".join(f"{100 * t:.1f} %: {v}" for t, v in zip(ths, on["samples_to_threshold"])), flush=True)
            rows.append(row)
            continue
        row["ratio"] = []
        for off, on in zip(row["off"]["samples_to_threshold"], row["on"]["samples_to_threshold"]):
            on_total = None if on is None else on + cal.samples
            if off is not None and on_total is not None:
                row["ratio"].append(f"{on_total / off:.3f}" if off else "-")
            elif on_total is not None:  # the uncalibrated start needs more than its cap
                row["ratio"].append(f"< {on_total / row['off']['samples_cap']:.3f}")
            else:
                row["ratio"].append("-")
        rows.append(row)
        print(f"chip {chip}: uncalibrated {100 * row['off']['start_val']:.1f} -> best "
              f"{100 * row['off']['best_val']:.1f} %; calibrated {100 * row['on']['start_val']:.1f} -> best "
              f"{100 * row['on']['best_val']:.1f} %; calibration {cal.samples} samples", flush=True)
        for t, off, on, ratio in zip(ths, row["off"]["samples_to_threshold"], row["on"]["samples_to_threshold"],
                                     row["ratio"]):
            fmt = lambda v, cap: f">{cap}" if v is None else str(v)  # noqa: E731
            print(f"    to {100 * t:.1f} %: uncalibrated {fmt(off, row['off']['samples_cap'])}, calibrated "
                  f"{fmt(on, row['on']['samples_cap'])} (+ {cal.samples}), ratio {ratio}", flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "summary.json").write_text(json.dumps({"software_val": sw, "margins": margins, "thresholds": ths,
                                                          "rows": rows}, indent=1))
    return 0


def curve_rows(directory) -> list[dict]:
    """The eval rows of a session's log (none if it has no log yet)."""
    import json
    from pathlib import Path

    log = Path(directory) / "log.jsonl"
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "eval"]


def ablation(a) -> int:
    import dataclasses

    from hwloop.backends import open_target
    from hwloop.backends.qif.compiler import compile_calibrated, compile_network
    from hwloop.calibration import Calibration, calibrate, compensate, truth_of
    from hwloop.data import load_dataset
    from hwloop.data.decoding import classification_report
    from hwloop.firmware_models.qif_chip.core import AnalogCore
    from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH, DEFAULT_NOISE, DEFAULT_SPEC
    from hwloop.network import Network

    net = Network.load(a.net)
    d = load_dataset(net.provenance.dataset or "yinyang", "test")
    x, y = net.encoding.encode(d.x[: a.limit]), d.y[: a.limit]

    def acc(prog, chip, mismatch, noise, spec=DEFAULT_SPEC, v0_fix=None):
        """Mean accuracy over the noise seeds ``--seeds``; the spread is printed apart."""
        runs = [acc1(prog, chip, mismatch, noise, spec, v0_fix, seed) for seed in a.seeds]
        if len(runs) > 1:
            spreads.append(max(runs) - min(runs))
        return float(np.mean(runs))

    spreads = []

    def acc1(prog, chip, mismatch, noise, spec, v0_fix, seed):
        core = AnalogCore(spec, chip, mismatch, noise)
        core.configure(prog.config)
        if v0_fix is not None:  # the bench's oracle: every neuron's initial voltage set exactly
            first = 0
            for L in core._layers:
                k = L["w"].shape[1]
                L["v0"] = L["v0"] + v0_fix[first:first + k]
                first += k
        inj = None if prog.dc is None else np.broadcast_to(prog.dc, (x.shape[0], prog.dc.size)).copy()
        out = core.run(prog.input_ticks(x), seed, 0, inject=inj)
        return 100 * classification_report(prog.decode(out)[-1], y)["accuracy"]

    with open_target("qif-emu?baud=0") as b:
        info = b.chip_info
    plain = compile_network(net, info)
    print(f"ideal die, 6-bit DAC: {acc(plain, 0, 0.0, 0.0):.1f} %")
    fine = dataclasses.replace(info, dac_bits=8)
    spec8 = dataclasses.replace(DEFAULT_SPEC, dac_bits=8)
    for name, bits in (("first layer 8-bit", (8, 6)), ("output layer 8-bit", (6, 8)), ("both 8-bit", (8, 8))):
        layers = tuple(compile_network(net, dataclasses.replace(info, dac_bits=bb)).effective.layers[i]
                       for i, bb in enumerate(bits))
        p = compile_network(dataclasses.replace(net, layers=layers), fine)  # represented exactly in 8 bits
        print(f"ideal die, {name}: {acc(p, 0, 0.0, 0.0, spec8):.1f} %")
    n = sum(layer.n_out for layer in net.layers)
    for chip in (int(c, 0) for c in a.chips.split(",")):
        tr = truth_of(chip, DEFAULT_MISMATCH, DEFAULT_SPEC.max_neurons)
        with open_target(f"qif-emu?baud=0&chip_id={chip}") as b:
            fit = calibrate(b, quiet=True)
        m0, m1 = np.mean(tr["row0"][: fit.row0.size]), np.mean(tr["row1"][: fit.row1.size])
        true = Calibration(chip_id=chip, fw_version="x", g=tr["g"], D=tr["D"], u0=tr["u0"], col=tr["col"] * m0,
                           row0=tr["row0"][: fit.row0.size] / m0, row1=tr["row1"][: fit.row1.size] / m0)
        comp, dc, _ = compensate(net, true)
        old = dataclasses.replace(compile_network(comp, info, scale=plain.scale), dc=dc)
        cells = {
            "as is": acc(plain, chip, DEFAULT_MISMATCH, DEFAULT_NOISE),
            "true, single-line compile": acc(old, chip, DEFAULT_MISMATCH, DEFAULT_NOISE),
            "true, single-line, exact v0": acc(old, chip, DEFAULT_MISMATCH, DEFAULT_NOISE, v0_fix=-tr["u0"][:n]),
            "true, compile_calibrated": acc(compile_calibrated(net, info, true), chip, DEFAULT_MISMATCH, DEFAULT_NOISE),
            "fitted, compile_calibrated": acc(compile_calibrated(net, info, fit), chip, DEFAULT_MISMATCH,
                                              DEFAULT_NOISE),
            "fitted, no copies (one chip neuron per neuron)": acc(compile_calibrated(net, info, fit, copies=False),
                                                                  chip, DEFAULT_MISMATCH, DEFAULT_NOISE),
            "fitted, true layer-1 rows": acc(compile_calibrated(net, info, dataclasses.replace(
                fit, row1=tr["row1"][: fit.row1.size] / m1)), chip, DEFAULT_MISMATCH, DEFAULT_NOISE),
        }
        print(f"chip {chip}: " + "; ".join(f"{k} {v:.1f} %" for k, v in cells.items()), flush=True)
    if spreads:
        print(f"noise seeds {a.seeds}: max - min of a cell over them {min(spreads):.1f} .. {max(spreads):.1f} points "
              f"(mean {np.mean(spreads):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
