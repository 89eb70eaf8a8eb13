"""Bit-accurate multi-spike model of a Loihi core running a CUBA (spike-train)
network: the arithmetic of Lava's standard ``LIF`` fixed-point model
(``lava.proc.lif.models.PyLifModelBitAcc``) fed by bit-accurate ``Dense``
connections, one feed-forward and optionally one recurrent per layer.

Per local step ``k`` of a layer, for every neuron::

    a = shift(s_in[k] @ W, e) + shift(s_own[k-1] @ R, e_rec)   # two Dense, each floored on its own
    u = wrap24(trunc(u * (4096 - (du + 1)) / 4096) + (a << 6))
    v = clip(trunc(v * (4096 - dv) / 4096) + u, +-(2**23 - 1))
    s = v > vth << 6;  v[s] = 0                                  # Lava's LIF: reset to zero

Lava's fixed-point LIF has no refractory period and no subtractive reset
(issue #15: the mapping refuses those), so neither has this model. Time is in
local steps; on Lava each Dense delays by one step, which makes feed-forward
input of local step ``k`` arrive at local step ``k`` of the next layer
(layers are offset by one Lava step) and a recurrent spike arrive one local
step later, as in the CUBA model (docs/models-cuba.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .core import (ACT_SHIFT, DECAY_UNITY, DU_MAX, UV_MAX, V_LIMIT, VTH_MAX, VTH_SHIFT, WEIGHT_EXP_RANGE,
                   WEIGHT_RANGE_MIXED, _shift, _trunc_decay)


@dataclass(frozen=True)
class TrainLayer:
    """Integer registers of one multi-spike LIF layer: ``weight`` (n_src, n_out),
    optional ``recurrent`` (n_out, n_out) with ``rec_exp``, decays, threshold."""

    weight: np.ndarray
    weight_exp: int
    du: int
    dv: int
    vth: int
    recurrent: np.ndarray | None = None
    rec_exp: int = 0

    def __post_init__(self):
        object.__setattr__(self, "weight", np.ascontiguousarray(self.weight, dtype=np.int32))
        if self.recurrent is not None:
            object.__setattr__(self, "recurrent", np.ascontiguousarray(self.recurrent, dtype=np.int32))
        n = self.weight.shape[1] if self.weight.ndim == 2 else -1

        def bad(msg):
            raise ValueError(f"TrainLayer: {msg}")

        if self.weight.ndim != 2:
            bad(f"weight must be 2-D, got {self.weight.shape}")
        if self.recurrent is not None and self.recurrent.shape != (n, n):
            bad(f"recurrent must be ({n}, {n}), got {self.recurrent.shape}")
        if not (0 <= self.du <= DU_MAX and 0 <= self.dv <= DU_MAX):
            bad(f"du={self.du}, dv={self.dv} outside 0..{DU_MAX}")
        if not 0 <= self.vth <= VTH_MAX:
            bad(f"vth={self.vth} outside 0..{VTH_MAX}")
        for name, e in (("weight_exp", self.weight_exp), ("rec_exp", self.rec_exp)):
            if not WEIGHT_EXP_RANGE[0] <= e <= WEIGHT_EXP_RANGE[1]:
                bad(f"{name}={e} outside {WEIGHT_EXP_RANGE}")
        for name, w in (("weight", self.weight), ("recurrent", self.recurrent)):
            if w is not None and w.size and (w.min() < WEIGHT_RANGE_MIXED[0] or w.max() > WEIGHT_RANGE_MIXED[1] - 1
                                             or (w % 2).any()):
                bad(f"{name} must hold stored mixed-sign weights: even, {WEIGHT_RANGE_MIXED[0]}.."
                    f"{WEIGHT_RANGE_MIXED[1] - 1} (Lava drops the lowest bit of an 8-bit mixed-sign weight)")

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[1])


def simulate_trains(layers: list[TrainLayer], raster: np.ndarray, probe=False, currents: bool = False):
    """Run a batch: ``raster`` (T, B, n_in) 0/1. Returns ``(spikes, volts)``:
    per layer (T, B, n) uint8 spikes and, with ``probe``, (T, B, n) int32
    membranes after the step (post-reset, as Lava's ``v`` reads); else None.
    ``probe`` is True (every layer), False, or the indices of the layers to
    record (the others' entries are None). With ``currents`` (and ``probe``)
    a third item: the (T, B, n) int32 currents ``u`` after the step, as
    Lava's ``u`` reads."""
    x = np.asarray(raster)
    wanted = _probe_set(probe, len(layers))
    check_chain(layers)
    if x.ndim != 3 or x.shape[2] != layers[0].weight.shape[0]:
        raise ValueError(f"raster must be (T, B, {layers[0].weight.shape[0]}), got {x.shape}")
    T, B, _ = x.shape
    cur = (x != 0).astype(np.int64)
    spikes, volts, amps = [], [], []
    for li, layer in enumerate(layers):
        rec_v = li in wanted
        n = layer.n_out
        w = layer.weight.astype(np.int64)
        r = None if layer.recurrent is None else layer.recurrent.astype(np.int64)
        fu, fv, vth = DECAY_UNITY - (layer.du + 1), DECAY_UNITY - layer.dv, layer.vth << VTH_SHIFT
        u = np.zeros((B, n), np.int64)
        v = np.zeros((B, n), np.int64)
        s = np.zeros((B, n), np.int64)
        out = np.zeros((T, B, n), np.uint8)
        vt = np.zeros((T, B, n), np.int32) if rec_v else None
        ut = np.zeros((T, B, n), np.int32) if rec_v and currents else None
        ff = _shift(cur.reshape(T * B, -1) @ w, layer.weight_exp).reshape(T, B, n)
        for k in range(T):
            a = ff[k]
            if r is not None:
                a = a + _shift(s @ r, layer.rec_exp)
            d = _trunc_decay(u, fu) + (a << ACT_SHIFT)
            u = np.where(d > UV_MAX, d - 2 * UV_MAX, d)
            u = np.where(u <= -UV_MAX, d + 2 * UV_MAX, u)
            v = np.clip(_trunc_decay(v, fv) + u, -V_LIMIT, V_LIMIT)
            fire = v > vth
            v = np.where(fire, 0, v)
            s = fire.astype(np.int64)
            out[k] = fire
            if rec_v:
                vt[k] = v
                if ut is not None:
                    ut[k] = u
        spikes.append(out)
        volts.append(vt)
        amps.append(ut)
        cur = out.astype(np.int64)
    if currents:
        return spikes, (volts if wanted else None), (amps if wanted else None)
    return spikes, (volts if wanted else None)


def _probe_set(probe, n_layers: int) -> frozenset:
    if probe is True:
        return frozenset(range(n_layers))
    if probe is False or probe is None:
        return frozenset()
    idx = frozenset(int(i) % n_layers for i in probe)
    return idx


def pre_reset(layer: TrainLayer, v_post: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The membrane *before* reset, (T, B, n) int64, from what Lava's monitors
    read after each step (``v`` post-reset, ``u``): ``clip(decay(v[k-1]) +
    u[k])``, the value the threshold was compared with (equal to ``v[k]``
    wherever the neuron did not fire)."""
    v_post = np.asarray(v_post, dtype=np.int64)
    prev = np.concatenate([np.zeros_like(v_post[:1]), v_post[:-1]], axis=0)
    return np.clip(_trunc_decay(prev, DECAY_UNITY - layer.dv) + np.asarray(u, dtype=np.int64), -V_LIMIT, V_LIMIT)


def check_chain(layers) -> None:
    """``ValueError`` unless the layers form a chain (each layer's sources are the previous layer's neurons)."""
    if not layers:
        raise ValueError("no layers")
    for i in range(1, len(layers)):
        if layers[i].weight.shape[0] != layers[i - 1].n_out:
            raise ValueError(f"layer {i} has {layers[i].weight.shape[0]} sources, "
                             f"layer {i - 1} has {layers[i - 1].n_out} neurons")
