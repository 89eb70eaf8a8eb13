"""What netx's weight exponent 0 costs a spike-train (CUBA) network against the bitexact target.

netx runs every layer at weight exponent 0 (docs/interop.md); `hwloop export --format netx` writes
the integers of `compile_trains` rewritten to that form (`netx_train_layers`). Stock lava-dl runs
the file identically to our bit-accurate model of the file's integers (tests/test_netx_trains_lava.py);
this script measures (for the rewrite of ``--weight-exp auto`` by default, or for the default
exponent-0 export with ``--weight-exp 0``), on our bit-accurate model only (no Lava), how far those integers are from the
ones the ``bitexact`` target runs, on a data set's whole test split: spike agreement per layer,
samples whose spikes are identical, decisions, accuracies (bitexact, the file, software).

    python bench/netx_trains_agreement.py NET.hwnet [--dataset randman]

NET is a trained spike-train network, e.g. from
``hwloop train --model cuba --dataset randman --out NET.hwnet``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from hwloop.backends import open_target
from hwloop.backends.base import times_to_raster
from hwloop.backends.loihi.trains_mapping import compile_trains
from hwloop.data import load_dataset
from hwloop.firmware_models.loihi.trains import simulate_trains
from hwloop.interop.netx import export_netx_cuba, read_netx_trains
from hwloop.network import Network


def predict(scores):
    """Class per sample, -1 when tied (the rule of `Measurement.predictions`)."""
    scores = np.asarray(scores, np.float64)
    top = scores == scores.max(axis=1, keepdims=True)
    return np.where(top.sum(axis=1) == 1, scores.argmax(axis=1), -1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("network")
    ap.add_argument("--dataset", default="randman")
    ap.add_argument("--weight-exp", default="auto", choices=("0", "auto"),
                    help="the export's --weight-exp: 'auto' (the rewrite of the default mapping) or '0' (the "
                         "default export, bitexact?weight_exp=0's integers)")
    args = ap.parse_args(argv)
    net = Network.load(args.network)
    data = load_dataset(args.dataset, "test")
    raster = times_to_raster(net.encoding.encode(data.x), net.dt, net.n_steps).astype(np.uint8)
    compiled, _ = compile_trains(net)
    with tempfile.TemporaryDirectory() as tmp:
        path, info = export_netx_cuba(net, Path(tmp) / "net.net",
                                      weight_exp=None if args.weight_exp == "auto" else int(args.weight_exp))
        file_layers, _ = read_netx_trains(path)
    s_c, _ = simulate_trains(compiled, raster)
    s_f, v_f = simulate_trains(file_layers, raster, probe=True)
    w = net.decoding.window or (0, net.n_steps)
    scores = v_f[-1][w[0]:w[1]].max(axis=0) if net.decoding.kind == "max-membrane" else s_f[-1][w[0]:w[1]].sum(0)
    p_file = predict(scores)
    with open_target("bitexact") as b:
        b.load(net)
        p_bitexact = b.run_raster(raster).predictions()
    with open_target("software") as b:
        b.load(net)
        p_software = b.run_raster(raster).predictions()
    y = np.asarray(data.y)
    figs = {"network": str(args.network), "n": int(raster.shape[1]), "steps": int(net.n_steps),
            "notes": [n.get("how", "as compiled") for n in info["notes"]],
            "spike_agreement": [round(float((a == b).mean()), 6) for a, b in zip(s_c, s_f)],
            "samples_identical": [round(float((a == b).all(axis=(0, 2)).mean()), 4) for a, b in zip(s_c, s_f)],
            "class_file_vs_bitexact": float((p_file == p_bitexact).mean()),
            "acc_bitexact": float((p_bitexact == y).mean()), "acc_file": float((p_file == y).mean()),
            "acc_software": float((p_software == y).mean())}
    print(json.dumps(figs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
