"""The interpreter's memory: channels it has seen and the calls they belong to.

Both are released as soon as they end, so memory depends on calls in progress, not on calls seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.calls.channels import ParsedChannel
from wire_protocol.call_events import Direction, Transfer

__all__ = ["Call", "Channel"]


@dataclass(slots=True, eq=False)
class Channel:
    uniqueid: str
    name: str
    parsed: ParsedChannel
    call: Call
    #: The dialplan extension the channel was created for (for a trunk's first channel: the DID).
    exten: str
    #: The last ChannelState Asterisk reported ("5" Ringing, "6" Up, ...).
    state: str = ""
    #: The extension this channel was dialed for, between DialBegin and DialEnd.
    ringing_for: str | None = None
    #: True once that dial made the phone ring (Newstate Ringing/Up): only then did the extension "ring".
    alerting: bool = False
    #: The bridge the channel is in (BridgeEnter/BridgeLeave).
    bridge: str | None = None
    #: True for a leg dialed to the outside (a trunk) by this call.
    outside_leg: bool = False


@dataclass(slots=True, eq=False)
class Call:
    call_id: str
    started_at: float
    direction: Direction | None = None
    started_sent: bool = False
    seq: int = 0
    external_number: str | None = None
    line: str | None = None
    caller_extension: str | None = None
    command_id: str | None = None
    #: The number a click-to-call command asked to dial (from the Originate's variables).
    command_number: str | None = None
    #: The first channel seen; for a Local originate its ``;2`` half shares ``origin_pair``.
    origin_pair: str | None = None
    #: The channel whose talking partner is "the extension on the call": the outside party (inbound: the
    #: first channel; outbound: the answered trunk leg), or the caller for an internal call.
    anchor: str | None = None
    queued: bool = False
    rang: list[str] = field(default_factory=list)
    #: extension -> how many of its legs are ringing now (an extension can ring on two legs at once).
    ringing: dict[str, int] = field(default_factory=dict)
    answered_by: str | None = None
    answered_at: float | None = None
    connected: str | None = None
    #: The extension whose leg answered last (the consulted party of an attended transfer, for one).
    last_answered_leg: str | None = None
    transfers: list[Transfer] = field(default_factory=list)
    #: DialStatus of the last dial that decides an unanswered call's result.
    last_dial_status: str | None = None
    recording: str | None = None
    recording_path: str | None = None
    recording_sent: bool = False
    channels: set[str] = field(default_factory=set)
