"""Call scenarios: each drives real SIP calls through the lab PBX and returns the **expected** call
summaries (the contract of the edge agent's call summary), one dict per call.

Only fields the lab is sure of are present.  `talk_seconds` is a `(low, high)` range.  `call_id` (the
Linkedid) and `recording` (the file name MixMonitor was given) are read back from the PBX's own event stream
(the `lab` AMI user) and its spool, because they contain the PBX's clock and counters.  `rang` for ringall
queues / ring groups is the set of members the PBX put into Ringing, in any order: they ring within the same
millisecond, and the order Asterisk's events show them in differs between two AMI sessions' views of it.

Every scenario resets the world's behaviours, waits until the PBX has no channels, and finishes in well
under 25 s (the direct missed call waits for the 20 s Dial timeout of the dialplan: ~21 s).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from sandbox.call_expectations import AnyOrder
from sandbox.pbx_lab.admin import EXT_CHANNEL, PbxAdmin
from sandbox.pbx_lab.ami import Message
from sandbox.pbx_lab.world import World

LINE_101 = "74951234567"  # direct line of 101, and the company number outbound calls present
LINE_Q500 = "74951234500"
LINE_Q501 = "74951234501"
LINE_RG600 = "74951234600"
CUSTOMER = "79261234567"
OUTSIDE = "79031112233"


class CallSummary(TypedDict, total=False):
    call_id: str
    direction: str
    external_number: str | None
    line: str | None
    caller_extension: str | None
    rang: list[str]
    answered_by: str | None
    transfers: list[dict[str, str]]
    final_extension: str | None
    result: str
    talk_seconds: tuple[float, float]
    recording: str | None
    command_id: str | None


@dataclass
class Lab:
    """What a scenario drives: the world (phones + carrier) and the PBX admin connection."""

    world: World
    admin: PbxAdmin


Scenario = Callable[[Lab], Awaitable[list[CallSummary]]]


def transfer(frm: str, to: str, kind: str) -> dict[str, str]:
    return {"from": frm, "to": to, "kind": kind}


def talk(seconds: float) -> tuple[float, float]:
    """Range for a call the world hangs up `seconds` after it was answered."""
    return (max(0.0, seconds - 1.0), seconds + 2.0)


# ------------------------------------------------------------------------------------------------ helpers
async def _prepare(lab: Lab, behaviors: dict[str, str], idle_timeout: float = 15.0) -> int:
    await lab.admin.wait_idle(timeout=idle_timeout)
    await lab.world.clear_behaviors()
    for number, rule in behaviors.items():
        await lab.world.set_behavior(number, rule)
    return lab.admin.ami.mark()


async def _call_id(lab: Lab, since: int, *, channel_prefix: str, exten: str, timeout: float = 10.0) -> str:
    """Linkedid of the first PBX channel (after `since`) named `channel_prefix…` that dialled `exten`."""
    m = await lab.admin.ami.wait_event(
        lambda e: e.event == "Newchannel" and e["Channel"].startswith(channel_prefix) and e["Exten"] == exten,
        since=since,
        timeout=timeout,
    )
    return m["Linkedid"]


def _on_call(e: Message, call_id: str) -> bool:
    return e["Linkedid"] == call_id or e["DestLinkedid"] == call_id


async def _wait_ringing(lab: Lab, ext: str, since: int, timeout: float = 10.0) -> None:
    await lab.admin.ami.wait_event(
        lambda e: e.event == "Newstate" and e["ChannelState"] == "5" and e["Channel"].startswith(f"PJSIP/{ext}-"),
        since=since,
        timeout=timeout,
    )


async def _wait_up(lab: Lab, ext: str, since: int, timeout: float = 10.0) -> None:
    await lab.admin.ami.wait_event(
        lambda e: e.event == "Newstate" and e["ChannelState"] == "6" and e["Channel"].startswith(f"PJSIP/{ext}-"),
        since=since,
        timeout=timeout,
    )


def _ring_order(lab: Lab, since: int, call_id: str) -> AnyOrder:
    """Extensions whose PJSIP channels on `call_id` went to Ringing (simultaneously: any order)."""
    order = AnyOrder()
    for e in lab.admin.ami.events(since):
        if e.event == "Newstate" and e["ChannelState"] == "5" and e["Linkedid"] == call_id:
            m = EXT_CHANNEL.match(e["Channel"])
            if m and m.group("ext") not in order:
                order.append(m.group("ext"))
    return order


async def _finish(lab: Lab, call_id: str, timeout: float = 25.0) -> None:
    await lab.admin.wait_idle(timeout=timeout, linkedids={call_id})
    # the world side may lag the PBX by a few ms
    await asyncio.sleep(0.3)


def _recording(lab: Lab, call_id: str, since: int) -> str | None:
    return lab.admin.recording_of(call_id, since=since)


class ScenarioError(AssertionError):
    """The PBX did not do what the scenario intended (so its expected summary would be wrong)."""


_OUTBOUND_DIALSTATUS = {"answered": "ANSWER", "no_answer": "CANCEL", "busy": "BUSY", "failed": "CONGESTION"}


def _verify(lab: Lab, since: int, s: CallSummary) -> None:
    """Check the summary against what the PBX reported (its own event stream), so that a scenario whose
    calls went differently fails loudly instead of returning a wrong expectation."""
    cid = s["call_id"]
    events = [e for e in lab.admin.ami.events(since) if e["Linkedid"] == cid or e["DestLinkedid"] == cid]

    def phone_events(ext: str) -> list[Message]:
        return [e for e in events if e["Channel"].startswith(f"PJSIP/{ext}-")]

    for ext in s.get("rang", []):
        if not phone_events(ext):
            raise ScenarioError(f"{cid}: extension {ext} never had a channel on the call")
    answered_by = s.get("answered_by")
    if answered_by and not any(e["ChannelState"] == "6" for e in phone_events(answered_by)):
        raise ScenarioError(f"{cid}: extension {answered_by} never answered")
    result = s.get("result")
    if s["direction"] != "outbound" and result in ("missed", "no_answer"):
        up = [
            e["Channel"]
            for e in events
            if e["ChannelState"] == "6"
            and (m := EXT_CHANNEL.match(e["Channel"]))
            and m.group("ext") != "carrier"
            and not (s["direction"] == "internal" and m.group("ext") == s.get("caller_extension"))
        ]
        if up:
            raise ScenarioError(f"{cid}: expected unanswered, but {up[0]} was up")
    if s["direction"] == "outbound" and result:
        statuses = [
            e["DialStatus"] for e in events if e.event == "DialEnd" and e["DestChannel"].startswith("PJSIP/carrier-")
        ]
        if _OUTBOUND_DIALSTATUS[result] not in statuses:
            raise ScenarioError(f"{cid}: expected DialStatus {_OUTBOUND_DIALSTATUS[result]}, got {statuses}")
    for t in s.get("transfers", []):
        name = "BlindTransfer" if t["kind"] == "blind" else "AttendedTransfer"
        key = "TransfererLinkedid" if t["kind"] == "blind" else "OrigTransfererLinkedid"
        if not any(e.event == name and e[key] == cid and e["Result"] == "Success" for e in lab.admin.ami.events(since)):
            raise ScenarioError(f"{cid}: no successful {name} event")


def _base(lab: Lab, since: int, call_id: str, direction: str, **fields: Any) -> CallSummary:
    out: dict[str, Any] = {"call_id": call_id, "direction": direction, "command_id": None}
    out.update(fields)
    summary = cast(CallSummary, out)
    _verify(lab, since, summary)
    return summary


def _inbound(lab: Lab, since: int, call_id: str, line: str, **fields: Any) -> CallSummary:
    """The customer calls ``line``: what every such scenario shares (no transfer unless it says so), then its own
    fields."""
    shared: dict[str, Any] = {
        "external_number": CUSTOMER,
        "line": line,
        "caller_extension": None,
        "transfers": [],
        "recording": _recording(lab, call_id, since),
    }
    return _base(lab, since, call_id, "inbound", **(shared | fields))


# ------------------------------------------------------------------------------------------------ inbound
async def inbound_direct_answered(lab: Lab) -> list[CallSummary]:
    since = await _prepare(lab, {"101": "answer"})
    await lab.world.call_in(CUSTOMER, LINE_101, hangup_after=3)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_101)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_101,
            rang=["101"],
            answered_by="101",
            final_extension="101",
            result="answered",
            talk_seconds=talk(3),
        )
    ]


async def inbound_direct_missed(lab: Lab) -> list[CallSummary]:
    """101 rings and nobody answers: the dialplan's Dial(PJSIP/101,20) times out (~20 s)."""
    since = await _prepare(lab, {"101": "ring"})
    await lab.world.call_in(CUSTOMER, LINE_101)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_101)
    await _finish(lab, cid, timeout=24)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_101,
            rang=["101"],
            answered_by=None,
            final_extension=None,
            result="missed",
            talk_seconds=(0.0, 0.0),
        )
    ]


