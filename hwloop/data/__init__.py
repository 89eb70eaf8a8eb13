"""Data sets, and the default way their feature values become spike times.

``load_dataset(name, split)`` returns a `Dataset` (plain float64 features,
int64 labels, class names, nominal value range) for one of
`dataset_names()`: ``yinyang`` and ``digits`` need nothing but this package
and scikit-learn, ``mnist`` reads IDX files from a folder the user gives
(``root=``). ``default_encoding(name, tau=...)`` is the documented
`InputEncoding` for a data set: spike times scale with the synaptic time
constant because that is the scale on which a TTFS neuron integrates its
inputs. Decoding (first output spike wins) lives in `hwloop.data.decoding`.
See `docs/data.md` and `docs/encoding.md`.
"""

from __future__ import annotations

import math
import os

from ..errors import DatasetError
from ..network import InputEncoding
from . import digits, mnist, randman, yinyang
from .dataset import SPLITS, Dataset

__all__ = [
    "Dataset",
    "SPLITS",
    "T_EARLY",
    "T_LATE",
    "GOELTZ_BIAS_TIME",
    "dataset_names",
    "load_dataset",
    "default_encoding",
]

#: Earliest and latest input spike time, in units of the synaptic time
#: constant tau: the values Göltz et al. 2021 used for Yin-Yang, and our
#: default for every data set so that one trial length fits them all.
T_EARLY = 0.15
T_LATE = 2.0
#: Göltz et al. used one bias spike per layer at 0.9 tau. Bias spikes are a
#: property of a network's layers (`Layer.bias_times`), not of the encoding;
#: the value is exported here for code that wants to follow the paper.
GOELTZ_BIAS_TIME = 0.9

_LOADERS = {"yinyang": yinyang, "digits": digits, "mnist": mnist, "randman": randman}
_N_FEATURES = {"yinyang": 4, "digits": 64, "mnist": mnist.N_FEATURES, "randman": randman.STORK.n_units}


def dataset_names() -> tuple[str, ...]:
    return tuple(_LOADERS)


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise DatasetError(f"data set name must be a string, got {name!r}")
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in _LOADERS:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(dataset_names())}")
    return key


def load_dataset(name: str, split: str, *, root: str | os.PathLike | None = None) -> Dataset:
    """One split (``train``, ``val`` or ``test``) of a data set.

    ``root`` is the folder with the IDX files for ``mnist`` and is ignored by
    the built-in sets (so one CLI option can serve every data set).
    """
    key = _canonical(name)
    if key == "mnist":
        return mnist.load(split, root)
    return _LOADERS[key].load(split)


def default_encoding(name: str, *, tau: float) -> InputEncoding:
    """The documented feature-value -> spike-time map for data set ``name``.

    * yinyang: coordinate 0 spikes at ``T_EARLY*tau``, 1 at ``T_LATE*tau``
      (Göltz et al. 2021), no silent inputs; randman (the stork set, whose
      features are standardised spike times) likewise.
    * digits, mnist: a bright pixel spikes early (``value_max`` at
      ``T_EARLY*tau``, linearly later for dimmer pixels down to ``T_LATE*tau``)
      and a black pixel (``value_min``) sends no spike at all, so the many
      background pixels cost no input events.
    """
    key = _canonical(name)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise DatasetError(f"default_encoding({name!r}): tau must be a finite number > 0, got {tau!r}")
    t_early, t_late = T_EARLY * tau, T_LATE * tau
    n = _N_FEATURES[key]
    if key in ("yinyang", "randman"):  # randman: the features are spike times in [0, 1]
        enc = InputEncoding(n_features=n, value_min=0.0, value_max=1.0, t_at_min=t_early, t_at_max=t_late)
    else:
        mod = _LOADERS[key]
        enc = InputEncoding(
            n_features=n,
            value_min=mod.VALUE_MIN,
            value_max=mod.VALUE_MAX,
            t_at_min=t_late,
            t_at_max=t_early,
            silent_at_min=True,
        )
    enc.validate()
    return enc
