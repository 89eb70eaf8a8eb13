"""Quickstart: train a network, deploy it on two targets, train it in the loop, plot.

    python docs/examples/quickstart.py [OUT_DIR]      # about 40 s on 2 cores

The limits are small so that the test suite can run this file
(tests/test_docs_example.py); drop them for real figures.
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write PNG files; no window
import matplotlib.pyplot as plt

import hwloop

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")
out.mkdir(parents=True, exist_ok=True)
grid = "bitexact?steps=30"  # Loihi's integer arithmetic on a coarse grid of 30 time steps per trial

# 1. train a small LIF network in software, with exact gradients
net = hwloop.train("lif", "yinyang", hidden=40, epochs=15, seed=0).network
print(net.summary())

# 2. deploy it as it is on two targets: the float model and the coarse grid
for target in ("software", grid):
    print(f"{target}: test accuracy {hwloop.evaluate(net, target=target)['accuracy']:.3f}")

# 3. train it in the loop on the grid: forward on the target, exact gradients at the measured times
session = hwloop.loop(net, grid, out / "session", epochs=2, lr=0.005, batch_size=50, train_limit=1000, eval_limit=300)
print(f"{grid} after the loop: test accuracy {hwloop.evaluate(session.best, target=grid)['accuracy']:.3f}")

# 4. plot the validation accuracy during the session, on the target and in software
ev = session.evaluations()
plt.plot([r["step"] for r in ev], [r["val_accuracy"] for r in ev], "o-", label=f"on {grid}")
plt.plot([r["step"] for r in ev], [r["software_val_accuracy"] for r in ev], "s--", label="same weights, software")
plt.xlabel("step")
plt.ylabel("validation accuracy")
plt.legend()
plt.savefig(out / "accuracy.png", dpi=100)
print("report:", session.report(samples=100)["report"])
