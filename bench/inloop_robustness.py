"""In-the-loop robustness: software seeds x targets x session seeds (issue 19).

For every cell: a network trained in software from a seed (QIF for the QIF
chip, LIF for the Loihi targets; trained here, never the shipped ones), its
test accuracy in software, deployed as is on the target, and after an
in-the-loop session on the target (the network the session selected,
measured on the target on the test split, which the session never selected
on). Deployed as is and after are the session's own two test measurements
(summary.json: ``test_start``, ``test_selected``). Prints one row per cell, then per target the mean and the worst cell,
and whether every cell ends at or above its deployed-as-is accuracy.

    # the full must-show table of issue 19 (Yin-Yang; hours on 2 cores)
    python bench/inloop_robustness.py --out runs/robust
    # the same for digits on one QIF chip
    python bench/inloop_robustness.py --dataset digits --targets qif-emu --multi-seed-cell none --out runs/robust-digits
    # a reduced grid
    python bench/inloop_robustness.py --qif-epochs 5 --out runs/robust-small
    # the QIF chips calibrated first, sessions from the calibrated deployment (issue 16's columns:
    # deployed as is uncalibrated, calibrated as is, after); what docs/results-inloop.md reports
    python bench/inloop_robustness.py --targets 'qif-emu?chip_id=1' 'qif-emu?chip_id=2' 'qif-emu?chip_id=3' \
        --qif-epochs 10 --calibrate --out runs/robust-calib

With ``--calibrate`` every QIF chip is calibrated once (``hwloop calibrate``,
the file kept in ``OUT/calibration``, which this run uses as its
``$HWLOOP_CALIBRATION_DIR``), every session on it starts from the calibrated
deployment (``calib=on``), and the uncalibrated deployed-as-is accuracy is
measured apart (``OUT/deployed``). Without it QIF sessions deploy as is
(``calib=off``, said explicitly: a session on a chip with a stored
calibration starts from it by default).

Sessions use the documented recipes (docs/results-inloop.md) unless told
otherwise; ``--setting`` adds loop settings to every session of a run
(e.g. ``--setting lr_schedule=plateau patience=4``), so two settings are
compared on the same cells by two runs into two ``--out`` folders. Every
network, session and figure is kept under ``--out``; a rerun reuses what
is there (finished sessions are not run again), so a long table can be
built in pieces. One session at a time, one thread each
(``OMP_NUM_THREADS=1``), for a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: the issue's grid
TARGETS = ("qif-emu?chip_id=1", "qif-emu?chip_id=2", "qif-emu?chip_id=3", "bitexact?steps=100",
           "bitexact?steps=150")
SOFTWARE_SEEDS = (10, 11, 12)  # not the seed of the shipped networks (0)

#: a QIF chip with neither fixed-pattern mismatch nor temporal noise (its quantisation and time
#: mapping stay): the ceiling of deployment alone, with a perfect calibration (--ideal-chip)
IDEAL_CHIP = "qif-emu?baud=0&mismatch=0&noise=0"

#: the documented session recipes (docs/results-inloop.md), per target family and data set
RECIPES = {
    ("qif", "yinyang"): dict(lr=0.002, lr_gamma=0.9, batch_size=50, ema=0.98),
    ("qif", "digits"): dict(lr=0.002, lr_gamma=0.9, batch_size=32, ema=0.98),
    ("loihi", "yinyang"): dict(lr=1e-3, lr_gamma=0.85, batch_size=50, ema=0.98),
    ("loihi", "digits"): dict(lr=1e-3, lr_gamma=0.85, batch_size=32, ema=0.98),
}


def family(target: str) -> str:
    return "qif" if target.startswith("qif") else "loihi"


def model_of(target: str) -> str:
    return "qif" if family(target) == "qif" else "lif"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def parse_setting(items: list[str]) -> dict:
    """``key=value`` loop settings (JSON values, else strings)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not _:
            raise SystemExit(f"--setting: expected key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def software_network(out: Path, model: str, dataset: str, seed: int, epochs: int | None) -> tuple[Path, float]:
    """Train (once) and return (file, software test accuracy)."""
    path = out / "software" / f"{dataset}-{model}-seed{seed}{'' if epochs is None else f'-e{epochs}'}.hwnet"
    meta = path.with_suffix(".json")
    if not meta.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "hwloop", "train", "--model", model, "--dataset", dataset, "--seed", str(seed),
               "--out", str(path), "--quiet", "--json", "--threads", "1"]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        print(f"[robust] training {path.name}", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res = json.loads(done.stdout.strip().splitlines()[-1])
        meta.write_text(json.dumps({"test": res["accuracy"]["test"], "command": " ".join(cmd[1:])}))
    return path, json.loads(meta.read_text())["test"]


def session(out: Path, net_path: Path, dataset: str, target: str, seed: int, epochs: int, extra: dict,
            train_limit: int | None) -> dict:
    """Run (or reuse) one session. A finished session of fewer epochs is
    extended to ``epochs`` (run_session's resume with more epochs: the same
    result a session asked for ``epochs`` from the start ends with), so a
    grid run short first can be lengthened where time allows."""
    from hwloop.session import LoopConfig, run_session

    d = out / "sessions" / f"{net_path.stem}--{slug(target)}--s{seed}"
    settings = {**RECIPES[(family(target), dataset)], **extra}
    if (d / "config.json").exists():
        have = json.loads((d / "config.json").read_text())["epochs"]
        if (d / "summary.json").exists() and have >= epochs:
            return json.loads((d / "summary.json").read_text())
        print(f"[robust] session {d.name}: resuming to {epochs} epochs (has {have})", file=sys.stderr, flush=True)
        return run_session(d, resume=True, progress=False, epochs=max(epochs, have))
    cfg = LoopConfig(target=target, dataset=dataset, init=str(net_path), epochs=epochs, seed=seed,
                     train_limit=train_limit, **settings)
    print(f"[robust] session {d.name} ({epochs} epochs, {settings})", file=sys.stderr, flush=True)
    return run_session(d, cfg, progress=False)


def with_calibration(target: str, on: bool = True) -> str:
    """The target URL deploying through the chip's stored calibration (or, ``on=False``,
    as is: said explicitly, since a session on a chip with a stored calibration
    starts from it by default); a target that says ``calib=`` itself is kept."""
    if "calib=" in target:
        return target
    return target + ("&" if "?" in target else "?") + ("calib=on" if on else "calib=off")


def calibration_file(out: Path, target: str) -> dict:
    """Calibrate the chip of ``target`` once (``hwloop calibrate``, into
    ``OUT/calibration``, the store every calibrated session of this run reads
    through ``$HWLOOP_CALIBRATION_DIR``); later cells and reruns reuse the file."""
    meta = out / "calibration" / f"{slug(target)}.json"
    if not meta.exists():
        meta.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "hwloop", "calibrate", target, "--json", "--quiet"]
        print(f"[robust] calibrating {target}", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ))
        res = json.loads(done.stdout.strip().splitlines()[-1])
        meta.write_text(json.dumps({"command": " ".join(cmd[1:]), **res}))
    return json.loads(meta.read_text())


