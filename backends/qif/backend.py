"""The QIF chip targets: ``qif:///dev/ttyXXX?baud=..`` and ``qif-emu?..``.

Both talk to the chip through pyserial and the wire protocol; they differ
only in where the port comes from. ``qif-emu`` spawns the emulator process
(`hwloop.firmware_models.qif_chip`), reads the pseudo-terminal path it prints, and
opens that path like any serial port, so everything past the spawn is the
code path a real board gets.

URL options (all optional) are declared once, with their ranges and
defaults, in ``_link_options`` (both targets) and ``QifEmuBackend.OPTIONS``
(``chip_id``, ``mismatch``, ``noise``); `hwloop devices --options` and
docs/targets.md print them.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time

import numpy as np

from hwloop.backends.base import Backend, Measurement, SpikeEvents, TargetURL
from hwloop.backends.options import Option
from hwloop.firmware_models.qif_chip.spec import DEFAULT_MISMATCH, DEFAULT_NOISE
from hwloop.firmware_models.wire import messages as M
from hwloop.firmware_models.wire.errors import LinkError, ProtocolError, RemoteError, WireError
from hwloop.firmware_models.wire.frame import MAX_PAYLOAD
from hwloop.firmware_models.wire.transport import SerialTransport
from hwloop.errors import TargetError
from hwloop.network import Network

from .client import ChipClient, InjectUnsupported, TrainsUnsupported
from .compiler import DAC_POLICIES, QifProgram, compile_calibrated, compile_network
from .trains_compiler import DEFAULT_SUBSTEPS, TrainsProgram, compile_trains

EMU_DEFAULT_BAUD = 921600


def _link_options(baud: int) -> tuple[Option, ...]:
    """The options of a QIF chip on a serial link (``baud``: the default line rate)."""
    return (
        Option("baud", "int", baud, "line rate in bit/s (the emulator paces its UART at it; 0 = unpaced)",
               min=300, max=16_000_000, also=(0,)),
        Option("timeout", "float", 5.0, "seconds to wait between messages of a reply", min=0.1, max=3600),
        Option("ack_timeout", "float", 0.25, "seconds to wait for a frame's ACK (plus its wire time)",
               min=0.001, max=60),
        Option("retries", "int", 16, "ACK timeouts in a row, the chip silent, before the link gives up "
               "(about 4.3 s at the defaults)", min=0, max=1000),
        Option("frame", "int", 1024, "largest payload per frame (the link cuts shorter ones on a noisy line)",
               min=16, max=MAX_PAYLOAD),
        Option("recoveries", "int", 5, "re-handshakes per batch before giving up", min=0, max=1000),
        Option("connect_timeout", "float", 10.0, "seconds a handshake may take (a restarting chip needs to boot)",
               min=0.1, max=3600),
        Option("scale", "float", None, "chip microseconds per network time unit", min=0, min_exclusive=True,
               max=1e12, default_doc="finest TDC resolution the chip allows"),
        Option("seed", "int", 0, "base of the per-run temporal-noise seeds", min=0, max=0xFFFFFFFF),
        Option("dac", "choice", "mse", "weight-range policy: least squared error (mse) or no clipping (cover)",
               choices=DAC_POLICIES),
        Option("substeps", "int", DEFAULT_SUBSTEPS, "spike-train mode: integrator substeps per network step",
               min=1, max=255),
        Option("probe_period", "int", 1, "spike-train mode: network steps between membrane ADC samples",
               min=1, max=0xFFFF),
        Option("readout_range", "float", None, "spike-train mode: ADC range +-r (model units) of a non-spiking readout",
               min=0, min_exclusive=True, max=1e3, default_doc="8"),
        Option("calib", "choice", "off", "deploy with the chip's calibration from `hwloop calibrate` (on) or "
               "as the network is (off); on refuses a chip with no valid calibration", choices=("off", "on")),
    )


class QifSerialBackend(Backend):
    scheme = "qif"
    description = "analog QIF chip on a serial port (qif:///dev/ttyUSB0?baud=...)"
    OPTIONS = _link_options(baud=115200)
    takes_path = True
    SPIKE_TRAINS = True  # qif-trains networks (protocol 1.4 firmware)
    MEMBRANE_PROBES = True  # the membrane ADC (run_raster(probe=True); hwloop.session.config.target_has_probes)
    #: in-the-loop sessions measure the readout's membrane only by default: the
    #: hidden layers' ADC samples (one byte per neuron and step) are ~95 % of the
    #: traffic of a probed run (docs/qif-chip-trains.md)
    DEFAULT_SIGNAL = "spikes+readout"

    def __init__(self, url: TargetURL):
        super().__init__(url)  # checks every option before anything is opened
        self.baud = self.opts["baud"]
        self.scale = self.opts["scale"]
        self.dac = self.opts["dac"]
        self.seed = self.opts["seed"]
        #: runs so far; the noise seed of a run is derived from (seed, run_index), so
        #: setting it back replays a run's temporal noise exactly
        self.run_index = 0
        self.port = None
        self.client: ChipClient | None = None
        self._connect()

    def _connect(self) -> None:
        """Open the port and handshake (on failure: close and raise TargetError)."""
        url, o = self.url, self.opts
        try:
            self.port = self._open_port(self.port_path())
            self.client = ChipClient(
                SerialTransport(self.port), baud=self.baud or None,
                ack_timeout=o["ack_timeout"], retries=o["retries"], reply_timeout=o["timeout"],
                max_payload=o["frame"], max_recoveries=o["recoveries"], connect_timeout=o["connect_timeout"],
                name="chip link",
            )
            self.client.connect()
        except (WireError, ValueError) as exc:
            self.close()
            raise TargetError(f"{url.raw}: {exc}") from None
        except BaseException:
            self.close()
            raise

    # ---- where the port comes from (overridden by the emulator target)
    def port_path(self) -> str:
        if not self.url.path:
            raise TargetError(f"target {self.url.raw!r}: no port given; use qif:///dev/ttyUSB0")
        return self.url.path

    def _open_port(self, path: str):
        import serial

        try:
            return serial.serial_for_url(path, baudrate=self.baud or 115200, timeout=0.01)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TargetError(f"{self.url.raw}: cannot open serial port {path}: {exc}") from None

    # ---- Backend interface
    @property
    def chip_info(self):
        return self.client.info

    def check_family(self, net: Network) -> None:
        """Spike-train networks of the qif-trains model only (the chip's spike-train mode)."""
        if net.is_spike_train and net.model != "qif-trains":
            raise TargetError(f"{self.url.raw}: {self.scheme} runs first-spike-time networks only, or spike trains of "
                              f"the qif-trains model; this is a spike-train network ({net.model}, dt={net.dt:g} "
                              f"{net.time_unit}); run it on 'software', 'bitexact' or 'lava-sim'")

    def compile(self, net: Network) -> QifProgram | TrainsProgram:
        if net.is_spike_train:
            if self.opts.get("calib") == "on":
                raise TargetError(f"{self.url.raw}: calib=on calibrates first-spike-time networks only")
            try:
                self.client.require_trains()
            except TrainsUnsupported as exc:
                raise TargetError(f"{self.url.raw}: {exc}") from None
            return compile_trains(net, self.client.info, scale=self.scale, dac=self.dac,
                                  substeps=self.opts["substeps"], probe_period=self.opts["probe_period"],
                                  readout_range=self.opts["readout_range"])
        prog = compile_network(net, self.client.info, scale=self.scale, dac=self.dac)
        if self.opts.get("calib") != "on":
            return prog
        import dataclasses

        from hwloop.calibration import CalibrationError

        info = self.client.info
        try:
            cal = self._stored_calibration()
            # the plain compilation's time mapping; compensated weights must not move it
            cprog = compile_calibrated(net, info, cal, scale=prog.scale, dac=self.dac)
        except CalibrationError as exc:
            raise TargetError(f"{self.url.raw}: {exc}") from None
        return dataclasses.replace(cprog, effective=prog.effective)

    def _deploy(self, prog: QifProgram | TrainsProgram) -> None:
        try:
            if isinstance(prog, TrainsProgram):
                self.client.configure(prog.config.pack(), M.TRAIN_CONFIG)
            else:
                self.client.configure(prog.config.pack())
        except TrainsUnsupported as exc:
            raise TargetError(f"{self.url.raw}: {exc}") from None
        except RemoteError as exc:
            raise TargetError(f"{self.url.raw}: chip rejected the configuration: {exc.text}") from None
        except WireError as exc:
            raise TargetError(f"{self.url.raw}: configuring failed: {exc}") from None

    #: (dc, per_sample) injected into the next run only, set by `run_injected`
    _injection = None

    def run_injected(self, t_features: np.ndarray, dc: np.ndarray | None = None,
                     per_sample: np.ndarray | None = None):
        """`run`, with a current injected into every neuron for the whole trial:
        ``dc`` (n_neurons,) for all samples, ``per_sample`` (batch, n_neurons) for each
        (protocol 1.2; added to the deployed program's calibration offsets). Units are
        those of the drive I0; ``chip_info.inject_max`` bounds the total."""
        self._injection = (dc, per_sample)
        try:
            return self.run(t_features)
        finally:
            self._injection = None

    def _expand_injection(self, prog: QifProgram, dc, ps):
        n = sum(prog.sizes)
        try:
            if dc is not None:
                dc = np.asarray(dc, dtype=np.float64).reshape(-1)
                if dc.size != n:
                    raise ValueError(f"DC injection for {dc.size} neurons, the network has {n}")
                dc = prog.per_chip_neuron(dc)
            if ps is not None:
                ps = np.asarray(ps, dtype=np.float64)
                if ps.ndim != 2 or ps.shape[1] != n:
                    raise ValueError(f"per-sample injection of shape {ps.shape}, expected (batch, {n})")
                ps = prog.per_chip_neuron(ps)
        except ValueError as exc:
            raise TargetError(f"{self.url.raw}: bad injection: {exc}") from None
        return dc, ps

    def _run(self, t_features: np.ndarray):
        prog: QifProgram = self._deployed
        ticks = prog.input_ticks(t_features)
        seed = (self.seed * 1_000_003 + self.run_index) & 0xFFFFFFFF
        self.run_index += 1
        dc, ps = self._injection or (None, None)
        if prog.neuron_map is not None:  # a calibrated program's copies: each gets its neuron's injection
            dc, ps = self._expand_injection(prog, dc, ps)
        if prog.dc is not None:
            dc = prog.dc if dc is None else prog.dc + np.asarray(dc, dtype=np.float64)
        try:
            out, stats = self.client.run(ticks, prog.chip_neurons, seed, dc=dc, per_sample=ps)
        except RemoteError as exc:
            raise TargetError(f"{self.url.raw}: run failed: {exc}") from None
        except InjectUnsupported as exc:
            raise TargetError(f"{self.url.raw}: {exc}") from None
        except ValueError as exc:
            raise TargetError(f"{self.url.raw}: bad injection: {exc}") from None
        except (LinkError, ProtocolError) as exc:
            raise TargetError(f"{self.url.raw}: run failed: {exc}") from None
        info = dict(stats, tick=prog.tick, scale_us_per_unit=prog.scale, link=dict(self.client.link.stats))
        return prog.decode(out), float(stats["chip_s"]), info

    def run_raster(self, raster: np.ndarray, probe: bool = False) -> Measurement:
        """Run the deployed spike-train network on an input raster (n_steps, batch, n_features):
        every spike of every layer (`Measurement.events`, binned to the network's dt), the
        first-spike view, the readout's decision variable, and with ``probe=True`` the
        membranes the ADC sampled (`Measurement.probes`, model units; rows are the steps
        ``info['probe_steps']``, every step at probe_period=1). ``probe`` may also be a
        sequence of layer indices: only those layers are sampled and sent (the link
        carries one byte per neuron and step probed), the others' entries are None."""
        import time

        net = self.network
        prog: TrainsProgram = self._deployed
        r = self.checked_raster(raster)
        t0 = time.perf_counter()
        counts, codes, stats = self._run_trains(r, probe)
        T, n, _ = counts.shape
        events, times, a = [], [], 0
        for m in prog.sizes:
            c = counts[:, :, a:a + m]
            t, b, k = np.nonzero(c)
            rep = c[t, b, k].astype(np.int64)
            ev = SpikeEvents(np.repeat(t, rep).astype(np.int32), np.repeat(b, rep).astype(np.int32),
                             np.repeat(k, rep).astype(np.int32), (T, n, m))
            first = ev.first_steps()
            times.append(np.where(first >= 0, first * net.dt, np.inf))
            events.append(ev)
            a += m
        L = len(prog.sizes)
        mask = self._probe_mask(probe)
        layers = [li for li in range(L) if mask >> li & 1]
        v = prog.codes_to_v(codes, layers) if mask else []
        by_layer = dict(zip(layers, v))
        kind, w = net.decoding.kind, net.decoding.window or (0, net.n_steps)
        scores = None
        if kind == "max-membrane":
            steps = prog.probe_steps
            sel = (steps >= w[0]) & (steps < w[1])
            scores = by_layer[L - 1][sel].max(axis=0)
        elif kind == "spike-count":
            scores = counts[w[0]:w[1], :, sum(prog.sizes[:-1]):].sum(0).astype(np.float64)
        if isinstance(probe, bool) or probe is None:
            probes = v if probe else None
        else:
            probes = [by_layer.get(li) for li in range(L)]
        total = time.perf_counter() - t0
        target_s = float(stats["chip_s"])
        info = dict(stats, scale_us_per_unit=prog.scale, probe_steps=prog.probe_steps.tolist(),
                    adc_lsb=[prog.lsb(li) for li in range(L)], link=dict(self.client.link.stats))
        return Measurement(times=times, target=self.url.raw, target_time_s=target_s,
                           host_time_s=max(0.0, total - target_s), info=info, events=events, probes=probes,
                           scores=scores, dt=net.dt)

    def _probe_mask(self, probe) -> int:
        L = len(self._deployed.sizes)
        if isinstance(probe, bool) or probe is None:
            mask = (1 << L) - 1 if probe else 0
        else:
            mask = 0
            for li in probe:
                if isinstance(li, bool) or not isinstance(li, (int, np.integer)) or not -L <= int(li) < L:
                    raise TargetError(f"{self.url.raw}: probe layer {li!r} is not a layer index of this "
                                      f"{L}-layer network")
                mask |= 1 << (int(li) % L)
        if self.network.decoding.kind == "max-membrane":
            mask |= 1 << (L - 1)  # the readout's decision needs its membrane
        return mask

    def _run_trains(self, raster: np.ndarray, probe: bool):
        prog: TrainsProgram = self._deployed
        seed = (self.seed * 1_000_003 + self.run_index) & 0xFFFFFFFF
        self.run_index += 1
        mask = self._probe_mask(probe)
        n_probed = sum(m for li, m in enumerate(prog.sizes) if mask >> li & 1)
        try:
            return self.client.run_trains(raster, sum(prog.sizes), seed, probe_mask=mask,
                                          n_probe_steps=prog.config.n_probe_steps, n_probed=n_probed)
        except TrainsUnsupported as exc:
            raise TargetError(f"{self.url.raw}: {exc}") from None
        except RemoteError as exc:
            raise TargetError(f"{self.url.raw}: run failed: {exc}") from None
        except (LinkError, ProtocolError) as exc:
            raise TargetError(f"{self.url.raw}: run failed: {exc}") from None

    #: the calibration calib=on deploys through, read from the store once per target
    _calibration_file = None

    def _stored_calibration(self):
        """The chip's calibration from the store (`CalibrationError` if unusable), read once:
        a store rewritten while a session runs does not change the deployment under it."""
        if self._calibration_file is None:
            from hwloop.calibration import Calibration, store_path

            info = self.client.info
            self._calibration_file = Calibration.load(store_path(info.chip_id, info.fw_version), info.chip_id,
                                                      info.fw_version)
        return self._calibration_file

    def calibration_identity(self) -> dict | None:
        """With ``calib=on``: chip id, firmware, digest and date of the stored calibration the
        target deploys through (`Calibration.identity`); None with ``calib=off``.
        `TargetError` if the store's file is unusable."""
        if self.opts.get("calib") != "on":
            return None
        from hwloop.calibration import CalibrationError

        try:
            return self._stored_calibration().identity()
        except CalibrationError as exc:
            raise TargetError(f"{self.url.raw}: {exc}") from None

    def state(self) -> dict:
        """The noise-seed counter: a resumed session's runs get the seeds the
        uninterrupted session's runs got, so the chip's temporal noise repeats.
        With ``calib=on`` also the calibration deployed through (`calibration_identity`):
        a resume checks that it is still the one in the store."""
        st = {"run_index": int(self.run_index)}
        cal = self.calibration_identity()
        if cal is not None:
            st["calibration"] = cal
        return st

    def restore_state(self, state: dict) -> None:
        """The counter back; with ``calib=on``, refuses (`TargetError`) a store whose calibration
        is not the one the checkpoint records: the same weights would deploy differently, so
        the session would silently continue on another chip configuration than it trained on.
        (A checkpoint of an hwloop before this record has none, and resumes as it did.)"""
        run_index = state.get("run_index") if isinstance(state, dict) else None
        if (not isinstance(state, dict) or not set(state) <= {"run_index", "calibration"} or "run_index" not in state
                or not isinstance(run_index, int) or isinstance(run_index, bool) or not 0 <= run_index < 2 ** 63):
            raise TargetError(f"{self.url.raw}: target state must be {{'run_index': n >= 0}} (and the calibration "
                              f"of a calib=on session), got {state!r:.80}")
        rec = state.get("calibration")
        if rec is not None:
            if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
                raise TargetError(f"{self.url.raw}: the recorded calibration must name its sha256, got {rec!r:.80}")
            now = self.calibration_identity()
            if now is None:
                raise TargetError(f"{self.url.raw}: the session was deployed through a calibration (calib=on), "
                                  f"this target deploys as is")
            if now["sha256"] != rec["sha256"]:
                from hwloop.calibration import store_path

                info = self.client.info
                raise TargetError(
                    f"{self.url.raw}: the session trained through calibration {rec['sha256'][:12]}... of chip "
                    f"{int(rec.get('chip_id', -1)):#x} (firmware {rec.get('fw_version')}, {rec.get('created')}); "
                    f"the store now holds {now['sha256'][:12]}... ({now['created']}) in "
                    f"{store_path(info.chip_id, info.fw_version)}, which would deploy the same weights differently. "
                    f"Put the session's calibration file back, or start a new session from its network "
                    f"(hwloop loop --init SESSION/best.hwnet ...)")
        self.run_index = run_index

    def status(self) -> dict:
        try:
            return self.client.status()
        except WireError as exc:
            raise TargetError(f"{self.url.raw}: status failed: {exc}") from None

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except Exception:
                pass
            self.port = None

    @classmethod
    def probe(cls) -> list[dict]:
        try:
            from serial.tools import list_ports

            ports = list(list_ports.comports())
        except Exception as exc:  # pragma: no cover - platform specific
            return [{"url": "qif://", "status": "unavailable", "description": f"cannot list serial ports: {exc}"}]
        if not ports:
            return [{"url": "qif://", "status": "no ports", "description": "no serial ports found"}]
        return [{"url": f"qif://{p.device}", "status": "port found",
                 "description": f"serial port ({p.description}); open to handshake"} for p in ports]


class QifEmuBackend(QifSerialBackend):
    scheme = "qif-emu"
    description = "analog QIF chip emulator behind a pseudo-terminal (qif-emu?chip_id=..&mismatch=..&noise=..)"
    OPTIONS = _link_options(baud=EMU_DEFAULT_BAUD) + (
        Option("chip_id", "int", 1, "die identity (0x.. allowed); seeds the fixed-pattern mismatch",
               min=0, max=(1 << 64) - 1, base=0),
        Option("mismatch", "float", DEFAULT_MISMATCH, "relative sigma of the fixed-pattern device mismatch",
               min=0, max=1),
        Option("noise", "float", DEFAULT_NOISE, "temporal noise (V per sqrt(tau))", min=0, max=1),
    )
    takes_path = False
    START_TIMEOUT = 30.0

    #: consecutive emulator deaths survived (by restarting it) before giving up
    MAX_RESPAWNS = 3

    def __init__(self, url: TargetURL):
        self.proc = None
        self._stderr = None
        #: emulator processes restarted after they died (the link alone cannot
        #: recover: the pseudo-terminal goes with the process)
        self.respawns = 0
        self._respawns_in_a_row = 0
        super().__init__(url)

    def _emulator_died(self) -> bool:
        if self.proc is None:
            return False
        if self.proc.poll() is None and _hung_up(self.port):
            # the pty is gone, so the process is exiting; the host can see the hangup a
            # moment before the process can be reaped: wait for it rather than misreport
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        return self.proc.poll() is not None

    def _respawn(self, exc: TargetError) -> None:
        """Start a fresh emulator (same chip, same options), reconnect, re-send
        the deployed configuration. The chip is deterministic given its id and
        the run's noise seed, so a repeated run gives what the lost one would."""
        if self._respawns_in_a_row >= self.MAX_RESPAWNS:
            raise TargetError(f"{self.url.raw}: the emulator died {self._respawns_in_a_row + 1} times in a row; "
                              f"giving up (last error: {exc})") from None
        code = self.proc.returncode
        tail = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
            tail = f": {lines[-1]}" if lines else ""
        print(f"qif-emu: the emulator process exited (code {code}{tail}); restarting it", file=sys.stderr)
        self.close()
        self._connect()
        if self._deployed is not None:
            QifSerialBackend._deploy(self, self._deployed)
        self.respawns += 1
        self._respawns_in_a_row += 1

    def _check_alive(self) -> None:
        """Restart an emulator found dead before a command is sent (cheap: one
        poll), rather than waiting for the link's timeouts to notice."""
        if self._emulator_died():
            self._respawn(TargetError(f"{self.url.raw}: emulator process not running"))

    def _deploy(self, prog: QifProgram) -> None:
        self._check_alive()
        while True:
            try:
                super()._deploy(prog)
                self._respawns_in_a_row = 0
                return
            except TargetError as exc:
                if not self._emulator_died():
                    raise
                self._respawn(exc)

    def _expand_injection(self, prog: QifProgram, dc, ps):
        n = sum(prog.sizes)
        try:
            if dc is not None:
                dc = np.asarray(dc, dtype=np.float64).reshape(-1)
                if dc.size != n:
                    raise ValueError(f"DC injection for {dc.size} neurons, the network has {n}")
                dc = prog.per_chip_neuron(dc)
            if ps is not None:
                ps = np.asarray(ps, dtype=np.float64)
                if ps.ndim != 2 or ps.shape[1] != n:
                    raise ValueError(f"per-sample injection of shape {ps.shape}, expected (batch, {n})")
                ps = prog.per_chip_neuron(ps)
        except ValueError as exc:
            raise TargetError(f"{self.url.raw}: bad injection: {exc}") from None
        return dc, ps

    def _run(self, t_features: np.ndarray):
        self._check_alive()
        first = self.run_index
        while True:
            try:
                out = super()._run(t_features)
                self._respawns_in_a_row = 0
                out[2]["emulator_respawns"] = self.respawns
                return out
            except TargetError as exc:
                if not self._emulator_died():
                    raise
                self.run_index = first  # the repeated run gets the lost run's noise seed
                self._respawn(exc)

    def _run_trains(self, raster: np.ndarray, probe: bool):
        self._check_alive()
        first = self.run_index
        while True:
            try:
                out = super()._run_trains(raster, probe)
                self._respawns_in_a_row = 0
                out[2]["emulator_respawns"] = self.respawns
                return out
            except TargetError as exc:
                if not self._emulator_died():
                    raise
                self.run_index = first  # the repeated run gets the lost run's noise seed
                self._respawn(exc)

    def port_path(self) -> str:
        o = self.opts
        args = [
            "--chip-id", str(o["chip_id"]), "--mismatch", repr(o["mismatch"]), "--noise", repr(o["noise"]),
            "--baud", str(self.baud), "--parent-pid", str(os.getpid()),
        ]
        self.proc, self._stderr, path = spawn_emulator(args, self.START_TIMEOUT)
        return path

    def close(self) -> None:
        super().close()
        if self.proc is not None:
            stop_emulator(self.proc)
            self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    @classmethod
    def probe(cls) -> list[dict]:
        return [{"url": cls.scheme, "status": "available", "description": cls.description}]


def _hung_up(port) -> bool:
    """True when the other end of this pseudo-terminal was closed (POLLHUP)."""
    fd = getattr(port, "fd", None)
    if fd is None:
        return False
    p = select.poll()
    p.register(fd, select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in p.poll(0))


def spawn_emulator(args: list[str], timeout: float = 30.0):
    """Start the emulator process; return (process, stderr file, pty path)."""
    err = tempfile.TemporaryFile(mode="w+b")
    proc = subprocess.Popen([sys.executable, "-m", "hwloop.firmware_models.qif_chip", *args], stdout=subprocess.PIPE,
                            stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
        chunk = os.read(proc.stdout.fileno(), 256) if r else b""
        if not chunk:
            stop_emulator(proc)
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            err.close()
            why = "exited" if proc.poll() is not None else f"printed no port within {timeout:g} s"
            raise TargetError(f"qif-emu: emulator {why} (exit {proc.returncode}): {' / '.join(tail) or 'no output'}")
        line += chunk
    parts = line.decode(errors="replace").split()
    if len(parts) < 2 or parts[0] != "PORT":
        stop_emulator(proc)
        err.close()
        raise TargetError(f"qif-emu: emulator printed {line!r}, expected 'PORT <path>'")
    return proc, err, parts[1]


def stop_emulator(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(3)
    if proc.stdout:
        proc.stdout.close()
