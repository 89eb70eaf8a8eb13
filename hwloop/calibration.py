"""Calibration of a QIF chip by current injection (see docs/calibration.md).

What the host can measure is spike latency; what it can set is the current
injected into each neuron (protocol 1.2) and the inputs. Each neuron obeys
``g tau du/dt = u^2 + D + I`` with ``u = V - c/2``, ``D = I0_k - c_k^2/4``,
``g`` the neuron's tau gain and ``I`` the injected current; with no inputs it
first spikes at::

    T(I) = g tau / s * (pi/2 - atan(u0 / s)),   s = sqrt(D + I),  u0 = v0_k - c_k/2

so three numbers per neuron (g, D, u0) are what the chip's dynamics depend
on (I0_k and c_k enter only through D and u0). Calibration finds them as
calix does: for each of a few latency targets, a binary search on the
injected current, all neurons and all targets in parallel (one chip run per
search step, one sample per (target, repeat) carried by the per-sample
injection vector; repeats average the temporal noise: a noisy binary search),
then a least-squares fit of T(I) through the points found. The synaptic gain
of input row j onto neuron k (``row_j col_k``) comes from the latency after a
single input spike of known code, inverted through the fitted dynamics; two
configurations (every neuron on row 0, neuron k on row ``k mod rows``) give
the column gains and the row gains of the first layer.

Compensation (``compensate``): with ``u = g u'`` the neuron becomes
``tau du'/dt = u'^2 + (D + I)/g^2``, a nominal neuron if ``I = g^2 D_nom - D``
(a DC injection) and if every input weight is programmed as ``w g / gain``.
`hwloop.backends.qif.compiler.compile_calibrated` (what ``calib=on`` deploys)
adds to that a finer DAC (a row spread over several chip lines; the first
layer's neurons copied onto two chip neurons each, so that the output
layer's rows spread over two lines) and the initial-voltage offset
cancelled by a tick-0 bias spike; what is left is reported (row gains of
layers after the second, which are not measured, the output layer's
rounding over two lines).

A ``calib=on`` session records the calibration it deployed through
(`Calibration.identity`) in its checkpoints and in the provenance of the
networks it writes (`trained_calibration`); `eval_target` is how
``hwloop eval`` deploys such a network (docs/calibration.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from hwloop.errors import HwloopError

FORMAT = "hwloop-qif-calibration"
VERSION = 1
#: calibration settings: membrane tau (chip us), drive and initial voltage of the probe configuration
CAL_TAU_US, CAL_I0, CAL_V0 = 40.0, 1.25, 0.5  # tau 40 us: 400 TDC ticks per tau
#: latency targets, in units of the nominal tau
TARGETS = (1.1, 1.5, 2.0, 2.8, 3.8)
#: trial length of the probe runs (units of tau)
TRIAL_TAUS = 6.0
#: second-layer row gains: neurons each row is read through (one chip run each, plus a reference run)
ROW1_SHIFTS = 4


class CalibrationError(HwloopError):
    """A calibration file that is missing, corrupt, truncated, of another format, or for another chip."""


@dataclasses.dataclass
class Calibration:
    """Fitted effective parameters per physical neuron, and first-layer row gains."""

    chip_id: int
    fw_version: str
    g: np.ndarray  # tau gain
    D: np.ndarray  # I0_k - c_k^2 / 4 at the probe drive CAL_I0
    u0: np.ndarray  # v0_k - c_k / 2 at the probe v0 CAL_V0
    col: np.ndarray  # synaptic gain of the neuron (column)
    row0: np.ndarray  # synaptic gain of the first layer's rows (normalised: mean 1)
    row1: np.ndarray | None = None  # synaptic gain of the second layer's rows (relative to the columns)
    chip_runs: int = 0
    samples: int = 0
    seconds: float = 0.0
    created: str = ""

    # ---------------------------------------------------------------- file
    def to_json(self) -> dict:
        body = {
            "format": FORMAT, "version": VERSION, "chip_id": int(self.chip_id), "fw_version": self.fw_version,
            "probe": {"tau_us": CAL_TAU_US, "i0": CAL_I0, "v0": CAL_V0},
            "chip_runs": int(self.chip_runs), "samples": int(self.samples), "seconds": float(self.seconds),
            "created": self.created,
            "neurons": {k: [float(v) for v in getattr(self, k)] for k in ("g", "D", "u0", "col")},
            "row0": [float(v) for v in self.row0],
            "row1": None if self.row1 is None else [float(v) for v in self.row1],
        }
        body["sha256"] = _digest(body)
        return body

    @property
    def sha256(self) -> str:
        """The digest its file carries (of the file's content; a loaded file's own)."""
        return self.to_json()["sha256"]

    def identity(self) -> dict:
        """What a session records of the calibration it deployed through: chip, firmware, digest, date."""
        return {"chip_id": int(self.chip_id), "fw_version": self.fw_version, "sha256": self.sha256,
                "created": self.created}

    def save(self, path) -> Path:
        from hwloop.fileio import atomic_write_bytes

        path = Path(path)
        atomic_write_bytes(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())
        return path

    @classmethod
    def load(cls, path, chip_id: int | None = None, fw_version: str | None = None) -> "Calibration":
        """Read and check a calibration file; `CalibrationError` names what is wrong."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no calibration file; run `hwloop calibrate`") from None
        except OSError as exc:
            raise CalibrationError(f"{path}: cannot read calibration: {exc.strerror or exc}") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{path}: corrupt or truncated calibration file ({exc})") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise CalibrationError(f"{path}: not a QIF calibration file")
        if body.get("version") != VERSION:
            raise CalibrationError(f"{path}: calibration format version {body.get('version')!r}, "
                                   f"this hwloop reads {VERSION}")
        if body.get("sha256") != _digest({k: v for k, v in body.items() if k != "sha256"}):
            raise CalibrationError(f"{path}: calibration file fails its checksum (edited or damaged)")
        try:
            nn = body["neurons"]
            arrays = {k: np.asarray(nn[k], dtype=np.float64) for k in ("g", "D", "u0", "col")}
            row0 = np.asarray(body["row0"], dtype=np.float64)
            row1 = None if body.get("row1") is None else np.asarray(body["row1"], dtype=np.float64)
            if row1 is not None and (row1.ndim != 1 or not np.all(np.isfinite(row1))):
                raise ValueError("row1 not a finite vector")
            n = arrays["g"].size
            if any(a.shape != (n,) for a in arrays.values()) or row0.ndim != 1 or not all(
                    np.all(np.isfinite(a)) for a in (*arrays.values(), row0)):
                raise ValueError("arrays of unequal length or not finite")
            cal = cls(chip_id=int(body["chip_id"]), fw_version=str(body["fw_version"]), row0=row0, row1=row1,
                      chip_runs=int(body["chip_runs"]), samples=int(body["samples"]),
                      seconds=float(body["seconds"]), created=str(body["created"]), **arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{path}: malformed calibration file ({exc})") from None
        if chip_id is not None and cal.chip_id != int(chip_id):
            raise CalibrationError(f"{path}: calibration is for chip {cal.chip_id:#x}, this chip is {int(chip_id):#x}")
        if fw_version is not None and cal.fw_version != fw_version:
            raise CalibrationError(f"{path}: calibration was measured with firmware {cal.fw_version}, "
                                   f"the chip runs {fw_version}; calibrate again")
        return cal


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def store_dir() -> Path:
    """Where calibrations are kept: ``$HWLOOP_CALIBRATION_DIR``, else ~/.cache/hwloop/calibration."""
    env = os.environ.get("HWLOOP_CALIBRATION_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hwloop" / "calibration"


def store_path(chip_id: int, fw_version: str) -> Path:
    """The file of one chip and firmware version in the store."""
    return store_dir() / f"qif-{int(chip_id):#x}-fw{fw_version}.json"


# -------------------------------------------------------------------- the model
def free_latency(I, g, D, u0, tau=1.0):
    """First spike time with no inputs (inf at or below the rheobase ``I = -D``)."""
    s2 = np.asarray(D + I, dtype=np.float64)
    s = np.sqrt(np.where(s2 > 0, s2, np.nan))
    t = g * tau / s * (np.pi / 2 - np.arctan(u0 / s))
    return np.where(s2 > 0, t, np.inf)


def jump_from_latency(T, t_in, g, D, u0, tau=1.0, I=0.0):
    """The jump of u (the effective weight) that makes a neuron hit by one input at
    ``t_in`` first spike at ``T`` (with current ``I`` injected), inverted through the fitted dynamics."""
    s = np.sqrt(D + I)
    u_in = s * np.tan(s * t_in / (g * tau) + np.arctan(u0 / s))
    u_after = s * np.tan(np.pi / 2 - s * (T - t_in) / (g * tau))
    return u_after - u_in


def _fit(I, T, g0, D0, u00):
    """Least squares of free_latency through the points of one neuron."""
    from scipy.optimize import least_squares

    ok = np.isfinite(T)
    if ok.sum() < 3:
        return g0, D0, u00

    def res(p):
        return (free_latency(I[ok], p[0], p[1], p[2]) - T[ok]) / T[ok]

    d_lo = max(0.01, -float(I[ok].min()) + 1e-4)  # every point found spikes, so D + I > 0 there
    D0 = min(max(D0, d_lo + 0.05), 4.9)
    r = least_squares(res, [g0, D0, u00], bounds=([0.2, d_lo, -3], [5, 5, 3]))
    return tuple(float(v) for v in r.x)


# -------------------------------------------------------------------- measuring
def _layer(codes, w_range=0):
    from hwloop.firmware_models.wire.messages import LayerConfig

    return LayerConfig(codes=np.asarray(codes, dtype=np.int8), w_range=w_range, tau_us=CAL_TAU_US, i0=CAL_I0,
                       v0=CAL_V0)


def _progress(text, quiet):
    if not quiet:
        print(f"\rcalibrate: {text:<70}", end="", file=sys.stderr, flush=True)


def calibrate(backend, n_neurons: int | None = None, repeats: int = 8, steps: int = 14,
              quiet: bool = False, measure_repeats: int = 64) -> Calibration:
    """Measure the chip behind ``backend`` (a `QifSerialBackend`); nothing is written.

    ``repeats`` samples per latency target decide each step of the binary search (a
    majority only has to place the point); ``measure_repeats`` average the temporal noise
    of the latencies the fit and the synaptic gains are computed from (their error falls
    as one over its square root, and it is what the deployed accuracy depends on)."""
    from hwloop.firmware_models.wire.messages import NO_SPIKE, ChipConfig

    info = backend.chip_info
    if info.protocol_minor < 2:
        raise CalibrationError(f"the chip's firmware {info.fw_version} speaks protocol {info.protocol}; "
                               f"calibration injects current, which needs protocol 1.2")
    if not 1 <= int(repeats) <= info.max_batch // len(TARGETS):
        raise CalibrationError(f"repeats must be 1..{info.max_batch // len(TARGETS)}, got {repeats}")
    if not 1 <= int(measure_repeats) <= info.max_batch // len(TARGETS):
        raise CalibrationError(f"measure_repeats must be 1..{info.max_batch // len(TARGETS)}, got {measure_repeats}")
    client = backend.client
    n = int(n_neurons or info.max_neurons)
    lsb = float(f"{info.tdc_lsb_us:.7g}")
    trial = int(round(TRIAL_TAUS * CAL_TAU_US / lsb))
    rows = min(info.max_fanin, info.max_inputs, (info.rx_buffer - 1024) // n)  # one CONFIG must fit
    runs = samples = 0
    t_start = time.monotonic()
    seed = 0x0CA1

    def run(cfg, ticks, per_sample):
        nonlocal runs, samples, seed
        seed += 1
        out, _ = client.run(ticks, n, seed, per_sample=per_sample)
        runs += 1
        samples += ticks.shape[0]
        return np.where(out == NO_SPIKE, np.inf, (out.astype(np.float64) + 0.5) * lsb / CAL_TAU_US)

    # --- 1. free latency: binary search of the current that hits each target, all in parallel
    cfg = ChipConfig(n_inputs=1, trial_ticks=trial, layers=(_layer(np.zeros((1, n))),))
    client.configure(cfg.pack())
    K, R = len(TARGETS), int(repeats)
    lim = float(info.inject_max)
    lo, hi = np.full((K, n), -lim), np.full((K, n), lim)
    no_input = np.full((K * R, 1), NO_SPIKE, dtype=np.uint16)
    for step in range(steps):
        _progress(f"latency search, step {step + 1}/{steps}", quiet)
        mid = (lo + hi) / 2
        t = run(cfg, no_input, np.repeat(mid, R, axis=0)).reshape(K, R, n)
        # noisy binary search: the majority of the repeats decides (a median)
        slow = np.median(t, axis=1) > np.asarray(TARGETS)[:, None]
        lo, hi = np.where(slow, mid, lo), np.where(slow, hi, mid)
    I_hit = (lo + hi) / 2
    # the latency at the currents found, averaged over more repeats (the fit's data)
    R = int(measure_repeats)
    t_hit = run(cfg, np.full((K * R, 1), NO_SPIKE, dtype=np.uint16), np.repeat(I_hit, R, axis=0)).reshape(K, R, n)
    T = np.where(np.isfinite(t_hit).all(axis=1), np.mean(np.where(np.isfinite(t_hit), t_hit, 0), axis=1), np.inf)
    g, D, u0 = np.empty(n), np.empty(n), np.empty(n)
    for k in range(n):
        g[k], D[k], u0[k] = _fit(I_hit[:, k], T[:, k], 1.0, CAL_I0 - 0.25, CAL_V0 - 0.5)

    # --- 2. synaptic gains: one input spike of a known code, latency inverted through the fit
    t_in, code, w_range = 0.5, 19, 2
    w_nom = code / ((1 << (info.dac_bits - 1)) - 1) * info.w_fs_min * 2.0 ** w_range
    gains = []
    for layout in ("row0", "rows"):
        _progress(f"synaptic gains ({layout})", quiet)
        codes = np.zeros((rows, n), dtype=np.int8)
        codes[0 if layout == "row0" else np.arange(n) % rows, np.arange(n)] = code
        cfg2 = ChipConfig(n_inputs=rows, trial_ticks=trial, layers=(_layer(codes, w_range),))
        client.configure(cfg2.pack())
        ticks = np.full((R, rows), int(round(t_in * CAL_TAU_US / lsb)), dtype=np.uint16)
        tt = run(cfg2, ticks, None)
        t_in_q = int(round(t_in * CAL_TAU_US / lsb)) * lsb / CAL_TAU_US
        tm = np.mean(tt, axis=0)
        gains.append(jump_from_latency(tm, t_in_q, g, D, u0) / w_nom)
    m0, mr = gains
    ratio = mr / m0  # row_{k mod rows} / row_0
    row = np.array([np.mean(ratio[np.arange(n) % rows == j]) if np.any(np.arange(n) % rows == j) else np.nan
                    for j in range(rows)])
    row = np.where(np.isfinite(row), row, np.nanmean(row))
    row_0 = 1.0 / np.mean(row)  # normalise the rows to mean 1 (row x col is all that is observable)
    row0 = row * row_0
    col = m0 / row_0

    # --- 3. second-layer rows: layer 0 (fast, by injection) spikes freely at measured times and drives
    # layer 1 (slowed by injection). Configuration A puts every neuron of layer 1 on row 0, each of
    # configurations B_r neuron k on row (k + r) mod n0: the ratio B_r / A of one neuron's inferred jumps
    # is row_j / row_0, free of its column gain and, to first order, of its fit's error (which the slowed
    # neurons amplify); each row is read through ROW1_SHIFTS different neurons
    row1 = None
    n0 = min(info.max_fanin, n // 2)
    if info.max_layers >= 2 and n0 >= 1 and n - n0 >= 1:
        n1 = n - n0
        I_fast, I_slow = 1.0, -0.55
        dc = np.r_[np.full(n0, I_fast), np.full(n1, I_slow)]
        p1 = n0 + np.arange(n1)

        def layer1_jumps(src):
            codes1 = np.zeros((n0, n1), dtype=np.int8)
            codes1[src, np.arange(n1)] = code
            cfg3 = ChipConfig(n_inputs=1, trial_ticks=trial,
                              layers=(_layer(np.zeros((1, n0))), _layer(codes1, w_range)))
            client.configure(cfg3.pack())
            tt = run(cfg3, np.full((R, 1), NO_SPIKE, dtype=np.uint16), np.broadcast_to(dc, (R, n)).copy())
            t_src = tt[:, src]  # the TDC bin centre: the analog arrival time to half a tick
            ok = np.isfinite(tt[:, p1]) & np.isfinite(t_src) & (tt[:, p1] > t_src)
            jumps = jump_from_latency(tt[:, p1], t_src, g[p1], D[p1], u0[p1], I=I_slow)
            return np.array([np.mean(jumps[ok[:, k], k]) if ok[:, k].any() else np.nan for k in range(n1)])

        _progress("synaptic gains (second-layer rows, reference)", quiet)
        ref = layer1_jumps(np.zeros(n1, dtype=np.int64))
        sums, counts = np.zeros(n0), np.zeros(n0)
        for r in range(ROW1_SHIFTS):
            _progress(f"synaptic gains (second-layer rows, {r + 1}/{ROW1_SHIFTS})", quiet)
            src = (np.arange(n1) + r) % n0
            ratio = layer1_jumps(src) / ref
            ok = np.isfinite(ratio) & (ratio > 0)
            np.add.at(sums, src[ok], ratio[ok])
            np.add.at(counts, src[ok], 1)
        row1 = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        row1 = np.where(np.isfinite(row1), row1, np.nanmean(row1))
        # as for the first layer, only row x column is observable: these rows are normalised to mean 1
        row1 = row1 / np.mean(row1)
    _progress("done", quiet)
    if not quiet:
        print(file=sys.stderr)
    return Calibration(chip_id=info.chip_id, fw_version=info.fw_version, g=g, D=D, u0=u0, col=col, row0=row0,
                       row1=row1,
                       chip_runs=runs, samples=samples, seconds=time.monotonic() - t_start,
                       created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


# -------------------------------------------------------------------- compensating
def compensate(net, cal: Calibration):
    """(network with pre-compensated weights, per-neuron DC offsets, report) for the
    chip ``cal`` describes. The compiler quantises the returned network as usual."""
    from hwloop.backends.qif.compiler import DEFAULT_I0, DEFAULT_V0

    layers, dc, first = [], [], 0
    report = {"layers": []}
    for li, layer in enumerate(net.layers):
        n_out = layer.n_out
        sl = slice(first, first + n_out)
        if first + n_out > cal.g.size:
            raise CalibrationError(f"calibration covers {cal.g.size} neurons, the network needs {first + n_out}")
        opts = layer.neuron.options
        i0, v0 = float(opts.get("i0", DEFAULT_I0)), float(opts.get("v0", DEFAULT_V0))
        g, D, u0 = cal.g[sl], cal.D[sl], cal.u0[sl]
        notes = []
        if abs(i0 - CAL_I0) > 1e-6 or abs(v0 - CAL_V0) > 1e-6:
            notes.append(f"drive/initial voltage (I0 {i0:g}, v0 {v0:g}) differ from the calibration's "
                         f"({CAL_I0:g}, {CAL_V0:g}); offsets assume the mismatch is additive")
        D_here = D + (i0 - CAL_I0)
        dc.append(g ** 2 * (i0 - 0.25) - D_here)
        rows = layer.weight.shape[0]
        measured = cal.row0 if li == 0 else (cal.row1 if li == 1 else None)
        if measured is not None and rows <= measured.size:
            row = measured[:rows]
        else:
            row = np.ones(rows)
            notes.append("row gains of this layer not measured (only the first two layers' are)")
        gain = row[:, None] * cal.col[None, sl]
        layers.append(dataclasses.replace(layer, weight=layer.weight * g[None, :] / gain))
        u0_res = (u0 + (v0 - CAL_V0)) / g - (v0 - 0.5)
        report["layers"].append({"layer": li, "uncompensated_v0_rms": float(np.sqrt(np.mean(u0_res ** 2))),
                                 "dc_max": float(np.abs(dc[-1]).max()), "notes": notes})
        first += n_out
    return dataclasses.replace(net, layers=tuple(layers)), np.concatenate(dc), report


def trained_calibration(net) -> dict | None:
    """The calibration a network's weights were trained in the loop through (`Calibration.identity`,
    recorded in its provenance by a ``calib=on`` session), or None."""
    rec = dict(net.provenance.extra).get("trained_on")
    cal = rec.get("calibration") if isinstance(rec, dict) else None
    return cal if isinstance(cal, dict) and isinstance(cal.get("sha256"), str) else None


def _session_trained_calibrated(network_path) -> str | None:
    """The session directory a network file lies in, where that session's config.json says
    ``calib=on`` (a session of an hwloop before the provenance record); else None."""
    from hwloop.backends import parse_target

    if network_path is None:
        return None
    d = Path(network_path).resolve().parent
    try:
        cfg = json.loads((d / "config.json").read_text())
        ok = (d / "init.hwnet").exists() and parse_target(cfg["target"]).options.get("calib") == "on"
    except (OSError, ValueError, KeyError, TypeError, HwloopError):
        return None
    return str(d) if ok else None


def eval_target(net, target: str, network_path=None) -> tuple[str, str | None]:
    """The target ``hwloop eval`` deploys a network on, and the line that says why.

    A network trained in the loop through a chip's calibrated deployment has weights for
    that deployment: as is, the chip's mismatch and the DAC's rounding undo what the loop
    learnt. On a QIF chip target whose URL does not say ``calib=``, such a network is
    deployed with ``calib=on`` where the chip has a stored calibration (as a new session
    starts from it), else as is with a line saying how to calibrate; a URL that says
    ``calib=`` decides, with a line where it deploys as is or through another calibration
    than the one the network was trained through. A network with no record in a session
    directory (``network_path``) whose config.json says ``calib=on`` (a session of an older
    hwloop) is treated alike, the calibration it was trained through being unknown. Other
    networks and targets: unchanged, None."""
    from hwloop.backends import open_target, parse_target

    rec = trained_calibration(net)
    url = parse_target(target)
    if url.scheme not in ("qif-emu", "qif") or net.is_spike_train:
        return target, None
    if rec is not None:
        trained = (f"this network was trained in the loop through the calibrated deployment of chip "
                   f"{int(rec.get('chip_id', -1)):#x} (calibration {rec['sha256'][:12]}..., {rec.get('created')})")
    else:
        session = _session_trained_calibrated(network_path)
        if session is None:
            return target, None
        trained = (f"this network's session ({session}) trained it through a calibrated deployment (calib=on in "
                   f"its config.json; which calibration, its hwloop did not record)")
    if url.options.get("calib") == "off":
        return target, f"{trained}; calib=off deploys it as is, without the compensation its weights assume"
    with open_target(target) as chip:
        info = chip.client.info
    path = store_path(info.chip_id, info.fw_version)
    try:
        now = Calibration.load(path, info.chip_id, info.fw_version) if path.exists() else None
    except CalibrationError:
        now = None  # calib=on names what is wrong with it; without calib= it deploys as is, saying why below
    if now is None and "calib" in url.options:
        return target, None  # calib=on refuses the missing or damaged file itself
    if now is None:
        return target, (f"{trained}; chip {info.chip_id:#x} has no usable calibration in {store_dir()}: deploying "
                        f"it as is (expect a lower accuracy); `hwloop calibrate \"{target}\"`, then evaluate again")
    notes = []
    if rec is not None and now.sha256 != rec["sha256"]:
        notes.append(f"the store's calibration of chip {info.chip_id:#x} is another one ({now.sha256[:12]}..., "
                     f"{now.created}): the deployment differs from the one it was trained through")
    if "calib" in url.options:
        return target, (f"{trained}; " + "; ".join(notes)) if notes else None
    target = target + ("&" if "?" in target else "?") + "calib=on"
    return target, "; ".join([f"{trained}: evaluating it on {target}", *notes, "add calib=off to deploy it as is"])


def truth_of(chip_id: int, mismatch: float, n: int):
    """The emulator's true effective parameters (for tests and the bench only)."""
    from hwloop.firmware_models.qif_chip.core import Mismatch
    from hwloop.firmware_models.qif_chip.spec import DEFAULT_SPEC

    mm = Mismatch.for_chip(chip_id, mismatch, DEFAULT_SPEC)
    c = mm.c[:n]
    return {"g": mm.tau_gain[:n], "D": CAL_I0 * mm.i0_gain[:n] - c ** 2 / 4, "u0": CAL_V0 + mm.v0_offset[:n] - c / 2,
            "col": mm.col_gain[:n], "row0": mm.row_gain[0], "row1": mm.row_gain[1]}


def spread(values: np.ndarray) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "min": float(np.min(values)),
            "max": float(np.max(values))}


__all__ = ["Calibration", "CalibrationError", "calibrate", "compensate", "store_path", "store_dir",
           "trained_calibration", "eval_target",
           "free_latency", "jump_from_latency", "truth_of", "spread", "FORMAT", "VERSION"]
_ = math
