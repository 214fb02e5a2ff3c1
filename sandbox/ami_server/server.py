"""``FakeAmiServer``: a real asyncio TCP server on loopback that behaves like Asterisk 22's AMI.

Why a real socket rather than panoramisk's replay helper: the edge agent's reconnect, ping watchdog and
partial-read handling only show up against a peer that can drop, stall and fragment a TCP stream.
Tests drive the PBX side through :meth:`FakeAmiServer.emit` / :meth:`FakeAmiServer.play` and the fault
switches; everything the clients sent is kept for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from edge_agent.ami.framing import AmiMessage, format_action
from edge_agent.trace import TIMESTAMP_KEY
from sandbox.ami_server.channels import ChannelTable
from sandbox.ami_server.endpoints import Endpoint
from sandbox.ami_server.originate import OriginateOutcome
from sandbox.ami_server.privileges import normalize_classes, with_privilege
from sandbox.ami_server.session import AmiSession

__all__ = ["FakeAmiServer", "LoginAttempt", "OriginateHook", "UserSpec"]

log = logging.getLogger(__name__)

OriginateHook = Callable[[AmiMessage], Awaitable[OriginateOutcome]]


@dataclass(frozen=True, init=False)
class UserSpec:
    """A ``manager.conf`` user: secret plus read/write classes (a set or ``"call,agent"``; ``all`` = all)."""

    secret: str
    read: frozenset[str]
    write: frozenset[str]

    def __init__(self, secret: str, read: Iterable[str] | str = "all", write: Iterable[str] | str = "all") -> None:
        object.__setattr__(self, "secret", secret)
        object.__setattr__(self, "read", normalize_classes(read))
        object.__setattr__(self, "write", normalize_classes(write))


@dataclass(frozen=True)
class LoginAttempt:
    connection: int
    username: str
    success: bool
    auth_type: str  # "plain" or "md5"


class FakeAmiServer:
    """Asterisk's AMI on ``host:port`` (``port=0`` picks a free port; read :attr:`port` after start)."""

    def __init__(
        self,
        users: Mapping[str, UserSpec],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ami_version: str = "9.0.0",
        asterisk_version: str = "22.5.2",
        auth_failure_delay: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.users = dict(users)
        self.host = host
        self.ami_version = ami_version
        self.asterisk_version = asterisk_version
        #: Asterisk sleeps 1 s before answering a failed login; 0 keeps tests fast.
        self.auth_failure_delay = auth_failure_delay
        self.random = random.Random(seed)
        self.started_at = time.monotonic()
        self.channels = ChannelTable()
        self.endpoints: list[Endpoint] = []
        self.on_originate: OriginateHook | None = None
        #: CLI command -> output of ``Action: Command`` (add entries to fake more commands).
        self.cli_outputs: dict[str, str] = {
            "core show version": (
                f"Asterisk {asterisk_version} built by root @ pbx on a x86_64 running Linux on 2025-06-01 10:00:00 UTC"
            ),
        }
        # Fault switches, read on every write so they act on open connections too.
        #: ``False`` = half-open link: Ping goes unanswered and no event is sent; other answers still flow.
        self.answer_pings = True
        #: Write every message in random 1-16 byte pieces (partial reads, UTF-8 cut mid-character).
        self.split_writes = False
        #: ``"\n"`` line ends instead of ``"\r\n"`` (Asterisk never does this; it probes client leniency).
        self.lf_only = False
        #: ``False`` = AMI is down (Asterisk restarting, manager reload gone wrong): new connections are dropped at
        #: once, before the banner, while calls go on (:meth:`emit` still updates the PBX's channels).
        self.accepting = True
        # What the clients did.
        self.actions: list[AmiMessage] = []
        self.actions_by_connection: dict[int, list[AmiMessage]] = {}
        self.logins: list[LoginAttempt] = []
        self._port = port
        self._server: asyncio.Server | None = None
        self._sessions: dict[int, AmiSession] = {}
        self._next_number = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        self.started_at = time.monotonic()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions.values()):
            session.abort()
        for task in list(self._tasks):
            task.cancel()
        pending = [*self._tasks, *self._session_tasks]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def connections(self) -> int:
        """Open TCP connections right now (logged in or not)."""
        return len(self._sessions)

    @property
    def sessions(self) -> list[AmiSession]:
        return list(self._sessions.values())

    # -- serving calls ---------------------------------------------------------------------------------

    async def emit(self, message: AmiMessage) -> None:
        """Send one event to every logged-in connection that would receive it (classes, masks, filters).

        The live-channel table is updated whether or not anyone receives the event: it is PBX state.
        """
        event = with_privilege({k: v for k, v in message.items() if k != TIMESTAMP_KEY})
        self.channels.apply(event)
        if not self.answer_pings:
            return  # half-open: the PBX looks alive to TCP but nothing reaches the client
        text = format_action(event).decode("utf-8")
        for session in list(self._sessions.values()):
            if session.wants(event, text):
                await session.send(event)

    async def play(self, messages: Iterable[AmiMessage], speed: float | None = None) -> int:
        """Replay a trace's events in order; return how many were sent.

        Responses and anything carrying an ``ActionID`` belonged to the recording client's own actions and
        are skipped. With ``speed`` the recorded ``_ts`` gaps are kept, divided by ``speed``.
        """
        sent = 0
        previous: float | None = None
        for message in messages:
            if "Response" in message or "ActionID" in message:
                continue
            stamp = message.get(TIMESTAMP_KEY)
            if speed is not None and stamp is not None:
                with contextlib.suppress(ValueError):
                    current = float(stamp)
                    if previous is not None and current > previous:
                        await asyncio.sleep((current - previous) / speed)
                    previous = current
            await self.emit(message)
            sent += 1
        return sent

    # -- fault injection -------------------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Abort every TCP connection (as a crash or a cable pull would); the listener stays up."""
        for session in list(self._sessions.values()):
            session.abort()
        await self.wait_until(lambda: not self._sessions)

    async def go_down(self) -> None:
        """AMI goes away mid-session: every connection is dropped and new ones are refused until :meth:`come_up`."""
        self.accepting = False
        await self.drop_connections()

    def come_up(self) -> None:
        self.accepting = True

    async def send_shutdown(self, *, restart: bool = False) -> None:
        """``Event: Shutdown`` to the sessions allowed to see it, then close every connection.

        The listener stays up, like an Asterisk that comes straight back (call :meth:`stop` to refuse).
        """
        event: AmiMessage = {
            "Event": "Shutdown",
            "Privilege": "system,all",
            "Shutdown": "Uncleanly" if len(self.channels) else "Cleanly",
            "Restart": "True" if restart else "False",
        }
        await self.emit(event)
        for session in list(self._sessions.values()):
            await session.close()
        self.channels.clear()

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` verbatim to every connection (garbage, half messages, bare banners)."""
        for session in list(self._sessions.values()):
            await session.send_bytes(data)

    # -- helpers for tests -----------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None = 2.0) -> None:
        """Wait until ``predicate()`` holds (``TimeoutError`` after ``timeout`` s, never if ``None``)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run background work (async originate outcomes) that :meth:`stop` will cancel."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    # -- bookkeeping used by sessions ------------------------------------------------------------------

    def record_action(self, session: AmiSession, action: AmiMessage) -> None:
        self.actions.append(action)
        self.actions_by_connection.setdefault(session.number, []).append(action)
        self._changed.set()

    def record_login(self, session: AmiSession, username: str, success: bool, auth_type: str) -> None:
        self.logins.append(LoginAttempt(session.number, username, success, auth_type))
        self._changed.set()

    def forget(self, session: AmiSession) -> None:
        self._sessions.pop(session.number, None)
        self._changed.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        session = AmiSession(self, reader, writer, self._next_number)
        self._next_number += 1
        self._sessions[session.number] = session
        self.actions_by_connection[session.number] = []
        self._changed.set()
        # Serve from our own task so stop() can wait for it (3.11's start_server callback task chokes on
        # cancellation at loop shutdown).
        task = asyncio.create_task(session.run())
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())
