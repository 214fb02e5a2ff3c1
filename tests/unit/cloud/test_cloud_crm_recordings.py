"""AttachRecord's decision table: the recording goes on the call's last leg after its finish, once, only when
the tenant wants recordings, the license has them and the upload succeeded."""

from __future__ import annotations

from pathlib import Path

import pytest
from crm_simulation import DIRECTORY, only, run
from test_cloud_crm_planner import DECISIONS

from cloud.calls.state import CallState, apply_event
from cloud.crm.planner import PlanContext, RecordingRef, plan
from cloud.crm.settings import CrmSettings
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from wire_protocol.call_events import CallEvent

TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
KEY = "t/a1/call/recording"


def events_of(name: str) -> list[CallEvent]:
    return CallInterpreter().feed_many(read_trace(TRACES / f"{name}.jsonl"))


def uploaded(name: str = "rec.mp3", state: str = "uploaded") -> RecordingRef:
    return RecordingRef(state=state, object_key=KEY, filename=name)


RECORDED = sorted(name for name in DECISIONS if not name.startswith("internal"))  # internal calls: no MixMonitor


@pytest.mark.parametrize("name", RECORDED)
def test_an_uploaded_recording_is_attached_after_the_last_finish_in_a_request_of_its_own(name: str) -> None:
    outcome = only(run(events_of(name), context={"recordings": True, "recording": uploaded()}))
    *before, last = outcome.requests
    assert before == DECISIONS[name]  # nothing else changes
    last_leg = max(outcome.progress.legs)
    call_id = outcome.progress.leg(last_leg).call_id
    assert last == [f"attach {last_leg} {call_id} rec.mp3"]
    assert outcome.progress.record_attached == KEY
    assert outcome.last_plan.done


def test_a_transferred_call_gets_the_whole_recording_on_its_last_leg() -> None:
    outcome = only(run(events_of("attended_transfer"), context={"recordings": True, "recording": uploaded()}))
    assert outcome.requests[-1] == ["attach 1 externalCall.a1:pbx-1795686777.165:1 rec.mp3"]
    assert sum(request[0].startswith("attach") for request in outcome.requests) == 1


@pytest.mark.parametrize(
    ("context", "why"),
    [
        ({"recordings": False, "recording": uploaded()}, "disabled in settings or not licensed"),
        ({"recordings": True, "recording": None}, "the agent never offered one"),
        ({"recordings": True, "recording": uploaded(state="failed")}, "the agent could not upload it"),
        ({"recordings": True, "recording": uploaded(state="expired")}, "retention deleted it"),
    ],
)
def test_no_attach_and_the_call_is_done(context: dict[str, object], why: str) -> None:
    outcome = only(run(events_of("inbound_direct_answered"), context=context))
    assert outcome.requests == DECISIONS["inbound_direct_answered"], why
    assert outcome.last_plan.done, why


def test_a_recording_still_uploading_keeps_the_call_waiting_without_requests() -> None:
    context = {"recordings": True, "recording": uploaded(state="requested")}
    outcome = only(run(events_of("inbound_direct_answered"), context=context))
    assert outcome.requests == DECISIONS["inbound_direct_answered"]
    assert not outcome.last_plan.done and not outcome.last_plan.ops and outcome.last_plan.blocked is None


def test_never_before_the_finish_even_when_the_upload_was_quick() -> None:
    """A recording uploaded while the call is still being finished waits for the finish (Bitrix24 attaches only
    to calls in its statistics)."""
    events = events_of("inbound_direct_answered")
    outcome = only(run(events[:-1], context={"recordings": True, "recording": uploaded()}))
    assert not any(op.startswith("attach") for op in outcome.flat)


def test_an_attached_recording_is_not_attached_again_but_a_new_object_is() -> None:
    events = events_of("inbound_direct_answered")
    progress = only(run(events, context={"recordings": True, "recording": uploaded()})).progress
    assert progress.record_attached == KEY
    state = CallState(tenant="t", agent_id="a1", call_id=events[0].call_id)
    for n, event in enumerate(events, start=1):
        state = apply_event(state, n, event)
    same = PlanContext(settings=CrmSettings(), directory=DIRECTORY, recordings=True, recording=uploaded())
    assert plan(state, progress, same).done and not plan(state, progress, same).ops
    other = RecordingRef(state="uploaded", object_key="t/a1/call/recording-2", filename="rec.wav")
    again = plan(state, progress, PlanContext(CrmSettings(), DIRECTORY, recordings=True, recording=other))
    assert [op.op for op in again.ops] == ["attach_record"]
