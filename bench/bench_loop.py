"""Seconds per in-the-loop epoch on each target, and where they go.

Runs a short real session (`hwloop.session.run_session`, the code behind
`hwloop loop`) on every target from the same kind of start, reads its
log.jsonl, and splits each training step into

* **target**: the time the target itself reports running (the QIF chip's
  analog trial time, the bit-accurate kernel, Lava's `run()`, the float
  model's forward for `software`);
* **I/O**: the rest of the backend's `run` call (encoding, serial transfer,
  decoding, Lava's process plumbing);
* **deploy**: compiling and loading the updated weights (every step);
* **host**: everything else on the host (pseudospikes, the model's backward
  pass at the measured times, the optimiser, logging, checkpointing).

An epoch is extrapolated as (training samples / batch) steps at the median
step (the sum of each part's median over the timed steps) plus one validation
pass at the measured evaluation time.

    python bench/bench_loop.py [--targets software bitexact qif-emu lava-sim]
                               [--steps 20] [--batch-size 50] [--baseline REV] [--repeat N]
    python bench/bench_loop.py --trains [--targets software bitexact qif-emu]

``--trains``: the spike-train case (surrogate gradients in the loop,
``hwloop loop --model cuba``): a Randman CUBA network (20-128-10, one quick
software epoch), ``--signal spikes+membranes``; on the QIF chip a qif-trains
network of the same shape with the chip's default ``spikes+readout``; the
target part is the target's raster run with membrane probes, I/O the rest of its call, host the
substituted forward and its backward, the optimiser and the checkpoints.

``--baseline REV`` times every target also with the code of git revision
REV (its ``hwloop``, ``backends`` and ``firmware_models`` assembled into a
temporary package, as `bench_link.py --baseline` does), alternating with
this tree's process by process, and prints the epoch ratio: both see the
same load on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not os.environ.get("BENCH_LOOP_BASELINE"):  # a baseline run imports hwloop from PYTHONPATH instead
    sys.path.insert(0, str(ROOT))

from hwloop.data import load_dataset  # noqa: E402
from hwloop.pretrained import path as pretrained  # noqa: E402
from hwloop.session import LoopConfig, run_session  # noqa: E402

DATASET = "yinyang"


def lif_start(directory: Path) -> str:
    """A LIF Yin-Yang network for the Loihi targets: one quick software epoch
    (the step cost does not depend on how well it is trained)."""
    from hwloop.training import default_config, train

    out = directory / "lif-start.hwnet"
    res = train(default_config("lif", DATASET, epochs=1, seed=0, threads=1), progress=False)
    res.network.save(out)
    return str(out)


def trains_start(directory: Path, model: str = "cuba") -> str:
    """A Randman spike-train network (the default 20-128-10) of ``model`` (cuba for
    the Loihi targets and software, qif-trains for the QIF chip) after one quick
    software epoch."""
    from hwloop.trains_training import defaults_for, to_network, train

    out = directory / f"{model}-start.hwnet"
    to_network(train(defaults_for("randman", model=model, epochs=1, seed=0, threads=1))).save(out)
    return str(out)


def bench_target(target: str, init: str, steps: int, batch: int, eval_limit: int, work: Path,
                 dataset: str = DATASET) -> dict:
    d = work / target.replace("/", "_").replace("?", "_")
    if d.exists():
        shutil.rmtree(d)
    cfg = LoopConfig(target=target, dataset=dataset, init=init, epochs=1, batch_size=batch, lr=1e-3,
                     train_limit=steps * batch, eval_limit=eval_limit, compare_software=False)
    emulator: list[float] = []
    measure = None
    if dataset == "randman":  # the spike-train case: also the QIF emulator's own compute time per step
        from hwloop.session.estimators import SurrogateGradient

        measure = SurrogateGradient.measure

        def timed_measure(self, backend, weights, xb):
            m, s_meas, v_meas = measure(self, backend, weights, xb)
            emulator.append(float(m.info.get("compute_s", 0.0)))
            return m, s_meas, v_meas

        SurrogateGradient.measure = timed_measure
    t0 = time.perf_counter()
    try:
        run_session(d, cfg, progress=False)
    finally:
        if measure is not None:
            SurrogateGradient.measure = measure
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"][1:]  # the first step pays one-off costs
    evals = [r for r in rows if r["kind"] == "eval"]
    n = len(train_rows)

    def median(values):
        v = sorted(values)
        return 0.5 * (v[(len(v) - 1) // 2] + v[len(v) // 2])

    # medians: a step that happens to pay a JIT compile or a scheduler hiccup
    # on this shared machine should not set the figure
    parts = {"target": median([r["target_seconds"] for r in train_rows]),
             "io": median([r.get("io_seconds", 0.0) for r in train_rows]),
             "deploy": median([r.get("deploy_seconds", 0.0) for r in train_rows]),
             "host": median([r["host_seconds"] - r.get("io_seconds", 0.0) - r.get("deploy_seconds", 0.0)
                             for r in train_rows])}
    step = sum(parts.values())
    # (not a part of its own: inside I/O) the QIF emulator's numerical integration of
    # the batch, which a real chip does in its analog time (the "target" part)
    emulator_s = median(emulator[1:]) if len(emulator) > 1 else None
    eval_s = evals[-1]["seconds"] * (1000 / eval_limit)  # the last: the first one pays JIT warm-up
    n_train = len(load_dataset(dataset, "train").y)
    epoch = n_train / batch * step + eval_s
    return {"target": target, "step_seconds": step, "parts": parts, "eval_seconds_per_1000": eval_s,
            "epoch_seconds": epoch, "session_wall": wall, "steps_timed": n,
            "emulator_seconds": emulator_s}


def assemble(rev: str) -> str:
    """A temporary package tree with revision ``rev``'s hwloop, backends, firmware_models."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    src, pkg = tmp / "src", tmp / "pkg"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "hwloop", "backends", "firmware_models"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg.mkdir()
    os.rename(src / "hwloop", pkg / "hwloop")
    os.rename(src / "backends", pkg / "hwloop" / "backends")
    os.rename(src / "firmware_models", pkg / "hwloop" / "firmware_models")
    return str(pkg)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", nargs="+", default=["software", "bitexact", "qif-emu", "lava-sim"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--eval-limit", type=int, default=200, help="validation samples timed (scaled to 1000)")
    ap.add_argument("--trains", action="store_true",
                    help="the spike-train case: a Randman CUBA network (a qif-trains one on the QIF chip), "
                         "surrogate gradients in the loop")
    ap.add_argument("--one", nargs=2, metavar=("TARGET", "INIT"), help=argparse.SUPPRESS)
    ap.add_argument("--baseline", metavar="REV", help="also time git revision REV's code, alternating with this tree's")
    ap.add_argument("--repeat", type=int, default=1, help="time every target (and baseline) this many times")
    args = ap.parse_args()

    if args.one:  # child: time one target, print its JSON
        work = Path(tempfile.mkdtemp(prefix="hwloop-bench-loop-"))
        try:
            r = bench_target(args.one[0], args.one[1], args.steps, args.batch_size, args.eval_limit, work,
                             dataset="randman" if args.trains else DATASET)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(r))
        return 0

    work = Path(tempfile.mkdtemp(prefix="hwloop-bench-loop-"))
    qif_net = str(pretrained("yinyang-qif.hwnet"))
    lif_net = None
    trains_nets: dict[str, str] = {}
    if args.trains and args.targets == ap.get_default("targets"):
        args.targets = ["software", "bitexact", "qif-emu"]
    pkg = assemble(args.baseline) if args.baseline else None
    results = []
    try:
        for target in args.targets:
            if args.trains:
                model = "qif-trains" if target.startswith("qif") else "cuba"
                if model not in trains_nets:
                    trains_nets[model] = trains_start(work, model)
                init = trains_nets[model]
            elif target.startswith("qif") or target == "software":
                init = qif_net
            else:
                lif_net = lif_net or lif_start(work)
                init = lif_net
            for _ in range(args.repeat):
                for code in ([args.baseline] if pkg else []) + ["this tree"]:
                    print(f"timing {target} ({args.steps} steps of {args.batch_size}, {code}) ...", flush=True)
                    # each target in its own process, as `hwloop loop` runs: one target's
                    # thread pools (numba, Lava) must not slow down the next one's host side
                    env, cwd = dict(os.environ), None
                    if code != "this tree":
                        env.update(PYTHONPATH=pkg, BENCH_LOOP_BASELINE="1")
                        cwd = tempfile.gettempdir()
                    out = subprocess.run([sys.executable, __file__, "--one", target, init, "--steps", str(args.steps),
                                          "--batch-size", str(args.batch_size), "--eval-limit", str(args.eval_limit),
                                          *(["--trains"] if args.trains else [])],
                                         capture_output=True, text=True, env=env, cwd=cwd)
                    if out.returncode != 0:
                        print(out.stderr[-2000:], file=sys.stderr)
                        return 1
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    r["code"] = code
                    results.append(r)
                    print(json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    family = ("randman, spike trains (cuba on software/bitexact/lava-sim, spikes+membranes; qif-trains on the "
              "QIF chip, spikes+readout)" if args.trains else DATASET)
    print(f"\nin-the-loop training on {family}, batch {args.batch_size}; per step: shares of the step time")
    emu = any(r.get("emulator_seconds") for r in results)
    print(f"{'target':<12}{'code':<12}{'s/step':>9}{'target':>9}{'I/O':>8}{'deploy':>8}{'host':>8}{'eval/1000':>11}"
          f"{'s/epoch':>10}" + (f"{'target ms':>11}{'emulator':>10}" if emu else ""))
    for r in results:
        p, s = r["parts"], r["step_seconds"]
        extra = ""
        if emu:  # the target's own time in ms (a chip's analog time is far below 0.1 % of a step),
            # and the share of the step the QIF emulator spent integrating (part of I/O)
            e = r.get("emulator_seconds")
            extra = f"{p['target'] * 1e3:>11.2f}" + (f"{e / s:>10.1%}" if e else f"{'-':>10}")
        print(f"{r['target']:<12}{r['code'][:11]:<12}{s:>9.3f}{p['target'] / s:>9.1%}{p['io'] / s:>8.1%}"
              f"{p['deploy'] / s:>8.1%}{p['host'] / s:>8.1%}{r['eval_seconds_per_1000']:>11.2f}{r['epoch_seconds']:>10.1f}"
              + extra)
    if pkg:
        for target in args.targets:
            mine = [r["epoch_seconds"] for r in results if r["target"] == target and r["code"] == "this tree"]
            base = [r["epoch_seconds"] for r in results if r["target"] == target and r["code"] != "this tree"]
            print(f"{target}: epoch {min(base):.1f} s with {args.baseline}, {min(mine):.1f} s with this tree "
                  f"(best of {len(mine)}): {min(base) / min(mine):.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
