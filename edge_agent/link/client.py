"""The websocket driver of the link: sockets and timers around the sans-I/O :class:`LinkProtocol`.

Outbound only, ``Authorization: Bearer <token>``, text frames only. A refused token (HTTP 401/403 on the
upgrade, or ``not_authorized`` from the cloud) is not retried in a tight loop: it is logged as an error
naming the setting and retried on a long backoff (5 min doubling to 30 min by default), since only an
administrator fixes it. Other failures back off exponentially with jitter (1 s to 60 s). Each connection
has a writer task so frames leave in the order the protocol produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from edge_agent import __version__
from edge_agent.backoff import Backoff
from edge_agent.errors import LinkError, TokenRefusedError
from edge_agent.link.protocol import (
    ApplySettings,
    Close,
    Effect,
    LinkProtocol,
    OpenCandidate,
    ReconcileAnswer,
    RecordingMessage,
    RunCommand,
    Send,
)
from wire_protocol.messages import (
    MAX_MESSAGE_BYTES,
    AgentSettings,
    Command,
    ReconcileReport,
    ReconcileResend,
    RecordingAck,
    RecordingReady,
    RecordingResult,
    UploadRecording,
)

__all__ = ["LinkClient", "LinkOptions", "open_connection"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LinkOptions:
    open_timeout: float = 15.0
    #: websocket pings find a dead TCP link long before the cloud's heartbeat timers would
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 3.0  # a stopping agent waits this long for the cloud's close frame
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    refused_initial: float = 300.0
    refused_max: float = 1800.0
    #: accept (and answer with ``too_large``) messages over the protocol's limit instead of dropping the link
    max_incoming_bytes: int = 8 * MAX_MESSAGE_BYTES


#: Marks a check connection (``edge-agent doctor``): the cloud answers it but keeps sending commands to the
#: agent's running connection.
PROBE_HEADER = "X-Pbxlink-Probe"


async def open_connection(
    url: str, token: str, options: LinkOptions | None = None, *, probe: bool = False
) -> ClientConnection:
    """One authenticated websocket; raises :class:`TokenRefusedError` on 401/403, :class:`LinkError` else."""
    options = options or LinkOptions()
    headers = {"Authorization": f"Bearer {token}"}
    if probe:
        headers[PROBE_HEADER] = "1"
    try:
        return await connect(
            url,
            additional_headers=headers,
            user_agent_header=f"pbxlink-edge-agent/{__version__}",
            compression=None,
            open_timeout=options.open_timeout,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            max_size=options.max_incoming_bytes,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise TokenRefusedError(
                f"the cloud at {url} refused the agent token (HTTP {status}); check EDGE_TOKEN / [cloud] token, "
                "or whether the token was revoked in the pbxlink settings"
            ) from None
        raise LinkError(f"the cloud at {url} answered HTTP {status} to the websocket upgrade") from None
    except InvalidURI as exc:
        raise LinkError(f"EDGE_CLOUD_URL / [cloud] url is not a websocket URL: {exc}") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise LinkError(f"cannot reach the cloud at {url}: {_describe(exc)}") from None
    except Exception as exc:  # e.g. a proxy from the environment that websockets cannot use: retry, don't die
        raise LinkError(f"cannot open a websocket to {url}: {type(exc).__name__}: {exc}") from None


def server_date(connection: ClientConnection) -> float | None:
    """The cloud's HTTP ``Date`` on the upgrade response (epoch seconds), for clock-skew checks."""
    response = connection.response
    value = response.headers.get("Date") if response is not None else None
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


