"""One AMI connection: the banner, reading actions in order, writing responses and events.

Actions on a connection are handled one at a time, in arrival order, as Asterisk's per-session thread does
(a synchronous Originate therefore holds back the answers to later actions on that connection). Writes go
through one lock so that a message split into chunks (``split_writes``) is never interleaved with another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from edge_agent.ami.framing import AmiFramer, AmiMessage, format_action
from sandbox.ami_server.actions import dispatch
from sandbox.ami_server.filters import EventFilter, should_send
from sandbox.ami_server.privileges import event_classes

if TYPE_CHECKING:
    from sandbox.ami_server.server import FakeAmiServer

__all__ = ["AmiSession"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536
_MAX_CHUNK = 16


class AmiSession:
    """Per-connection state, the fields of manager.c's ``mansession_session`` that matter to a client."""

    def __init__(
        self, server: FakeAmiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        self.server = server
        self.number = number
        self.actions: list[AmiMessage] = []
        self.authenticated = False
        self.username = ""
        self.read: frozenset[str] = frozenset()
        self.write: frozenset[str] = frozenset()
        #: Classes this connection receives: the user's read classes intersected with the Events mask.
        self.send_events: frozenset[str] = frozenset()
        self.include_filters: list[EventFilter] = []
        self.exclude_filters: list[EventFilter] = []
        self.challenge = ""
        self._reader = reader
        self._writer = writer
        self._framer = AmiFramer(expect_banner=False)
        self._write_lock = asyncio.Lock()
        self.closed = False

    async def run(self) -> None:
        """Serve the connection until EOF, Logoff, a failed login or the server closing it."""
        try:
            await self.send_bytes(f"Asterisk Call Manager/{self.server.ami_version}\r\n".encode())
            while not self.closed:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                for action in self._framer.feed(data):
                    self.actions.append(action)
                    self.server.record_action(self, action)
                    if not await dispatch(self.server, self, action) or self.closed:
                        return
        except (ConnectionError, OSError):
            pass
        finally:
            await self.close()

    async def send(self, message: AmiMessage) -> None:
        """Write one response or event (the caller decides whether this connection should get it)."""
        await self.send_bytes(format_action(message))

    async def send_bytes(self, data: bytes) -> None:
        if self.closed or self._writer.is_closing():
            return
        if self.server.lf_only:
            data = data.replace(b"\r\n", b"\n")
        async with self._write_lock:
            try:
                if not self.server.split_writes:
                    self._writer.write(data)
                    await self._writer.drain()
                    return
                view = memoryview(data)
                while view:
                    size = self.server.random.randint(1, _MAX_CHUNK)
                    self._writer.write(bytes(view[:size]))
                    view = view[size:]
                    await self._writer.drain()
                    await asyncio.sleep(0)  # let the peer read this piece on its own
            except (ConnectionError, OSError):
                self.abort()

    def wants(self, event: AmiMessage, text: str) -> bool:
        """Would Asterisk queue ``event`` for this session: logged in, every class allowed, filters pass."""
        return (
            self.authenticated
            and not self.closed
            and event_classes(event) <= self.send_events
            and should_send(self.include_filters, self.exclude_filters, event.get("Event", ""), text)
        )

    def abort(self) -> None:
        """Drop the TCP connection without a FIN handshake's courtesy (RST if data is pending)."""
        self.closed = True
        self._writer.transport.abort()

    async def close(self) -> None:
        self.closed = True
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        self.server.forget(self)
