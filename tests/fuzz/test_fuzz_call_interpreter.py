"""Hostile AMI for the call interpreter (docs/reliability.md, "Hostile input").

Input: the real Asterisk 22 traces of ``tests/fixtures/traces`` mutated (reordered, dropped, duplicated, fields
corrupted or removed, two calls interleaved), and synthetic junk built from the events the interpreter reads.
Properties: no internal error (the interpreter swallows exceptions into ``anomalies``; one there is a bug),
every event fits one websocket message on its own, each call's events are numbered 1, 2, 3... with nothing
after its ``call_ended``, and once the PBX says no channel is left (``end_all``) nothing is kept in memory.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest
from fuzz_profile import LONG, fuzz
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import EVENTS_READ, MAX_OPEN_CHANNELS, CallInterpreter
from edge_agent.trace import read_trace
from wire_protocol.call_events import CallEnded, CallEvent
from wire_protocol.messages import SequencedEvent, batch_events

pytestmark = [pytest.mark.filterwarnings("ignore:Generating overly large repr")]  # a failing trace is big

TRACES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
RECORDED: dict[str, list[AmiMessage]] = {p.stem: read_trace(p) for p in sorted(TRACES.glob("*.jsonl"))}
INTERNAL = "internal error while interpreting"


def check(events: Iterable[CallEvent], interpreter: CallInterpreter, lifetimes: dict[str, list[CallEvent]]) -> None:
    """The per-stream properties (``lifetimes``: each open call's events so far, carried across feeds)."""
    for event in events:
        list(batch_events([SequencedEvent(seq=1, event=event)]))  # fits one message alone (else: set aside)
        lifetime = lifetimes.setdefault(event.call_id, [])
        assert event.seq == len(lifetime) + 1, (event, lifetime)
        lifetime.append(event)
        if isinstance(event, CallEnded):
            del lifetimes[event.call_id]  # a later call with the same id numbers from 1 again
    assert interpreter.anomalies[INTERNAL] == 0, interpreter.anomalies


def run(messages: list[AmiMessage]) -> CallInterpreter:
    interpreter = CallInterpreter()
    lifetimes: dict[str, list[CallEvent]] = {}
    for message in messages:
        check(interpreter.feed(message), interpreter, lifetimes)
    check(interpreter.end_all(at=2e9), interpreter, lifetimes)
    assert lifetimes == {}  # every call that started also ended
    assert interpreter.open_calls == 0 and interpreter.open_channels == 0
    assert not interpreter._bridges and not interpreter._local_halves  # nothing left behind
    return interpreter


# -- mutations of the recorded traces -----------------------------------------------------------------------

_JUNK_VALUES = st.sampled_from(
    ["", " ", "0", "6", "5", "s", "101", "102", "999", "abc", "-1", "1e308", "nan", "PJSIP/", "Local/;2", "/", "\x00"]
)


@st.composite
def mutated_trace(draw: st.DrawFn) -> list[AmiMessage]:
    names = sorted(RECORDED)
    messages = [dict(m) for m in RECORDED[draw(st.sampled_from(names))]]
    if draw(st.integers(0, 3)) == 0:  # two calls interleaved (ids of both are fair game for corruption below)
        other = [dict(m) for m in RECORDED[draw(st.sampled_from(names))]]
        merged: list[AmiMessage] = []
        while messages or other:
            source = messages if (messages and (not other or draw(st.booleans()))) else other
            merged.append(source.pop(0))
        messages = merged
    ids = sorted({v for m in messages for k, v in m.items() if k.endswith(("Uniqueid", "Linkedid", "Channel"))})
    for _ in range(draw(st.integers(1, 12))):
        if not messages:
            break
        i = draw(st.integers(0, len(messages) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "swap", "move", "corrupt", "delete_field", "retype"]))
        if action == "drop":
            del messages[i]
        elif action == "duplicate":
            messages.insert(draw(st.integers(0, len(messages))), dict(messages[i]))
        elif action == "swap":
            j = draw(st.integers(0, len(messages) - 1))
            messages[i], messages[j] = messages[j], messages[i]
        elif action == "move":
            messages.insert(draw(st.integers(0, len(messages))), messages.pop(i))
        elif action == "corrupt" and messages[i]:
            key = draw(st.sampled_from(sorted(messages[i])))
            messages[i][key] = draw(st.sampled_from(ids) | _JUNK_VALUES | st.text(max_size=20))
        elif action == "delete_field" and messages[i]:
            del messages[i][draw(st.sampled_from(sorted(messages[i])))]
        elif action == "retype":
            messages[i]["Event"] = draw(st.sampled_from(sorted(_EVENTS)))
    return messages


