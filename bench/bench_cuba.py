"""Speed of the spike-train family against snnTorch, side by side in one run.

The network is the stork Randman example's: 20 inputs - 128 CUBA LIF hidden
neurons - 10 leaky-integrator readouts, 100 steps, batch 256, float32, the
fast-sigmoid (SuperSpike) surrogate with slope 20, zero reset, max-over-time
cross-entropy, Adam. Measured:

* **train step**: forward + backward + optimiser step of one batch;
* **inference**: forward only, samples per second.

Engines: ours (`hwloop.models.trains`, the numba kernel), our plain-autograd
reference loop (``--torch``, the same step functions stepped by torch), and
snnTorch (PyPI ``snntorch``: ``nn.Linear`` + ``snn.Synaptic`` per layer in a
Python loop over time, the way its tutorials build this network; the
readout is a ``Synaptic`` layer whose membrane is read and whose spikes are
ignored). snnTorch resets on the previous step's spike (its default
``reset_delay``) where ours resets in the same step; the work per step is
the same. Inputs are the first 256 training samples of the stork Randman
set, identical for every engine.

The machine is shared: every figure is the best of ``--repeat`` runs, wall
time beside process CPU time, and the load average is printed.

    pip install --no-deps snntorch==1.0.0        # torch stays as pinned
    python bench/bench_cuba.py [--threads 2] [--repeat 5] [--torch] [--batch 256]
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_qif.py: spinning OpenMP workers steal the cores

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hwloop.data import randman  # noqa: E402
from hwloop.models.trains import CubaParams, Surrogate, cuba_network_forward  # noqa: E402

T, N_IN, N_H, N_OUT = 100, 20, 128, 10
DT, TAU_SYN, TAU_MEM, TAU_RO, SLOPE = 2.0, 10.0, 20.0, 200.0, 20.0


def best_of(fn, repeat: int) -> tuple[float, float]:
    wall = cpu = math.inf
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def data(batch: int):
    d = randman.load("train")
    x = torch.from_numpy(randman.raster(d.x[:batch]))
    y = torch.from_numpy(d.y[:batch].copy())
    return x, y


def ours(x, y, engine: str):
    g = torch.Generator().manual_seed(0)
    w1 = (torch.randn(N_IN, N_H, generator=g) * 0.5).requires_grad_(True)
    w2 = (torch.randn(N_H, N_OUT, generator=g) * 0.1).requires_grad_(True)
    ph = CubaParams.from_time_constants(DT, TAU_SYN, TAU_MEM)
    po = CubaParams.from_time_constants(DT, TAU_SYN, TAU_RO, spiking=False)
    sg = Surrogate("superspike", SLOPE)
    opt = torch.optim.Adam([w1, w2], lr=2e-3)

    def forward():
        # record="output": the readout's membranes and the hidden counts, what training reads
        return cuba_network_forward(x, [w1, w2], [ph, po], sg, engine=engine, record="output")

    def step():
        out = forward()
        loss = torch.nn.functional.cross_entropy(out.membranes[-1].max(0).values, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            forward()

    return step, infer


def snntorch_net(x, y):
    import snntorch as snn
    from snntorch import surrogate

    torch.manual_seed(0)
    a = math.exp(-DT / TAU_SYN)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(N_IN, N_H, bias=False)
            self.fc2 = torch.nn.Linear(N_H, N_OUT, bias=False)
            sg = surrogate.fast_sigmoid(slope=SLOPE)
            self.lif1 = snn.Synaptic(alpha=a, beta=math.exp(-DT / TAU_MEM), threshold=1.0, spike_grad=sg,
                                     reset_mechanism="zero")
            self.lif2 = snn.Synaptic(alpha=a, beta=math.exp(-DT / TAU_RO), threshold=1.0, spike_grad=sg,
                                     reset_mechanism="none")

        def forward(self, x):
            syn1, mem1 = self.lif1.init_synaptic()
            syn2, mem2 = self.lif2.init_synaptic()
            mems = []
            for t in range(x.shape[0]):
                s1, syn1, mem1 = self.lif1(self.fc1(x[t]), syn1, mem1)
                _, syn2, mem2 = self.lif2(self.fc2(s1), syn2, mem2)
                mems.append(mem2)
            return torch.stack(mems)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)

    def step():
        loss = torch.nn.functional.cross_entropy(net(x).max(0).values, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            net(x)

    return step, infer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--torch", action="store_true", help="also time our plain-autograd reference loop")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, y = data(a.batch)
    engines = [("hwloop (numba)", lambda: ours(x, y, "numba"))]
    if a.torch:
        engines.append(("hwloop (torch reference)", lambda: ours(x, y, "torch")))
    try:
        import snntorch  # noqa: F401

        engines.append((f"snntorch {snntorch.__version__}", lambda: snntorch_net(x, y)))
    except ImportError:
        print("snntorch is not installed: pip install --no-deps snntorch==1.0.0")
    print(f"20-128-10 CUBA LIF, {T} steps, batch {a.batch}, float32, {a.threads} threads, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    rows = {}
    for name, build in engines:
        step, infer = build()
        step()
        infer()  # warm-up: compilation, allocator
        st_w, st_c = best_of(step, a.repeat)
        in_w, in_c = best_of(infer, a.repeat)
        rows[name] = (st_w, st_c, in_w, in_c)
        print(f"{name:28s} train step {st_w * 1e3:8.1f} ms wall ({st_c * 1e3:8.1f} ms CPU)   "
              f"inference {a.batch / in_w:9.0f} samples/s wall ({a.batch / in_c:9.0f} per CPU-s)")
    base = rows["hwloop (numba)"]
    for name, r in rows.items():
        if name.startswith("snntorch"):
            print(f"speed-up over {name}: train step {r[0] / base[0]:.1f}x wall ({r[1] / base[1]:.1f}x CPU), "
                  f"inference {r[2] / base[2]:.1f}x wall ({r[3] / base[3]:.1f}x CPU); goal >= 10x")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
