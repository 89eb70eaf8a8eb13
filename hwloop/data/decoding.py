"""Output spike times -> class decisions, and the accuracy report built on them.

The rule is the one a TTFS network is trained for: the output neuron that
fires first names the class. Two cases have no first neuron, and we refuse to
guess in either, because a guess (e.g. argmin picking the lowest index) would
credit a network, or a piece of hardware, with decisions it never made:

* **tie** -- two or more outputs share the earliest time exactly. Exact
  equality is the criterion because targets report quantised times (Loihi
  steps, TDC ticks), where equal times are a real, frequent outcome;
* **silent** -- no output spiked within the trial (all ``inf``).

Both are *undecided*: the prediction is -1, they count as wrong in the
accuracy, and the report counts them separately so a silent network is not
mistaken for a confused one. See `docs/encoding.md`.
"""

from __future__ import annotations

import enum

import numpy as np

from ..errors import DatasetError

UNDECIDED = -1


class Status(enum.IntEnum):
    """Per-sample outcome of `decode`."""

    DECIDED = 0
    TIE = 1
    SILENT = 2


def _as_numpy(a, what: str) -> np.ndarray:
    """numpy view of an array-like or a torch tensor (any device, grad or not)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor without importing torch
        a = a.detach().cpu()
        if a.is_floating_point():
            a = a.double()  # numpy has no bfloat16
        a = a.numpy()
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{what}: not an array ({exc})") from None


def decode(t_out) -> tuple[np.ndarray, np.ndarray]:
    """First-spike decision per sample.

    ``t_out``: output spike times (B, C), numpy or torch, ``inf`` for silent.
    Returns ``pred`` int64 (B,) with the class index or -1 (undecided) and
    ``status`` int8 (B,) with `Status` codes.
    """
    t = _as_numpy(t_out, "decode: t_out")
    if t.ndim != 2 or t.shape[1] < 1:
        raise DatasetError(f"decode: t_out must be 2-D (batch, classes), got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.number) or np.issubdtype(t.dtype, np.complexfloating):
        raise DatasetError(f"decode: t_out must hold real spike times, got dtype {t.dtype}")
    t = t.astype(np.float64, copy=False)
    if np.isnan(t).any():
        raise DatasetError(f"decode: t_out has {int(np.isnan(t).sum())} NaN time(s); silent neurons must be inf")
    if np.isneginf(t).any():
        raise DatasetError("decode: t_out has -inf time(s); spike times must be finite or +inf (silent)")
    b = t.shape[0]
    if b == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int8)
    first = t.min(axis=1)
    n_first = (t == first[:, None]).sum(axis=1)
    silent = np.isposinf(first)
    tie = ~silent & (n_first > 1)
    pred = np.argmin(t, axis=1).astype(np.int64)
    pred[silent | tie] = UNDECIDED
    status = np.full(b, Status.DECIDED, dtype=np.int8)
    status[tie] = Status.TIE
    status[silent] = Status.SILENT
    return pred, status


def classification_report(t_out, y) -> dict:
    """Accuracy of first-spike decisions against labels ``y`` (B,).

    Returns plain Python numbers (JSON-ready): ``accuracy`` (undecided counts
    as wrong), ``n``, ``n_correct``, ``n_wrong`` (decided but wrong),
    ``n_tie``, ``n_silent``, ``n_undecided`` and ``confusion``, a list of
    rows per true class with one column per predicted class plus a last
    column for undecided.
    """
    pred, status = decode(t_out)
    labels = _as_numpy(y, "classification_report: y")
    n_classes = _as_numpy(t_out, "t_out").shape[1]
    if labels.ndim != 1 or labels.shape[0] != pred.shape[0]:
        raise DatasetError(
            f"classification_report: y must have shape ({pred.shape[0]},) to match t_out, got {labels.shape}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"classification_report: y must hold integer labels, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    n = int(labels.shape[0])
    if n == 0:
        raise DatasetError("classification_report: empty batch, accuracy is undefined")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DatasetError(
            f"classification_report: labels must lie in 0..{n_classes - 1} (t_out has {n_classes} outputs), "
            f"got {labels.min()}..{labels.max()}"
        )
    correct = pred == labels
    n_correct = int(correct.sum())
    n_tie = int((status == Status.TIE).sum())
    n_silent = int((status == Status.SILENT).sum())
    n_undecided = n_tie + n_silent
    confusion = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
    np.add.at(confusion, (labels, np.where(pred == UNDECIDED, n_classes, pred)), 1)
    return {
        "accuracy": n_correct / n,
        "n": n,
        "n_correct": n_correct,
        "n_wrong": n - n_correct - n_undecided,
        "n_tie": n_tie,
        "n_silent": n_silent,
        "n_undecided": n_undecided,
        "confusion": confusion.tolist(),
    }