@fuzz(400)
@given(mutated_trace())
def test_mutated_real_traces_never_break_the_interpreter(messages: list[AmiMessage]) -> None:
    run(messages)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_every_recorded_trace_passes_the_fuzz_properties_unmutated(name: str) -> None:
    run(RECORDED[name])


# -- synthetic junk -------------------------------------------------------------------------------------------

_EVENTS = EVENTS_READ  # what the interpreter reads, so the junk follows it
_UIDS = st.sampled_from(["u1", "u2", "u3", "u4", "u5", "u6", ""])
_CHANNELS = st.sampled_from(
    [
        "PJSIP/101-00000001",
        "PJSIP/102-00000002",
        "PJSIP/103-00000003",
        "PJSIP/carrier-00000004",
        "SIP/79261234567-5",
        "Local/101@from-queue-00000001;1",
        "Local/101@from-queue-00000001;2",
        "Local/79261234567@from-internal-00000002;2",
        "Message/ast_msg_queue",
        "PJSIP/",
        "",
    ]
)
_FIELDS: dict[str, st.SearchStrategy[str]] = {
    "Uniqueid": _UIDS,
    "Linkedid": _UIDS,
    "DestUniqueid": _UIDS,
    "TransfereeUniqueid": _UIDS,
    "OrigTransfererUniqueid": _UIDS,
    "TargetUniqueid": _UIDS,
    "Channel": _CHANNELS,
    "DestChannel": _CHANNELS,
    "TransfererChannel": _CHANNELS,
    "OrigTransfererChannel": _CHANNELS,
    "TransferTargetChannel": _CHANNELS,
    "ChannelState": st.sampled_from(["0", "4", "5", "6", ""]),
    "DestChannelState": st.sampled_from(["0", "5", "6"]),
    "DialStatus": st.sampled_from(["ANSWER", "BUSY", "NOANSWER", "CANCEL", "CHANUNAVAIL", "CONGESTION", ""]),
    "DialString": st.sampled_from(["101", "79261234567@carrier", "PJSIP/carrier/sip:+7926@h", ""]),
    "BridgeUniqueid": st.sampled_from(["b1", "b2", ""]),
    "BridgeTechnology": st.sampled_from(["simple_bridge", "holding_bridge"]),
    "Result": st.sampled_from(["Success", "Fail"]),
    "Extension": st.sampled_from(["101", "102", ""]),
    "SecondTransfererConnectedLineNum": st.sampled_from(["101", "79261234567", ""]),
    "Cause": st.sampled_from(["16", "17", "19", "21", ""]),
    "Application": st.sampled_from(["MixMonitor", "Dial"]),
    "AppData": st.sampled_from(["/var/spool/asterisk/monitor/x.wav,b", ",", ""]),
    "Variable": st.sampled_from(["MIXMONITOR_FILENAME", "__PBXLINK_COMMAND_ID", "PBXLINK_DIAL_NUMBER", "OTHER"]),
    "Value": st.sampled_from(["/tmp/r.wav", "cmd-1", "79261234567", ""]),
    "ActionID": st.sampled_from(["pbxlink-originate/cmd-2", "other", ""]),
    "CallerIDNum": st.sampled_from(["79261234567", "<unknown>", "101", ""]),
    "Exten": st.sampled_from(["s", "74951234500", "101", ""]),
    "Timestamp": st.sampled_from(["1795686737.5", "1795686738", "junk", ""]),
}


