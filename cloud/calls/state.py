"""A call's state, folded from its events by a pure function (:func:`apply_event`).

Events can arrive late, twice, or out of order (a replayed outbox, two Lambdas running concurrently), so the
fold does not depend on arrival order: every field is decided by the event's per-call ``seq`` (lowest seq
wins for "first" facts, highest for "latest"), and the summary of ``call_ended``, the agent's final word,
wins over what the cloud pieced together. Applying an event already applied returns the state unchanged.

A ``call_ended`` with reason ``backfilled`` (the agent rebuilt a call it never saw from the PBX's CDR) may be a
call's only event; it never overrides a call that already ended another way, whichever arrives first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from wire_protocol.call_events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRecording,
    CallResult,
    CallRinging,
    CallRingStopped,
    CallStarted,
    CallSummary,
    CallTransferred,
    Direction,
    EndReason,
    Transfer,
)

__all__ = ["CallState", "CallStatus", "RingTrack", "apply_event", "lost_summary"]

CallStatus = Literal["started", "ringing", "answered", "ended"]


class RingTrack(BaseModel):
    """One extension's ringing: when it first rang, and its latest ring event."""

    model_config = ConfigDict(frozen=True)

    first_seq: int | None = None  # the first ``ringing`` event; None if only a ring_stopped was seen
    last_seq: int
    ringing: bool