async def inbound_caller_hangs_up_ringing(lab: Lab) -> list[CallSummary]:
    since = await _prepare(lab, {"101": "ring"})
    await lab.world.call_in(CUSTOMER, LINE_101)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_101)
    await _wait_ringing(lab, "101", since)
    await asyncio.sleep(2)
    await lab.world.hangup_customer(CUSTOMER)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_101,
            rang=["101"],
            answered_by=None,
            final_extension=None,
            result="missed",
            talk_seconds=(0.0, 0.0),
        )
    ]


async def inbound_busy(lab: Lab) -> list[CallSummary]:
    """101 answers 486 Busy: the PBX's Dial ends BUSY and the call ends unanswered.  101 never rang
    (no 180), so `rang` is left out."""
    since = await _prepare(lab, {"101": "busy"})
    await lab.world.call_in(CUSTOMER, LINE_101)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_101)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_101,
            answered_by=None,
            final_extension=None,
            result="missed",
            talk_seconds=(0.0, 0.0),
        )
    ]


async def inbound_queue_answered(lab: Lab) -> list[CallSummary]:
    """Queue 500 (ringall 101, 102): 101 keeps ringing, 102 answers after 2 s."""
    since = await _prepare(lab, {"101": "ring", "102": "answer_after:2:3"})
    await lab.world.call_in(CUSTOMER, LINE_Q500)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_Q500)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_Q500,
            rang=_ring_order(lab, since, cid),
            answered_by="102",
            final_extension="102",
            result="answered",
            talk_seconds=talk(3),
        )
    ]