@st.composite
def junk_message(draw: st.DrawFn) -> AmiMessage:
    message: AmiMessage = {"Event": draw(st.sampled_from(_EVENTS))}
    for key in draw(st.sets(st.sampled_from(sorted(_FIELDS)), max_size=8)):
        message[key] = draw(_FIELDS[key])
    if draw(st.integers(0, 3)):  # most messages name a channel
        message.setdefault("Uniqueid", draw(_UIDS))
        message.setdefault("Channel", draw(_CHANNELS))
    return message


@fuzz(400)
@given(st.lists(junk_message(), max_size=60))
def test_junk_event_sequences_never_break_the_interpreter(messages: list[AmiMessage]) -> None:
    run(messages)


@fuzz(60)
@given(st.lists(junk_message(), max_size=40), st.lists(st.tuples(_UIDS, _CHANNELS, _UIDS), max_size=6))
def test_a_reconcile_in_the_middle_of_junk_leaves_nothing_behind(
    messages: list[AmiMessage], live: list[tuple[str, str, str]]
) -> None:
    interpreter = CallInterpreter()
    lifetimes: dict[str, list[CallEvent]] = {}
    half = len(messages) // 2
    for message in messages[:half]:
        check(interpreter.feed(message), interpreter, lifetimes)
    snapshot = [{"Uniqueid": u, "Channel": c, "Linkedid": lk, "ChannelState": "6"} for u, c, lk in live]
    check(interpreter.reconcile(snapshot, at=1.9e9), interpreter, lifetimes)
    for message in messages[half:]:
        check(interpreter.feed(message), interpreter, lifetimes)
    check(interpreter.end_all(at=2e9), interpreter, lifetimes)
    assert lifetimes == {} and interpreter.open_channels == 0 and not interpreter._bridges


# -- bounded memory -------------------------------------------------------------------------------------------


def test_channels_that_never_hang_up_are_capped_and_memory_stays_bounded() -> None:
    """A PBX (or a bug) that opens channels and never hangs them up: the interpreter ends the oldest calls as
    ``lost`` beyond :data:`MAX_OPEN_CHANNELS` instead of growing without bound."""
    interpreter = CallInterpreter()
    total = MAX_OPEN_CHANNELS * (5 if LONG else 2)
    ended = 0

    def stream(start: int, stop: int) -> None:
        nonlocal ended
        for n in range(start, stop):
            uid = f"pbx-{n}.1"
            for event in interpreter.feed(
                {
                    "Event": "Newchannel",
                    "Uniqueid": uid,
                    "Linkedid": uid,
                    "Channel": f"PJSIP/carrier-{n:08x}",
                    "CallerIDNum": "79261234567",
                    "Exten": "74951234500",
                    "_ts": str(1.8e9 + n),
                }
            ):
                if isinstance(event, CallEnded):
                    assert event.reason == "lost"
                    ended += 1

    tracemalloc.start()
    try:
        stream(0, MAX_OPEN_CHANNELS)  # the structures at their cap
        at_cap = tracemalloc.get_traced_memory()[0]
        stream(MAX_OPEN_CHANNELS, total)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert interpreter.open_channels <= MAX_OPEN_CHANNELS and interpreter.open_calls <= MAX_OPEN_CHANNELS
    assert ended == total - MAX_OPEN_CHANNELS
    # as many new channels again as the cap, and memory did not grow by another cap's worth (~1 KB a channel)
    assert at_cap > 5_000_000  # the measurement sees the channels (about 1 KB each) ...
    assert current - at_cap < at_cap // 10, (at_cap, current, peak)  # ... and no growth past the cap
    assert interpreter.anomalies["too many open channels"] == total - MAX_OPEN_CHANNELS
