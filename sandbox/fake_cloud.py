"""A protocol-speaking fake of the cloud's websocket side, for the edge agent's link fault tests.

A real ``websockets`` server on loopback that does what the edge agent may rely on and nothing more:
checks ``Authorization: Bearer`` on the upgrade (401 otherwise), answers ``hello`` with ``welcome``
(``acked_seq`` = what it holds), stores call events idempotently on ``event_id`` and acks cumulatively,
records command results and heartbeats. The newest connection of an agent is its registered one (as the
real cloud's registry), which is where :meth:`FakeCloud.send` pushes.

Faults on demand: slow acks, no acks, cut connections (now, or after N batches), duplicated acks and
commands, raw garbage, a token revoked while connected, a batch refused with ``internal``. What the agent
did is kept for assertions: ``applied`` (event id -> times stored: must end at exactly one each),
``received`` (event id -> times received: resends are fine), the seqs each event id came with, gaps
between connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from wire_protocol.call_events import CallEvent
from wire_protocol.messages import (
    Ack,
    AgentSettings,
    CallEventsBatch,
    CloudMessage,
    Command,
    CommandResult,
    ErrorMessage,
    Heartbeat,
    Hello,
    OriginateCommand,
    ProtocolError,
    Welcome,
    decode_agent_message,
    encode,
)

__all__ = ["FakeCloud"]

log = logging.getLogger(__name__)


@dataclass
class _Agent:
    agent_id: str
    acked_seq: int = 0
    stored_seqs: set[int] = field(default_factory=set)
    parked: dict[int, int] = field(default_factory=dict)  # after_seq -> top of batches stored beyond a gap
    connections: list[ServerConnection] = field(default_factory=list)


class FakeCloud:
    """``FakeCloud({"token": "agent-1"})``; ``await start()``; agents connect to :attr:`url`."""

    def __init__(self, tokens: dict[str, str], *, host: str = "127.0.0.1", port: int = 0, tenant: str = "t1") -> None:
        self.tokens = dict(tokens)
        self.host = host
        self.tenant = tenant
        self._port = port
        self._server: Server | None = None
        self._agents: dict[str, _Agent] = {}
        self._changed = asyncio.Event()
        # fault switches
        self.ack_delay = 0.0
        self.acks_enabled = True
        self.duplicate_acks = False
        self.cut_after_batches: int | None = None  # store the Nth batch of a connection, then abort it unacked
        self.refuse_batches = 0  # answer this many next batches with error internal, storing nothing
        self.send_settings: AgentSettings | None = AgentSettings()
        self.revoked: set[str] = set()
        # what happened
        self.applied: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.seqs_by_event: defaultdict[str, set[int]] = defaultdict(set)
        self.events: dict[str, CallEvent] = {}  # event id -> the event as first stored
        self.hellos: list[Hello] = []
        self.heartbeats: list[Heartbeat] = []
        self.results: list[CommandResult] = []
        self.errors: list[ErrorMessage] = []
        self.batches = 0
        self.upgrades = 0
        self.probe_upgrades = 0  # upgrades marked as a check (edge-agent doctor)
        self.refused_upgrades = 0
        self.connections_opened = 0
        self.gaps = 0  # times an agent had no connection left after one closed
        self.max_in_flight = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self._port,
            process_request=self._authenticate,
            compression=None,
            max_size=None,
        )
        self._port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeCloud:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self._port}/agent"

    # -- driving ---------------------------------------------------------------------------------------

    def acked_seq(self, agent_id: str) -> int:
        return self._agents[agent_id].acked_seq if agent_id in self._agents else 0

    def open_connections(self, agent_id: str) -> int:
        return len(self._agents[agent_id].connections) if agent_id in self._agents else 0

    async def send(self, agent_id: str, message: CloudMessage | str | bytes) -> None:
        """Push to the agent's registered (newest) connection."""
        connection = self._agents[agent_id].connections[-1]
        await connection.send(message if isinstance(message, str | bytes) else encode(message))

    async def send_command(self, agent_id: str, command_id: str, *, times: int = 1) -> None:
        command = Command(command_id=command_id, command=OriginateCommand(extension="101", number="79001234567"))
        for _ in range(times):
            await self.send(agent_id, command)

    async def cut(self, agent_id: str | None = None) -> None:
        """Abort connections at the TCP level (no close handshake), as a network failure would."""
        for agent in self._agents.values():
            if agent_id in (None, agent.agent_id):
                for connection in list(agent.connections):
                    connection.transport.abort()

    async def revoke(self, token: str) -> None:
        """Revoke a token: its open connections get ``not_authorized`` and are closed; upgrades get 401."""
        self.revoked.add(token)
        agent = self._agents.get(self.tokens[token])
        for connection in list(agent.connections if agent else []):
            with contextlib.suppress(ConnectionClosed):
                await connection.send(encode(ErrorMessage(code="not_authorized", message="token revoked")))
            await connection.close(1008, "token revoked")

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)

    def exactly_once(self, expected: Iterable[str]) -> None:
        """Assert every expected event was stored exactly once, nothing else was, and each arrived with one
        seq (the agent never stored an event twice)."""
        wanted = Counter(expected)
        missing, unexpected = set(wanted) - set(self.applied), set(self.applied) - set(wanted)
        assert not missing and not unexpected, f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        assert all(count == 1 for count in self.applied.values())
        assert {event: seqs for event, seqs in self.seqs_by_event.items() if len(seqs) != 1} == {}

    # -- the websocket API -----------------------------------------------------------------------------

    def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        self.upgrades += 1
        if request.headers.get("X-Pbxlink-Probe") == "1":
            self.probe_upgrades += 1
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if token not in self.tokens or token in self.revoked:
            self.refused_upgrades += 1
            self._changed.set()
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unknown or revoked token\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        header = connection.request.headers["Authorization"] if connection.request else ""
        agent_id = self.tokens[header.removeprefix("Bearer ").strip()]
        agent = self._agents.setdefault(agent_id, _Agent(agent_id))
        agent.connections.append(connection)
        self.connections_opened += 1
        batches_here = 0
        self._changed.set()
        try:
            async for text in connection:
                try:
                    message = decode_agent_message(text)
                except ProtocolError as exc:
                    await connection.send(encode(ErrorMessage(code=exc.code, message=exc.message)))
                    continue
                if isinstance(message, CallEventsBatch):
                    batches_here += 1
                    self.batches += 1
                    if self.cut_after_batches is not None and batches_here >= self.cut_after_batches:
                        self._store(agent, message)  # stored, but the connection dies before the ack
                        connection.transport.abort()
                        break
                await self._on_message(agent, connection, message)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            agent.connections.remove(connection)
            if not agent.connections:
                self.gaps += 1
            self._changed.set()

    async def _on_message(self, agent: _Agent, connection: ServerConnection, message: Any) -> None:
        if isinstance(message, Hello):
            self.hellos.append(message)
            await connection.send(
                encode(Welcome(agent_id=agent.agent_id, tenant=self.tenant, acked_seq=agent.acked_seq))
            )
            if self.send_settings is not None:
                await connection.send(encode(self.send_settings))
        elif isinstance(message, CallEventsBatch):
            if self.refuse_batches:
                self.refuse_batches -= 1
                await connection.send(encode(ErrorMessage(code="internal", message="throttled", about="call_events")))
                return
            self.max_in_flight = max(self.max_in_flight, message.events[-1].seq - agent.acked_seq)
            self._store(agent, message)
            if self.acks_enabled:
                if self.ack_delay:
                    await asyncio.sleep(self.ack_delay)
                self._advance(agent, message)
                for _ in range(2 if self.duplicate_acks else 1):
                    await connection.send(encode(Ack(up_to_seq=agent.acked_seq)))
        elif isinstance(message, CommandResult):
            self.results.append(message)
            if self.acks_enabled:  # as the real cloud: confirmed by name
                await connection.send(encode(Ack(up_to_seq=agent.acked_seq, results=[message.command_id])))
        elif isinstance(message, Heartbeat):
            self.heartbeats.append(message)
        elif isinstance(message, ErrorMessage):
            self.errors.append(message)

    @staticmethod
    def _advance(agent: _Agent, batch: CallEventsBatch) -> None:
        """Ack a gap-free prefix, never just this batch's top: an earlier batch may have failed (or, on API
        Gateway, still be in another Lambda), and "up to" must mean everything up to."""
        if batch.after_seq is None:  # an agent that does not say where a batch continues from: contiguous seqs
            while agent.acked_seq + 1 in agent.stored_seqs:
                agent.acked_seq += 1
            return
        top = batch.events[-1].seq
        agent.parked[batch.after_seq] = max(agent.parked.get(batch.after_seq, 0), top)
        moved = True
        while moved:
            moved = False
            for after, end in list(agent.parked.items()):
                if after <= agent.acked_seq:
                    del agent.parked[after]
                    if end > agent.acked_seq:
                        agent.acked_seq, moved = end, True

    def _store(self, agent: _Agent, batch: CallEventsBatch) -> None:
        """Idempotent on event id, as the real cloud's conditional writes."""
        for item in batch.events:
            agent.stored_seqs.add(item.seq)
            event_id = item.event.event_id
            self.received[event_id] += 1
            self.seqs_by_event[event_id].add(item.seq)
            if event_id not in self.applied:
                self.applied[event_id] += 1
                self.events[event_id] = item.event
