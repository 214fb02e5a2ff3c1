"""Cumulative acks stay honest when API Gateway runs batches concurrently: never ack past a gap."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from cloud_builders import CID, batch, ringing, started

from cloud.agents import tokens
from cloud.calls import store
from cloud.errors import StorageConflict
from cloud.link import acks
from cloud.link.dispatch import handle_agent_message
from cloud.runtime import Runtime
from wire_protocol.call_events import CallEvent
from wire_protocol.messages import Ack, SequencedEvent, batch_events

pytest_plugins = ["cloud_testkit"]


def calls(first: int, last: int) -> list[tuple[int, CallEvent]]:
    """Agent seqs first..last, one call_started each (distinct calls)."""
    return [(seq, started(call_id=f"pbx-{seq}.1")) for seq in range(first, last + 1)]


def replies(rt: Runtime, frame: str) -> list[Any]:
    return handle_agent_message(rt, CID, frame).replies


def test_a_later_batch_stored_first_is_not_acked_until_the_gap_fills(rt: Runtime, agent_id: str) -> None:
    assert replies(rt, batch(*calls(4, 6), after=3)) == []  # stored, parked behind the gap 1..3
    assert replies(rt, batch(*calls(1, 3), after=0)) == [Ack(up_to_seq=6)]  # fills it and absorbs 4..6
    assert tokens.get_agent(rt, "portal-a", agent_id).acked_seq == 6


def test_a_lost_batch_is_recovered_by_the_replay_after_welcome(rt: Runtime, agent_id: str) -> None:
    replies(rt, batch(*calls(1, 2), after=0))
    assert replies(rt, batch(*calls(5, 6), after=4)) == []  # batch 3..4 never arrived
    assert tokens.get_agent(rt, "portal-a", agent_id).acked_seq == 2  # what welcome tells the agent
    assert replies(rt, batch(*calls(3, 6), after=2)) == [Ack(up_to_seq=6)]  # the replay from seq 2


def test_several_parked_ranges_chain(rt: Runtime, agent_id: str) -> None:
    assert replies(rt, batch(*calls(7, 9), after=6)) == []
    assert replies(rt, batch(*calls(4, 6), after=3)) == []
    assert replies(rt, batch(*calls(1, 3), after=0)) == [Ack(up_to_seq=9)]


def test_a_seq_the_agent_set_aside_is_no_gap(rt: Runtime, agent_id: str) -> None:
    """The agent rejected seq 3 (too large to send): its next batch continues from what it sent last, 2."""
    replies(rt, batch(*calls(1, 2), after=0))
    assert replies(rt, batch(*calls(4, 5), after=2)) == [Ack(up_to_seq=5)]


def test_a_partly_stored_batch_acks_its_stored_prefix(rt: Runtime, agent_id: str) -> None:
    real = store.record_events

    def flaky(rt_: Runtime, tenant: str, agent: str, items: list[tuple[int, CallEvent]]) -> int:
        if any(seq == 3 for seq, _ in items):
            raise RuntimeError("throttled")
        return real(rt_, tenant, agent, items)

    with mock.patch("cloud.link.dispatch.record_events", side_effect=flaky):
        answer = replies(rt, batch(*calls(1, 4), after=0))
    assert answer[0] == Ack(up_to_seq=2) and answer[1].code == "internal"
    assert replies(rt, batch(*calls(3, 4), after=2)) == [Ack(up_to_seq=4)]


def test_after_a_failure_the_ack_stops_at_what_this_message_stored(rt: Runtime, agent_id: str) -> None:
    """A parked range may be absorbed, but the agent resends the failed rest anyway: ack conservatively."""
    assert replies(rt, batch(*calls(4, 6), after=3)) == []  # parked
    real = store.record_events

    def flaky(rt_: Runtime, tenant: str, agent: str, items: list[tuple[int, CallEvent]]) -> int:
        if any(seq == 4 for seq, _ in items):
            raise RuntimeError("throttled")
        return real(rt_, tenant, agent, items)

    with mock.patch("cloud.link.dispatch.record_events", side_effect=flaky):
        answer = replies(rt, batch(*calls(1, 4), after=0))
    assert answer[0] == Ack(up_to_seq=3)
    assert replies(rt, batch(*calls(4, 4), after=3)) == [Ack(up_to_seq=6)]


def test_older_agents_without_after_seq_get_the_batch_top(rt: Runtime, agent_id: str) -> None:
    assert replies(rt, batch(*calls(4, 6))) == [Ack(up_to_seq=6)]
    assert replies(rt, batch(*calls(1, 2))) == [Ack(up_to_seq=6)]


def test_concurrent_ack_updates_retry_instead_of_losing_a_range(rt: Runtime, agent_id: str) -> None:
    real = rt.dynamodb.update_item
    raced = False

    def racing(**kwargs: Any) -> Any:
        nonlocal raced
        if not raced and "ack_version" in kwargs.get("UpdateExpression", ""):
            raced = True  # another Lambda parks 4..6 between our read and our write
            with mock.patch.object(rt.dynamodb, "update_item", real):
                assert acks.advance(rt, "portal-a", agent_id, 3, 6) == 0
        return real(**kwargs)

    with mock.patch.object(rt.dynamodb, "update_item", side_effect=racing):
        assert acks.advance(rt, "portal-a", agent_id, 0, 3) == 6


def test_ack_state_that_never_settles_gives_up(rt: Runtime, agent_id: str) -> None:
    failure = rt.dynamodb.exceptions.ConditionalCheckFailedException(
        {"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem"
    )
    with mock.patch.object(rt.dynamodb, "update_item", side_effect=failure), pytest.raises(StorageConflict):
        acks.advance(rt, "portal-a", agent_id, 0, 3)


def test_batch_events_chains_after_seq() -> None:
    events = [SequencedEvent(seq=n, event=ringing(str(n), call_id=f"c{n}", seq=1)) for n in range(11, 300)]
    batches = list(batch_events(events, max_bytes=4000, after_seq=10))
    assert len(batches) > 2
    assert [b.after_seq for b in batches] == [10] + [b.events[-1].seq for b in batches[:-1]]
    assert all(b.after_seq is None for b in batch_events(events))
