"""Markdown report with PNG plots for an in-the-loop session directory.

Every figure is drawn from a plain data record built by one function of this
module (`loss_curve`, `spike_agreement`, `raster`), and those records are
written next to the figures as ``data.json``, so a figure can be checked,
and redrawn, without reading pixels:

* ``accuracy_loss.png``: the batch loss per step (raw, and a trailing moving
  average) and the validation accuracy on the target and in software, with
  the epoch boundaries marked;
* ``silent.png``: the fraction of silent neurons per layer per step;
* ``measured_vs_model.png``: per layer, the spike time the target measured
  against the software model's for the same inputs; spikes only one of them
  has are drawn on a "silent" margin and counted (*missed*: the model fires,
  the target is silent; *extra*: the target fires, the model is silent);
* ``raster.png``: one validation sample through the network, one panel per
  layer (input, hidden, output), bias spikes drawn with the sources they
  belong to, the true and the predicted class in the title.

The last two re-run the target on validation samples with the session's
*best* network (``best.hwnet``, the one with the best validation accuracy on
the target) unless asked for the final one; the report says which.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import HwloopError

#: which session file each ``network=`` choice of `write_report` reads, in order of preference
NETWORK_FILES = {"best": ("best.hwnet", "network.hwnet", "init.hwnet"),
                 "final": ("network.hwnet", "init.hwnet")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------- the data
def loss_curve(train_rows: Sequence[dict], window: int | None = None) -> dict:
    """The loss curve's data from a session's ``"train"`` log rows.

    Returns ``steps``, ``loss`` (raw, one per step), ``smoothed`` (the mean of
    the last ``window`` steps, fewer at the start), ``window`` and
    ``epoch_ends``: ``[epoch, its last step]`` for every epoch that another
    one follows in the log (the boundaries between epochs). The default
    window is a fifth of the first epoch's steps (at least 1)."""
    steps = [int(r["step"]) for r in train_rows]
    loss = np.array([float(r["loss"]) for r in train_rows], dtype=np.float64)
    epochs = [int(r["epoch"]) for r in train_rows]
    ends = [[e, s] for s, e, e_next in zip(steps, epochs, epochs[1:]) if e_next != e]
    if window is None:
        first_epoch = sum(1 for e in epochs if epochs and e == epochs[0])
        window = max(1, first_epoch // 5)
    if int(window) < 1:
        raise HwloopError(f"the loss curve's smoothing window must be >= 1 step, got {window}")
    window = int(window)
    csum = np.concatenate([[0.0], np.cumsum(loss)])
    idx = np.arange(len(loss))
    lo = np.maximum(0, idx + 1 - window)
    smoothed = (csum[idx + 1] - csum[lo]) / (idx + 1 - lo) if len(loss) else np.array([])
    return {"steps": steps, "loss": loss.tolist(), "smoothed": smoothed.tolist(), "window": window,
            "epoch_ends": ends}


def spike_agreement(measured: Sequence[np.ndarray], model: Sequence[np.ndarray]) -> list[dict]:
    """Per layer, how the target's spike times compare with the model's for
    the same inputs (arrays ``(samples, neurons)``, ``inf`` = silent).

    Each record: ``both`` (neuron-samples where both fired), ``missed`` (the
    model fires, the target is silent), ``extra`` (the target fires, the
    model is silent), ``silent_both``, ``fire_agreement`` (the fraction where
    both agree on firing or not), ``median_abs_diff`` (over ``both``; None
    when empty), and the points to plot: ``pairs`` ``(model, measured)``
    where both fired, ``missed_at`` (the model's times of the missed spikes)
    and ``extra_at`` (the target's times of the extra spikes)."""
    out = []
    for tm, tp in zip(measured, model):
        tm, tp = np.asarray(tm, dtype=np.float64), np.asarray(tp, dtype=np.float64)
        if tm.shape != tp.shape:
            raise HwloopError(f"measured times {tm.shape} and model times {tp.shape} differ in shape")
        fm, fp = np.isfinite(tm), np.isfinite(tp)
        both, missed, extra = fm & fp, fp & ~fm, fm & ~fp
        out.append({
            "both": int(both.sum()), "missed": int(missed.sum()), "extra": int(extra.sum()),
            "silent_both": int((~fm & ~fp).sum()),
            "fire_agreement": float(np.mean(fm == fp)) if tm.size else 1.0,
            "median_abs_diff": float(np.median(np.abs(tm[both] - tp[both]))) if both.any() else None,
            "pairs": np.stack([tp[both], tm[both]], axis=1), "missed_at": tp[missed], "extra_at": tm[extra],
        })
    return out


def _class_name(classes: Sequence[str], index: int, status: int) -> str:
    from .data.decoding import Status

    if status == Status.TIE:
        return "undecided (tie)"
    if status == Status.SILENT:
        return "undecided (all outputs silent)"
    return str(classes[index])


def raster(net, t_in: np.ndarray, times: Sequence[np.ndarray], sample: int = 0,
           label: int | None = None) -> dict:
    """The raster plot's data for one sample.

    ``t_in``: the input spike times ``(samples, features)``; ``times``: every
    layer's spike times on the target. Returns ``sample``, ``true_class`` (if
    ``label`` is given), ``predicted_class`` (first output spike; ties and
    all-silent outputs are named as undecided), ``correct`` and ``panels``,
    one per stage (the input, then each layer): ``name``, ``neurons`` (row
    labels), ``spikes`` (``[row, time]`` of every spike of that stage) and
    ``bias`` (``[row, time, layer fed]`` of the bias spikes that feed the
    next layer, on rows after the stage's neurons)."""
    from .data.decoding import decode

    if not 0 <= sample < len(t_in):
        raise HwloopError(f"raster: sample {sample} out of range (0..{len(t_in) - 1})")
    classes = list(net.decoding.classes)
    stages = [np.asarray(t_in)[sample]] + [np.asarray(t)[sample] for t in times]
    panels = []
    for k, ts in enumerate(stages):
        if k == 0:
            name, rows = f"input ({len(ts)} features)", [f"in {j}" for j in range(len(ts))]
        elif k == len(stages) - 1:
            name, rows = f"layer {k - 1}: output ({len(ts)} {net.layers[k - 1].neuron.model})", classes
        else:
            name = f"layer {k - 1}: hidden ({len(ts)} {net.layers[k - 1].neuron.model})"
            rows = [str(j) for j in range(len(ts))]
        spikes = [[int(j), float(ts[j])] for j in np.nonzero(np.isfinite(ts))[0]]
        bias = []
        if k < len(net.layers):
            for b, tb in enumerate(net.layers[k].bias_times):
                bias.append([len(ts) + b, float(tb), k])
                rows = rows + [f"bias -> layer {k}"]
        panels.append({"name": name, "neurons": rows, "spikes": spikes, "bias": bias})
    pred, status = decode(np.asarray(times[-1])[sample:sample + 1])
    out = {"sample": int(sample), "predicted_class": _class_name(classes, int(pred[0]), int(status[0])),
           "panels": panels}
    if label is not None:
        out["true_class"] = str(classes[int(label)])
        out["correct"] = bool(int(pred[0]) == int(label))
    return out


def _pick_network(sd, which: str):
    from .network import Network

    if which not in NETWORK_FILES:
        raise HwloopError(f"network must be one of {', '.join(NETWORK_FILES)}, got {which!r}")
    for name in NETWORK_FILES[which]:
        path = sd.path / name
        if path.exists():
            return name, Network.load(path)
    raise HwloopError(f"{sd.path}: no network file ({', '.join(NETWORK_FILES[which])})")


def _selected_step(evals: Sequence[dict]) -> int:
    """The step of the network the session selected, replayed from the log
    (`hwloop.session.parts.Selection`: the start, unless beaten beyond its interval)."""
    from .session.parts import Selection, accuracy_figure

    sel = Selection()
    for r in evals:
        ev = dict(r)
        if "val_ci" not in ev:  # a log from before intervals were logged
            ev["val_ci"] = accuracy_figure(r["val_accuracy"], int(r.get("val_n", 1000)))["ci"]
        sel.offer(ev, r["step"])
    return sel.best_step


def _validation_count(cfg) -> int:
    """How many validation samples every evaluation of the session measured."""
    from .data import load_dataset

    n = len(load_dataset(cfg.dataset, "val", root=cfg.data_root).y)
    return min(n, cfg.eval_limit) if cfg.eval_limit else n


def _with_intervals(evals: Sequence[dict], n: int) -> list[dict]:
    """Eval rows with ``val_n`` and ``val_ci`` where the log lacks them."""
    from .session.parts import accuracy_figure

    out = []
    for r in evals:
        if "val_ci" not in r:
            k = int(r["val_n"]) if isinstance(r.get("val_n"), int) and r["val_n"] > 0 else n
            r = {**r, "val_n": k, "val_ci": accuracy_figure(float(r["val_accuracy"]), k)["ci"]}
        out.append(r)
    return out


def _software_figure(r: dict) -> str:
    """The same weights' validation accuracy on the software model, with its
    Wilson 95 % interval on the same samples ("–" where not measured)."""
    from .session.parts import accuracy_figure

    acc, n = r.get("software_val_accuracy"), r.get("val_n")
    if not isinstance(acc, (int, float)) or not math.isfinite(acc):
        return "–"
    if not isinstance(n, int) or n < 1:
        return f"{acc:.4f}"
    lo, hi = accuracy_figure(float(acc), n)["ci"]
    return f"{acc:.4f} [{lo:.4f}, {hi:.4f}]"


def _describe_network(name: str, evals: Sequence[dict]) -> str:
    if name == "best.hwnet" and evals:
        step = _selected_step(evals)
        best = next(r for r in evals if r["step"] == step)
        return (f"`best.hwnet`, the selected network ({'the start' if step == 0 else 'trained'}: validation "
                f"accuracy on the target {best['val_accuracy']:.4f} at step {best['step']})")
    if name == "network.hwnet":
        return "`network.hwnet`, the weights the session ended with (or its latest checkpoint)"
    if name == "init.hwnet":
        return "`init.hwnet`, the network the session started from (no later network saved yet)"
    return f"`{name}`"


# ---------------------------------------------------------------- the plots
def _plot_accuracy_loss(plt, curve: dict, evals: Sequence[dict], target: str, path: Path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ends = [s for _, s in curve["epoch_ends"]]
    if curve["steps"]:
        a1.plot(curve["steps"], curve["loss"], lw=0.6, color="0.7", label="batch loss (target)")
        a1.plot(curve["steps"], curve["smoothed"], lw=1.4, color="C0",
                label=f"mean of the last {curve['window']} steps")
        a1.set_xlabel("step")
        a1.set_ylabel("loss")
    a2.plot([r["step"] for r in evals], [r["val_accuracy"] for r in evals], "o-", label=f"on {target}")
    if evals and "software_val_accuracy" in evals[0]:
        a2.plot([r["step"] for r in evals], [r["software_val_accuracy"] for r in evals], "s--",
                label="same weights, software model")
    a2.set_xlabel("step")
    a2.set_ylabel("validation accuracy")
    for ax in (a1, a2):
        for k, s in enumerate(ends):
            ax.axvline(s, color="0.5", lw=0.6, ls=":", label="end of an epoch" if k == 0 else None)
        if ends:  # name the epochs along the top edge
            for e, s in [[curve["epoch_ends"][0][0], 0]] + [[e + 1, s] for e, s in curve["epoch_ends"]]:
                ax.annotate(f" epoch {e}", (s, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=6,
                            color="0.4")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_silent(plt, train: Sequence[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    sil = np.array([r["silent"] for r in train])
    for i in range(sil.shape[1]):
        ax.plot([r["step"] for r in train], sil[:, i], lw=0.8, label=f"layer {i}")
    ax.set_xlabel("step")
    ax.set_ylabel("silent fraction (batch)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_agreement(plt, agreement: Sequence[dict], net, target: str, path: Path) -> None:
    fig, axes = plt.subplots(1, len(agreement), figsize=(4.2 * len(agreement), 3.9))
    axes = np.atleast_1d(axes)
    t_max = net.t_max
    edge = 1.06 * t_max  # the "silent" margin
    for i, (ax, a) in enumerate(zip(axes, agreement)):
        p = a["pairs"]
        ax.plot(p[:, 0], p[:, 1], ".", ms=2, alpha=0.5, label=f"both fired: {a['both']}")
        ax.plot(a["missed_at"], np.full(len(a["missed_at"]), edge), "v", ms=3, color="C3", alpha=0.6,
                label=f"missed (silent on target): {a['missed']}")
        ax.plot(np.full(len(a["extra_at"]), edge), a["extra_at"], "<", ms=3, color="C1", alpha=0.6,
                label=f"extra (silent in model): {a['extra']}")
        ax.plot([0, t_max], [0, t_max], "k--", lw=0.6)
        ax.axhline(t_max, color="0.6", lw=0.5)
        ax.axvline(t_max, color="0.6", lw=0.5)
        ax.set_xlim(0, 1.1 * t_max)
        ax.set_ylim(0, 1.1 * t_max)
        ax.set_xlabel(f"model time ({net.time_unit}); silent at right edge")
        ax.set_ylabel(f"measured on {target}; silent at top")
        ax.set_title(f"layer {i}" + (" (output)" if i == len(agreement) - 1 else " (hidden)"))
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_raster(plt, data: dict, net, target: str, network_name: str, path: Path) -> None:
    panels = data["panels"]
    heights = [max(2, len(p["neurons"])) ** 0.6 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.2 + 0.55 * sum(heights)), sharex=True,
                             gridspec_kw={"height_ratios": heights})
    for k, (ax, p) in enumerate(zip(np.atleast_1d(axes), panels)):
        if p["spikes"]:
            s = np.array(p["spikes"])
            ax.plot(s[:, 1], s[:, 0], "|", ms=6, mew=1.2, color="C0", label="spike")
        if p["bias"]:
            b = np.array(p["bias"])
            ax.plot(b[:, 1], b[:, 0], "|", ms=6, mew=1.2, color="C2", label="bias spike")
        n = len(p["neurons"])
        ax.set_ylim(-0.7, n - 0.3)
        if n <= 12:
            ax.set_yticks(range(n))
            ax.set_yticklabels(p["neurons"], fontsize=7)
        ax.set_ylabel("neuron", fontsize=8)
        ax.set_title(p["name"], fontsize=8, loc="left")
        if k == len(panels) - 1 and "true_class" in data:
            true_row = list(net.decoding.classes).index(data["true_class"])
            ax.axhspan(true_row - 0.4, true_row + 0.4, color="C2", alpha=0.15, lw=0)
        ax.set_xlim(0, net.t_max)
        if p["spikes"] or p["bias"]:
            ax.legend(fontsize=6, loc="upper right")
    np.atleast_1d(axes)[-1].set_xlabel(f"time ({net.time_unit})")
    truth = f"true class {data['true_class']}, " if "true_class" in data else ""
    fig.suptitle(f"validation sample {data['sample']} on {target} ({network_name}): "
                 f"{truth}predicted {data['predicted_class']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- the report
def write_report(session_dir: str, out: str | None = None, samples: int = 300, run_target: bool = True,
                 network: str = "best", sample: int = 0, progress: bool = False,
                 smooth: int | None = None) -> dict:
    """Write ``report.md``, its PNG figures and ``data.json`` for a session.

    ``out``: the report folder (default ``SESSION/report``). With
    ``run_target`` the target is opened again and the ``network`` (``"best"``:
    ``best.hwnet``; ``"final"``: ``network.hwnet``) runs the first
    ``samples`` validation samples, for the measured-vs-model figure and
    the raster of validation sample ``sample``; ``progress`` says so on
    stderr, with a progress bar. ``smooth``: the loss curve's moving-average
    window in steps (default a fifth of an epoch).

    Returns the report's path, the figures' file names, ``network`` (the
    file the target ran) and per layer ``layer{i}_median_abs_diff``,
    ``layer{i}_fire_agreement``, ``layer{i}_missed``, ``layer{i}_extra``."""
    from .session import SessionDir

    sd = SessionDir(session_dir)
    cfg = sd.load_config()
    rows = sd.read_log()
    if not rows:
        raise HwloopError(f"{sd.path}: the session has no log yet")
    out_dir = Path(out) if out else sd.path / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    if any("val_ci" not in r for r in evals):  # a log of an older hwloop: intervals from the sample count
        evals = _with_intervals(evals, _validation_count(cfg))
    figures = []
    data: dict = {}

    curve = loss_curve(train, smooth)
    data["loss_curve"] = curve
    _plot_accuracy_loss(plt, curve, evals, cfg.target, out_dir / "accuracy_loss.png")
    figures.append(("Accuracy and loss", "accuracy_loss.png"))
    if train and "silent" in train[0]:
        _plot_silent(plt, train, out_dir / "silent.png")
        figures.append(("Silent neurons per layer", "silent.png"))

    extra: dict = {}
    net_text = ""
    raster_text = ""
    if run_target:
        from hwloop.backends import open_target

        from .data import load_dataset
        from .evaluation import run_batches

        net_name, net = _pick_network(sd, network)
        net_text = _describe_network(net_name, evals)
        ds = load_dataset(cfg.dataset, "val", root=cfg.data_root)
        if samples < 1:
            raise HwloopError(f"samples must be >= 1, got {samples}")
        n = min(samples, len(ds.x))
        if not 0 <= sample < n:
            raise HwloopError(f"the raster's sample must lie in 0..{n - 1} (the validation samples run), got {sample}")
        t_in = net.encoding.encode(ds.x[:n])
        if progress:
            print(f"report: running {n} validation samples of {cfg.dataset} on {cfg.target} with {net_name} "
                  f"(and on the software model, for comparison)", file=sys.stderr, flush=True)
        with open_target(cfg.target) as be:
            be.load(net)
            meas, _, _ = run_batches(be, t_in, batch_size=50, progress=progress, desc=f"report {cfg.target}")
        with open_target("software") as sw:
            sw.load(net)
            model, _, _ = run_batches(sw, t_in)
        agreement = spike_agreement(meas, model)
        for i, a in enumerate(agreement):
            if a["median_abs_diff"] is not None:
                extra[f"layer{i}_median_abs_diff"] = a["median_abs_diff"]
            extra[f"layer{i}_fire_agreement"] = a["fire_agreement"]
            extra[f"layer{i}_missed"] = a["missed"]
            extra[f"layer{i}_extra"] = a["extra"]
        data["network"] = net_name
        data["samples"] = n
        data["agreement"] = [{k: v for k, v in a.items() if k not in ("pairs", "missed_at", "extra_at")}
                             for a in agreement]
        _plot_agreement(plt, agreement, net, cfg.target, out_dir / "measured_vs_model.png")
        figures.append(("Measured vs model-predicted spike times", "measured_vs_model.png"))
        rd = raster(net, t_in, meas, sample, int(ds.y[sample]))
        data["raster"] = rd
        _plot_raster(plt, rd, net, cfg.target, net_name, out_dir / "raster.png")
        figures.append(("Raster of one sample", "raster.png"))
        raster_text = (f"Validation sample {rd['sample']}: true class {rd.get('true_class', '?')}, "
                       f"predicted {rd['predicted_class']} on {cfg.target}.")

    first, last = (evals[0], evals[-1]) if evals else ({}, {})
    summary = json.loads(sd.summary.read_text()) if sd.summary.exists() else {}
    lines = [f"# In-the-loop session `{sd.path.name}`", "",
             f"Target `{cfg.target}`, data set `{cfg.dataset}`, gradient `{cfg.gradient}`, "
             f"{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}, seed {cfg.seed}.", ""]
    if getattr(cfg, "model", None) is not None:  # a spike-train session (surrogate gradients in the loop)
        what = {"spikes+membranes": "spikes and membranes",
                "spikes+readout": "spikes and readout membrane"}.get(cfg.signal, "spikes")
        readout = ("the target's measured readout membrane" if cfg.signal in ("spikes+membranes", "spikes+readout")
                   else "the model's readout membrane driven by the measured hidden spikes")
        lines += [f"Spike-train network (`{cfg.model}`): the target's measured {what} replace the simulated ones "
                  f"in the forward pass (signal `{cfg.signal}`); the loss reads {readout}; surrogate "
                  f"`{cfg.surrogate}`, beta {cfg.surrogate_beta:g}.", ""]
    if evals:
        sel_step = summary.get("selected_step", _selected_step(evals))
        lines += ["Every validation figure with its sample count and Wilson 95 % interval (the software "
                  "figure's on the same samples), and against the "
                  "start on the same samples (gained / lost); **selected** marks the network the session "
                  "returns (`best.hwnet`): the start unless a later one is better beyond the noise (McNemar "
                  "z > 1.96 on gained / lost; where those are not logged, the lower end of the interval above "
                  "the start).", "",
                  "| step | epoch | validation accuracy on target | n | 95 % interval | vs start: gained / lost "
                  "| same weights in software | |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in evals:
            lo, hi = r.get("val_ci", (float("nan"), float("nan")))
            n = r.get("val_n", "?")
            mark = "**selected**" if r["step"] == sel_step else ""
            vs = r.get("val_vs_start")
            vs_text = f"{vs[0]} / {vs[1]}" if isinstance(vs, list) and len(vs) == 2 else ""
            lines.append(f"| {r['step']} | {r.get('epoch', '')} | {r['val_accuracy']:.4f} | {n} | "
                         f"[{lo:.4f}, {hi:.4f}] | {vs_text} | {_software_figure(r)} | {mark} |")
        lines.append("")
        if "test_start" in summary:
            ts, tb = summary["test_start"], summary["test_selected"]
            lines += ["Held-out test split on the target (never used for selection):", "",
                      "| network | test accuracy | n | 95 % interval |", "|---|---|---|---|",
                      f"| start | {ts['accuracy']:.4f} | {ts['n']} | [{ts['ci'][0]:.4f}, {ts['ci'][1]:.4f}] |",
                      f"| selected ({summary.get('selected', '?')}) | {tb['accuracy']:.4f} | {tb['n']} | "
                      f"[{tb['ci'][0]:.4f}, {tb['ci'][1]:.4f}] |", ""]
    if train:
        tgt = sum(r["target_seconds"] for r in train)
        host = sum(r["host_seconds"] for r in train)
        lines += [f"Steps: {len(train)}; target time {tgt:.1f} s, host time {host:.1f} s "
                  f"(host share {host / max(1e-9, tgt + host):.0%}).", ""]
        if all("io_seconds" in r for r in train):  # logged since the timing split was added
            io = sum(r["io_seconds"] for r in train)
            dep = sum(r.get("deploy_seconds", 0.0) for r in train)
            lines += [f"Of the host time: backend I/O (transfer, encoding, decoding) {io:.1f} s, "
                      f"deploying the weights {dep:.1f} s, the host's own work (backward, optimiser, "
                      f"checkpoints) {host - io - dep:.1f} s.", ""]
    if summary:
        lines += [f"Completed {summary.get('finished', '?')}.", ""]
    if run_target:
        lines += [f"The spike-time figures run {data['samples']} validation samples on `{cfg.target}` "
                  f"with {net_text}, and the same network on the software model.", "",
                  "| layer | both fired | missed (silent on target) | extra (silent in model) | "
                  "median abs diff | fire agreement |", "|---|---|---|---|---|---|"]
        for i, a in enumerate(data["agreement"]):
            med = "–" if a["median_abs_diff"] is None else f"{a['median_abs_diff']:.4f} {net.time_unit}"
            lines.append(f"| {i} | {a['both']} | {a['missed']} | {a['extra']} | {med} | "
                         f"{a['fire_agreement']:.4f} |")
        lines.append("")
    lines.append(f"The loss curve's smooth line is the mean of the last {curve['window']} steps; "
                 f"dotted lines mark the ends of epochs.")
    lines.append("")
    for title, png in figures:
        lines += [f"## {title}", ""]
        if png == "raster.png":
            lines += [raster_text, ""]
        lines += [f"![{title}]({png})", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    (out_dir / "data.json").write_text(json.dumps(data, allow_nan=False))
    res = {"report": str(out_dir / "report.md"), "figures": [f for _, f in figures], **extra}
    if run_target:
        res["network"] = data["network"]
    return res
