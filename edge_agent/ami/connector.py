"""The AMI connection: one logged-in session to Asterisk, kept alive, delivering events in order.

panoramisk carries the actions (request/response correlation, multi-message answers); the agent owns the
connection's life, because panoramisk's own reconnect retries every 2 s forever, retries a wrong password
silently and never notices a half-open TCP connection. Here:

- login failures raise :class:`AmiAuthError` at once (retrying a wrong secret fixes nothing);
- a watchdog pings and drops the connection when Asterisk stops answering;
- reconnects back off exponentially with jitter;
- after every (re)connect the sink gets a snapshot of the PBX's live channels (``CoreShowChannels``) before
  any event of the new session, so calls that ended while we were away are closed and calls that started
  are adopted. Events that arrive while the snapshot is in flight are held and delivered after it.
- events are filtered on the server (``Action: Filter``) to what the interpreter reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from edge_agent.ami.framing import AmiFramer, AmiMessage
from edge_agent.ami.originate import OriginateRequest, OriginateResult, originate_action, originate_result
from edge_agent.backoff import Backoff
from edge_agent.errors import AmiActionLostError, AmiAuthError, AmiConnectionError, AmiError, AmiPermissionError

__all__ = ["AmiConnector", "AmiSettings", "AmiSink"]

log = logging.getLogger(__name__)


class AmiSettings(BaseModel):
    """Where and how to reach Asterisk's AMI (``manager.conf``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = Field(min_length=1)
    secret: SecretStr
    connect_timeout: float = Field(default=10.0, gt=0)
    action_timeout: float = Field(default=10.0, gt=0)
    #: Seconds between watchdog pings, and how long an answer may take before the link is declared dead.
    ping_interval: float = Field(default=15.0, gt=0)
    ping_timeout: float = Field(default=5.0, gt=0)
    reconnect_initial: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=60.0, gt=0)
    event_classes: str = "call,agent,dialplan,system"
    event_filters: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class AmiSink(Protocol):
    """Where the connector delivers what it hears, in order."""

    def on_snapshot(self, live_channels: list[AmiMessage], at: float) -> None:
        """Called after each (re)connect, before that session's first event."""

    def on_event(self, message: AmiMessage) -> None:
        """Called for each event, with ``_ts`` (receive time) added."""


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with our framing: events go straight to the connector, in order."""

    on_raw_event: Callable[[AmiMessage], None]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.framer = AmiFramer()

    def data_received(self, data: bytes) -> None:
        for fields in self.framer.feed(data):
            if "Event" in fields and "ActionID" not in fields:
                self.on_raw_event(fields)
                if fields["Event"] == "Shutdown":
                    self.connection_lost(None)
                    return
            elif "Event" in fields or "Response" in fields:
                message = Message(fields)
                owned = self._owned(message)
                # Events tied to an action go to it; those the interpreter reads go to it too: somebody
                # else's action's events, and OriginateResponse (it ties a call to its click-to-call command).
                if "Event" in fields and (not owned or fields["Event"] == "OriginateResponse"):
                    self.on_raw_event(dict(fields))
                if owned or "Response" in fields:
                    self.handle_message(message)

    def _owned(self, message: Any) -> bool:
        return message.action_id in self.responses or message.id in self.responses


class _Session(Manager):  # type: ignore[misc]
    """One TCP connection's worth of panoramisk Manager, with its reconnect logic disabled."""

    def __init__(self, lost: asyncio.Event, **config: Any) -> None:
        super().__init__(**config)
        self._lost = lost

    def connection_lost(self, exc: Exception | None) -> None:
        # panoramisk would schedule its own reconnect here; the connector decides instead.
        self._connected = False
        for action in list(self.awaiting_actions):
            if not action.future.done():
                action.future.set_exception(AmiConnectionError("the AMI connection was lost"))
        self.awaiting_actions.clear()
        self._lost.set()


