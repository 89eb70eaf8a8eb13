"""Markdown report with PNG plots for an in-the-loop session directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import HwloopError


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(session_dir: str, out: str | None = None, samples: int = 300, run_target: bool = True) -> dict:
    from .network import Network
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
    figures = []

    # 1. accuracy and loss per step, target next to the software model
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        a1.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, label="batch loss (target)")
        a1.set_xlabel("step")
        a1.set_ylabel("loss")
        a1.legend()
    a2.plot([r["step"] for r in evals], [r["val_accuracy"] for r in evals], "o-", label=f"on {cfg.target}")
    if evals and "software_val_accuracy" in evals[0]:
        a2.plot([r["step"] for r in evals], [r["software_val_accuracy"] for r in evals], "s--",
                label="same weights, software model")
    a2.set_xlabel("step")
    a2.set_ylabel("validation accuracy")
    a2.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_loss.png", dpi=110)
    plt.close(fig)
    figures.append(("Accuracy and loss", "accuracy_loss.png"))

    # 2. fraction of silent neurons per layer over training
    if train and "silent" in train[0]:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        sil = np.array([r["silent"] for r in train])
        for i in range(sil.shape[1]):
            ax.plot([r["step"] for r in train], sil[:, i], lw=0.8, label=f"layer {i}")
        ax.set_xlabel("step")
        ax.set_ylabel("silent fraction (batch)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "silent.png", dpi=110)
        plt.close(fig)
        figures.append(("Silent neurons per layer", "silent.png"))

    extra = {}
    if run_target:
        from hwloop.backends import open_target

        from .data import load_dataset
        from .evaluation import run_batches

        net = Network.load(sd.latest if sd.latest.exists() else sd.init_net)
        ds = load_dataset(cfg.dataset, "val", root=cfg.data_root)
        t_in = net.encoding.encode(ds.x[:samples])
        with open_target(cfg.target) as be:
            be.load(net)
            meas, _, _ = run_batches(be, t_in)
        with open_target("software") as sw:
            sw.load(net)
            model, _, _ = run_batches(sw, t_in)
        # 3. measured vs model-predicted spike times
        fig, axes = plt.subplots(1, len(meas), figsize=(4 * len(meas), 3.6))
        axes = np.atleast_1d(axes)
        for i, (ax, tm, tp) in enumerate(zip(axes, meas, model)):
            both = np.isfinite(tm) & np.isfinite(tp)
            ax.plot(tp[both], tm[both], ".", ms=2, alpha=0.5)
            lim = [0, net.t_max]
            ax.plot(lim, lim, "k--", lw=0.6)
            ax.set_xlabel(f"model time ({net.time_unit})")
            ax.set_ylabel(f"measured on {cfg.target}")
            ax.set_title(f"layer {i}")
            if both.any():
                extra[f"layer{i}_median_abs_diff"] = float(np.median(np.abs(tm[both] - tp[both])))
            extra[f"layer{i}_fire_agreement"] = float(np.mean(np.isfinite(tm) == np.isfinite(tp)))
        fig.tight_layout()
        fig.savefig(out_dir / "measured_vs_model.png", dpi=110)
        plt.close(fig)
        figures.append(("Measured vs model-predicted spike times", "measured_vs_model.png"))
        # 4. raster of one sample
        fig, ax = plt.subplots(figsize=(6, 3.6))
        offset = 0
        layers = [t_in] + meas
        for i, t in enumerate(layers):
            ts = t[0]
            idx = np.nonzero(np.isfinite(ts))[0]
            ax.plot(ts[idx], offset + idx, "|", ms=4, label="input" if i == 0 else f"layer {i - 1}")
            offset += t.shape[1] + 2
        ax.set_xlabel(f"time ({net.time_unit})")
        ax.set_ylabel("neuron")
        ax.set_xlim(0, net.t_max)
        ax.legend(fontsize=7)
        ax.set_title(f"sample 0 on {cfg.target}")
        fig.tight_layout()
        fig.savefig(out_dir / "raster.png", dpi=110)
        plt.close(fig)
        figures.append(("Raster of one sample", "raster.png"))

    first, last = (evals[0], evals[-1]) if evals else ({}, {})
    summary = json.loads(sd.summary.read_text()) if sd.summary.exists() else {}
    lines = [f"# In-the-loop session `{sd.path.name}`", "",
             f"Target `{cfg.target}`, data set `{cfg.dataset}`, gradient `{cfg.gradient}`, "
             f"{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}, seed {cfg.seed}.", ""]
    if evals:
        lines += ["| | validation accuracy on target | same weights in software |", "|---|---|---|",
                  f"| start | {first['val_accuracy']:.4f} | {first.get('software_val_accuracy', float('nan')):.4f} |",
                  f"| end | {last['val_accuracy']:.4f} | {last.get('software_val_accuracy', float('nan')):.4f} |",
                  f"| best | {max(r['val_accuracy'] for r in evals):.4f} | |", ""]
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
    for k, v in extra.items():
        lines.append(f"- {k}: {v:.4f}")
    lines.append("")
    for title, png in figures:
        lines += [f"## {title}", "", f"![{title}]({png})", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    return {"report": str(out_dir / "report.md"), "figures": [f for _, f in figures], **extra}
