"""Turns Asterisk's AMI event stream into calls. Sans-I/O: messages in, call events out.

A call is keyed by its Linkedid (the Uniqueid of its oldest channel). A channel's Linkedid can change
when it is bridged with an older call (attended transfer, pickup); the channel then moves to that call.
A call ends when its last channel hangs up, and is forgotten then.

What decides what:

- direction: the first channel. A trunk's starts an inbound call at once; an extension's (or a Local
  originate's) waits for its first dial: to a trunk means outbound, to an extension internal.
- ringing / ring stopped / answered: DialBegin and DialEnd on extension legs (queues and ring groups
  dial through Local channels; the real phone's leg is what counts). Pickup and bridges fill the gaps.
- transfers: BlindTransfer and AttendedTransfer events.
- recording: the MixMonitor dialplan application's first argument.
- click-to-call: the ``PBXLINK_COMMAND_ID`` channel variable the agent sets on its Originate.

Time comes from the messages (``Timestamp`` when Asterisk sends it, else ``_ts`` stamped on receipt), never
from a clock. Bad input (missing fields, unknown channels, garbage) is logged once per kind and skipped; it
never raises and never disturbs other calls.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.channels import (
    ChannelKind,
    ChannelRules,
    ParsedChannel,
    number_from_dialstring,
    parse_channel,
)
from edge_agent.calls.state import Call, Channel
from edge_agent.trace import NumberMasker
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
    EndReason,
    RingStopReason,
    Transfer,
)

__all__ = [
    "AMI_EVENT_CLASSES",
    "AMI_EVENT_FILTERS",
    "COMMAND_ID_VARIABLE",
    "COMMAND_NUMBER_VARIABLE",
    "EVENTS_READ",
    "MAX_OPEN_CHANNELS",
    "ORIGINATE_ACTION_PREFIX",
    "CallInterpreter",
]

log = logging.getLogger(__name__)

#: Channel variables the agent's Originate sets, to tie the resulting call to the cloud's command.
COMMAND_ID_VARIABLE = "PBXLINK_COMMAND_ID"
COMMAND_NUMBER_VARIABLE = "PBXLINK_DIAL_NUMBER"
#: The agent's Originate actions carry ``ActionID: <prefix><command id>``; OriginateResponse echoes it.
ORIGINATE_ACTION_PREFIX = "pbxlink-originate/"

_ANONYMOUS = frozenset({"", "<unknown>", "unknown", "anonymous", "restricted", "private", "unavailable"})
_RING_STOP_REASON: dict[str, RingStopReason] = {
    "NOANSWER": "no_answer",
    "BUSY": "busy",
    "CHANUNAVAIL": "unavailable",
    "CONGESTION": "unavailable",
}
# Hangup cause -> the DialStatus a ringing leg that vanished without DialEnd would have had.
_CAUSE_STATUS = {"17": "BUSY", "18": "NOANSWER", "19": "NOANSWER", "20": "CHANUNAVAIL", "21": "BUSY"}
_FAILED_STATUSES = frozenset({"CHANUNAVAIL", "CONGESTION"})
_ALERTING_STATES = frozenset({"5", "6"})  # Ringing, Up
_VARIABLES = frozenset({"MIXMONITOR_FILENAME", COMMAND_ID_VARIABLE, COMMAND_NUMBER_VARIABLE})
#: Channels tracked at most. Beyond it the oldest channel is dropped as if it hung up unseen (its call, when it
#: was the last channel, ends ``lost``): memory stays bounded even if hangups never come (a PBX bug, a filter that
#: hides them, junk). A large Asterisk carries a few thousand channels; each costs the interpreter about 1 KB.
MAX_OPEN_CHANNELS = 20_000


#: Server-side AMI event filters (``Action: Filter``): only what the interpreter reads, so a busy PBX does not
#: flood the agent with Newexten/VarSet/RTCP events. POSIX ERE, matched against the whole event text.
#: Events read whole; Newexten and VarSet are read only for a few applications and variables.
_WHOLE_EVENTS = (
    "Newchannel",
    "Newstate",
    "DialBegin",
    "DialEnd",
    "BridgeEnter",
    "BridgeLeave",
    "BlindTransfer",
    "AttendedTransfer",
    "Pickup",
    "Hangup",
    "QueueCallerJoin",
    "OriginateResponse",
)
#: Every AMI event the interpreter reads (whole, or in part); anything else is ignored.
EVENTS_READ: tuple[str, ...] = (*_WHOLE_EVENTS, "Newexten", "VarSet")
#: Events the connector itself watches (a PBX restart or reload).
_CONNECTION_EVENTS = ("FullyBooted", "Shutdown", "Reload")
AMI_EVENT_FILTERS: tuple[str, ...] = (
    f"^Event: ({'|'.join(_WHOLE_EVENTS + _CONNECTION_EVENTS)})[[:space:]]",
    "^Event: Newexten[[:space:]].*Application: MixMonitor",
    f"^Event: VarSet[[:space:]].*Variable: _*(MIXMONITOR_FILENAME|{COMMAND_ID_VARIABLE}|{COMMAND_NUMBER_VARIABLE})",
)
#: AMI event classes (the Login ``Events:`` mask) those events belong to.
AMI_EVENT_CLASSES = "call,agent,dialplan,system"


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class CallInterpreter:
    """Feed it AMI messages in the order Asterisk sent them; it returns the call events each one caused."""

    def __init__(self, rules: ChannelRules | None = None) -> None:
        self.rules = rules or ChannelRules()
        self._channels: dict[str, Channel] = {}
        self._calls: dict[str, Call] = {}
        self._extension_cache: dict[str, bool] = {}
        self._parse_cache: dict[str, ParsedChannel] = {}
        self._bridges: dict[str, set[str]] = {}  # bridge id -> channels in it
        self._local_halves: dict[str, list[Channel]] = {}  # Local pair name -> its ;1 and ;2 channels
        # The message being interpreted; its time is parsed only when a call event needs it (most messages
        # never do, and reading and converting it for every one is measurable).
        self._message: AmiMessage = {}
        self._timed_message: AmiMessage | None = None
        self._now_value = 0.0
        self._out: list[CallEvent] = []
        self._masker = NumberMasker()
        #: Anomalies seen, by kind; each kind is logged once (with the message), then only counted.
        self.anomalies: Counter[str] = Counter()
        self._handlers: dict[str, Callable[[AmiMessage, Channel | None], None]] = {
            "Newchannel": self._on_newchannel,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "Hangup": self._on_hangup,
            "BridgeEnter": self._on_bridge_enter,
            "BridgeLeave": self._on_bridge_leave,
            "BlindTransfer": self._on_blind_transfer,
            "AttendedTransfer": self._on_attended_transfer,
            "Pickup": self._on_pickup,
            "Newexten": self._on_newexten,
            "VarSet": self._on_varset,
            "Newstate": self._on_newstate,
            "QueueCallerJoin": self._on_queue_join,
            "OriginateResponse": self._on_originate_response,
        }
        assert set(self._handlers) == set(EVENTS_READ), "keep AMI_EVENT_FILTERS in step"

    # -- public surface -------------------------------------------------------------------------------

    def set_rules(self, rules: ChannelRules) -> None:
        """New extension/trunk rules (from the cloud's settings): they apply to channels from now on."""
        self.rules = rules
        self._extension_cache.clear()
        self._parse_cache.clear()

    @property
    def open_calls(self) -> int:
        return len(self._calls)

    def open_call_ids(self) -> frozenset[str]:
        """Calls in progress (a backfill from the CDR must leave them to the interpreter)."""
        return frozenset(self._calls)

    @property
    def open_channels(self) -> int:
        return len(self._channels)

    def feed(self, message: AmiMessage) -> list[CallEvent]:
        """Interpret one AMI message; never raises on bad input."""
        handler = self._handlers.get(message.get("Event", ""))
        if handler is None:
            return []
        self._message = message  # its time is read only if a call event needs it
        out = self._out = []
        try:
            channel = self._channels.get(message.get("Uniqueid", ""))
            if channel is not None:
                linkedid = message.get("Linkedid")
                if linkedid and linkedid != channel.call.call_id:
                    self._move(channel, linkedid)
            handler(message, channel)
        except Exception:  # a bug on odd input must not take the other calls down with it
            self._anomaly("internal error while interpreting", message, exc_info=True)
        return out

    @property
    def _now(self) -> float:
        """The current message's time: Asterisk's ``Timestamp`` if sent, else ``_ts``, else the last known."""
        message = self._message
        if message is not self._timed_message:
            self._timed_message = message
            stamp = message.get("Timestamp") or message.get("_ts")
            if stamp:
                try:
                    self._now_value = float(stamp)
                except ValueError:
                    self._anomaly("unparsable timestamp", message)
        return self._now_value

    def _set_now(self, value: float) -> None:
        self._now_value = value
        self._timed_message = self._message

    def feed_many(self, messages: Iterable[AmiMessage]) -> list[CallEvent]:
        events: list[CallEvent] = []
        for message in messages:
            events.extend(self.feed(message))
        return events

    def reconcile(self, live_channels: Iterable[AmiMessage], at: float) -> list[CallEvent]:
        """Align with the PBX's list of live channels (``CoreShowChannel`` events) after an AMI gap.

        Channels we track that the PBX no longer has hung up while we were not looking: calls left with
        no channel end with reason ``lost``. Live channels we never saw (calls that started in the gap)
        are adopted so that their end is seen.
        """
        self._set_now(max(self._now, at))
        out = self._out = []
        live = [m for m in live_channels if m.get("Uniqueid") and m.get("Channel")]
        live_ids = {m["Uniqueid"] for m in live}
        for uniqueid in [u for u in self._channels if u not in live_ids]:
            self._drop_channel(self._channels[uniqueid], cause="", lost=True)
        # Oldest channel of each call first, so a call's first channel decides its direction.
        live.sort(key=lambda m: m.get("Uniqueid") != m.get("Linkedid"))
        for message in live:
            if message["Uniqueid"] not in self._channels:
                self._adopt(message)
        return out

    def end_all(self, at: float) -> list[CallEvent]:
        """End every open call as lost (used when the PBX says it has no channels at all)."""
        return self.reconcile([], at)

    # -- events ---------------------------------------------------------------------------------------

    def _on_newchannel(self, m: AmiMessage, channel: Channel | None) -> None:
        uniqueid, name = m.get("Uniqueid"), m.get("Channel")
        if not uniqueid or not name:
            self._anomaly("Newchannel without Uniqueid or Channel", m)
            return
        if uniqueid in self._channels:
            self._anomaly("Newchannel for a channel already known", m)
            return
        self._add_channel(m, uniqueid, name, m.get("Linkedid") or uniqueid)

    def _add_channel(self, m: AmiMessage, uniqueid: str, name: str, linkedid: str) -> Channel:
        call = self._calls.get(linkedid)
        first = call is None
        if call is None:
            call = self._calls[linkedid] = Call(call_id=linkedid, started_at=self._now)
        parsed = self._parse(name)
        channel = Channel(uniqueid, name, parsed, call, m.get("Exten", ""), state=m.get("ChannelState", ""))
        self._channels[uniqueid] = channel
        call.channels.add(uniqueid)
        if parsed.local_pair is not None:
            self._local_halves.setdefault(parsed.local_pair, []).append(channel)
        if first:
            call.origin_pair = parsed.local_pair
            call.anchor = uniqueid
            if parsed.kind is ChannelKind.TRUNK:
                call.direction = "inbound"
                call.external_number = self._caller_number(m.get("CallerIDNum", ""))
                exten = m.get("Exten", "")
                call.line = exten if exten and exten != "s" else None
                self._send_started(call)
            elif parsed.kind in (ChannelKind.EXTENSION, ChannelKind.LOCAL):
                call.caller_extension = parsed.extension
        if len(self._channels) > MAX_OPEN_CHANNELS:
            oldest = next(iter(self._channels.values()))
            self._anomaly("too many open channels", {"Channel": oldest.name, "Uniqueid": oldest.uniqueid})
            self._drop_channel(oldest, cause="", lost=True)
        return channel

    def _on_dial_begin(self, m: AmiMessage, channel: Channel | None) -> None:
        dest = self._channels.get(m.get("DestUniqueid", ""))
        if dest is None:
            self._anomaly("DialBegin to an unknown channel", m)
            return
        call = dest.call
        caller = channel
        kind = dest.parsed.kind
        if kind is ChannelKind.EXTENSION:
            extension = dest.parsed.extension
            assert extension is not None
            if call.direction is None:
                if extension == call.caller_extension and self._rings_originator(call, caller):
                    return  # an Originate ringing the user's own phone first (click-to-call)
                call.direction = "internal"
                self._send_started(call)
            dest.ringing_for = extension  # rings once the phone says so (Newstate Ringing) ...
            if m.get("DestChannelState") in _ALERTING_STATES or dest.state in _ALERTING_STATES:
                self._leg_alerting(dest)  # ... which can come before this DialBegin (threads race in Asterisk)
        elif kind is ChannelKind.TRUNK:
            dest.outside_leg = True
            if call.direction is None:
                call.direction = "outbound"
                call.external_number = (
                    number_from_dialstring(m.get("DialString", ""))
                    or call.command_number
                    or (caller.exten if caller else None)
                )
                self._send_started(call)
            elif (
                call.direction == "inbound"
                and caller is not None
                and caller.parsed.kind is ChannelKind.LOCAL
                and caller.parsed.extension is not None
            ):
                # follow-me / an extension forwarded to a mobile: the leg rings on that extension's behalf
                dest.ringing_for = caller.parsed.extension

    def _rings_originator(self, call: Call, caller: Channel | None) -> bool:
        """Is this dial an Originate ringing the user's own phone (before it calls the other party)?"""
        if caller is None or call.command_id is not None:
            return True  # only an Originate dials with no calling channel
        return (
            caller is not None
            and caller.parsed.local_pair is not None
            and (caller.parsed.local_pair == call.origin_pair)
        )

    def _on_dial_end(self, m: AmiMessage, channel: Channel | None) -> None:
        dest = self._channels.get(m.get("DestUniqueid", ""))
        if dest is None:
            self._anomaly("DialEnd to an unknown channel", m)
            return
        status = m.get("DialStatus", "")
        call = dest.call
        if dest.ringing_for is not None:
            self._leg_done(dest, status)
        elif dest.outside_leg:
            if status == "ANSWER":
                if call.direction == "outbound":
                    call.anchor = dest.uniqueid  # the outside party: whoever is bridged with it talks
                self._answered(call, None)
            else:
                call.last_dial_status = status

    def _on_hangup(self, m: AmiMessage, channel: Channel | None) -> None:
        if channel is None:
            self._anomaly("Hangup for a channel never seen", m)
            return
        self._drop_channel(channel, cause=m.get("Cause", ""), lost=False)

    def _on_bridge_enter(self, m: AmiMessage, channel: Channel | None) -> None:
        bridge = m.get("BridgeUniqueid", "")
        if channel is None or not bridge or m.get("BridgeTechnology") == "holding_bridge":
            return
        self._leave_bridge(channel)
        channel.bridge = bridge
        members = self._bridges.setdefault(bridge, set())
        members.add(channel.uniqueid)
        for call in {self._channels[uid].call for uid in members if uid in self._channels}:
            self._follow_talker(call)

    def _on_bridge_leave(self, m: AmiMessage, channel: Channel | None) -> None:
        if channel is not None:
            self._leave_bridge(channel)

    def _leave_bridge(self, channel: Channel) -> None:
        if channel.bridge is not None:
            members = self._bridges.get(channel.bridge)
            if members is not None:
                members.discard(channel.uniqueid)
                if not members:
                    del self._bridges[channel.bridge]
            channel.bridge = None

    def _follow_talker(self, call: Call) -> None:
        """Bridges changed: if an extension now talks with the call's other party, it is the one on the call.

        This is what tells a consultation (the consulted phone answered, but talks to the transferer) from a
        completed transfer (it talks to the customer), and who answered by pickup.
        """
        if call.direction is None or call.anchor is None:
            return
        talker = self._talker(call, call.anchor)
        if talker is not None and (talker != call.connected or call.answered_at is None):
            if call.direction == "outbound" and call.answered_at is None:
                return  # an outbound call is answered by the outside party, not by a bridge
            self._answered(call, talker)

    def _talker(self, call: Call, anchor_id: str) -> str | None:
        """The extension bridged with the anchor channel, following Local pairs (;1 <-> ;2) across bridges."""
        anchor = self._channels.get(anchor_id)
        if anchor is None:
            return None
        skip = call.caller_extension if call.direction == "internal" else None
        seen = {anchor.uniqueid}
        frontier = [anchor]
        while frontier:
            current = frontier.pop()
            neighbours: list[Channel] = []
            if current.bridge is not None:
                neighbours += [self._channels[u] for u in self._bridges.get(current.bridge, ()) if u in self._channels]
            if current.parsed.local_pair is not None:
                neighbours += self._local_halves.get(current.parsed.local_pair, ())
            for neighbour in neighbours:
                if neighbour.uniqueid in seen:
                    continue
                seen.add(neighbour.uniqueid)
                kind = neighbour.parsed.kind
                if kind is ChannelKind.EXTENSION and neighbour.parsed.extension != skip:
                    return neighbour.parsed.extension
                if kind is ChannelKind.LOCAL:
                    frontier.append(neighbour)
        return None

    def _on_blind_transfer(self, m: AmiMessage, channel: Channel | None) -> None:
        if m.get("Result") != "Success":
            return
        transferee = self._channels.get(m.get("TransfereeUniqueid", ""))
        if transferee is None:
            self._anomaly("BlindTransfer of an unknown channel", m)
            return
        target = m.get("Extension", "")
        from_extension = self._parse(m.get("TransfererChannel", "")).extension
        self._transferred(transferee.call, Transfer(from_extension=from_extension, to=target, kind="blind"))

    def _on_attended_transfer(self, m: AmiMessage, channel: Channel | None) -> None:
        if m.get("Result") != "Success":
            return
        transferee = self._channels.get(m.get("TransfereeUniqueid", "")) or self._channels.get(
            m.get("OrigTransfererUniqueid", "")
        )
        if transferee is None:
            self._anomaly("AttendedTransfer of an unknown channel", m)
            return
        from_extension = self._parse(m.get("OrigTransfererChannel", "")).extension
        call = transferee.call
        # Asterisk 22 leaves out TransferTarget* about one time in three (seen on the lab): then the consulted
        # party is who the transferer was talking to, or the last extension that answered a leg of this call.
        consulted = m.get("SecondTransfererConnectedLineNum", "")
        target = (
            self._parse(m.get("TransferTargetChannel", "")).extension
            or (consulted if consulted and self._is_extension(consulted) else None)
            or call.last_answered_leg
        )
        if target is None:
            self._anomaly("AttendedTransfer to a target that is not an extension", m)
            return
        self._transferred(call, Transfer(from_extension=from_extension, to=target, kind="attended"))
        self._answered(call, target)

    def _on_pickup(self, m: AmiMessage, channel: Channel | None) -> None:
        target = self._channels.get(m.get("TargetUniqueid", ""))
        picker = self._parse(m.get("Channel", ""))
        if target is None or picker.extension is None:
            self._anomaly("Pickup of an unknown channel or by a non-extension", m)
            return
        call = target.call
        if call.answered_at is None:
            self._answered(call, picker.extension)  # the picker answers; the rung phone stops ringing
        self._leg_done(target, "CANCEL")

    def _on_newexten(self, m: AmiMessage, channel: Channel | None) -> None:
        if m.get("Application") != "MixMonitor":
            return
        file = m.get("AppData", "").partition(",")[0].strip()
        if channel is not None and file and channel.call.recording is None:
            channel.call.recording = file  # announced with its full path by MIXMONITOR_FILENAME, or at the end

    def _on_varset(self, m: AmiMessage, channel: Channel | None) -> None:
        variable = m.get("Variable", "").lstrip("_")
        if variable not in _VARIABLES:
            return
        value = m.get("Value", "")
        if channel is None or not value:
            return
        call = channel.call
        if variable == "MIXMONITOR_FILENAME":
            if call.recording_path is None:
                call.recording_path = value
                call.recording = call.recording or value
                self._send_recording(call)
        elif variable == COMMAND_ID_VARIABLE:
            call.command_id = call.command_id or value
        else:
            call.command_number = call.command_number or value

    def _on_originate_response(self, m: AmiMessage, channel: Channel | None) -> None:
        action_id = m.get("ActionID", "")
        if not action_id.startswith(ORIGINATE_ACTION_PREFIX):
            return  # someone else's Originate
        if channel is not None and channel.call.command_id is None:
            channel.call.command_id = action_id.removeprefix(ORIGINATE_ACTION_PREFIX)

    def _on_queue_join(self, m: AmiMessage, channel: Channel | None) -> None:
        if channel is not None:
            channel.call.queued = True

    # -- call bookkeeping -----------------------------------------------------------------------------

    def _on_newstate(self, m: AmiMessage, channel: Channel | None) -> None:
        if channel is None:
            return
        channel.state = m.get("ChannelState", "")
        if channel.ringing_for is not None and channel.state in _ALERTING_STATES:
            self._leg_alerting(channel)

    def _leg_alerting(self, leg: Channel) -> None:
        """A dialed leg's phone rings (or answered straight away): the extension rang."""
        if leg.ringing_for is not None and not leg.alerting:
            leg.alerting = True
            self._ring(leg.call, leg.ringing_for)

    def _leg_done(self, leg: Channel, status: str) -> None:
        """A dialed leg's dial is over, with a DialStatus (real, or derived from a Hangup)."""
        extension = leg.ringing_for
        if extension is None:
            return
        if status in ("ANSWER", "NOANSWER"):
            self._leg_alerting(leg)  # it rang even if no Ringing state reached us (early media, auto-answer)
        leg.ringing_for = None
        if leg.alerting:
            leg.alerting = False
            self._ring_ended(leg.call, extension, status)
        else:
            leg.call.last_dial_status = status  # busy/unavailable/cancelled before it ever rang

    def _ring(self, call: Call, extension: str) -> None:
        legs = call.ringing.get(extension, 0)
        call.ringing[extension] = legs + 1
        if extension not in call.rang:
            call.rang.append(extension)
        if legs == 0:
            self._emit(CallRinging(call_id=call.call_id, seq=self._seq(call), at=self._at(), extension=extension))

    def _ring_ended(self, call: Call, extension: str, status: str) -> None:
        legs = call.ringing.get(extension, 0) - 1
        if legs > 0:
            call.ringing[extension] = legs
        else:
            call.ringing.pop(extension, None)
        if status == "ANSWER":
            call.last_answered_leg = extension
            if call.answered_at is None:
                self._answered(call, extension)
            elif legs <= 0:
                # answered while someone already talks (a consultation, a transfer target): who talks to
                # the other party is decided by the bridges; the card stops ringing either way
                self._send_ring_stopped(call, extension, "answered")
            return
        call.last_dial_status = status
        if legs <= 0:
            reason: RingStopReason = _RING_STOP_REASON.get(status, "cancelled")
            if status == "CANCEL" and call.answered_at is not None:
                reason = "answered_elsewhere"
            self._send_ring_stopped(call, extension, reason)

    def _answered(self, call: Call, extension: str | None) -> None:
        """``extension`` now talks on the call; ``None``: the outside party of an outbound call answered."""
        if call.answered_at is None:
            call.answered_at = self._now
            if call.direction != "outbound":
                call.answered_by = extension
        elif extension is None or extension == call.connected:
            return  # nothing new: the same party, seen again through another event
        call.connected = extension if extension is not None else (call.connected or call.caller_extension)
        if not call.started_sent:
            return  # a call whose start we missed (no direction): the summary keeps the answer, no orphan event
        self._emit(CallAnswered(call_id=call.call_id, seq=self._seq(call), at=self._at(), extension=extension))

    def _transferred(self, call: Call, transfer: Transfer) -> None:
        call.transfers.append(transfer)
        if not call.started_sent:
            return  # as for answers: no event the cloud could not tie to a started call
        self._emit(CallTransferred(call_id=call.call_id, seq=self._seq(call), at=self._at(), transfer=transfer))

    def _drop_channel(self, channel: Channel, *, cause: str, lost: bool) -> None:
        del self._channels[channel.uniqueid]
        self._leave_bridge(channel)
        if channel.parsed.local_pair is not None:
            halves = self._local_halves.get(channel.parsed.local_pair, [])
            if channel in halves:
                halves.remove(channel)
            if not halves:
                self._local_halves.pop(channel.parsed.local_pair, None)
        call = channel.call
        call.channels.discard(channel.uniqueid)
        if channel.ringing_for is not None:  # dialed, then vanished without a DialEnd
            self._leg_done(channel, _CAUSE_STATUS.get(cause, "CANCEL"))
        if not call.channels:
            self._end(call, "lost" if lost else "hangup")

    def _move(self, channel: Channel, linkedid: str) -> None:
        """The channel was bridged into an older call: it now belongs to that one."""
        old = channel.call
        new = self._calls.get(linkedid)
        if new is None:
            self._anomaly("Linkedid changed to a call never seen", {"Channel": channel.name, "Linkedid": linkedid})
            return
        if channel.ringing_for is not None:
            self._leg_done(channel, "CANCEL")
        old.channels.discard(channel.uniqueid)
        new.channels.add(channel.uniqueid)
        channel.call = new
        if not old.channels:
            self._end(old, "hangup")

    def _adopt(self, m: AmiMessage) -> None:
        """A live channel from a CoreShowChannels snapshot that we never saw start."""
        uniqueid, name = m["Uniqueid"], m["Channel"]
        channel = self._add_channel(m, uniqueid, name, m.get("Linkedid") or uniqueid)
        call = channel.call
        if channel.parsed.kind is ChannelKind.EXTENSION and channel.parsed.extension != call.caller_extension:
            extension = channel.parsed.extension
            assert extension is not None
            if call.direction is None:
                call.direction = "internal"
                self._send_started(call)
            if m.get("ChannelState") == "6":
                self._answered(call, extension)
            else:
                channel.ringing_for = extension
                self._leg_alerting(channel)
        elif channel.parsed.kind is ChannelKind.TRUNK and call.direction is None:
            call.direction = "outbound"
            call.external_number = m.get("Exten") or None
            self._send_started(call)
            if m.get("ChannelState") == "6":
                self._answered(call, None)

    def _end(self, call: Call, reason: EndReason) -> None:
        del self._calls[call.call_id]
        if call.direction is None:
            if call.command_id is not None:
                call.direction = "outbound"
                call.external_number = call.command_number
            elif call.queued:
                call.direction = "internal"
            else:
                return  # an extension that dialed nothing (voicemail, feature code): not a call
        for extension in list(call.ringing):
            self._send_ring_stopped(call, extension, "answered_elsewhere" if call.answered_at else "cancelled")
        call.ringing.clear()
        self._send_started(call)
        self._send_recording(call)
        summary = CallSummary(
            call_id=call.call_id,
            direction=call.direction,
            external_number=None if call.direction == "internal" else call.external_number,
            line=call.line if call.direction == "inbound" else None,
            caller_extension=None if call.direction == "inbound" else call.caller_extension,
            rang=call.rang,
            answered_by=call.answered_by,
            transfers=call.transfers,
            final_extension=self._final_extension(call),
            result=self._result(call),
            started_at=_utc(call.started_at),
            answered_at=_utc(call.answered_at) if call.answered_at is not None else None,
            ended_at=self._at(),
            talk_seconds=int(self._now - call.answered_at) if call.answered_at is not None else 0,
            recording=call.recording,
            command_id=call.command_id,
        )
        self._emit(CallEnded(call_id=call.call_id, seq=self._seq(call), at=self._at(), summary=summary, reason=reason))

    @staticmethod
    def _final_extension(call: Call) -> str | None:
        if call.connected is not None:
            return call.connected
        if call.direction == "inbound":
            return None
        return call.caller_extension

    @staticmethod
    def _result(call: Call) -> CallResult:
        if call.answered_at is not None:
            return "answered"
        if call.direction == "inbound":
            return "missed"
        status = call.last_dial_status
        if status == "BUSY":
            return "busy"
        if status in _FAILED_STATUSES:
            return "failed"
        return "no_answer"

    # -- helpers --------------------------------------------------------------------------------------

    def _send_started(self, call: Call) -> None:
        if call.started_sent or call.direction is None:
            return
        call.started_sent = True
        self._emit(
            CallStarted(
                call_id=call.call_id,
                seq=self._seq(call),
                at=_utc(call.started_at),
                direction=call.direction,
                external_number=None if call.direction == "internal" else call.external_number,
                line=call.line,
                caller_extension=None if call.direction == "inbound" else call.caller_extension,
                command_id=call.command_id,
            )
        )
        if call.recording_path is not None:
            self._send_recording(call)  # MixMonitor started before the direction was known

    def _send_ring_stopped(self, call: Call, extension: str, reason: RingStopReason) -> None:
        self._emit(
            CallRingStopped(
                call_id=call.call_id, seq=self._seq(call), at=self._at(), extension=extension, reason=reason
            )
        )

    def _send_recording(self, call: Call) -> None:
        if call.recording is None or call.recording_sent or not call.started_sent:
            return
        call.recording_sent = True
        self._emit(
            CallRecording(
                call_id=call.call_id, seq=self._seq(call), at=self._at(), file=call.recording, path=call.recording_path
            )
        )

    def _emit(self, event: CallEvent) -> None:
        self._out.append(event)

    @staticmethod
    def _seq(call: Call) -> int:
        call.seq += 1
        return call.seq

    def _at(self) -> datetime:
        return _utc(self._now)

    def _parse(self, name: str) -> ParsedChannel:
        # "PJSIP/101-0000002a" and "PJSIP/101-0000002b" are the same party: cache by the part before the
        # sequence number. Local channels carry their pair's name, so they are parsed every time.
        dash = name.rfind("-")
        if dash <= 0 or name.startswith("Local/"):
            return parse_channel(name, self._is_extension)
        key = name[:dash]
        parsed = self._parse_cache.get(key)
        if parsed is None:
            if len(self._parse_cache) > 10_000:
                self._parse_cache.clear()
            parsed = self._parse_cache[key] = parse_channel(name, self._is_extension)
        return parsed

    def _is_extension(self, endpoint: str) -> bool:
        known = self._extension_cache.get(endpoint)
        if known is None:
            if len(self._extension_cache) > 10_000:  # bounded even if every call names a new endpoint
                self._extension_cache.clear()
            known = self._extension_cache[endpoint] = self.rules.is_extension_number(endpoint)
        return known

    def _caller_number(self, number: str) -> str | None:
        return None if number.strip().lower() in _ANONYMOUS else number

    def _anomaly(self, kind: str, message: AmiMessage, *, exc_info: bool = False) -> None:
        self.anomalies[kind] += 1
        if self.anomalies[kind] == 1:
            # phone numbers masked (consistently within this process, so support can still follow a call)
            masked = self._masker.mask_message(message)
            log.warning("AMI anomaly (%s, logged once): %s", kind, masked, exc_info=exc_info)
