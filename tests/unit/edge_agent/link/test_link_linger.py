"""With ``start_linger``, a lone inbound call start waits a few milliseconds for its ringing (one message
instead of two); nothing else waits. Off by default."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.link.protocol import Effect, LinkProtocol, LinkTimings, Send
from edge_agent.outbox import Outbox
from wire_protocol.call_events import CallEvent, CallRinging, CallStarted, Direction
from wire_protocol.messages import CallEventsBatch, Hello, Welcome, decode_agent_message, encode

T0 = 1_800_000_000.0
AT = datetime(2026, 1, 1, tzinfo=UTC)
LINGER = 0.02


def started(call: str, direction: Direction = "inbound") -> CallEvent:
    return CallStarted(
        call_id=call,
        seq=1,
        at=AT,
        direction=direction,
        external_number="79261234567",
        line="74950000000",
        caller_extension=None,
    )


def ringing(call: str) -> CallEvent:
    return CallRinging(call_id=call, seq=2, at=AT, extension="101")


def batches(effects: list[Effect]) -> list[list[int]]:
    messages = [decode_agent_message(e.text) for e in effects if isinstance(e, Send)]
    return [[item.seq for item in m.events] for m in messages if isinstance(m, CallEventsBatch)]


@pytest.fixture
def protocol(tmp_path: Path) -> LinkProtocol:
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: T0)
    link = LinkProtocol(outbox, Hello(agent_version="0.1.0"), timings=LinkTimings(start_linger=LINGER))
    link.connection_opened(1, T0)
    link.received(1, encode(Welcome(agent_id="a1", tenant="t1", acked_seq=0)), T0)
    return link


def test_a_lone_inbound_start_waits_for_its_ringing_and_goes_with_it(protocol: LinkProtocol) -> None:
    protocol.outbox.append([started("a")])  # type: ignore[attr-defined]
    assert batches(protocol.events_stored(T0)) == []
    assert protocol.next_deadline() == pytest.approx(T0 + LINGER)
    protocol.outbox.append([ringing("a")])  # type: ignore[attr-defined]
    assert batches(protocol.events_stored(T0 + 0.006)) == [[1, 2]]


def test_a_lone_start_goes_alone_when_nothing_follows_in_time(protocol: LinkProtocol) -> None:
    protocol.outbox.append([started("a")])  # type: ignore[attr-defined]
    assert batches(protocol.events_stored(T0)) == []
    assert batches(protocol.tick(T0 + 0.01)) == []
    assert batches(protocol.tick(T0 + LINGER)) == [[1]]


def test_an_outbound_start_is_not_held(protocol: LinkProtocol) -> None:
    protocol.outbox.append([started("a", "outbound")])  # type: ignore[attr-defined]
    assert batches(protocol.events_stored(T0)) == [[1]]


def test_no_linger_by_default(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: T0)
    link = LinkProtocol(outbox, Hello(agent_version="0.1.0"))
    link.connection_opened(1, T0)
    link.received(1, encode(Welcome(agent_id="a1", tenant="t1", acked_seq=0)), T0)
    outbox.append([started("a")])
    assert batches(link.events_stored(T0)) == [[1]]
