"""Hostile AMI bytes (docs/reliability.md, "Hostile input"): the sans-I/O framer and the connector's protocol.

* :class:`AmiFramer`: any bytes in any chunking give the same messages as the whole at once, never raise, and
  the buffer never holds more than :data:`MAX_MESSAGE_BYTES` (a message that never ends is cut).
* the connector's ``_Protocol.data_received`` (panoramisk's protocol with our framing, what the socket feeds):
  never raises on junk (an exception there would make asyncio drop the AMI connection), with an action of ours
  waiting for its answer, and every event it hands on is a ``dict[str, str]``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fuzz_profile import LONG, fuzz
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.ami.connector import _Protocol
from edge_agent.ami.framing import MAX_MESSAGE_BYTES, AmiFramer, AmiMessage, format_action

_KEYS = st.sampled_from(["Event", "Response", "ActionID", "Uniqueid", "Channel", "Message", "Output", "Key", ""])
_VALUES = st.sampled_from(["Newchannel", "Success", "Error", "Follows", "pbxlink-1", "x: y", "", "é", "\ufffd"])
_LINE = st.one_of(
    st.tuples(_KEYS, _VALUES).map(lambda kv: f"{kv[0]}: {kv[1]}".encode()),
    st.tuples(_KEYS, st.text(max_size=20)).map(lambda kv: f"{kv[0]}: {kv[1]}".encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"Asterisk Call Manager/9.0.0", b"Key:", b"no separator", b": lonely", b"\xff\xfe"]),
    st.binary(max_size=30),
)
_EOL = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\n\n"])
_STREAM = st.lists(st.tuples(_LINE, _EOL).map(lambda le: le[0] + le[1]), max_size=40).map(b"".join)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    out, start = [], 0
    for point in [*points, len(data)]:
        out.append(data[start:point])
        start = point
    return out


@fuzz(600)
@given(_STREAM | st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=10), st.booleans())
def test_any_chunking_frames_the_same_messages(data: bytes, cuts: list[int], banner: bool) -> None:
    whole = AmiFramer(expect_banner=banner).feed(data)
    framer = AmiFramer(expect_banner=banner)
    pieces: list[AmiMessage] = []
    for chunk in _chunks(data, cuts):
        pieces += framer.feed(chunk)
    assert pieces == whole
    for message in pieces:
        assert message and all(isinstance(k, str) and isinstance(v, str) for k, v in message.items())


@fuzz(20)
@given(st.binary(min_size=512, max_size=64 * 1024).map(lambda b: b.replace(b"\n", b"x")), st.integers(1, 8))
def test_a_message_that_never_ends_keeps_the_buffer_bounded(chunk: bytes, rounds: int) -> None:
    framer = AmiFramer(expect_banner=False)
    size = MAX_MESSAGE_BYTES * (rounds if LONG else 2) // len(chunk) + 1
    for _ in range(size):
        assert framer.feed(chunk) == []
        assert framer.buffered <= MAX_MESSAGE_BYTES
    assert framer.dropped_bytes > 0
    assert framer.feed(b"\r\n\r\nEvent: Hangup\r\n\r\n")[-1] == {"Event": "Hangup"}  # and it recovers


# -- the connector's protocol -------------------------------------------------------------------------------


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class _Factory:
    """What panoramisk's protocol calls on its manager."""

    forgetable_actions: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.awaiting_actions: list[Any] = []
        self.dispatched: list[Any] = []
        self.lost = 0

    def dispatch(self, message: Any) -> None:
        self.dispatched.append(message)

    def connection_lost(self, exc: object) -> None:
        self.lost += 1


def _wire(messages: list[dict[str, str]]) -> bytes:
    return b"".join(format_action(m) for m in messages)


_ACTION_ID = "pbxlink-fuzz-1"
_MESSAGE = st.dictionaries(
    st.sampled_from(["Event", "Response", "ActionID", "CommandID", "EventList", "Message", "Uniqueid", "Channel"]),
    st.sampled_from(["Success", "Error", "Follows", "start", "Complete", "Newchannel", "Shutdown", _ACTION_ID, "x"]),
    max_size=5,
)


@fuzz(300)
@given(
    st.lists(_MESSAGE, max_size=12).map(_wire) | _STREAM,
    st.lists(st.integers(0, 2000), max_size=6),
    st.sampled_from([{"Action": "Ping"}, {"Action": "CoreShowChannels"}, {"Action": "Originate", "Async": "true"}]),
)
def test_the_connector_protocol_never_raises_on_what_asterisk_sends(
    data: bytes, cuts: list[int], action: dict[str, str]
) -> None:
    async def scenario() -> None:
        protocol = _Protocol()
        protocol.connection_made(_Transport())
        factory = _Factory()
        protocol.factory = factory
        events: list[AmiMessage] = []
        protocol.on_raw_event = events.append
        protocol.send({**action, "ActionID": _ACTION_ID})  # an action of ours waiting for its answer
        for chunk in _chunks(b"Asterisk Call Manager/9.0.0\r\n" + data, cuts):
            protocol.data_received(chunk)  # never raises
        for event in events:
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.items())

    asyncio.run(scenario())


@pytest.mark.parametrize("shutdown_first", [True, False])
def test_shutdown_mid_read_stops_delivery(shutdown_first: bool) -> None:
    """The property test's oracle for one known case: after ``Shutdown`` the rest of that read is not delivered."""

    async def scenario() -> list[AmiMessage]:
        protocol = _Protocol()
        protocol.connection_made(_Transport())
        protocol.factory = _Factory()
        events: list[AmiMessage] = []
        protocol.on_raw_event = events.append
        first, second = {"Event": "Shutdown"}, {"Event": "Hangup", "Uniqueid": "u1"}
        protocol.data_received(_wire([first, second] if shutdown_first else [second, first]))
        return events

    events = asyncio.run(scenario())
    assert [e["Event"] for e in events] == (["Shutdown"] if shutdown_first else ["Hangup", "Shutdown"])