def deployed_uncalibrated(out: Path, net_path: Path, dataset: str, target: str) -> dict:
    """The network deployed as is on the uncalibrated chip, test split (once;
    a separate measurement from the calibrated session's own)."""
    from hwloop.evaluation import evaluate_network
    from hwloop.network import Network

    meta = out / "deployed" / f"{net_path.stem}--{slug(target)}.json"
    if not meta.exists():
        meta.parent.mkdir(parents=True, exist_ok=True)
        res = evaluate_network(Network.load(net_path), dataset, "test", target)
        meta.write_text(json.dumps({"accuracy": res["accuracy"], "n": res["n"]}))
    return json.loads(meta.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="yinyang", choices=["yinyang", "digits"])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--software-seeds", nargs="+", type=int, default=list(SOFTWARE_SEEDS))
    ap.add_argument("--session-seed", type=int, default=0, help="the session seed of every cell (default 0)")
    ap.add_argument("--multi-seed-cell", default="qif-emu?chip_id=1",
                    help="the target whose first software seed also gets --extra-session-seeds ('none': no such cell)")
    ap.add_argument("--extra-session-seeds", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--qif-epochs", type=int, default=20, help="session epochs on QIF targets (recipe: 20)")
    ap.add_argument("--loihi-epochs", type=int, default=15, help="session epochs on Loihi targets (recipe: 15)")
    ap.add_argument("--software-epochs", type=int, default=None, help="software training epochs (default: the trainer's)")
    ap.add_argument("--train-limit", type=int, default=None, help="training samples per session epoch (default all)")
    ap.add_argument("--setting", nargs="*", default=[], metavar="KEY=VALUE",
                    help="loop settings added to every session (LoopConfig fields)")
    ap.add_argument("--calibrate", action="store_true",
                    help="QIF targets: calibrate each chip once (hwloop calibrate) and start every session from "
                         "the calibrated deployment (calib=on); the table adds the uncalibrated deployed-as-is "
                         "column")
    ap.add_argument("--ideal-chip", action="store_true",
                    help="QIF targets: also measure each network deployed on a chip with neither mismatch nor "
                         f"temporal noise ({IDEAL_CHIP}): what deployment reaches with a perfect calibration")
    ap.add_argument("--out", default="runs/robust")
    ap.add_argument("--json", action="store_true", help="print the table as JSON too")
    args = ap.parse_args(argv)
    out = Path(args.out)
    extra = parse_setting(args.setting)
    if args.calibrate:  # this run's own calibration store (the sessions run in this process)
        os.environ["HWLOOP_CALIBRATION_DIR"] = str((out / "calibration").resolve())
    t0 = time.perf_counter()

    cells = []
    for target in args.targets:
        for i, sw_seed in enumerate(args.software_seeds):
            seeds = [args.session_seed]
            if target == args.multi_seed_cell and i == 0:
                seeds += [s for s in args.extra_session_seeds if s != args.session_seed]
            for seed in seeds:
                cells.append((target, sw_seed, seed))

    rows = []
    for target, sw_seed, seed in cells:
        net, software = software_network(out, model_of(target), args.dataset, sw_seed, args.software_epochs)
        epochs = args.qif_epochs if family(target) == "qif" else args.loihi_epochs
        calibrated = args.calibrate and family(target) == "qif"
        uncal = ideal = None
        if args.ideal_chip and family(target) == "qif":
            ideal = deployed_uncalibrated(out, net, args.dataset, IDEAL_CHIP)["accuracy"]
        if calibrated:
            calibration_file(out, target)
            uncal = deployed_uncalibrated(out, net, args.dataset, target)["accuracy"]
        session_target = with_calibration(target, calibrated) if family(target) == "qif" else target
        s = session(out, net, args.dataset, session_target, seed, epochs, extra, args.train_limit)
        # deployed as is: the start network on the target on the test split, measured by the session
        # itself (the same samples and the same way as "after"; on a noisy chip two measurements differ);
        # calibrated, it is the calibrated deployment, and the uncalibrated one is measured apart
        deployed, after = s["test_start"]["accuracy"], s["test_selected"]["accuracy"]
        rows.append({"target": target, "software_seed": sw_seed, "session_seed": seed, "software": software,
                     "calibrated": calibrated, "uncalibrated": uncal, "ideal_chip": ideal,
                     "deployed": deployed, "after": after, "test_n": s["test_selected"]["n"],
                     "selected": s["selected"], "selected_step": s["selected_step"], "steps": s["steps"],
                     "stopped_early": s.get("stopped_early", False), "session_seconds": s["seconds"]})
        r = rows[-1]
        print(f"[robust] {target} sw{sw_seed} s{seed}: software {software:.4f} deployed {deployed:.4f} "
              f"after {after:.4f} ({r['selected']})", file=sys.stderr, flush=True)

    cal = any(r["calibrated"] for r in rows)
    ideal = any(r["ideal_chip"] is not None for r in rows)

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    calib_note = "; QIF sessions start from the calibrated deployment (calib=on)" if cal else ""
    print(f"# in-the-loop robustness, {args.dataset}: sessions {args.qif_epochs} epochs on QIF targets, "
          f"{args.loihi_epochs} on Loihi targets, settings {extra or 'the recipes'}{calib_note}; "
          f"test split on the target")
    print()
    start_col = "deployed (calibrated where calibrated)" if cal else "deployed as is"
    print(f"| target | software seed | session seed | software | {'ideal chip | ' if ideal else ''}"
          f"{'uncalibrated | ' if cal else ''}{start_col} | after | after − deployed | after − software | selected |")
    print("|---|---|---|---|" + ("---|" if ideal else "") + ("---|" if cal else "") + "---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['target']}` | {r['software_seed']} | {r['session_seed']} | {pct(r['software'])} | "
              + (f"{pct(r['ideal_chip'])} | " if ideal else "")
              + (f"{pct(r['uncalibrated'])} | " if cal else "")
              + f"{pct(r['deployed'])} | {pct(r['after'])} | {100 * (r['after'] - r['deployed']):+.1f} | "
              f"{100 * (r['after'] - r['software']):+.1f} | {r['selected']} (step {r['selected_step']}) |")
    print()
    print(f"| target | cells | mean software | {'mean ideal chip | ' if ideal else ''}"
          f"{'mean uncalibrated | ' if cal else ''}mean deployed | mean after | "
          f"mean after − software | worst after − software | worst after − deployed |")
    print("|---|---|---|" + ("---|" if ideal else "") + ("---|" if cal else "") + "---|---|---|---|---|")
    summary = []
    groups = [("each target", t, [r for r in rows if r["target"] == t]) for t in args.targets]
    qif = [r for r in rows if family(r["target"]) == "qif"]
    if len({r["target"] for r in qif}) > 1:  # the QIF column over its chips (issue 16: 3 seeds x 3 chips)
        groups.append(("all QIF chips", "all `qif-emu` cells", qif))
    for kind, name, rs in groups:
        if not rs:
            continue
        mean = {k: sum(r[k] for r in rs) / len(rs) for k in ("software", "deployed", "after")}
        for k in ("uncalibrated", "ideal_chip"):
            got = [r[k] for r in rs if r[k] is not None]
            mean[k] = sum(got) / len(got) if got else None
        worst_sw = min(r["after"] - r["software"] for r in rs)
        worst_dep = min(r["after"] - r["deployed"] for r in rs)
        summary.append({"target": name, "cells": len(rs), **{f"mean_{k}": v for k, v in mean.items()},
                        "worst_after_minus_software": worst_sw, "worst_after_minus_deployed": worst_dep})
        label = f"`{name}`" if kind == "each target" else name
        print(f"| {label} | {len(rs)} | {pct(mean['software'])} | "
              + (f"{pct(mean['ideal_chip'])} | " if ideal else "")
              + (f"{pct(mean['uncalibrated'])} | " if cal else "")
              + f"{pct(mean['deployed'])} | {pct(mean['after'])} | {100 * (mean['after'] - mean['software']):+.1f} | "
              f"{100 * worst_sw:+.1f} | {100 * worst_dep:+.1f} |")
    below = [r for r in rows if r["after"] < r["deployed"]]
    print()
    print(f"every cell at or above deployed as is: {'yes' if not below else 'no, ' + str(len(below)) + ' cell(s)'}; "
          f"{time.perf_counter() - t0:.0f} s")
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
