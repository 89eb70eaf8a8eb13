"""The firmware: the command loop on the chip side of the serial link.

One request at a time, in the order they arrive::

    HELLO   -> HELLO_REPLY (protocol + firmware version, chip id, boot id, limits)
    CONFIG  -> CONFIG_OK (CRC of the stored configuration) | ERROR CONFIG_INVALID
    RUN     -> RESULT ... RESULT, RUN_DONE | ERROR
               (RESULT_COMPACT instead of RESULT to a host whose HELLO said minor >= 3)
    RUN_INJECT (1.2) -> as RUN, with a per-neuron injected current | ERROR INJECT_INVALID
    STATUS  -> STATUS_REPLY
    RESET   -> RESET_OK (configuration cleared)
    TRAIN_CONFIG (1.4) -> CONFIG_OK | ERROR CONFIG_INVALID   (spike-train mode; replaces a CONFIG)
    RUN_TRAINS (1.4)   -> (TRAIN_EVENTS [PROBE_CODES]) ... RUN_DONE | ERROR
                          (the spike-train requests are refused with ERROR UNSUPPORTED_VERSION to a
                          host whose HELLO said minor < 4: it could not read the replies)

Buffers are bounded: an incoming message larger than ``spec.rx_buffer`` is
dropped by the link and answered with ERROR BUFFER_OVERFLOW; a RUN may hold
at most ``spec.max_batch`` samples. Every failure becomes a typed ERROR reply,
never a dead firmware. A RUN streams its results in messages of one frame
each while the next block is computed in the background (like a chip whose
DMA drains the TDC FIFO while the array runs). A new request arriving while a
RUN streams cancels that RUN: the host only sends one when it gave up on it;
except (protocol 1.5) that a host whose HELLO said minor >= 5 may send its
next RUN or RUN_INJECT while the last one streams: it waits in the receive
queue and is served after the RUN_DONE, so the line carries no gap between
runs (any other request still cancels).
If the host stops acknowledging, the link's retries run out and the firmware
returns to idle; a host that speaks protocol 1.1 is then told so at once
(ERROR LINK_RESET for the request being answered), so it asks again instead
of waiting out its reply timeout. A 1.0 host is not sent that code (it would
not know it) and finds out by its timeout, as before.
"""

from __future__ import annotations

import os
import time

import numpy as np
from concurrent.futures import ThreadPoolExecutor

from ..wire import messages as M
from ..wire.errors import LinkError, ProtocolError
from ..wire.frame import MAX_PAYLOAD
from ..wire.link import Link, Oversized
from .core import AnalogCore, ConfigInvalid
from .spec import FW_MAJOR, FW_MINOR, ChipSpec
from .trains_core import TrainsCore


def compact_pieces(res: np.ndarray, max_payload: int) -> list[tuple[int, int]]:
    """Consecutive sample ranges of ``res`` (n, m ticks) whose RESULT_COMPACT
    messages each fit one frame of ``max_payload`` bytes (at least one sample each).
    Sized with the bit widths of the whole block, which bound each piece's own."""
    n, m = res.shape
    fired = (res != M.NO_SPIKE).sum(axis=1)
    max_tick = int(res[res != M.NO_SPIKE].max(initial=0))
    tb = max_tick.bit_length()
    ib = max(n * m - 1, 0).bit_length()
    room = 8 * (max_payload - M.COMPACT_HEADER - 2)  # bits, less two bytes of padding
    bitmap = np.cumsum(m + fired * tb)
    pairs = np.cumsum(fired * (ib + tb))
    out, a = [], 0
    while a < n:
        base_b = bitmap[a - 1] if a else 0
        base_p = pairs[a - 1] if a else 0
        j = max(np.searchsorted(bitmap, base_b + room, side="right"),
                np.searchsorted(pairs, base_p + room, side="right"))
        b = min(n, max(a + 1, int(j)))
        out.append((a, b))
        a = b
    return out


