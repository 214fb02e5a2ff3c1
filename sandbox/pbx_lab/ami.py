"""A small asyncio AMI client for the lab driver (test control only; the product uses edge_agent/).

It keeps every event it receives in a bounded history, so a scenario can take a `mark()`, act, and then
`wait_event(predicate, since=mark)` without racing the event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

HISTORY = 50_000
FieldValue = str | int | float | list[str]


@dataclass
class Message:
    """One AMI message: ordered headers (duplicates kept); `msg["Key"]` is the first value, or ''."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    seq: int = 0

    def __getitem__(self, key: str) -> str:
        k = key.lower()
        for name, value in self.headers:
            if name.lower() == k:
                return value
        return ""

    def get(self, key: str, default: str = "") -> str:
        k = key.lower()
        for name, value in self.headers:
            if name.lower() == k:
                return value
        return default

    def getall(self, key: str) -> list[str]:
        k = key.lower()
        return [v for n, v in self.headers if n.lower() == k]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(n.lower() == key.lower() for n, _ in self.headers)

    @property
    def event(self) -> str:
        return self["Event"]

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for n, v in self.headers:
            out.setdefault(n, v)
        return out

    def __str__(self) -> str:
        return "\n".join(f"{n}: {v}" for n, v in self.headers)


class AmiError(RuntimeError):
    pass


EventPredicate = Callable[[Message], bool]


class AmiClient:
    """Connect, log in, send actions, read events."""

    def __init__(self, host: str, port: int, username: str, secret: str, *, events: str = "on") -> None:
        self.host = host
        self.port = port
        self.username = username
        self.secret = secret
        self.events_mask = events
        self.banner = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._lists: dict[str, list[Message]] = {}
        self._history: deque[Message] = deque(maxlen=HISTORY)
        self._seq = 0
        self._changed = asyncio.Condition()
        self._closed = False
        self.listeners: list[Callable[[Message], None]] = []

    # ------------------------------------------------------------------------------------------ connection
    async def connect(self, timeout: float = 10.0) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
        self._reader, self._writer = reader, writer
        line = await asyncio.wait_for(reader.readline(), timeout)
        self.banner = line.decode("utf-8", "replace").strip()
        if not self.banner.startswith("Asterisk Call Manager/"):
            raise AmiError(f"unexpected AMI banner {self.banner!r}")
        self._task = asyncio.create_task(self._read_loop(), name=f"ami-{self.port}-reader")
        resp = await self.action(
            "Login", Username=self.username, Secret=self.secret, Events=self.events_mask, timeout=timeout
        )
        if resp["Response"] != "Success":
            await self.close()
            raise AmiError(f"AMI login as {self.username} failed: {resp['Message']}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(b"Action: Logoff\r\n\r\n")
                await asyncio.wait_for(self._writer.drain(), 2)
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(AmiError("connection closed"))

    async def __aenter__(self) -> AmiClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        headers: list[tuple[str, str]] = []
        try:
            while True:
                raw = await self._reader.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line == "":
                    if headers:
                        await self._dispatch(Message(headers))
                        headers = []
                    continue
                name, sep, value = line.partition(":")
                if sep:
                    headers.append((name.strip(), value[1:] if value.startswith(" ") else value))
                else:
                    headers.append(("", line))
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(AmiError("AMI connection lost"))

    async def _dispatch(self, msg: Message) -> None:
        action_id = msg["ActionID"]
        if "Response" in msg and action_id in self._pending:
            fut = self._pending[action_id]
            if action_id in self._lists and msg["EventList"].lower() == "start":
                # list actions: wait for the ...Complete event
                self._lists[action_id].append(msg)
                return
            if not fut.done():
                fut.set_result(msg)
            return
        if "Event" in msg:
            if action_id in self._lists:
                items = self._lists[action_id]
                items.append(msg)
                if msg["EventList"].lower() in ("complete", "cancelled"):
                    waiter = self._pending.get(action_id)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(msg)
                return
            self._seq += 1
            msg.seq = self._seq
            self._history.append(msg)
            for listener in list(self.listeners):
                listener(msg)
            async with self._changed:
                self._changed.notify_all()

    # -------------------------------------------------------------------------------------------- actions
    async def _send(self, action: str, fields: Iterable[tuple[str, str]], action_id: str) -> None:
        if self._writer is None:
            raise AmiError("not connected")
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        lines.extend(f"{k}: {v}" for k, v in fields)
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self._writer.drain()

    @staticmethod
    def _fields(kw: Mapping[str, FieldValue]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for k, v in kw.items():
            if isinstance(v, list):
                out.extend((k, str(x)) for x in v)
            else:
                out.append((k, str(v)))
        return out

    async def action(self, action: str, *, timeout: float = 10.0, **fields: FieldValue) -> Message:
        """Send one action and return its response (any Response, including Error)."""
        return await self.request(action, fields, timeout=timeout)

    async def request(self, action: str, fields: Mapping[str, FieldValue], *, timeout: float = 10.0) -> Message:
        """Like `action`, with the headers as a mapping (list values become repeated headers)."""
        action_id = f"lab-{next(self._ids)}"
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = fut
        try:
            await self._send(action, self._fields(fields), action_id)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(action_id, None)

    async def action_list(
        self, action: str, *, timeout: float = 10.0, **fields: FieldValue
    ) -> tuple[Message, list[Message]]:
        """Send a list action (EventList: start ... Complete): (response, events without the Complete)."""
        action_id = f"lab-{next(self._ids)}"
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = fut
        self._lists[action_id] = []
        try:
            await self._send(action, self._fields(fields), action_id)
            last = await asyncio.wait_for(fut, timeout)
            items = self._lists[action_id]
            if "Response" in last:  # an error (or a non-list reply)
                return last, []
            resp = items[0] if items and "Response" in items[0] else Message([("Response", "Success")])
            events = [m for m in items if "Event" in m and m is not last]
            return resp, events
        finally:
            self._pending.pop(action_id, None)
            self._lists.pop(action_id, None)

    async def command(self, command: str, timeout: float = 10.0) -> str:
        resp = await self.action("Command", Command=command, timeout=timeout)
        if resp["Response"] == "Error":
            raise AmiError(f"command {command!r}: {resp['Message']}")
        return "\n".join(resp.getall("Output"))

    # --------------------------------------------------------------------------------------------- events
    def mark(self) -> int:
        """A position in the event stream: pass it as `since` to look only at later events."""
        return self._seq

    def events(self, since: int = 0) -> Iterator[Message]:
        return (m for m in list(self._history) if m.seq > since)

    async def wait_event(self, predicate: EventPredicate, *, since: int = 0, timeout: float = 10.0) -> Message:
        """The first event after `since` that satisfies `predicate` (already received or still to come)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        checked = since
        while True:
            for m in self.events(checked):
                checked = m.seq
                if predicate(m):
                    return m
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no matching AMI event on port {self.port} within {timeout} s")
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)


def match(event: str, **fields: str) -> EventPredicate:
    """Predicate: event name equals `event` and each given header equals its value (or startswith if it ends
    with '*')."""

    def pred(m: Message) -> bool:
        if m.event.lower() != event.lower():
            return False
        for k, v in fields.items():
            got = m[k]
            if v.endswith("*"):
                if not got.startswith(v[:-1]):
                    return False
            elif got != v:
                return False
        return True

    return pred