async def inbound_queue_abandoned(lab: Lab) -> list[CallSummary]:
    """Queue 500: both members ring, the caller hangs up after ~3 s."""
    since = await _prepare(lab, {"101": "ring", "102": "ring"})
    await lab.world.call_in(CUSTOMER, LINE_Q500)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_Q500)
    await _wait_ringing(lab, "101", since)
    await _wait_ringing(lab, "102", since)
    await asyncio.sleep(2)
    await lab.world.hangup_customer(CUSTOMER)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_Q500,
            rang=_ring_order(lab, since, cid),
            answered_by=None,
            final_extension=None,
            result="missed",
            talk_seconds=(0.0, 0.0),
        )
    ]


async def inbound_queue_local_members(lab: Lab) -> list[CallSummary]:
    """Queue 501, FreePBX style (members Local/103@from-queue/n, Local/104@from-queue/n): 103 answers."""
    since = await _prepare(lab, {"103": "answer_after:2:3", "104": "ring"})
    await lab.world.call_in(CUSTOMER, LINE_Q501)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_Q501)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_Q501,
            rang=_ring_order(lab, since, cid),
            answered_by="103",
            final_extension="103",
            result="answered",
            talk_seconds=talk(3),
        )
    ]


async def inbound_ring_group(lab: Lab) -> list[CallSummary]:
    """Ring group 600: Dial(Local/101@from-ringgroup&Local/102@from-ringgroup); 101 answers."""
    since = await _prepare(lab, {"101": "answer_after:2:3", "102": "ring"})
    await lab.world.call_in(CUSTOMER, LINE_RG600)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_RG600)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_RG600,
            rang=_ring_order(lab, since, cid),
            answered_by="101",
            final_extension="101",
            result="answered",
            talk_seconds=talk(3),
        )
    ]


async def inbound_anonymous_answered(lab: Lab) -> list[CallSummary]:
    """A caller with withheld number (From: anonymous, presentation prohibited).  The PBX presents
    CallerIDNum `anonymous`; how the summary spells the number is the agent's choice, so
    `external_number` is left out."""
    since = await _prepare(lab, {"101": "answer"})
    await lab.world.call_in(None, LINE_101, hangup_after=3)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_101)
    await _finish(lab, cid)
    return [
        _base(
            lab,
            since,
            cid,
            "inbound",
            line=LINE_101,
            caller_extension=None,
            rang=["101"],
            answered_by="101",
            transfers=[],
            final_extension="101",
            result="answered",
            talk_seconds=talk(3),
            recording=_recording(lab, cid, since),
        )
    ]


