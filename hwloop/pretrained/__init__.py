"""Networks shipped with hwloop (no downloads at run time).

``yinyang-qif.hwnet``: QIF 4+bias-120+bias-3 trained in software on Yin-Yang
with ``hwloop train --model qif --dataset yinyang --seed 0`` (test accuracy
97.5 %); the starting point of the main job (`hwloop demo`).

``yinyang-lif.hwnet``: LIF 4+bias-120+bias-3 trained in software on
Yin-Yang with ``hwloop train --dataset yinyang --seed 0`` at commit
``8ea1860`` (test accuracy 97.4 %; rerunning that commit reproduces the
weights bit for bit). The starting point of the Loihi (`bitexact`,
`lava-sim`) measurements in docs/loihi.md and docs/in-the-loop.md. The
trainer at later commits rounds differently and gives another network
(96.6 % with the same command, docs/results-lif.md).
"""

from importlib import resources
from pathlib import Path


def path(name: str) -> Path:
    p = resources.files(__name__) / name
    if not p.is_file():
        from ..errors import HwloopError

        raise HwloopError(f"no shipped network {name!r}")
    return Path(str(p))
