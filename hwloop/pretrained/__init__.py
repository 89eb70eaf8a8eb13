"""Networks shipped with hwloop (no downloads at run time).

``yinyang-qif.hwnet``: QIF 4+bias-120+bias-3 trained in software on Yin-Yang
with ``hwloop train --model qif --dataset yinyang --seed 0`` (test accuracy
97.5 %); the starting point of the main job (`hwloop demo`).
"""

from importlib import resources
from pathlib import Path


def path(name: str) -> Path:
    p = resources.files(__name__) / name
    if not p.is_file():
        from ..errors import HwloopError

        raise HwloopError(f"no shipped network {name!r}")
    return Path(str(p))
