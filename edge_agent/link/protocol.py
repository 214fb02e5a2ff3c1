"""The agent's side of the link as a pure state machine: no sockets, no clock reads.

The driver (:mod:`edge_agent.link.client`) feeds it what happened (a connection opened or closed, a text
frame arrived, time passed, events were stored, a command finished) with the current time, and performs
the :data:`Effect` values it returns. Everything about *when* and *what* to send lives here, so it is
tested with a fake clock in microseconds.

Per connection: send ``hello``; on ``welcome`` drop what the cloud already holds (``acked_seq``), then
replay the outbox in order, in ``batch_events`` batches (each saying the seq it continues from,
``after_seq``, so the cloud can ack only a gap-free prefix), keeping at most ``window_events`` unacknowledged
events in flight. ``ack`` deletes from the outbox and opens the window. Silence is filled with a
``heartbeat`` after ``heartbeat_idle`` seconds (API Gateway closes a connection idle for 10 minutes and
only data messages are known to count). Before API Gateway's 2-hour cap the link is renewed
*make-before-break*: a second connection is opened, sending pauses on the old one so its acks drain, and
the old one is closed only once the new one has been welcomed (the cloud's registry takes the newest).

Anything the cloud sends that cannot be decoded is logged (once per kind and connection), answered with an
``error`` and the connection kept.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from wire_protocol.call_events import CallStarted
from wire_protocol.messages import (
    Ack,
    AgentMessage,
    AgentSettings,
    CloudMessage,
    Command,
    CommandResult,
    ErrorMessage,
    Heartbeat,
    Hello,
    ProtocolError,
    ReconcileReport,
    ReconcileResend,
    RecordingAck,
    RecordingReady,
    RecordingResult,
    SequencedEvent,
    UploadRecording,
    Welcome,
    batch_events,
    decode_cloud_message,
    encode,
)

__all__ = [
    "ApplySettings",
    "Close",
    "Effect",
    "LinkProtocol",
    "LinkTimings",
    "OpenCandidate",
    "OutboxPort",
    "RecordingMessage",
    "RunCommand",
    "Send",
]

log = logging.getLogger(__name__)


class OutboxPort(Protocol):
    """What the link needs from the outbox (:class:`edge_agent.outbox.Outbox` fits)."""

    @property
    def depth(self) -> int: ...
    @property
    def last_seq(self) -> int: ...
    def pending(self, after_seq: int = 0, limit: int = 1000) -> list[SequencedEvent]: ...
    def ack(self, up_to_seq: int) -> int: ...
    def renumber_after(self, floor: int, *, force: bool = False) -> int: ...
    @property
    def welcomed(self) -> bool: ...
    def mark_welcomed(self) -> None: ...
    def reject(self, seq: int, reason: str) -> None: ...
    def undelivered_results(self, finished_after: float = 0.0) -> list[CommandResult]: ...
    def mark_delivered(self, command_ids: Sequence[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class LinkTimings:
    """Seconds, except ``window_events``. Defaults fit API Gateway (10 min idle, 2 h cap)."""

    heartbeat_idle: float = 240.0  # send a heartbeat after this long without sending anything
    welcome_timeout: float = 30.0  # a connection not welcomed by then is closed
    ack_timeout: float = 60.0  # events in flight this long without any ack are sent again
    error_retry: float = 10.0  # after the cloud reported an error about our events, resend them this late
    max_age: float = 105 * 60.0  # renew a connection this old (API Gateway cuts at 120 min) ...
    max_age_jitter: float = 5 * 60.0  # ... plus or minus this, so agents do not renew in lockstep
    handover_timeout: float = 60.0  # a renewal not welcomed by then is abandoned (and retried)
    handover_retry: float = 60.0
    window_events: int = 2000  # unacknowledged events in flight on one connection
    #: Unacknowledged batches in flight. Events stored while that many wait for their ack go out together in
    #: the next batch (Nagle's idea): no delay when the link is idle, far fewer messages under load, and each
    #: message costs the cloud a Lambda invocation and its reads.
    window_batches: int = 2
    #: An inbound call's start, alone in the outbox, may wait this long for what follows it (its phones start
    #: ringing a few milliseconds later): one message instead of two, and nothing on the ring's path waits,
    #: since any other event sends it at once. Off (0) by default: with 0.02 the load benchmark's calls cost
    #: one portal about 7 % more Bitrix24 requests under its rate limit, not yet explained (docs/performance.md).
    start_linger: float = 0.0
    result_resend_window: float = 3600.0  # unconfirmed command results this recent are resent on reconnect


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    conn: int
    reason: str
    token_refused: bool = False


@dataclass(frozen=True, slots=True)
class OpenCandidate:
    """Open a second connection now (make-before-break renewal); report it with ``connection_opened``."""


@dataclass(frozen=True, slots=True)
class RunCommand:
    command: Command


@dataclass(frozen=True, slots=True)
class ApplySettings:
    settings: AgentSettings


@dataclass(frozen=True, slots=True)
class RecordingMessage:
    """The cloud answered about a recording (``upload_recording``, ``recording_ack``): the uploader's business."""

    message: UploadRecording | RecordingAck