async def inbound_pickup(lab: Lab, code: str = "*8") -> list[CallSummary]:
    """The customer rings 101; 102 picks the call up with `*8` (group pickup) or `**101` (directed)."""
    since = await _prepare(lab, {"101": "ring"})
    await lab.world.call_in(CUSTOMER, LINE_101, hangup_after=4)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_101)
    await _wait_ringing(lab, "101", since)
    await asyncio.sleep(1)
    await lab.world.phone_dial("102", code)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_101,
            rang=["101"],
            answered_by="102",
            final_extension="102",
            result="answered",
            talk_seconds=talk(4),
        )
    ]


async def inbound_directed_pickup(lab: Lab) -> list[CallSummary]:
    return await inbound_pickup(lab, code="**101")


async def blind_transfer(lab: Lab) -> list[CallSummary]:
    """Customer -> 101 answers; 101 blind-transfers (AMI BlindTransfer) to 102, 102 answers after 1 s;
    the customer hangs up 3 s later."""
    since = await _prepare(lab, {"101": "answer", "102": "answer_after:1"})
    await lab.world.call_in(CUSTOMER, LINE_101)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_101)
    await _wait_up(lab, "101", since)
    await asyncio.sleep(1)
    await lab.admin.blind_transfer("101", "102")
    await _wait_up(lab, "102", since)
    await asyncio.sleep(3)
    await lab.world.hangup_customer(CUSTOMER)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_101,
            rang=["101", "102"],
            answered_by="101",
            transfers=[transfer("101", "102", "blind")],
            final_extension="102",
            result="answered",
        )
    ]


async def attended_transfer(lab: Lab) -> list[CallSummary]:
    """Customer -> 101 answers; 101 consults 102 (AMI Atxfer), 102 answers, 101 hangs up (completes the
    transfer); the customer talks to 102 and hangs up 3 s later.  The consultation leg
    (Local/102@from-internal-…;1/;2 -> PJSIP/102) carries the same Linkedid: one call."""
    since = await _prepare(lab, {"101": "answer", "102": "answer_after:1"})
    await lab.world.call_in(CUSTOMER, LINE_101)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=LINE_101)
    await _wait_up(lab, "101", since)
    await asyncio.sleep(1)
    transferer = await lab.admin.attended_transfer("101", "102")
    await _wait_up(lab, "102", since, timeout=12)
    await asyncio.sleep(1)
    await lab.admin.complete_attended_transfer(transferer)
    await lab.admin.ami.wait_event(lambda e: e.event == "AttendedTransfer", since=since, timeout=5)
    await asyncio.sleep(3)
    await lab.world.hangup_customer(CUSTOMER)
    await _finish(lab, cid)
    return [
        _inbound(
            lab,
            since,
            cid,
            LINE_101,
            rang=["101", "102"],
            answered_by="101",
            transfers=[transfer("101", "102", "attended")],
            final_extension="102",
            result="answered",
        )
    ]


# ----------------------------------------------------------------------------------------------- outbound
async def _outbound(lab: Lab, rule: str, *, hangup_after: float | None, cancel_after: float | None) -> tuple[str, int]:
    since = await _prepare(lab, {OUTSIDE: rule})
    await lab.world.phone_dial("101", OUTSIDE, hangup_after=hangup_after)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/101-", exten=OUTSIDE)
    if cancel_after is not None:
        await lab.admin.ami.wait_event(
            lambda e: e.event == "Newstate" and e["ChannelState"] == "5" and e["Channel"].startswith("PJSIP/carrier-"),
            since=since,
            timeout=10,
        )
        await asyncio.sleep(cancel_after)
        await lab.world.hangup_phone("101")
    await _finish(lab, cid)
    return cid, since


def _outbound_summary(lab: Lab, cid: str, since: int, result: str, talk_s: tuple[float, float]) -> CallSummary:
    return _base(
        lab,
        since,
        cid,
        "outbound",
        external_number=OUTSIDE,
        line=None,
        caller_extension="101",
        rang=[],
        answered_by=None,
        transfers=[],
        final_extension="101",
        result=result,
        talk_seconds=talk_s,
        recording=_recording(lab, cid, since),
    )


