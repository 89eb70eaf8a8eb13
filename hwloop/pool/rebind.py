"""Rebinding a session to another board before it resumes.

A session's ``config.json`` (and the configuration inside each checkpoint,
which resume compares with it) records the target URL it runs on. A trial
whose board died resumes on another board of the same kind, whose URL
differs (another port, another host, another chip id). `rebind_session`
points the session at the new URL:

* only within one target scheme (``qif`` to ``qif``, ``qif-emu`` to
  ``qif-emu``): the target-dependent defaults the session resolved, and the
  target state its checkpoint carries (the QIF chip's noise-seed counter),
  mean the same thing on both; another scheme raises `RebindError`;
* the checkpoint files are rewritten first (each atomically, checksum
  recomputed), ``config.json`` last, so a crash in between leaves a session
  that resume refuses with a clear message and that a second rebind repairs;
* ``bindings.jsonl`` in the session directory gets one line per rebinding
  (time, from, to, the checkpoint step it continued from, the reason), so
  the session says which boards its steps ran on.

The QIF client still refuses a chip that changes id *within* a connection
(a board swapped mid-run); a rebind is the explicit, recorded change.
Whether the weights stay those of an uninterrupted run depends on the two
boards measuring alike: yes for deterministic, identical targets (``bitexact``,
``qif-emu`` without mismatch and noise); on two different analog chips the
session continues on the second chip's physics, as a lab's would.
"""

from __future__ import annotations

import dataclasses
import json
import os

from hwloop.network import now_iso

from .config import PoolError


class RebindError(PoolError):
    """A rebind that would change what the session means (another target scheme)."""


def rebind_session(directory: str | os.PathLike, target: str, reason: str = "") -> dict | None:
    """Point the session in ``directory`` at ``target``; None if it already is.
    Returns the binding record appended to ``bindings.jsonl``."""
    from hwloop.backends import check_target, parse_target
    from hwloop.session.checkpoint import CheckpointDamaged, CheckpointStore, decode_checkpoint, encode_checkpoint
    from hwloop.session.files import SessionDir, write_file_atomic

    sd = SessionDir(directory)
    cfg = sd.load_config()
    old, new = parse_target(cfg.target), parse_target(target)
    if old.scheme != new.scheme:
        raise RebindError(f"{sd.path}: cannot rebind a {old.scheme} session to {target!r} (rule: a session "
                          f"resumes only on a target of its own scheme, {old.scheme})")
    check_target(target)
    store = CheckpointStore(sd)
    step = None
    for path in (store.latest, store.previous):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        try:
            state = decode_checkpoint(data)
        except CheckpointDamaged:
            continue  # resume sets it aside and says so
        saved = state.get("config") if isinstance(state, dict) else None
        if not isinstance(saved, dict):
            continue
        if path == store.latest and isinstance(state.get("step"), int):
            step = state["step"]
        if saved.get("target") != target:
            saved["target"] = target
            write_file_atomic(path, encode_checkpoint(state))
    if cfg.target == target:
        return None
    sd.write_config(dataclasses.replace(cfg, target=target))
    record = {"time": now_iso(), "from": cfg.target, "to": target, "step": step, "reason": reason}
    with open(sd.path / "bindings.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    return record


def bindings(directory: str | os.PathLike) -> list[dict]:
    """The rebindings recorded in a session directory (oldest first)."""
    from pathlib import Path

    path = Path(directory) / "bindings.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