class LinkClient:
    """Keeps the link up and runs the protocol; :meth:`run` returns after :meth:`stop`."""

    def __init__(
        self,
        url: str,
        token: str,
        protocol: LinkProtocol,
        *,
        on_command: Callable[[Command], Awaitable[None]],
        on_settings: Callable[[AgentSettings], None] = lambda settings: None,
        on_recording: Callable[[UploadRecording | RecordingAck], None] = lambda message: None,
        on_reconcile: Callable[[ReconcileResend], None] = lambda message: None,
        options: LinkOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._token = token
        self.protocol = protocol
        self.options = options or LinkOptions()
        self._on_command = on_command
        self._on_settings = on_settings
        self._on_recording = on_recording
        self._on_reconcile = on_reconcile
        self._clock = clock
        self._backoff = Backoff(self.options.reconnect_initial, self.options.reconnect_max)
        self._refused_backoff = Backoff(self.options.refused_initial, self.options.refused_max)
        self._refused = False
        self._connections: dict[int, ClientConnection] = {}
        self._outgoing: dict[int, asyncio.Queue[str | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_id = 1
        self._links_changed = asyncio.Event()  # wakes the connect loop
        self._timers_changed = asyncio.Event()  # wakes the timer
        self._stopping = asyncio.Event()
        self.connections_opened = 0
        self.token_refusals = 0

    def __repr__(self) -> str:  # never the token
        return f"LinkClient({self.url!r})"

    # -- public ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        timer = asyncio.create_task(self._timer())
        delay = 0.0
        try:
            while not self._stopping.is_set():
                if self.protocol.has_connection:
                    while self.protocol.has_connection and not self._stopping.is_set():
                        self._links_changed.clear()
                        await self._links_changed.wait()
                    delay = self._next_delay()
                    continue
                if delay and await self._sleep(delay):
                    break
                try:
                    connection = await self._open_unless_stopped()
                    if connection is None:
                        break
                except TokenRefusedError as exc:
                    self.token_refusals += 1
                    self._refused = True
                    delay = self._next_delay()
                    log.error("link: %s; next attempt in %.0f s", exc, delay)
                    continue
                except LinkError as exc:
                    delay = self._next_delay()
                    log.warning("link: %s; next attempt in %.1f s", exc, delay)
                    continue
                self._attach(connection)
        finally:
            timer.cancel()
            for connection in list(self._connections.values()):
                with contextlib.suppress(Exception):
                    await connection.close(1001, "agent stopping")
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(timer, *self._tasks, return_exceptions=True)

    async def _open_unless_stopped(self) -> ClientConnection | None:
        """Connect, but give up at once on :meth:`stop` (a blackholed cloud would hold a shutdown for the
        whole open timeout)."""
        opening = asyncio.ensure_future(open_connection(self.url, self._token, self.options))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if opening.done():
            return opening.result()
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError, LinkError):
            await opening
        return None

    def stop(self) -> None:
        self._stopping.set()
        self._links_changed.set()
        self._timers_changed.set()

    def send_recording_message(self, message: RecordingReady | RecordingResult) -> bool:
        """Send an uploader message now if a welcomed connection is up; ``False``: none is (ask again later)."""
        effects = self.protocol.send_recording_message(message, self._clock())
        self.apply(effects)
        return bool(effects)

    def send_reconcile_report(self, report: ReconcileReport) -> bool:
        """Send a part of the periodic CDR check now; ``False``: no welcomed connection is up."""
        effects = self.protocol.send_reconcile_report(report, self._clock())
        self.apply(effects)
        return bool(effects)

    def events_stored(self) -> None:
        """Call after events went into the outbox."""
        self.apply(self.protocol.events_stored(self._clock()))

    def apply(self, effects: list[Effect]) -> None:
        """Carry out what the protocol decided (never blocks: sends are queued to the connection's writer)."""
        for effect in effects:
            if isinstance(effect, Send):
                queue = self._outgoing.get(effect.conn)
                if queue is not None:
                    queue.put_nowait(effect.text)
            elif isinstance(effect, Close):
                if effect.token_refused:
                    self._refused = True
                    self.token_refusals += 1
                log.info("link: closing connection %d (%s)", effect.conn, effect.reason)
                queue = self._outgoing.get(effect.conn)
                if queue is not None:
                    queue.put_nowait(None)  # the writer closes after what was queued before
            elif isinstance(effect, OpenCandidate):
                self._spawn(self._open_candidate())
            elif isinstance(effect, RunCommand):
                self._spawn(self._on_command(effect.command))
            elif isinstance(effect, ApplySettings):
                self._on_settings(effect.settings)
            elif isinstance(effect, RecordingMessage):
                self._on_recording(effect.message)
            elif isinstance(effect, ReconcileAnswer):
                self._on_reconcile(effect.message)
        self._links_changed.set()
        self._timers_changed.set()

    # -- connections ----------------------------------------------------------------------------------

    def _attach(self, connection: ClientConnection) -> None:
        conn_id, self._next_id = self._next_id, self._next_id + 1
        self.connections_opened += 1
        self._connections[conn_id] = connection
        self._outgoing[conn_id] = asyncio.Queue()
        log.info("link: connected to %s (connection %d)", self.url, conn_id)
        self._spawn(self._writer(conn_id, connection))
        self._spawn(self._reader(conn_id, connection))
        self.apply(self.protocol.connection_opened(conn_id, self._clock()))

    async def _open_candidate(self) -> None:
        try:
            connection = await open_connection(self.url, self._token, self.options)
        except LinkError as exc:
            log.warning("link: could not open the renewal connection: %s", exc)
            self.apply(self.protocol.candidate_failed(self._clock()))
            return
        self._attach(connection)

    async def _reader(self, conn_id: int, connection: ClientConnection) -> None:
        try:
            async for message in connection:
                try:
                    self.apply(self.protocol.received(conn_id, message, self._clock()))
                except Exception:  # e.g. the outbox could not delete (disk): start over on a new connection
                    log.exception("link: could not process a message from the cloud; reconnecting")
                    await connection.close(1011, "agent error")
                    break
                if self.protocol.is_welcomed(conn_id):
                    self._backoff.reset()
                    self._refused_backoff.reset()
                    self._refused = False
        except ConnectionClosed:
            pass
        finally:
            reason = connection.close_reason or ""
            log.info("link: connection %d closed (%s %s)", conn_id, connection.close_code, reason)
            self._connections.pop(conn_id, None)
            queue = self._outgoing.pop(conn_id, None)
            if queue is not None:
                queue.put_nowait(None)
            self.apply(self.protocol.connection_closed(conn_id, self._clock()))

    async def _writer(self, conn_id: int, connection: ClientConnection) -> None:
        queue = self._outgoing[conn_id]
        try:
            while (text := await queue.get()) is not None:
                await connection.send(text)
        except ConnectionClosed:
            pass
        finally:
            await connection.close()

    # -- timing ---------------------------------------------------------------------------------------

    async def _timer(self) -> None:
        """Tick the protocol at its next deadline (re-read whenever an input may have moved it).

        The loop also ends on ``_stopping``: Python 3.11's ``wait_for`` can swallow a cancellation that
        races with the event it waits for, and a timer that ignored its cancel would hang the shutdown."""
        while not self._stopping.is_set():
            deadline = self.protocol.next_deadline()
            self._timers_changed.clear()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                await asyncio.wait_for(self._timers_changed.wait(), timeout)
                due = deadline is not None and self._clock() >= deadline
            except TimeoutError:
                due = True  # even if the wall clock says otherwise: the protocol notices a clock set back
            if due:
                try:
                    self.apply(self.protocol.tick(self._clock()))
                except Exception:  # a timer that dies silently would stop heartbeats: log and carry on
                    log.exception("link: timer tick failed")
                    await asyncio.sleep(1.0)

    def _next_delay(self) -> float:
        return self._refused_backoff.next_delay() if self._refused else self._backoff.next_delay()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("link: internal task failed", exc_info=task.exception())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