async def outbound_answered(lab: Lab) -> list[CallSummary]:
    cid, since = await _outbound(lab, "answer", hangup_after=3, cancel_after=None)
    return [_outbound_summary(lab, cid, since, "answered", talk(3))]


async def outbound_no_answer(lab: Lab) -> list[CallSummary]:
    """The outside number rings; the caller (101) gives up after 4 s (Dial ends CANCEL)."""
    cid, since = await _outbound(lab, "ring", hangup_after=None, cancel_after=4)
    return [_outbound_summary(lab, cid, since, "no_answer", (0.0, 0.0))]


async def outbound_busy(lab: Lab) -> list[CallSummary]:
    cid, since = await _outbound(lab, "busy", hangup_after=None, cancel_after=None)
    return [_outbound_summary(lab, cid, since, "busy", (0.0, 0.0))]


async def outbound_failed(lab: Lab) -> list[CallSummary]:
    """The carrier answers 503 (congestion): Dial ends CONGESTION."""
    cid, since = await _outbound(lab, "congestion", hangup_after=None, cancel_after=None)
    return [_outbound_summary(lab, cid, since, "failed", (0.0, 0.0))]


# ----------------------------------------------------------------------------------------------- internal
async def internal_answered(lab: Lab) -> list[CallSummary]:
    since = await _prepare(lab, {"102": "answer"})
    await lab.world.phone_dial("101", "102", hangup_after=3)
    cid = await _call_id(lab, since, channel_prefix="PJSIP/101-", exten="102")
    await _finish(lab, cid)
    return [
        _base(
            lab,
            since,
            cid,
            "internal",
            external_number=None,
            line=None,
            caller_extension="101",
            rang=["102"],
            answered_by="102",
            transfers=[],
            result="answered",
            talk_seconds=talk(3),
            recording=None,
        )
    ]


async def internal_unanswered(lab: Lab) -> list[CallSummary]:
    """101 calls 102, 102 rings, 101 hangs up after 3 s."""
    since = await _prepare(lab, {"102": "ring"})
    await lab.world.phone_dial("101", "102")
    cid = await _call_id(lab, since, channel_prefix="PJSIP/101-", exten="102")
    await _wait_ringing(lab, "102", since)
    await asyncio.sleep(3)
    await lab.world.hangup_phone("101")
    await _finish(lab, cid)
    return [
        _base(
            lab,
            since,
            cid,
            "internal",
            external_number=None,
            line=None,
            caller_extension="101",
            rang=["102"],
            answered_by=None,
            transfers=[],
            final_extension="101",  # nobody answered: the caller stays responsible, as for outbound calls
            result="no_answer",
            talk_seconds=(0.0, 0.0),
            recording=None,
        )
    ]


SCENARIOS: dict[str, Scenario] = {
    "inbound_direct_answered": inbound_direct_answered,
    "inbound_direct_missed": inbound_direct_missed,
    "inbound_caller_hangs_up_ringing": inbound_caller_hangs_up_ringing,
    "inbound_busy": inbound_busy,
    "inbound_queue_answered": inbound_queue_answered,
    "inbound_queue_abandoned": inbound_queue_abandoned,
    "inbound_queue_local_members": inbound_queue_local_members,
    "inbound_ring_group": inbound_ring_group,
    "inbound_anonymous_answered": inbound_anonymous_answered,
    "inbound_pickup": inbound_pickup,
    "inbound_directed_pickup": inbound_directed_pickup,
    "blind_transfer": blind_transfer,
    "attended_transfer": attended_transfer,
    "outbound_answered": outbound_answered,
    "outbound_no_answer": outbound_no_answer,
    "outbound_busy": outbound_busy,
    "outbound_failed": outbound_failed,
    "internal_answered": internal_answered,
    "internal_unanswered": internal_unanswered,
}

_SAFE = re.compile(r"^[a-z_]+$")


async def run(names: list[str]) -> dict[str, list[CallSummary]]:
    """Connect to the running lab and run the named scenarios (all when `names` is empty)."""
    world = await World.connect()
    admin = await PbxAdmin.connect()
    lab = Lab(world=world, admin=admin)
    out: dict[str, list[CallSummary]] = {}
    try:
        for name in names or list(SCENARIOS):
            if not _SAFE.match(name) or name not in SCENARIOS:
                raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
            out[name] = await SCENARIOS[name](lab)
    finally:
        await world.close()
        await admin.close()
    return out