class Firmware:
    #: samples in the first compute chunk of a RUN: the UART starts after it (each chunk costs
    #: the integrator's per-step overhead again, so smaller is not faster for a batch of 50)
    FIRST_CHUNK = 16

    def __init__(self, transport, *, spec: ChipSpec, chip_id: int, mismatch: float, noise: float, baud: int = 0,
                 ack_timeout: float = 0.25, retries: int = 16, engine: str = "auto"):
        self.spec = spec
        self.chip_id = int(chip_id)
        self.baud = int(baud)
        self.link = Link(transport, baud=baud or None, ack_timeout=ack_timeout, retries=retries,
                         max_payload=1024, max_message=spec.rx_buffer, name="chip")
        self.core = AnalogCore(spec, chip_id, mismatch, noise, engine=engine)  # engine: its integrator
        self.trains = TrainsCore(spec, chip_id, mismatch, noise)
        self.boot_id = int.from_bytes(os.urandom(4), "little") or 1
        self.config_crc = 0
        self.counters = {"runs": 0, "samples": 0}
        self.host_minor = 0  # protocol minor version of the host, from its last HELLO
        self.t_boot = time.monotonic()
        self._pool = ThreadPoolExecutor(max_workers=1)
        #: (1.5) (message, parsed RUN, future of its first chunk) of a queued RUN computed ahead
        self._ahead = None

    # ------------------------------------------------------------ loop
    def serve(self, should_stop=lambda: False) -> None:
        while not should_stop():
            try:
                msg = self.link.recv(0.2)
                if msg is not None:
                    self.handle(msg)
            except LinkError:
                continue  # the host stopped answering; wait for its next request

    def error(self, req: int, code: int, text: str) -> None:
        self.link.send(M.ERROR, req, M.pack_error(code, text))

    def handle(self, msg: M.Message) -> None:
        req = msg.req
        ahead = self._ahead
        if ahead is not None and ahead[0] is not msg:
            # computed ahead for a RUN that is not the one served now: never leave it
            # running into another command (it may reconfigure the core)
            self._ahead = None
            ahead[2].cancel() or ahead[2].exception()
        try:
            if isinstance(msg, Oversized):
                return self.error(req, M.E_BUFFER_OVERFLOW,
                                  f"{M.type_name(msg.type)} message exceeds the {msg.limit}-byte receive buffer")
            handler = {
                M.HELLO: self.on_hello, M.CONFIG: self.on_config, M.RUN: self.on_run,
                M.STATUS: self.on_status, M.RESET: self.on_reset,
                M.RUN_INJECT: self.on_run_inject,
                M.TRAIN_CONFIG: self.on_train_config, M.RUN_TRAINS: self.on_run_trains,
            }.get(msg.type)
            if handler is None:
                return self.error(req, M.E_UNKNOWN_COMMAND, f"unknown command {M.type_name(msg.type)}")
            handler(req, msg.payload)
        except ProtocolError as exc:
            self.error(req, M.E_BAD_MESSAGE, str(exc))
        except LinkError as exc:
            if self.host_minor < 1:
                raise
            # the reply is lost; say so (as a fresh SYNC frame) so the host asks again now
            self.error(req, M.E_LINK_RESET, f"reply to {M.type_name(msg.type)} abandoned: {exc}")
        except Exception as exc:  # firmware must answer, not die
            self.error(req, M.E_INTERNAL, f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ commands
    def info(self) -> M.ChipInfo:
        s = self.spec
        return M.ChipInfo(
            protocol_version=M.PROTOCOL_VERSION, protocol_minor=M.PROTOCOL_MINOR, fw_major=FW_MAJOR, fw_minor=FW_MINOR, chip_id=self.chip_id,
            boot_id=self.boot_id, config_crc=self.config_crc, max_payload=self.link.max_payload,
            max_neurons=s.max_neurons, max_fanin=s.max_fanin, max_layers=s.max_layers, max_bias=s.max_bias,
            max_inputs=s.max_inputs, dac_bits=s.dac_bits, n_ranges=s.n_ranges, w_fs_min=s.w_fs_min,
            tdc_lsb_us=s.tdc_lsb_us, tdc_bits=s.tdc_bits, tau_min_us=s.tau_min_us, tau_max_us=s.tau_max_us,
            i0_min=s.i0_min, i0_max=s.i0_max, baud=self.baud, max_batch=s.max_batch, rx_buffer=s.rx_buffer,
            inject_max=s.inject_max, train_max_steps=s.train_max_steps, train_max_substeps=s.train_max_substeps,
            train_max_step_ticks=s.train_max_step_ticks, syn_tau_min_us=s.syn_tau_min_us,
            syn_tau_max_us=s.syn_tau_max_us, train_i0_min=s.train_i0_min, train_i0_max=s.train_i0_max,
            v_peak_max=s.v_peak_max, max_refractory=s.max_refractory, max_probe_period=s.max_probe_period,
            adc_bits=s.adc_bits, max_events=s.max_events,
        )

    def on_hello(self, req: int, payload: bytes) -> None:
        version, want, minor = M.unpack_hello(payload)
        if version != M.PROTOCOL_VERSION:
            return self.error(req, M.E_VERSION,
                              f"host speaks protocol v{version}, firmware {FW_MAJOR}.{FW_MINOR} speaks "
                              f"v{M.PROTOCOL_VERSION}.{M.PROTOCOL_MINOR}")
        self.host_minor = minor
        self.link.max_payload = max(64, min(int(want), MAX_PAYLOAD))
        self.link.send(M.HELLO_REPLY, req, self.info().pack())

    def on_config(self, req: int, payload: bytes) -> None:
        cfg = M.ChipConfig.unpack(payload)
        self.trains.cfg = None  # one configuration at a time: this one replaces a spike-train one
        try:
            self.core.configure(cfg)
        except ConfigInvalid as exc:
            self.config_crc = 0
            self.core.cfg = None
            return self.error(req, M.E_CONFIG_INVALID, str(exc))
        self.config_crc = M.config_crc(payload)
        self.link.send(M.CONFIG_OK, req, M.pack_config_ok(self.config_crc))

    def on_reset(self, req: int, payload: bytes) -> None:
        self.core.cfg = None
        self.trains.cfg = None
        self.config_crc = 0
        self.link.send(M.RESET_OK, req, b"")

    def on_status(self, req: int, payload: bytes) -> None:
        st = self.link.stats
        self.link.send(M.STATUS_REPLY, req, M.pack_status(
            boot_id=self.boot_id, config_crc=self.config_crc, runs=self.counters["runs"],
            samples=self.counters["samples"], frames_rx=st["frames_rx"], frame_errors=st["frame_errors"],
            retransmits=st["retransmits"], uptime_ms=int(1000 * (time.monotonic() - self.t_boot))))

    def on_run_inject(self, req: int, payload: bytes) -> None:
        if self.core.cfg is None:
            return self.error(req, M.E_NOT_CONFIGURED, "RUN_INJECT before CONFIG (chip was reset or restarted)")
        seed, first, ticks, dc, ps = M.unpack_run_inject(payload)
        m = self.core.cfg.n_neurons
        if dc.size != m:
            return self.error(req, M.E_INJECT_INVALID, f"DC injection for {dc.size} neurons, configuration has {m}")
        total = dc[None, :] if ps is None else dc[None, :] + ps
        lim = self.spec.inject_max
        if not np.all(np.isfinite(total)):
            return self.error(req, M.E_INJECT_INVALID, "injected current is not finite")
        worst = float(np.abs(total).max(initial=0.0))
        if worst > lim * (1 + 1e-6):
            return self.error(req, M.E_INJECT_INVALID, f"injected current {worst:.4g} beyond +-{lim:g}")
        inject = np.broadcast_to(total, (ticks.shape[0], m))
        self.on_run(req, None, (seed, first, ticks), inject)

    def _compute(self, ticks, seed, first, inject, a, b):
        c0 = time.perf_counter()
        res = self.core.run(ticks[a:b], seed, first + a, None if inject is None else inject[a:b])
        return res, time.perf_counter() - c0

    def _compute_ahead(self) -> None:
        """(1.5) Start the first chunk of a RUN queued behind the one streaming, so
        that its results can leave right after this RUN_DONE. The noise depends
        only on (seed, sample index), so computing early changes no result; a RUN
        that would be refused (bad shape, too large) is left to `on_run`."""
        if self.host_minor < M.PIPELINE_MINOR or self._ahead is not None or not self.link.inbox:
            return
        m = self.link.inbox[0]
        if isinstance(m, Oversized) or m.type != M.RUN or self.core.cfg is None:
            return
        try:
            seed, first, ticks = M.unpack_run(m.payload)
        except ProtocolError:
            return
        n = ticks.shape[0]
        if n == 0 or n > self.spec.max_batch or ticks.shape[1] != self.core.cfg.n_inputs:
            return
        self._ahead = (m, (seed, first, ticks),
                       self._pool.submit(self._compute, ticks, seed, first, None, 0, min(n, self.FIRST_CHUNK)))

    def _moved_on(self) -> bool:
        """A message arrived while a RUN streams: the host gave up on the RUN, unless
        it pipelines (its HELLO said minor >= 5) and every message waiting is a RUN
        or RUN_INJECT, queued to be served after this one."""
        if not self.link.inbox:
            return False
        if self.host_minor < M.PIPELINE_MINOR:
            return True
        return any(isinstance(m, Oversized) or m.type not in (M.RUN, M.RUN_INJECT) for m in self.link.inbox)

    def on_run(self, req: int, payload: bytes | None, parsed=None, inject=None) -> None:
        if self.core.cfg is None:
            return self.error(req, M.E_NOT_CONFIGURED, "RUN before CONFIG (chip was reset or restarted)")
        ahead, self._ahead = self._ahead, None
        if ahead is not None and payload is not None and ahead[0].payload is payload:
            parsed = ahead[1]
        elif ahead is not None:
            ahead[2].cancel() or ahead[2].exception()
            ahead = None
        seed, first, ticks = M.unpack_run(payload) if parsed is None else parsed
        cfg = self.core.cfg
        n = ticks.shape[0]
        if ticks.shape[1] != cfg.n_inputs:
            return self.error(req, M.E_BAD_MESSAGE, f"RUN has {ticks.shape[1]} inputs per sample, configuration has {cfg.n_inputs}")
        if n > self.spec.max_batch:
            return self.error(req, M.E_BATCH_TOO_LARGE, f"{n} samples, firmware buffers at most {self.spec.max_batch}")
        n_neur = cfg.n_neurons
        compact = self.host_minor >= 3  # (1.3) only the fired neurons' ticks
        per_msg = max(1, (self.link.max_payload - M.RESULT_HEADER) // (2 * n_neur))
        # compute chunks grow (16, 64, 256, 256, ...) so the first results leave
        # early and the UART is busy while later chunks are computed; the noise does
        # not depend on the chunking (it is keyed on absolute sample index)
        bounds = []
        a, size = 0, self.FIRST_CHUNK
        while a < n:
            b = min(n, a + size)
            bounds.append((a, b))
            a, size = b, min(4 * size, self.core.BLOCK)
        compute_s = 0.0

        def compute(a, b):
            return self._compute(ticks, seed, first, inject, a, b)

        fut = None
        if bounds:
            # the first chunk, (0, FIRST_CHUNK) as `_compute_ahead` computed it while the last RUN streamed
            fut = ahead[2] if ahead is not None else self._pool.submit(compute, *bounds[0])
        try:
            for i, (a, b) in enumerate(bounds):
                res, cs = fut.result()
                compute_s += cs
                fut = self._pool.submit(compute, *bounds[i + 1]) if i + 1 < len(bounds) else None
                pieces = (compact_pieces(res, self.link.max_payload) if compact
                          else range(0, b - a, per_msg))
                for k in pieces:
                    if self._moved_on():  # the host gave up on this run: cancel it
                        return
                    if fut is None and self._ahead is None:
                        self._compute_ahead()  # the integrator is free while the last chunk streams
                    if compact:
                        k0, k1 = k
                        self.link.send(M.RESULT_COMPACT, req, M.pack_result_compact(first + a + k0, res[k0:k1]))
                    else:
                        self.link.send(M.RESULT, req, M.pack_result(first + a + k, res[k : k + per_msg]))
        finally:
            # never leave a computation running into the next command (it may reconfigure the core)
            if fut is not None:
                fut.cancel() or fut.exception()
        self.counters["runs"] += 1
        self.counters["samples"] += n
        chip_s = n * cfg.trial_ticks * self.spec.tdc_lsb_us * 1e-6
        self.link.send(M.RUN_DONE, req, M.pack_done(n, chip_s, compute_s))

    # ------------------------------------------------------------ spike-train mode (1.4)
    def _trains_refused(self, req: int, mtype: int) -> bool:
        if self.host_minor >= M.TRAINS_MINOR:
            return False
        self.error(req, M.E_VERSION, f"{M.type_name(mtype)} needs protocol 1.{M.TRAINS_MINOR}; this host's HELLO "
                                     f"said 1.{self.host_minor} (firmware {FW_MAJOR}.{FW_MINOR} speaks "
                                     f"v{M.PROTOCOL_VERSION}.{M.PROTOCOL_MINOR})")
        return True

    def on_train_config(self, req: int, payload: bytes) -> None:
        if self._trains_refused(req, M.TRAIN_CONFIG):
            return
        cfg = M.TrainsConfig.unpack(payload)
        self.core.cfg = None  # replaces a first-spike configuration
        try:
            self.trains.configure(cfg)
        except ConfigInvalid as exc:
            self.config_crc = 0
            self.trains.cfg = None
            return self.error(req, M.E_CONFIG_INVALID, str(exc))
        self.config_crc = M.config_crc(payload)
        self.link.send(M.CONFIG_OK, req, M.pack_config_ok(self.config_crc))

    def on_run_trains(self, req: int, payload: bytes) -> None:
        if self._trains_refused(req, M.RUN_TRAINS):
            return
        cfg = self.trains.cfg
        if cfg is None:
            return self.error(req, M.E_NOT_CONFIGURED, "RUN_TRAINS without a TRAIN_CONFIG (chip was reset, "
                                                       "restarted or holds a first-spike configuration)")
        seed, first, k, steps, counts, idx, mask = M.unpack_run_trains(payload)
        n = counts.size
        if k != cfg.n_inputs or steps != cfg.n_steps:
            return self.error(req, M.E_BAD_MESSAGE, f"RUN_TRAINS of {steps} steps x {k} inputs, configuration "
                                                    f"has {cfg.n_steps} x {cfg.n_inputs}")
        if n > self.spec.max_batch:
            return self.error(req, M.E_BATCH_TOO_LARGE, f"{n} samples, firmware buffers at most {self.spec.max_batch}")
        if mask >> len(cfg.layers):
            return self.error(req, M.E_BAD_MESSAGE, f"probe mask {mask:#x} names layers beyond the {len(cfg.layers)} configured")
        raster = M.events_raster(counts, idx, steps, k)  # (steps, n, k)
        m = cfg.n_neurons
        probed = [li for li in range(len(cfg.layers)) if mask >> li & 1]
        m_probe = sum(cfg.layers[li].n_out for li in probed)
        # compute chunks end on noise-block boundaries (each chunk draws its blocks' noise once),
        # except the first few, which grow (16, 64, ...) so that the UART starts early and stays
        # busy (the first block's noise is drawn once per chunk of it)
        B = self.trains.BLOCK
        bounds, a, size = [], 0, self.FIRST_CHUNK
        while a < n:
            b = min(n, (first + a) // B * B + B - first, a + size)
            bounds.append((a, b))
            a, size = b, 4 * size
        compute_s = 0.0

        def compute(a, b):
            c0 = time.perf_counter()
            res = self.trains.run(raster[:, a:b], seed, first + a, probe_mask=mask)
            return res, time.perf_counter() - c0

        fut = self._pool.submit(compute, *bounds[0]) if bounds else None
        try:
            for i, (a, b) in enumerate(bounds):
                res, cs = fut.result()
                compute_s += cs
                fut = self._pool.submit(compute, *bounds[i + 1]) if i + 1 < len(bounds) else None
                per = np.ascontiguousarray(np.moveaxis(res.counts, 1, 0)).reshape(b - a, steps * m)
                s_i, j = np.nonzero(per)
                rep = per[s_i, j].astype(np.int64)
                ev_counts = np.bincount(s_i, weights=rep, minlength=b - a).astype(np.int64)
                ev_idx = np.repeat(j, rep)
                if ev_counts.max(initial=0) > self.spec.max_events:
                    worst = int(np.argmax(ev_counts))
                    return self.error(req, M.E_EVENT_OVERFLOW, f"sample {first + a + worst} fired {int(ev_counts[worst])} "
                                                               f"spikes, the event buffer holds {self.spec.max_events}")
                ends = np.cumsum(ev_counts)
                for k0, k1 in self._train_pieces(ev_counts, m, steps, m_probe, cfg.n_probe_steps):
                    if self.link.inbox:  # the host moved on: cancel this run
                        return
                    e0 = int(ends[k0 - 1]) if k0 else 0
                    self.link.send(M.TRAIN_EVENTS, req, M.pack_train_events(
                        first + a + k0, m, steps, ev_counts[k0:k1], ev_idx[e0:int(ends[k1 - 1])]))
                    if mask:
                        self.link.send(M.PROBE_CODES, req, M.pack_probe_codes(
                            first + a + k0, res.codes[k0:k1], self.spec.adc_bits, mask))
        finally:
            if fut is not None:
                fut.cancel() or fut.exception()
        self.counters["runs"] += 1
        self.counters["samples"] += n
        chip_s = n * cfg.n_steps * cfg.step_ticks * self.spec.tdc_lsb_us * 1e-6
        self.link.send(M.RUN_DONE, req, M.pack_done(n, chip_s, compute_s))

    #: a PROBE_CODES message holds at most this many frames' worth of codes (or one sample)
    PROBE_FRAMES = 8

    def _train_pieces(self, counts, m, steps, m_probe, n_ps):
        """Consecutive sample ranges: each TRAIN_EVENTS fits one frame (or holds one sample,
        then the link cuts it into several), each PROBE_CODES at most `PROBE_FRAMES` frames."""
        room = self.link.max_payload
        n = counts.size
        ib = max(m * steps - 1, 0).bit_length()
        cb = int(counts.max(initial=0)).bit_length()
        ev_bits = np.cumsum(counts * ib + cb)
        per_probe = n_ps * m_probe * self.spec.adc_bits
        probe_room = 8 * (self.PROBE_FRAMES * room - M.PROBE_HEADER)
        max_probe = max(1, probe_room // per_probe) if per_probe else n
        out, a = [], 0
        ev_room = 8 * (room - M.TRAIN_EVENTS_HEADER - 2)
        while a < n:
            base = ev_bits[a - 1] if a else 0
            j = int(np.searchsorted(ev_bits, base + ev_room, side="right"))
            b = min(n, max(a + 1, j), a + max_probe)
            out.append((a, b))
            a = b
        return out
