"""A call the agent rebuilt from the PBX's CDR arrives as one ``call_ended`` with reason ``backfilled``."""

from __future__ import annotations

from cloud_builders import ended

from cloud.calls.state import CallState, apply_event
from wire_protocol.call_events import CallEnded


def new() -> CallState:
    return CallState(tenant="portal-a", agent_id="ag_1", call_id="pbx-1.1")


def backfilled(seq: int = 1, answered_by: str | None = "102") -> CallEnded:
    return ended(seq=seq, answered_by=answered_by).model_copy(update={"reason": "backfilled"})


def test_a_lone_backfilled_end_is_a_whole_call() -> None:
    state = apply_event(new(), 7, backfilled())
    assert state.status == "ended" and state.end_reason == "backfilled"
    assert state.direction == "inbound" and state.external_number == "79261234567" and state.line == "74950000000"
    assert state.answered_by == "102" and state.result == "answered" and state.rang == ["101"]
    assert state.started_at is not None and state.ended_at is not None and state.answered_at is not None
    assert state.applied == [1] and state.last_agent_seq == 7


def test_a_backfilled_end_for_a_call_that_already_ended_changes_nothing() -> None:
    state = apply_event(apply_event(new(), 1, ended(seq=3, answered_by="101")), 2, backfilled(seq=4))
    reference = apply_event(new(), 1, ended(seq=3, answered_by="101"))
    facts = {"applied", "last_event_seq", "last_agent_seq"}
    assert state.model_dump(exclude=facts) == reference.model_dump(exclude=facts)
    assert state.end_reason == "hangup" and state.answered_by == "101"
    assert state.applied == [3, 4]  # stored, so recorded as applied (the store's idempotency relies on it)


def test_the_pbx_end_wins_over_a_backfilled_one_whichever_comes_first() -> None:
    first = apply_event(apply_event(new(), 1, backfilled(seq=4)), 2, ended(seq=3, answered_by="101"))
    second = apply_event(apply_event(new(), 1, ended(seq=3, answered_by="101")), 2, backfilled(seq=4))
    assert first == second
    assert first.end_reason == "hangup" and first.answered_by == "101"


def test_a_lost_end_is_kept_too() -> None:
    lost = ended(seq=2).model_copy(update={"reason": "lost"})
    state = apply_event(apply_event(new(), 1, lost), 2, backfilled(seq=3))
    assert state.end_reason == "lost"