class AmiConnector:
    """Keeps one AMI session alive and feeds a sink; :meth:`run` returns only on :meth:`stop` or a fatal error."""

    def __init__(
        self,
        settings: AmiSettings,
        sink: AmiSink,
        *,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff or Backoff(settings.reconnect_initial, settings.reconnect_max)
        self._session: _Session | None = None
        self._lost = asyncio.Event()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._held: list[AmiMessage] | None = None
        self.connected = asyncio.Event()
        self.sessions = 0
        self.banner: str | None = None
        #: "Asterisk 22.10.1", from CoreSettings after login (None if the PBX would not say)
        self.asterisk_version: str | None = None

    # -- public ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, deliver, reconnect on loss, until :meth:`stop`. Raises on refused login or permissions."""
        while not self._stopping:
            try:
                await self._open()
                self._backoff.reset()
                await self._serve()
            except (AmiAuthError, AmiPermissionError):
                self._close()
                raise
            except (OSError, AmiError, TimeoutError) as exc:
                self._close()
                if self.stopping:
                    break
                delay = self._backoff.next_delay()
                log.warning("AMI %s: %s; reconnecting in %.1f s", self.settings.address, _describe(exc), delay)
                await self._pause(delay)
        self._close()

    async def _pause(self, delay: float) -> None:
        """The backoff delay, cut short by :meth:`stop` (a SIGTERM must not wait out a 60 s backoff)."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()
        self._lost.set()
        self._close()

    async def send_action(self, action: Mapping[str, str | list[str]], *, timeout: float | None = None) -> Any:
        """Send an action on the live session; returns panoramisk's answer (a message, or a list)."""
        session = self._session
        if session is None or not self.connected.is_set():
            raise AmiConnectionError(f"not connected to AMI at {self.settings.address}")
        future = session.send_action(dict(action))
        return await self._await(future, timeout or self.settings.action_timeout, str(action.get("Action")))

    async def originate(self, request: OriginateRequest) -> OriginateResult:
        """Place a click-to-call; returns when the user's phone answered, or did not (after ``ring_seconds``)."""
        answer = await self.send_action(originate_action(request), timeout=request.ring_seconds + 15)
        return originate_result(request.command_id, answer)

    # -- the session ----------------------------------------------------------------------------------

    async def _open(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        self._lost = asyncio.Event()
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, settings.host, settings.port), settings.connect_timeout
            )
        except TimeoutError as exc:
            raise AmiConnectionError(f"no TCP answer within {settings.connect_timeout:g} s") from exc
        session = _Session(self._lost, loop=loop, host=settings.host, port=settings.port, log=log)
        session.protocol = protocol
        session.responses = protocol.responses
        protocol.factory = session
        protocol.encoding = session.encoding = "utf8"
        protocol.log = log
        protocol.on_raw_event = self._on_raw_event
        self._session = session
        self._held = []  # hold this session's events until the snapshot is delivered
        login = await self._await(
            session.send_action(
                {
                    "Action": "Login",
                    "Username": settings.username,
                    "Secret": settings.secret.get_secret_value(),
                    "Events": settings.event_classes,
                }
            ),
            settings.action_timeout,
            "Login",
        )
        self.banner = protocol.framer.banner
        if login.get("Response") != "Success":
            raise AmiAuthError(
                f"Asterisk at {settings.address} refused the AMI login for user {settings.username!r} "
                f"({login.get('Message') or 'no reason given'}). Check that user's section in manager.conf: "
                "its secret, and permit/deny for this host."
            )
        self.sessions += 1
        log.info("AMI %s: logged in as %r (%s)", settings.address, settings.username, self.banner or "no banner")
        await self._install_filters()
        await self._learn_version()
        await self._deliver_snapshot()
        self.connected.set()

    async def _install_filters(self) -> None:
        for pattern in self.settings.event_filters:
            answer = await self.send_action_raw({"Action": "Filter", "Operation": "Add", "Filter": pattern})
            if answer.get("Response") != "Success":
                log.warning(
                    "AMI %s: could not install event filter (%s); the agent works without it but reads every "
                    "event. Give the AMI user write permission 'system' to enable filtering.",
                    self.settings.address,
                    answer.get("Message"),
                )
                return

    async def _learn_version(self) -> None:
        """Ask which Asterisk this is, for support and the settings page; not knowing is not a failure."""
        answer = await self.send_action_raw({"Action": "CoreSettings"})
        version = answer.get("AsteriskVersion") if answer.get("Response") == "Success" else None
        self.asterisk_version = f"Asterisk {version}" if version else None

    async def _deliver_snapshot(self) -> None:
        answer = await self.send_action_raw({"Action": "CoreShowChannels"})
        messages: Sequence[Any] = answer if isinstance(answer, list) else [answer]
        first = messages[0]
        if first.get("Response") != "Success":
            raise AmiPermissionError(
                f"AMI user {self.settings.username!r} may not run CoreShowChannels ({first.get('Message')}); "
                "the agent needs it to recover calls after a reconnect. "
                "Grant write permission 'system' (or 'reporting')."
            )
        live = [dict(m) for m in messages if m.get("Event") == "CoreShowChannel"]
        held, self._held = self._held or [], None
        self._deliver(self._sink.on_snapshot, live, self._clock())
        for message in held:
            self._deliver(self._sink.on_event, message)

    async def send_action_raw(self, action: dict[str, str], *, timeout: float | None = None) -> Any:
        """Send an action on the current session even before it is announced as connected."""
        if self._session is None:
            raise AmiConnectionError(f"not connected to AMI at {self.settings.address}")
        return await self._await(
            self._session.send_action(dict(action)), timeout or self.settings.action_timeout, action["Action"]
        )

    async def _serve(self) -> None:
        """Watch the session until it dies: EOF, Shutdown, or a ping left unanswered."""
        settings = self.settings
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            while not self._stopping:
                done, _ = await asyncio.wait({lost}, timeout=settings.ping_interval)
                if done or self._stopping:
                    raise AmiConnectionError("Asterisk closed the connection")
                try:
                    await self.send_action_raw({"Action": "Ping"}, timeout=settings.ping_timeout)
                except TimeoutError as exc:
                    raise AmiConnectionError(
                        f"no answer to Ping within {settings.ping_timeout:g} s: the link is dead"
                    ) from exc
        finally:
            lost.cancel()
            self.connected.clear()

    async def _await(self, future: Any, timeout: float, what: str) -> Any:
        lost = asyncio.ensure_future(self._lost.wait())
        waiter = asyncio.ensure_future(future)
        try:
            done, _ = await asyncio.wait({waiter, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if waiter in done:
            return waiter.result()
        waiter.cancel()
        if lost.done() or self._lost.is_set():
            raise AmiActionLostError(f"connection lost while waiting for the answer to {what}")
        raise TimeoutError(f"no answer to {what} within {timeout:g} s")

    def _on_raw_event(self, message: AmiMessage) -> None:
        message["_ts"] = repr(self._clock())
        if self._held is not None:
            self._held.append(message)
        else:
            self._deliver(self._sink.on_event, message)

    def _deliver(self, handler: Callable[..., None], *args: Any) -> None:
        """Run a sink callback; its failure (a full disk, a bug) must not cost the AMI session the rest of the
        read it came in, nor stop the agent. It is logged with its traceback."""
        try:
            handler(*args)
        except Exception:
            log.exception("AMI %s: the agent failed to handle what Asterisk sent", self.settings.address)

    def _close(self) -> None:
        self.connected.clear()
        session, self._session = self._session, None
        if session is not None and session.protocol is not None and not session.protocol.closed:
            session.protocol.transport.close()
            session.protocol.closed = True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is Asterisk running, and manager.conf enabled on that port?)"
    return str(exc) or type(exc).__name__