class CallState(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str
    agent_id: str
    call_id: str
    direction: Direction | None = None
    external_number: str | None = None
    line: str | None = None
    caller_extension: str | None = None
    command_id: str | None = None
    started_at: datetime | None = None
    rings: dict[str, RingTrack] = Field(default_factory=dict)
    answered_by: str | None = None
    answered_at: datetime | None = None
    answered_seq: int | None = None
    #: By per-call seq (as a string: DynamoDB map keys are strings).
    transfers: dict[str, Transfer] = Field(default_factory=dict)
    #: When each transfer happened, by the same key: where one leg of the call ends and the next begins.
    transfer_times: dict[str, datetime] = Field(default_factory=dict)
    #: From the latest ``recording`` event; the summary's ``recording`` is the final word once the call ended.
    recording: str | None = None
    recording_path: str | None = None
    recording_seq: int | None = None
    result: CallResult | None = None
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    summary: CallSummary | None = None
    #: Per-call seqs applied so far (sorted): the state's own idempotency record.
    applied: list[int] = Field(default_factory=list)
    last_event_seq: int = 0  # highest per-call seq applied
    last_event_at: datetime | None = None  # the latest event time: the last moment the PBX call is known to exist
    last_agent_seq: int = 0  # highest agent (outbox) seq applied
    #: Optimistic-locking counter, bumped by every write (see ``cloud.calls.store``).
    version: int = 0

    @property
    def status(self) -> CallStatus:
        if self.summary is not None:
            return "ended"
        if self.answered_seq is not None:
            return "answered"
        return "ringing" if self.rings else "started"

    @property
    def rang(self) -> list[str]:
        """Extensions that rang, in the order they started ringing."""
        if self.summary is not None:
            return list(self.summary.rang)
        first = [(track.first_seq, ext) for ext, track in self.rings.items() if track.first_seq is not None]
        return [ext for _, ext in sorted(first)]

    @property
    def ringing_now(self) -> list[str]:
        """Extensions whose card should show right now."""
        if self.summary is not None:
            return []
        return sorted(ext for ext, track in self.rings.items() if track.ringing)


def _ring(state: CallState, extension: str, seq: int, ringing: bool) -> dict[str, RingTrack]:
    rings = dict(state.rings)
    old = rings.get(extension)
    first = seq if ringing else None
    if old is not None and old.first_seq is not None:
        first = old.first_seq if first is None else min(first, old.first_seq)
    if old is None or seq > old.last_seq:
        rings[extension] = RingTrack(first_seq=first, last_seq=seq, ringing=ringing)
    else:
        rings[extension] = old.model_copy(update={"first_seq": first})
    return rings


def _earlier(new_seq: int, old_seq: int | None) -> bool:
    return old_seq is None or new_seq < old_seq


def _ends_anew(state: CallState, event: CallEnded) -> bool:
    """Does this end decide the call? A backfilled end only for a call not ended yet; any other end always
    (the AMI's view is richer than the CDR's, so it replaces a backfilled one)."""
    return state.summary is None or (event.reason != "backfilled")


def apply_event(state: CallState, agent_seq: int, event: CallEvent) -> CallState:
    """The state after ``event``; unchanged if it was already applied."""
    if event.seq in state.applied:
        return state
    update: dict[str, object] = {
        "applied": sorted([*state.applied, event.seq]),
        "last_event_seq": max(state.last_event_seq, event.seq),
        "last_agent_seq": max(state.last_agent_seq, agent_seq),
        "last_event_at": event.at if state.last_event_at is None else max(state.last_event_at, event.at),
    }
    match event:
        case CallStarted():
            update |= {
                "direction": state.direction if state.summary else event.direction,
                "external_number": state.external_number if state.summary else event.external_number,
                "line": state.line if state.summary else event.line,
                "caller_extension": state.caller_extension if state.summary else event.caller_extension,
                "command_id": state.command_id or event.command_id,
                "started_at": state.started_at if state.summary else event.at,
            }
        case CallRinging():
            update["rings"] = _ring(state, event.extension, event.seq, ringing=True)
        case CallRingStopped():
            update["rings"] = _ring(state, event.extension, event.seq, ringing=False)
        case CallAnswered():
            if event.extension is not None:
                # answering ends that phone's ringing (the agent sends no ring_stopped for the first answer)
                update["rings"] = _ring(state, event.extension, event.seq, ringing=False)
            if _earlier(event.seq, state.answered_seq):
                update["answered_seq"] = event.seq
                if state.summary is None:
                    update |= {"answered_by": event.extension, "answered_at": event.at}
                elif state.answered_at is None:
                    update["answered_at"] = event.at
        case CallTransferred():
            update["transfers"] = {**state.transfers, str(event.seq): event.transfer}
            update["transfer_times"] = {**state.transfer_times, str(event.seq): event.at}
        case CallRecording():
            if state.recording_seq is None or event.seq > state.recording_seq:
                update |= {"recording": event.file, "recording_path": event.path, "recording_seq": event.seq}
        case CallEnded() if not _ends_anew(state, event):
            pass  # a backfilled end for a call that already ended: recorded as applied, changes nothing
        case CallEnded():
            summary = event.summary
            update |= {
                "summary": summary,
                "result": summary.result,
                "ended_at": summary.ended_at,
                "end_reason": event.reason,
                "direction": summary.direction,
                "external_number": summary.external_number,
                "line": summary.line,
                "caller_extension": summary.caller_extension,
                "command_id": summary.command_id or state.command_id,
                "started_at": summary.started_at,
                "answered_by": summary.answered_by,
            }
            if summary.answered_at is not None:
                update["answered_at"] = summary.answered_at
    return state.model_copy(update=update)


def lost_summary(state: CallState, ended_at: datetime) -> CallSummary:
    """What is known of a call whose end will never be reported (its agent is gone, or lost it): the summary
    the cloud finishes it with, ended at ``ended_at`` (its last known moment)."""
    assert state.direction is not None and state.started_at is not None
    transfers = [state.transfers[seq] for seq in sorted(state.transfers, key=int)]
    answered = state.answered_seq is not None or state.answered_by is not None
    final = transfers[-1].to if transfers else state.answered_by or state.caller_extension
    if answered:
        result: CallResult = "answered"
    else:
        result = "missed" if state.direction == "inbound" else "no_answer"
    talk_from = state.answered_at if answered else None
    return CallSummary(
        call_id=state.call_id,
        direction=state.direction,
        external_number=state.external_number,
        line=state.line,
        caller_extension=state.caller_extension,
        rang=state.rang,
        answered_by=state.answered_by,
        transfers=transfers,
        final_extension=final if answered or state.direction != "inbound" else None,
        result=result,
        started_at=state.started_at,
        answered_at=talk_from,
        ended_at=ended_at,
        talk_seconds=max(0, round((ended_at - talk_from).total_seconds())) if talk_from else 0,
        recording=state.recording,
        command_id=state.command_id,
    )
