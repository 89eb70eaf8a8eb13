"""The host side of the link: requests, replies, and recovery.

`ChipClient` speaks the request layer over a `hwloop.firmware_models.wire.Link`:
every request carries a fresh request id, and replies are matched on it, so
a late reply to an abandoned request is recognised and dropped. Every wait
is bounded (the link's ACK retries, ``reply_timeout`` between messages of a
reply, ``connect_timeout`` for a handshake).

A batch survives a misbehaving link or a chip that restarts mid-batch:
results arrive in sample order, so after any link failure the client
handshakes again, re-sends the configuration if the chip lost it (its HELLO
reply carries the CRC of what it holds), and asks for the samples it does
not have yet. The chip keys its temporal noise on (run seed, sample index),
so re-run samples come back exactly as they would have the first time: the
host gets the same results as on a clean link. After ``max_recoveries``
failed attempts, or as soon as a recovery's handshake fails (the chip did not
answer for ``connect_timeout`` s, so it is gone rather than disturbed), the
client gives up with a `LinkError` listing what went wrong. A port that the
operating system reports broken (`PortError`: unplugged, the emulator's
pseudo-terminal gone) ends the batch at once: no handshake can cure it.

Everything the chip reports about itself is checked against the documented
ranges before the host uses it (`ChipInfo.validate`).
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np

from hwloop.firmware_models.wire import messages as M
from hwloop.firmware_models.wire.errors import (
    ChipLimitError, LinkError, LinkTimeout, PortError, ProtocolError, RemoteError,
)
from hwloop.firmware_models.wire.link import Link, Oversized

#: chip errors after which the batch continues from its first missing sample
RECOVERABLE = (M.E_NOT_CONFIGURED,)
#: times a request whose reply the chip's link gave up on is sent again
REPEATS = 2


class HandshakeFailed(LinkError):
    """No HELLO_REPLY within ``connect_timeout``."""


class ReplyLost(LinkError):
    """The chip's link gave up sending the reply (ERROR LINK_RESET, protocol 1.1): a link
    failure like any other, reported at once instead of by the reply timeout."""


class InjectUnsupported(ProtocolError):
    """Current injection asked of a chip whose firmware predates protocol 1.2."""


class TrainsUnsupported(ProtocolError):
    """A spike-train configuration or run asked of a chip whose firmware predates protocol 1.4."""


class ChipClient:
    def __init__(self, transport, *, baud: int | None, ack_timeout: float = 0.25, retries: int = 16,
                 reply_timeout: float = 5.0, connect_timeout: float = 10.0, max_payload: int = 1024,
                 max_recoveries: int = 5, name: str = "qif"):
        self.link = Link(transport, baud=baud, ack_timeout=ack_timeout, retries=retries,
                         max_payload=max_payload, max_message=1 << 22, name=name)
        #: payload size the host asks for in HELLO (the link uses the smaller of it and the chip's)
        self.max_payload = int(max_payload)
        self.name = name
        self.reply_timeout = float(reply_timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_recoveries = int(max_recoveries)
        self._req = int.from_bytes(os.urandom(2), "little")
        self.info: M.ChipInfo | None = None
        self._config: bytes | None = None
        self._config_type = M.CONFIG  # or TRAIN_CONFIG (1.4): what `_recover` re-sends
        self._config_crc = 0
        #: protocol minor version this host announces in HELLO (lower it to act as an older host)
        self.hello_minor = M.PROTOCOL_MINOR
        self.events: Counter = Counter()

    # ------------------------------------------------------------ request layer
    def _next_req(self) -> int:
        self._req = (self._req + 1) & 0xFFFF
        return self._req

    def _wait(self, req: int, expect: tuple[int, ...], timeout: float) -> M.Message:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                names = "/".join(M.type_name(t) for t in expect)
                unacked = self.link.in_flight
                why = f" ({unacked} frame(s) still unacknowledged: the chip is not receiving)" if unacked else ""
                raise LinkTimeout(f"{self.name}: no {names} for request {req} within {timeout:.3g} s{why}")
            m = self.link.recv(left)
            if m is None:
                continue
            if m.req != req:
                self.events["stale_replies"] += 1
                continue
            if isinstance(m, Oversized):
                raise ProtocolError(f"{self.name}: the chip's {M.type_name(m.type)} reply to request {req} "
                                    f"exceeds the host's {m.limit}-byte message bound; dropped")
            if m.type == M.ERROR:
                code, name, text = M.unpack_error(m.payload)
                if code == M.E_LINK_RESET:
                    raise ReplyLost(f"{self.name}: the chip gave up sending its reply to request {req}: {text}")
                raise RemoteError(code, name, text)
            if m.type in expect:
                return m
            raise ProtocolError(f"{self.name}: expected {'/'.join(M.type_name(t) for t in expect)} for request {req}, got {M.type_name(m.type)}")

    def request(self, mtype: int, payload: bytes, expect: tuple[int, ...], timeout: float | None = None) -> M.Message:
        """Send one request and wait for its reply. Every request but RUN (which `run`
        resumes itself) is idempotent, so one whose reply the chip's link gave up on is
        sent again, `REPEATS` times at most."""
        for attempt in range(REPEATS + 1):
            req = self._next_req()
            self.link.send(mtype, req, payload)
            try:
                return self._wait(req, expect, self.reply_timeout if timeout is None else timeout)
            except ReplyLost:
                self.events["replies_lost"] += 1
                if attempt == REPEATS:
                    raise

    # ------------------------------------------------------------ commands
    def hello(self, timeout: float | None = None) -> M.ChipInfo:
        m = self.request(M.HELLO, M.pack_hello(M.PROTOCOL_VERSION, self.max_payload, self.hello_minor), (M.HELLO_REPLY,),
                         timeout=timeout)
        info = M.ChipInfo.unpack(m.payload).validate()
        if self.info is not None and (info.boot_id != self.info.boot_id):
            self.events["chip_restarts"] += 1
        if self.info is not None and info.chip_id != self.info.chip_id:
            raise ProtocolError(f"a different chip answered (id {info.chip_id:#x}, expected {self.info.chip_id:#x})")
        self.link.max_payload = min(self.max_payload, info.max_payload)
        self.info = info
        return info

    def connect(self) -> M.ChipInfo:
        """Handshake, retrying until ``connect_timeout``: a chip that is booting gets time."""
        deadline = time.monotonic() + self.connect_timeout
        last: Exception | None = None
        while (left := deadline - time.monotonic()) > 0:
            try:
                return self.hello(timeout=min(self.reply_timeout, left))
            except (RemoteError, PortError, ChipLimitError):
                raise  # it answered (a version mismatch, impossible limits: not cured by waiting), or the port is gone
            except (LinkError, ProtocolError) as exc:
                last = exc
                self.link.reset_peer()
        raise HandshakeFailed(f"{self.name}: no handshake within {self.connect_timeout:g} s (last: {last})")

    def configure(self, payload: bytes, mtype: int = M.CONFIG) -> int:
        """Send a configuration: ``mtype`` CONFIG (first-spike) or TRAIN_CONFIG (1.4, spike trains)."""
        if mtype == M.TRAIN_CONFIG:
            self.require_trains()
        m = self.request(mtype, payload, (M.CONFIG_OK,))
        crc = M.unpack_config_ok(m.payload)
        if crc != M.config_crc(payload):
            raise ProtocolError(f"chip stored configuration CRC {crc:#x}, host sent {M.config_crc(payload):#x}")
        self._config, self._config_type, self._config_crc = payload, mtype, crc
        return crc

    def require_trains(self) -> None:
        """`TrainsUnsupported` unless the chip (and this host's HELLO) speak protocol 1.4."""
        info = self.info
        if info is None or not info.has_trains:
            fw = "unknown" if info is None else f"{info.fw_version} speaks protocol {info.protocol}"
            raise TrainsUnsupported(f"{self.name}: the chip's firmware {fw}; spike trains need protocol "
                                    f"1.{M.TRAINS_MINOR} (update the firmware)")
        if self.hello_minor < M.TRAINS_MINOR:
            raise TrainsUnsupported(f"{self.name}: this host announced protocol 1.{self.hello_minor}; "
                                    f"spike trains need 1.{M.TRAINS_MINOR}")

    def status(self) -> dict:
        return M.unpack_status(self.request(M.STATUS, b"", (M.STATUS_REPLY,)).payload)

    def reset(self) -> None:
        self.request(M.RESET, b"", (M.RESET_OK,))
        self._config, self._config_crc = None, 0

    # ------------------------------------------------------------ running
    def run(self, ticks: np.ndarray, n_neurons: int, seed: int, dc: np.ndarray | None = None,
            per_sample: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """All samples' TDC ticks (n, n_neurons), recovering from link failures.

        ``dc`` (n_neurons,) and ``per_sample`` (n, n_neurons), both optional: current
        injected into every neuron for the whole trial (protocol 1.2, RUN_INJECT); the
        chip refuses a total beyond ``info.inject_max`` (ERROR INJECT_INVALID)."""
        if self._config is None:
            raise ProtocolError("run before configure")
        info = self.info
        n, k = ticks.shape
        inject = None
        if dc is not None or per_sample is not None:
            if info.protocol_minor < 2:
                raise InjectUnsupported(
                    f"{self.name}: the chip's firmware {info.fw_version} speaks protocol {info.protocol}; "
                    f"current injection needs protocol 1.2 (update the firmware)")
            dc = np.zeros(n_neurons) if dc is None else np.asarray(dc, dtype=np.float64).reshape(-1)
            if dc.size != n_neurons:
                raise ValueError(f"DC injection for {dc.size} neurons, the run has {n_neurons}")
            if per_sample is not None:
                per_sample = np.asarray(per_sample, dtype=np.float64)
                if per_sample.shape != (n, n_neurons):
                    raise ValueError(f"per-sample injection of shape {per_sample.shape}, expected {(n, n_neurons)}")
            inject = (dc, per_sample)
        per_sample_bytes = 2 * k + (4 * n_neurons if inject is not None and inject[1] is not None else 0)
        fixed = 64 + (4 * n_neurons if inject is not None else 0)
        per_req = max(1, min(info.max_batch, (info.rx_buffer - fixed) // max(1, per_sample_bytes)))
        out = np.full((n, n_neurons), M.NO_SPIKE, dtype=np.uint16)
        state = {"done": 0, "chip_s": 0.0, "compute_s": 0.0, "result_bytes": 0}
        history: list[str] = []
        # (1.5) the next part's request goes out while this part streams: the chip queues it
        pipeline = info.protocol_minor >= M.PIPELINE_MINOR and self.hello_minor >= M.PIPELINE_MINOR
        queued = None  # (req, start, end) of a request sent ahead
        while state["done"] < n:
            try:
                a = state["done"]
                end = min(n, a + per_req)
                if queued is not None and queued[1:] == (a, end):
                    req = queued[0]
                else:
                    req = self._send_run(ticks, a, end, seed, inject)
                queued = None
                if pipeline and end < n:
                    nxt = min(n, end + per_req)
                    queued = (self._send_run(ticks, end, nxt, seed, inject), end, nxt)
                    self.events["runs_queued"] += 1
                self._run_part(ticks, state, end, seed, out, inject, req=req)
            except PortError:
                raise
            except (LinkError, ProtocolError, RemoteError) as exc:
                queued = None  # the recovery's HELLO cancels it; its replies are stale
                self._recover_or_give_up(exc, history, state["done"], n)
        return out, {"chip_s": state["chip_s"], "compute_s": state["compute_s"], "recoveries": len(history),
                     "errors": history, "result_bytes": state["result_bytes"]}

    def _recover_or_give_up(self, exc: Exception, history: list[str], done: int, n: int) -> None:
        """After ``exc`` stopped a run at sample ``done`` of ``n``: re-raise it if the
        chip's answer is final, give up (LinkError) past ``max_recoveries`` or when
        the chip does not answer a handshake, else recover (`_recover`) so that the
        caller's next attempt resumes; ``history`` collects the errors."""
        if isinstance(exc, RemoteError) and exc.code not in RECOVERABLE:
            raise exc
        history.append(f"{type(exc).__name__}: {exc}")
        self.events["recoveries"] += 1
        if len(history) > self.max_recoveries:
            raise LinkError(f"{self.name}: gave up after {self.max_recoveries} recoveries at sample {done} of {n}; "
                            f"errors: " + " | ".join(history)) from None
        try:
            self._recover()
        except (RemoteError, PortError, ChipLimitError):
            raise
        except HandshakeFailed as exc2:
            history.append(f"{type(exc2).__name__}: {exc2}")
            raise LinkError(f"{self.name}: gave up at sample {done} of {n}: the chip did not answer a handshake "
                            f"within {self.connect_timeout:g} s; errors: " + " | ".join(history)) from None
        except (LinkError, ProtocolError) as exc2:
            history.append(f"{type(exc2).__name__}: {exc2}")  # the next attempt starts over

    def _recover(self) -> None:
        """Handshake again and re-send the configuration if the chip lost it. A
        failure other than the handshake itself is left to the next attempt."""
        self.link.reset_peer()
        info = self.connect()
        if info.config_crc != self._config_crc:
            self.events["reconfigured"] += 1
            self.configure(self._config, self._config_type)

    # ------------------------------------------------------------ spike trains (1.4)
    def run_trains(self, raster: np.ndarray, n_neurons: int, seed: int, probe_mask: int = 0,
                   n_probe_steps: int = 0, n_probed: int = 0) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """Every spike of every neuron, ``(n_steps, n, n_neurons)`` spike counts per step, and,
        with ``probe_mask`` (bit l: layer l), the ADC codes ``(n, n_probe_steps, n_probed)``;
        recovering from link failures like `run` (the chip re-runs missing samples exactly)."""
        if self._config is None or self._config_type != M.TRAIN_CONFIG:
            raise ProtocolError("run_trains before a spike-train configure")
        self.require_trains()
        info = self.info
        T, n, k = raster.shape
        counts, idx = M.raster_events(raster)
        # requests sized to the chip's receive buffer (and batch limit)
        ib = max(T * k - 1, 0).bit_length()
        cb = max(int(counts.max(initial=0)).bit_length(), 1)
        cum = np.cumsum(counts * ib + cb)
        room = 8 * (info.rx_buffer - 64)
        out = np.zeros((T, n, n_neurons), dtype=np.uint8)
        codes = np.zeros((n, n_probe_steps, n_probed), dtype=np.uint16) if probe_mask else None
        starts = np.r_[0, np.cumsum(counts)]
        state = {"done": 0, "chip_s": 0.0, "compute_s": 0.0, "result_bytes": 0, "probe_bytes": 0, "request_bytes": 0}
        history: list[str] = []
        while state["done"] < n:
            a = state["done"]
            base = cum[a - 1] if a else 0
            end = min(n, a + info.max_batch, max(a + 1, int(np.searchsorted(cum, base + room, side="right"))))
            payload = M.pack_run_trains(seed, a, k, T, counts[a:end], idx[starts[a]:starts[end]], probe_mask)
            try:
                self._run_trains_part(payload, state, end, out, codes, probe_mask)
            except PortError:
                raise
            except (LinkError, ProtocolError, RemoteError) as exc:
                self._recover_or_give_up(exc, history, state["done"], n)
        return out, codes, {"chip_s": state["chip_s"], "compute_s": state["compute_s"], "recoveries": len(history),
                            "errors": history, "result_bytes": state["result_bytes"],
                            "probe_bytes": state["probe_bytes"], "request_bytes": state["request_bytes"]}

    def _run_trains_part(self, payload, state, end, out, codes, probe_mask) -> None:
        start = state["done"]
        T, _, m = out.shape
        req = self._next_req()
        self.link.send(M.RUN_TRAINS, req, payload)
        state["request_bytes"] += len(payload)
        pending = None  # (first, n, counts, idx) of a TRAIN_EVENTS whose PROBE_CODES is due
        while True:
            msg = self._wait(req, (M.TRAIN_EVENTS, M.PROBE_CODES, M.RUN_DONE), self.reply_timeout)
            if msg.type == M.RUN_DONE:
                n_done, chip_s, compute_s = M.unpack_done(msg.payload)
                if pending is not None or state["done"] != end or n_done != end - start:
                    raise ProtocolError(f"RUN_DONE after samples {start}..{state['done']}, expected ..{end}")
                state["chip_s"] += chip_s
                state["compute_s"] += compute_s
                return
            if msg.type == M.TRAIN_EVENTS:
                if pending is not None:
                    raise ProtocolError("TRAIN_EVENTS while the PROBE_CODES of the last one are due")
                first, mm, steps, cnt, idx = M.unpack_train_events(msg.payload)
                if mm != m or steps != T:
                    raise ProtocolError(f"TRAIN_EVENTS of {steps} steps x {mm} neurons, expected {T} x {m}")
                if first != state["done"] or first + cnt.size > end or cnt.size == 0:
                    raise ProtocolError(f"TRAIN_EVENTS for samples {first}.. while expecting {state['done']}..{end}")
                state["result_bytes"] += len(msg.payload)
                if probe_mask:
                    pending = (first, cnt, idx)
                    continue
                self._store_events(out, first, cnt, idx)
                state["done"] = first + cnt.size
                continue
            # PROBE_CODES
            first, mask, c = M.unpack_probe_codes(msg.payload)
            if pending is None or first != pending[0] or c.shape[0] != pending[1].size or mask != probe_mask:
                raise ProtocolError(f"PROBE_CODES for samples {first}.. (mask {mask:#x}) out of turn")
            if c.shape[1:] != codes.shape[1:]:
                raise ProtocolError(f"PROBE_CODES of shape {c.shape[1:]} per sample, expected {codes.shape[1:]}")
            state["probe_bytes"] += len(msg.payload)
            self._store_events(out, first, pending[1], pending[2])
            codes[first:first + c.shape[0]] = c
            state["done"] = first + c.shape[0]
            pending = None

    @staticmethod
    def _store_events(out, first, cnt, idx) -> None:
        T, _, m = out.shape
        s = first + np.repeat(np.arange(cnt.size), cnt)
        out[:, first:first + cnt.size] = 0
        np.add.at(out, (idx // m, s, idx % m), 1)

    def _send_run(self, ticks, start, end, seed, inject=None) -> int:
        """Send the RUN (or RUN_INJECT) of samples start..end-1; returns its request id."""
        req = self._next_req()
        if inject is None:
            self.link.send(M.RUN, req, M.pack_run(seed, start, ticks[start:end]))
        else:
            dc, ps = inject
            self.link.send(M.RUN_INJECT, req, M.pack_run_inject(
                seed, start, ticks[start:end], dc, None if ps is None else ps[start:end]))
        return req

    def _run_part(self, ticks, state, end, seed, out, inject=None, req=None) -> None:
        """Receive the results of samples state["done"]..end-1: of request ``req``
        if it was sent already, else of a RUN sent now."""
        start = state["done"]
        if req is None:
            req = self._send_run(ticks, start, end, seed, inject)
        while True:
            m = self._wait(req, (M.RESULT, M.RESULT_COMPACT, M.RUN_DONE), self.reply_timeout)
            if m.type == M.RUN_DONE:
                n_done, chip_s, compute_s = M.unpack_done(m.payload)
                if state["done"] != end or n_done != end - start:
                    raise ProtocolError(f"RUN_DONE after samples {start}..{state['done']}, expected ..{end}")
                state["chip_s"] += chip_s
                state["compute_s"] += compute_s
                return
            if m.type == M.RESULT_COMPACT:  # (1.3) only the fired neurons' ticks
                first, res = M.unpack_result_compact(m.payload)
                state["result_bytes"] += len(m.payload) - M.COMPACT_HEADER
            else:
                first, res = M.unpack_result(m.payload)
                state["result_bytes"] += len(m.payload) - M.RESULT_HEADER
            if res.shape[1] != out.shape[1]:
                raise ProtocolError(f"RESULT has {res.shape[1]} neurons per sample, expected {out.shape[1]}")
            if first != state["done"] or first + res.shape[0] > end:
                raise ProtocolError(f"RESULT for samples {first}.. while expecting {state['done']}..{end}")
            out[first : first + res.shape[0]] = res
            state["done"] = first + res.shape[0]
