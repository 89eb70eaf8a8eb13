"""Time and peak memory of `Network.load` on valid, large and hostile `.hwnet` files.

    .venv/bin/python bench/bench_hwnet_load.py [--compare REV] [--skip-largest]

Builds each file in a temporary folder and loads it twice: once for the wall
time, once under `tracemalloc` for the peak memory (Python objects and numpy
arrays). With ``--compare REV`` the same files are also loaded by the
`hwloop/network.py` of git revision REV (e.g. ``a5bd8df``, before the loader
was hardened), side by side. The figures in docs/network-format.md come from
this script.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwloop.errors import HwloopError  # noqa: E402
from hwloop.network import (InputEncoding, Layer, Network, NeuronParams, OutputDecoding,  # noqa: E402
                            Provenance)

MiB = 2**20


def small_net(**prov) -> Network:
    rng = np.random.default_rng(0)
    p = NeuronParams("lif", 1.0, 1.0, 1.0)
    return Network(layers=(Layer(rng.normal(size=(5, 7)), p, (0.9,)), Layer(rng.normal(size=(8, 3)), p, (0.9,))),
                   encoding=InputEncoding(4, t_at_min=0.15, t_at_max=2.0), decoding=OutputDecoding(("a", "b", "c")),
                   t_max=4.0, provenance=Provenance(**prov))


def members(path):
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def write(path, items, level=6):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in items:
            if callable(data):
                with zf.open(name, "w") as fh:
                    data(fh)
            else:
                zf.writestr(name, data)
    return path


def build_cases(d: Path, largest: bool):
    cases = []
    cases.append(("shipped yinyang-lif.hwnet", ROOT / "hwloop" / "pretrained" / "yinyang-lif.hwnet"))

    def big_manifest(name, filler):
        p = small_net().save(d / f"{name}.hwnet")
        items = members(p)
        m = json.loads(dict(items)["manifest.json"])
        m["provenance"]["extra"]["pad"] = filler
        text = json.dumps(m, separators=(",", ":")).encode()
        return write(p, [(n, text if n == "manifest.json" else b) for n, b in items])

    cases.append(("1 MiB manifest: [0,0,...]", big_manifest("zeros", [0] * 520_000)))
    cases.append(("1 MiB manifest: [[],[],...]", big_manifest("lists", [[]] * 349_000)))

    p = small_net().save(d / "bomb.hwnet")
    items = members(p)

    def zeros(fh):
        chunk = b"\0" * MiB
        for _ in range(400):
            fh.write(chunk)

    cases.append(("zip bomb: member inflates to 400 MiB",
                  write(p, [(n, zeros if n == "layers/0/weight.npy" else b) for n, b in items], level=1)))

    p = small_net().save(d / "npy.hwnet")
    items = members(p)
    buf = io.BytesIO()
    np.save(buf, np.zeros((5, 7)))
    liar = buf.getvalue().replace(b"(5, 7)", b"(4000, 4000)")
    m = json.loads(dict(items)["manifest.json"])
    m["layers"][0].update(shape=[4000, 4000], sha256=hashlib.sha256(liar).hexdigest())
    cases.append((".npy header says 4000x4000, data missing",
                  write(p, [(n, json.dumps(m).encode() if n == "manifest.json" else liar if n.startswith("layers/0")
                             else b) for n, b in items])))

    p = small_net().save(d / "deep.hwnet")
    items = members(p)
    text = dict(items)["manifest.json"].decode().replace('"extra": {}', '"extra": {"x": ' + "[" * 100_000 +
                                                          "]" * 100_000 + "}")
    cases.append(("manifest nested 100 000 deep", write(p, [(n, text.encode() if n == "manifest.json" else b)
                                                             for n, b in items])))

    if largest:
        rng = np.random.default_rng(1)
        n = 4096  # 4096 x 4096 = 16 777 216 weights = LoadLimits().max_parameters
        net = Network(layers=(Layer(rng.normal(size=(n, n)), NeuronParams("lif"), (0.5,)),),
                      encoding=InputEncoding(n - 1), decoding=OutputDecoding(tuple(str(i) for i in range(n))),
                      t_max=4.0)
        cases.append(("largest default: 4096x4096 weights (128 MiB)", net.save(d / "largest.hwnet")))
    return cases


def old_loader(rev: str):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:hwloop/network.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "network_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("hwloop._network_at_" + rev, path)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "hwloop"
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.Network.load


def _load_once(load, path) -> str:
    try:
        load(path)
        return "loaded"
    except HwloopError as exc:
        return "refused: " + str(exc).split(": ", 1)[-1][:60]
    except Exception as exc:  # the old loader's tracebacks
        return f"{type(exc).__name__} (untyped)"


def measure(load, path):
    """(seconds, peak traced bytes, outcome): time from an untraced load
    (tracemalloc slows allocation-heavy code several-fold), peak from a traced one."""
    t0 = time.perf_counter()
    outcome = _load_once(load, path)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    _load_once(load, path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, outcome


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", metavar="REV", help="also load with hwloop/network.py of this git revision")
    ap.add_argument("--skip-largest", action="store_true", help="skip the 128 MiB network (saves ~10 s)")
    args = ap.parse_args()
    loaders = [("now", Network.load)]
    if args.compare:
        loaders.append((args.compare, old_loader(args.compare)))
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_cases(Path(tmp), not args.skip_largest)
        print(f"{'case':46s} {'file':>10s}  {'loader':8s} {'seconds':>8s} {'peak MiB':>9s}  outcome")
        for name, path in cases:
            size = os.path.getsize(path)
            for label, load in loaders:
                s, peak, outcome = measure(load, path)
                print(f"{name:46s} {size:10d}  {label:8s} {s:8.3f} {peak / MiB:9.1f}  {outcome}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
