"""Call events: what the edge agent learned about a call, in the order it learned it.

The agent's interpreter emits them; the cloud turns them into Bitrix24 operations. Each event carries its
call (the PBX's Linkedid) and a per-call sequence number, so ``event_id`` is stable across replays and
retries and the cloud can apply each event exactly once.

Times are UTC. Extensions are the PBX's endpoint names (``101``), never caller-id values, because
dialplans rewrite caller ids before dialing out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CallAnswered",
    "CallEnded",
    "CallEvent",
    "CallRecording",
    "CallResult",
    "CallRingStopped",
    "CallRinging",
    "CallStarted",
    "CallSummary",
    "CallTransferred",
    "Direction",
    "EndReason",
    "RingStopReason",
    "Transfer",
    "TransferKind",
]

Direction = Literal["inbound", "outbound", "internal"]
#: ``missed``: an inbound call nobody answered; ``no_answer``: an outbound or internal one.
CallResult = Literal["answered", "missed", "no_answer", "busy", "failed"]
TransferKind = Literal["blind", "attended"]
RingStopReason = Literal["answered", "answered_elsewhere", "cancelled", "no_answer", "busy", "unavailable"]
#: ``hangup``: the PBX hung up the call's last channel. ``lost``: the PBX no longer has the call but we did
#: not see it end (AMI was down); its end time is when we found out. ``backfilled``: the agent never saw the call
#: on AMI (it was down or disconnected) and rebuilt it afterwards from the PBX's CDR database; it is the call's
#: only event, and it never overrides a call that already ended otherwise.
EndReason = Literal["hangup", "lost", "backfilled"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Transfer(_Frozen):
    from_extension: str | None = Field(alias="from")
    to: str
    kind: TransferKind


class CallSummary(_Frozen):
    """One finished call; the ``edge-agent replay --summary`` contract (fields exactly as documented)."""

    call_id: str
    direction: Direction
    external_number: str | None
    line: str | None
    caller_extension: str | None
    rang: list[str]
    answered_by: str | None
    transfers: list[Transfer]
    final_extension: str | None
    result: CallResult
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    talk_seconds: int
    recording: str | None
    command_id: str | None

    def to_json_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


class _CallEventBase(_Frozen):
    call_id: str = Field(min_length=1, max_length=256)  # a Linkedid; the cloud keys DynamoDB items with it
    seq: int = Field(ge=1, description="1, 2, 3… within the call")
    at: datetime

    @property
    def event_id(self) -> str:
        return f"{self.call_id}:{self.seq}"


class CallStarted(_CallEventBase):
    """Sent as soon as the direction is known (inbound: first channel; outbound/internal: first dial)."""

    type: Literal["call_started"] = "call_started"
    direction: Direction
    external_number: str | None
    line: str | None
    caller_extension: str | None
    command_id: str | None = None


class CallRinging(_CallEventBase):
    """An extension started ringing for this call: show it the call card."""

    type: Literal["ringing"] = "ringing"
    extension: str


class CallRingStopped(_CallEventBase):
    """An extension stopped ringing without being the one who talks: hide its card."""

    type: Literal["ring_stopped"] = "ring_stopped"
    extension: str
    reason: RingStopReason


class CallAnswered(_CallEventBase):
    """The call was answered: by ``extension`` (inbound/internal), or by the outside party (outbound)."""

    type: Literal["answered"] = "answered"
    extension: str | None


class CallTransferred(_CallEventBase):
    type: Literal["transferred"] = "transferred"
    transfer: Transfer


class CallRecording(_CallEventBase):
    """MixMonitor started for this call; ``file`` as the dialplan gave it, ``path`` when Asterisk told us."""

    type: Literal["recording"] = "recording"
    file: str
    path: str | None = None


class CallEnded(_CallEventBase):
    type: Literal["call_ended"] = "call_ended"
    summary: CallSummary
    reason: EndReason = "hangup"


CallEvent = Annotated[
    CallStarted | CallRinging | CallRingStopped | CallAnswered | CallTransferred | CallRecording | CallEnded,
    Field(discriminator="type"),
]
