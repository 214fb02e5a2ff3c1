"""The call-state fold: any arrival order and any repetition of a call's events give the same state."""

from __future__ import annotations

from datetime import timedelta

from cloud_builders import AT, ended, ringing, started
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.calls.state import CallState, apply_event
from wire_protocol.call_events import (
    CallAnswered,
    CallEvent,
    CallRecording,
    CallRingStopped,
    CallTransferred,
    Transfer,
)


def new() -> CallState:
    return CallState(tenant="portal-a", agent_id="ag_1", call_id="pbx-1.1")


def fold(events: list[CallEvent]) -> CallState:
    state = new()
    for event in events:
        state = apply_event(state, event.seq, event)
    return state


EVENTS: list[CallEvent] = [
    started(seq=1),
    ringing("101", seq=2),
    ringing("102", seq=3),
    CallRingStopped(call_id="pbx-1.1", seq=4, at=AT, extension="102", reason="answered_elsewhere"),
    CallAnswered(call_id="pbx-1.1", seq=5, at=AT + timedelta(seconds=3), extension="101"),
    CallRecording(call_id="pbx-1.1", seq=6, at=AT, file="rec-1.wav"),
    CallTransferred(call_id="pbx-1.1", seq=7, at=AT, transfer=Transfer(from_extension="101", to="103", kind="blind")),
    ended(seq=8),
]


def test_in_order_fold() -> None:
    state = fold(EVENTS)
    assert state.status == "ended" and state.result == "answered"
    assert state.rang == ["101"]  # the summary's word once ended
    assert state.ringing_now == []
    assert state.answered_by == "101" and state.recording == "rec-1.wav"
    assert list(state.transfers.values()) == [Transfer(from_extension="101", to="103", kind="blind")]
    assert state.applied == list(range(1, 9)) and state.last_event_seq == 8


def test_while_ringing_the_cards_follow_the_latest_ring_event() -> None:
    state = fold(EVENTS[:4])
    assert state.status == "ringing"
    assert state.rang == ["101", "102"] and state.ringing_now == ["101"]
    answered = apply_event(state, 5, EVENTS[4])
    assert answered.status == "answered" and answered.answered_by == "101"


def test_a_ring_stop_before_its_ring_still_ends_stopped() -> None:
    stop, ring = EVENTS[3], EVENTS[2]
    assert fold([stop, ring]).ringing_now == fold([ring, stop]).ringing_now == []
    assert fold([stop, ring]).rang == ["102"]


def test_applying_an_event_twice_changes_nothing() -> None:
    once = fold(EVENTS[:5])
    assert apply_event(once, 5, EVENTS[4]) is once


@settings(max_examples=150, deadline=None)
@given(st.permutations(EVENTS), st.lists(st.sampled_from(EVENTS), max_size=6))
def test_any_order_and_repetition_gives_the_same_state(order: list[CallEvent], repeats: list[CallEvent]) -> None:
    assert fold([*order, *repeats]) == fold(EVENTS)


@settings(max_examples=100, deadline=None)
@given(st.permutations(EVENTS[:7]))
def test_any_order_of_an_unfinished_call_gives_the_same_state(order: list[CallEvent]) -> None:
    assert fold(order) == fold(EVENTS[:7])