@dataclass(frozen=True, slots=True)
class ReconcileAnswer:
    """The cloud answered a part of the periodic CDR check: the calls it wants sent again."""

    message: ReconcileResend


Effect = Send | Close | OpenCandidate | RunCommand | ApplySettings | RecordingMessage | ReconcileAnswer


@dataclass(slots=True)
class _Conn:
    id: int
    opened_at: float
    last_sent: float
    welcomed: bool = False
    closing: bool = False
    retire_at: float = float("inf")
    complaints: set[str] = field(default_factory=set)


class LinkProtocol:
    """One agent's link state across connections. Not thread-safe; call from the event loop."""

    def __init__(
        self,
        outbox: OutboxPort,
        hello: Hello,
        *,
        timings: LinkTimings | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = outbox
        self.hello = hello
        self.timings = timings or LinkTimings()
        self._rng = rng
        self._conns: dict[int, _Conn] = {}
        self._active: _Conn | None = None
        self._candidate: _Conn | None = None
        self._handover_started: float | None = None
        self._acked = 0  # highest seq the cloud acknowledged (and the outbox forgot)
        self._sent = 0  # highest seq sent on the active connection since its welcome
        self._sent_high = 0  # highest seq sent on any connection by this process
        self._batch_tops: list[int] = []  # last seq of each batch in flight, ascending
        self._hold_until: float | None = None  # lone inbound call starts wait until then (start_linger)
        self._last_progress = 0.0
        self._retry_at: float | None = None
        self._results_retry_at: float | None = None  # resend undelivered command results then
        self._running: set[str] = set()
        self._last_now: float | None = None
        self.ami_connected = True
        #: When the cloud issued this agent's token (from ``welcome``; None until then, or from an older cloud).
        self.agent_since: datetime | None = None
        #: counters for doctor, logs and tests
        self.acked_events = 0
        self.garbage_received = 0

    # -- inputs ---------------------------------------------------------------------------------------

    def connection_opened(self, conn_id: int, now: float) -> list[Effect]:
        """A websocket is up (initial, reconnect, or the candidate of a renewal): say hello."""
        self._observe(now)
        conn = _Conn(conn_id, opened_at=now, last_sent=now)
        self._conns[conn_id] = conn
        if self._active is None:
            self._active = conn
        else:
            self._candidate = conn
        hello = self.hello.model_copy(update={"outbox_depth": self.outbox.depth})
        return [self._send(conn, hello, now)]

    def candidate_failed(self, now: float) -> list[Effect]:
        """The renewal connection could not be opened; keep the old one and try again later."""
        self._observe(now)
        self._end_handover(now)
        return self._pump(now)

    def connection_closed(self, conn_id: int, now: float) -> list[Effect]:
        self._observe(now)
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return []
        if conn is self._candidate:
            self._candidate = None
            self._end_handover(now)
            return self._pump(now)
        if conn is self._active:
            self._active, self._candidate = self._candidate, None
            self._handover_started = None
            self._rewind(now)  # whatever was in flight goes again after the next welcome
            if self._active is not None and self._active.welcomed:
                return self._pump(now)
        return []

    def received(self, conn_id: int, text: str | bytes, now: float) -> list[Effect]:
        self._observe(now)
        conn = self._conns.get(conn_id)
        if conn is None:
            return []
        try:
            message = decode_cloud_message(text)
        except ProtocolError as exc:
            failure = _gateway_failure(text)
            if failure is not None:
                return self._on_gateway_failure(failure, now)
            return self._garbage(conn, text, exc, now)
        return self._dispatch(conn, message, now)

    def events_stored(self, now: float) -> list[Effect]:
        """New events are in the outbox: send them if the window allows."""
        self._observe(now)
        return self._pump(now)

    def command_finished(self, result: CommandResult, now: float) -> list[Effect]:
        """The executor stored ``result`` durably; send it if a welcomed connection is up (even one being
        renewed: a result sent on it and not confirmed is sent again after the next welcome)."""
        self._observe(now)
        self._running.discard(result.command_id)
        conn = self._ready(allow_draining=True)
        if conn is None:
            return []  # sent after the next welcome, from the outbox
        return [self._send(conn, result, now)]

    def send_recording_message(self, message: RecordingReady | RecordingResult, now: float) -> list[Effect]:
        """The uploader's messages go on any welcomed connection (a renewal's old one too); with none up they
        are not queued: the uploader asks again later (its state is in the outbox file)."""
        self._observe(now)
        conn = self._ready(allow_draining=True)
        return [] if conn is None else [self._send(conn, message, now)]

    def send_reconcile_report(self, report: ReconcileReport, now: float) -> list[Effect]:
        """A part of the periodic CDR check, on any welcomed connection; none up: not queued (the check is
        repeated later)."""
        self._observe(now)
        conn = self._ready(allow_draining=True)
        return [] if conn is None else [self._send(conn, report, now)]

    def set_ami_connected(self, connected: bool, now: float) -> list[Effect]:
        """Tell the cloud at once when the PBX link goes down or comes back (a heartbeat carries it)."""
        self._observe(now)
        if connected == self.ami_connected:
            return []
        self.ami_connected = connected
        conn = self._ready()
        return [self._heartbeat(conn, now)] if conn is not None else []

    def tick(self, now: float) -> list[Effect]:
        """Time passed: heartbeats, timeouts, renewals, resends. Call it at :meth:`next_deadline`."""
        self._observe(now)
        effects: list[Effect] = []
        timings = self.timings
        for conn in list(self._conns.values()):
            if not conn.welcomed and not conn.closing and now - conn.opened_at >= timings.welcome_timeout:
                effects.append(self._close(conn, f"no welcome within {timings.welcome_timeout:g} s"))
                if conn is self._candidate:
                    self._end_handover(now)
        if self._handover_started is not None and now - self._handover_started >= timings.handover_timeout:
            log.warning("link: the renewal connection was not welcomed in time; keeping the current one")
            candidate = self._candidate
            if candidate is not None and not candidate.closing:
                effects.append(self._close(candidate, "renewal timed out"))
            self._end_handover(now)  # sending resumes on the current connection
        active = self._ready(allow_draining=True)
        if active is not None:
            if self._candidate is None and self._handover_started is None and now >= active.retire_at:
                log.info("link: renewing the connection before API Gateway's 2-hour cap (make-before-break)")
                self._handover_started = now
                effects.append(OpenCandidate())
            if self._retry_at is not None and now >= self._retry_at:
                self._retry_at = None
                self._rewind(now)
            elif self._in_flight and now - self._last_progress >= timings.ack_timeout:
                log.warning(
                    "link: no ack for %d event(s) in %g s; sending them again", self._in_flight, timings.ack_timeout
                )
                self._rewind(now)
            if self._results_retry_at is not None and now >= self._results_retry_at:
                self._results_retry_at = None
                effects.extend(self._resend_results(active, now))
            effects.extend(self._pump(now))
            if now - active.last_sent >= timings.heartbeat_idle:
                effects.append(self._heartbeat(active, now))
        return effects

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (``None``: only when an input arrives)."""
        timings = self.timings
        times: list[float] = []
        for conn in self._conns.values():
            if not conn.welcomed and not conn.closing:
                times.append(conn.opened_at + timings.welcome_timeout)
        if self._handover_started is not None:
            times.append(self._handover_started + timings.handover_timeout)
        active = self._ready(allow_draining=True)
        if active is not None:
            times.append(active.last_sent + timings.heartbeat_idle)
            if self._candidate is None and self._handover_started is None:
                times.append(active.retire_at)
            if self._retry_at is not None:
                times.append(self._retry_at)
            if self._hold_until is not None:
                times.append(self._hold_until)
            if self._results_retry_at is not None:
                times.append(self._results_retry_at)
            elif self._in_flight:
                times.append(self._last_progress + timings.ack_timeout)
        return min(times) if times else None

    # -- state ----------------------------------------------------------------------------------------

    @property
    def has_connection(self) -> bool:
        """A connection is open or being renewed: the driver should not open another one."""
        return bool(self._conns)

    def is_welcomed(self, conn_id: int) -> bool:
        conn = self._conns.get(conn_id)
        return conn is not None and conn.welcomed

    @property
    def established(self) -> bool:
        return self._ready(allow_draining=True) is not None

    @property
    def acked_seq(self) -> int:
        return self._acked

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- messages -------------------------------------------------------------------------------------

    def _dispatch(self, conn: _Conn, message: CloudMessage, now: float) -> list[Effect]:
        if isinstance(message, Welcome):
            return self._on_welcome(conn, message, now)
        if isinstance(message, Ack):
            return self._on_ack(conn, message.up_to_seq, now, message.results)
        if isinstance(message, Command):
            if message.command_id in self._running:
                log.info("link: command %s delivered again while running; ignored", message.command_id)
                return []
            self._running.add(message.command_id)
            return [RunCommand(message)]
        if isinstance(message, AgentSettings):
            return [ApplySettings(message)]
        if isinstance(message, UploadRecording | RecordingAck):
            return [RecordingMessage(message)]
        if isinstance(message, ReconcileResend):
            return [ReconcileAnswer(message)]
        return self._on_error(conn, message, now)

    def _on_welcome(self, conn: _Conn, welcome: Welcome, now: float) -> list[Effect]:
        effects: list[Effect] = []
        log.info(
            "link: welcomed as agent %s of %s (cloud holds up to seq %d)",
            welcome.agent_id,
            welcome.tenant,
            welcome.acked_seq,
        )
        first = not conn.welcomed
        conn.welcomed = True
        if welcome.agent_since is not None:
            self.agent_since = welcome.agent_since
        if first:
            conn.retire_at = conn.opened_at + self.timings.max_age + (2 * self._rng() - 1) * self.timings.max_age_jitter
        if not self.outbox.welcomed:
            # A new outbox file: whatever the cloud holds came from an earlier one (a reinstall, a wiped data
            # directory). Nothing here was ever sent, so nothing may be forgotten: number it after the cloud's.
            if welcome.acked_seq > 0:
                moved = self.outbox.renumber_after(welcome.acked_seq, force=True)
                log.warning(
                    "link: first welcome for this outbox, but the cloud already holds seq %d from an earlier "
                    "installation of this agent; %d pending event(s) numbered after it",
                    welcome.acked_seq,
                    moved,
                )
                self._acked = welcome.acked_seq
            self.outbox.mark_welcomed()
        elif welcome.acked_seq > self.outbox.last_seq:
            moved = self.outbox.renumber_after(welcome.acked_seq)
            log.warning(
                "link: the cloud already holds seq %d but this outbox only ever assigned %d (was the data "
                "directory reset?); %d pending event(s) renumbered above it",
                welcome.acked_seq,
                self.outbox.last_seq - moved,
                moved,
            )
            self._acked = welcome.acked_seq
        elif welcome.acked_seq > self._acked:
            self._forget_up_to(welcome.acked_seq, now)
        if conn is self._candidate:
            old = self._active
            self._active, self._candidate = conn, None
            self._handover_started = None
            if old is not None:
                effects.append(self._close(old, "renewed"))
        if conn is self._active and first:
            self._rewind(now)
            effects.extend(self._resend_results(conn, now))
        effects.extend(self._pump(now))
        return effects

    def _resend_results(self, conn: _Conn, now: float) -> list[Effect]:
        """Command results the cloud has not confirmed by name yet (recent ones: older commands are moot)."""
        since = now - self.timings.result_resend_window
        return [self._send(conn, result, now) for result in self.outbox.undelivered_results(finished_after=since)]

    def _on_ack(self, conn: _Conn, up_to: int, now: float, results: Sequence[str] = ()) -> list[Effect]:
        if up_to > self._sent_high:
            log.warning(
                "link: the cloud acked seq %d but only %d was ever sent; ignoring the excess", up_to, self._sent_high
            )
            up_to = self._sent_high
        if results:
            # confirmed by name: an ack of later events proves nothing when messages are handled in parallel
            self.outbox.mark_delivered(list(results))
        if up_to <= self._acked:
            return []
        self._forget_up_to(up_to, now)
        return self._pump(now)

    def _on_error(self, conn: _Conn, error: ErrorMessage, now: float) -> list[Effect]:
        if error.about == "command_result":
            # not this agent's command (not_authorized: the cloud confirms it by name too), or not stored
            # (internal): undelivered results go again shortly, not only after the next welcome
            log.warning("link: the cloud did not take a command result (%s: %s)", error.code, error.message)
            self._results_retry_at = now + self.timings.error_retry
            return []
        if error.code == "not_authorized":
            log.error("link: the cloud refused this agent (%s); check the agent token", error.message)
            return [self._close(conn, "not authorized", token_refused=True)]
        if error.about == "call_events":
            log.warning(
                "link: the cloud did not store a batch (%s: %s); resending in %g s",
                error.code,
                error.message,
                self.timings.error_retry,
            )
            self._retry_at = now + self.timings.error_retry
            return []
        self._complain(
            conn,
            f"error:{error.code}",
            "link: the cloud reported %s: %s (about %s)",
            error.code,
            error.message,
            error.about,
        )
        return []

    def _on_gateway_failure(self, failure: str, now: float) -> list[Effect]:
        """API Gateway's own frame when the cloud's handler failed or timed out on one of our messages. It does
        not say which: if events are in flight, they are all sent again ``error_retry`` later (the cloud
        stores them idempotently) instead of after ``ack_timeout``; never answered (it is not the cloud's)."""
        if self._in_flight and self._retry_at is None:
            log.warning(
                "link: the cloud's gateway reported %r for one of our messages; resending unacked events in %g s",
                failure,
                self.timings.error_retry,
            )
            self._retry_at = now + self.timings.error_retry
        else:
            log.warning("link: the cloud's gateway reported %r for one of our messages", failure)
        return []

    def _garbage(self, conn: _Conn, text: str | bytes, exc: ProtocolError, now: float) -> list[Effect]:
        self.garbage_received += 1
        self._complain(conn, exc.code, "link: could not accept a message from the cloud (%s)", exc)
        about = _peek_type(text)
        if about == "error" or conn.closing:
            return []  # never answer an error with an error
        reply = ErrorMessage(code=exc.code, message=exc.message[:500], about=about)
        return [self._send(conn, reply, now)]

    # -- sending --------------------------------------------------------------------------------------

    def _pump(self, now: float) -> list[Effect]:
        conn = self._ready()
        if conn is None or self._retry_at is not None:
            return []
        effects: list[Effect] = []
        room = self.timings.window_events - self._in_flight
        while room > 0:
            self._batch_tops = [top for top in self._batch_tops if top > self._acked]
            if len(self._batch_tops) >= self.timings.window_batches:
                return effects  # the rest waits for an ack, and then goes out as one batch
            events = self.outbox.pending(after_seq=self._sent, limit=min(room, 500))
            if not events:
                break
            if self._lingers(events, now):
                break
            try:
                batches = list(batch_events(events, after_seq=self._sent))
            except ProtocolError:
                if not self._reject_oversized(events):
                    raise  # batch_events refused something no single event explains: a bug, not a loop
                continue
            for batch in batches:
                self._batch_tops = [top for top in self._batch_tops if top > self._acked]
                if len(self._batch_tops) >= self.timings.window_batches:
                    return effects
                if not self._in_flight:
                    self._last_progress = now
                effects.append(self._send(conn, batch, now))
                last = batch.events[-1].seq
                self._sent = last
                self._sent_high = max(self._sent_high, last)
                self._batch_tops.append(last)
                room -= len(batch.events)
        return effects

    def _lingers(self, events: list[SequencedEvent], now: float) -> bool:
        """Hold lone inbound call starts for up to ``start_linger`` (see :class:`LinkTimings`)."""
        lone_starts = all(isinstance(item.event, CallStarted) and item.event.direction != "outbound" for item in events)
        if not lone_starts or self.timings.start_linger <= 0:
            self._hold_until = None
            return False
        if self._hold_until is None:
            self._hold_until = now + self.timings.start_linger
        if now < self._hold_until:
            return True
        self._hold_until = None
        return False

    def _reject_oversized(self, events: list[SequencedEvent]) -> bool:
        """Set aside events too large to travel even alone (judged as ``batch_events`` judges them)."""
        rejected = False
        for event in events:
            try:
                list(batch_events([event], after_seq=self._sent))
            except ProtocolError as exc:
                self.outbox.reject(event.seq, f"too large for one websocket message: {exc.message}")
                rejected = True
        return rejected

    def _heartbeat(self, conn: _Conn, now: float) -> Send:
        beat = Heartbeat(
            sent_at=datetime.fromtimestamp(now, UTC),
            outbox_depth=self.outbox.depth,
            ami_connected=self.ami_connected,
        )
        return self._send(conn, beat, now)

    def _send(
        self,
        conn: _Conn,
        message: AgentMessage,
        now: float,
    ) -> Send:
        conn.last_sent = now
        return Send(conn.id, encode(message))

    def _close(self, conn: _Conn, reason: str, *, token_refused: bool = False) -> Close:
        conn.closing = True
        return Close(conn.id, reason, token_refused)

    # -- helpers --------------------------------------------------------------------------------------

    def _observe(self, now: float) -> None:
        """Times are wall-clock (heartbeats carry them); if the clock was set back, move every timer back
        with it, or a heartbeat could wait past API Gateway's idle limit."""
        last, self._last_now = self._last_now, now
        if last is None or now >= last - 1.0:
            return
        shift = now - last
        log.warning("link: the clock went back %.0f s; timers follow", -shift)
        for conn in self._conns.values():
            conn.opened_at += shift
            conn.last_sent += shift
            conn.retire_at += shift
        self._last_progress += shift
        if self._handover_started is not None:
            self._handover_started += shift
        if self._retry_at is not None:
            self._retry_at += shift

    def _ready(self, *, allow_draining: bool = False) -> _Conn | None:
        """The welcomed active connection, if any; while a renewal is under way sending pauses (drain)."""
        conn = self._active
        if conn is None or not conn.welcomed or conn.closing:
            return None
        if (self._candidate is not None or self._handover_started is not None) and not allow_draining:
            return None
        return conn

    @property
    def _in_flight(self) -> int:
        """Sent and not acked (an upper bound: seqs of set-aside events leave gaps)."""
        return max(0, self._sent - self._acked)

    def _forget_up_to(self, up_to: int, now: float) -> None:
        deleted = self.outbox.ack(up_to)
        self.acked_events += deleted
        self._acked = up_to
        self._sent = max(self._sent, up_to)
        self._last_progress = now

    def _rewind(self, now: float) -> None:
        self._sent = self._acked
        self._batch_tops.clear()
        self._last_progress = now

    def _end_handover(self, now: float) -> None:
        self._handover_started = None
        if self._active is not None:
            self._active.retire_at = now + self.timings.handover_retry

    def _complain(self, conn: _Conn, kind: str, template: str, *args: object) -> None:
        """Log a kind of trouble once per connection (warning), then quietly (debug)."""
        level = logging.DEBUG if kind in conn.complaints else logging.WARNING
        conn.complaints.add(kind)
        log.log(level, template, *args)


def _json_object(text: str | bytes, max_chars: int) -> dict[str, Any] | None:
    """A frame already refused by the decoder, parsed again to say what it was: a JSON object, or None."""
    if isinstance(text, bytes) or len(text) > max_chars:
        return None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply, already refused as bad_json
        return None
    return raw if isinstance(raw, dict) else None


def _gateway_failure(text: str | bytes) -> str | None:
    """The message of API Gateway's integration-failure frame (``{"message": "Internal server error",
    "connectionId": ..., "requestId": ...}``: no ``type``), or None for anything else."""
    raw = _json_object(text, 4096)
    if raw is None or "type" in raw or not isinstance(raw.get("message"), str):
        return None
    if not set(raw) <= {"message", "connectionId", "requestId"} or "requestId" not in raw:
        return None
    return str(raw["message"])[:200]


def _peek_type(text: str | bytes) -> str | None:
    raw = _json_object(text, 1_000_000)
    kind = raw.get("type") if raw is not None else None
    return kind[:64] if isinstance(kind, str) else None  # the error echoing it must fit one frame
