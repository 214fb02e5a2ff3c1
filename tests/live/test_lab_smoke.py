"""Smoke tests of the Asterisk lab: real PJSIP calls through a real Asterisk 22, seen on its AMI."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.ami import AmiClient, Message
from sandbox.pbx_lab.live import LiveLab

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

OUTSIDE = "79035550101"


@pytest_asyncio.fixture(loop_scope="session")
async def edge(pbx_lab: LiveLab) -> AsyncIterator[AmiClient]:
    """An AMI session as the edge agent's user (events on)."""
    client = pbx_lab.edge.client()
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


def _newchannel(prefix: str, exten: str | None = None) -> Callable[[Message], bool]:
    def pred(e: Message) -> bool:
        return e.event == "Newchannel" and e["Channel"].startswith(prefix) and (exten is None or e["Exten"] == exten)

    return pred


async def test_edge_user_logs_in_and_gets_events(pbx_lab: LiveLab, edge: AmiClient) -> None:
    assert edge.banner.startswith("Asterisk Call Manager/")
    booted = await edge.wait_event(lambda e: e.event == "FullyBooted", timeout=5)
    assert booted["Privilege"].startswith("system")
    pong = await edge.action("Ping")
    assert pong["Response"] == "Success" and pong["Ping"] == "Pong"


async def test_edge_permissions(pbx_lab: LiveLab, edge: AmiClient) -> None:
    resp = await edge.action("Filter", Operation="Add", Filter="!Event: RTCP*")
    assert resp["Response"] == "Success", resp
    resp, _channels = await edge.action_list("CoreShowChannels")
    assert resp["Response"] == "Success", resp
    resp, endpoints = await edge.action_list("PJSIPShowEndpoints")
    assert resp["Response"] == "Success", resp
    names = {e["ObjectName"] for e in endpoints if e.event == "EndpointList"}
    assert {"101", "102", "103", "104", "carrier"} <= names
    # write=system,originate is all it has: a dangerous action is refused
    denied = await edge.action("Command", Command="core show version")
    assert denied["Response"] == "Error"


async def test_edge_can_originate_click_to_call(pbx_lab: LiveLab, edge: AmiClient) -> None:
    """Originate PJSIP/104 -> pbxlink-originate,<number>: the phone answers, then the call leaves through
    the carrier like a dialled outbound call (company caller id, recording `out-<number>-104-…`)."""
    await pbx_lab.admin.wait_idle(timeout=15)
    await pbx_lab.world.clear_behaviors()
    await pbx_lab.world.set_behavior("104", "answer")
    await pbx_lab.world.set_behavior(OUTSIDE, "answer:2")
    mark = edge.mark()
    resp = await edge.action(
        "Originate",
        Channel="PJSIP/104",
        Context="pbxlink-originate",
        Exten=OUTSIDE,
        Priority="1",
        CallerID=f'"{OUTSIDE}" <{OUTSIDE}>',
        Timeout="15000",
        Variable=["PBXLINK_COMMAND_ID=smoke-1"],
        Async="true",
    )
    assert resp["Response"] == "Success", resp
    orig = await edge.wait_event(lambda e: e.event == "OriginateResponse", since=mark, timeout=15)
    assert orig["Response"] == "Success" and orig["Reason"] == "4"
    assert orig["Channel"].startswith("PJSIP/104-")
    trunk = await edge.wait_event(_newchannel("PJSIP/carrier-"), since=mark, timeout=10)
    assert trunk["Linkedid"] == orig["Uniqueid"]
    dial = await edge.wait_event(
        lambda e: e.event == "DialBegin" and e["DestChannel"].startswith("PJSIP/carrier-"), since=mark, timeout=10
    )
    assert dial["CallerIDNum"] == scenarios.LINE_101  # FreePBX-style outbound caller id
    rec = await edge.wait_event(
        lambda e: e.event == "VarSet" and e["Variable"] == "MIXMONITOR_FILENAME", since=mark, timeout=10
    )
    assert f"/out-{OUTSIDE}-104-" in rec["Value"]
    await pbx_lab.admin.wait_idle(timeout=15, linkedids={orig["Uniqueid"]})


async def test_inbound_call_to_101_cdr_and_recording(pbx_lab: LiveLab, edge: AmiClient) -> None:
    await pbx_lab.admin.wait_idle(timeout=15)
    mark = edge.mark()
    [summary] = await scenarios.inbound_direct_answered(pbx_lab.scenario_lab)
    call_id = summary["call_id"]
    trunk = await edge.wait_event(_newchannel("PJSIP/carrier-", scenarios.LINE_101), since=mark, timeout=5)
    assert trunk["Linkedid"] == call_id
    assert trunk["CallerIDNum"] == scenarios.CUSTOMER
    phone = await edge.wait_event(_newchannel("PJSIP/101-"), since=mark, timeout=5)
    assert phone["Linkedid"] == call_id
    await edge.wait_event(
        lambda e: e.event == "DialEnd" and e["DestChannel"] == phone["Channel"] and e["DialStatus"] == "ANSWER",
        since=mark,
        timeout=5,
    )
    cdr = await edge.wait_event(lambda e: e.event == "Cdr" and e["LinkedID"] == call_id, since=mark, timeout=5)
    assert cdr["Disposition"] == "ANSWERED"

    rows: list[tuple[str, str, str, str]] = []
    for _ in range(20):
        with sqlite3.connect(pbx_lab.paths.pbx_master_db) as db:
            rows = db.execute(
                "SELECT uniqueid, linkedid, disposition, recordingfile FROM cdr WHERE linkedid = ?", (call_id,)
            ).fetchall()
        if rows:
            break
        await asyncio.sleep(0.2)
    assert rows, "no CDR row in master.db"
    assert rows[0][1] == call_id and rows[0][2] == "ANSWERED"

    recording = summary["recording"]
    assert recording and recording.startswith("/var/spool/asterisk/monitor/")
    assert f"in-{scenarios.LINE_101}-{scenarios.CUSTOMER}-" in recording
    assert rows[0][3] == recording.rsplit("/", 1)[1]
    host_file = pbx_lab.paths.host(recording)
    assert host_file.is_file() and host_file.stat().st_size > 44  # more than a WAV header


async def test_outbound_call_uses_carrier(pbx_lab: LiveLab, edge: AmiClient) -> None:
    await pbx_lab.admin.wait_idle(timeout=15)
    mark = edge.mark()
    [summary] = await scenarios.outbound_answered(pbx_lab.scenario_lab)
    phone = await edge.wait_event(_newchannel("PJSIP/101-", scenarios.OUTSIDE), since=mark, timeout=5)
    assert phone["Linkedid"] == summary["call_id"]
    assert phone["Context"] == "from-internal"
    trunk = await edge.wait_event(_newchannel("PJSIP/carrier-"), since=mark, timeout=5)
    assert trunk["Linkedid"] == summary["call_id"]
    end = await edge.wait_event(
        lambda e: e.event == "DialEnd" and e["DestChannel"] == trunk["Channel"], since=mark, timeout=5
    )
    assert end["DialStatus"] == "ANSWER"
    assert summary["recording"] and f"/out-{scenarios.OUTSIDE}-101-" in summary["recording"]


async def test_blind_transfer_event(pbx_lab: LiveLab, edge: AmiClient) -> None:
    mark = edge.mark()
    [summary] = await scenarios.blind_transfer(pbx_lab.scenario_lab)
    ev = await edge.wait_event(lambda e: e.event == "BlindTransfer", since=mark, timeout=5)
    assert ev["Result"] == "Success"
    assert ev["TransfererChannel"].startswith("PJSIP/101-")
    assert ev["TransfereeChannel"].startswith("PJSIP/carrier-")
    assert ev["Extension"] == "102"
    assert ev["TransfererLinkedid"] == summary["call_id"]


async def test_attended_transfer_event(pbx_lab: LiveLab, edge: AmiClient) -> None:
    mark = edge.mark()
    [summary] = await scenarios.attended_transfer(pbx_lab.scenario_lab)
    ev = await edge.wait_event(lambda e: e.event == "AttendedTransfer", since=mark, timeout=5)
    assert ev["Result"] == "Success"
    assert ev["OrigTransfererChannel"].startswith("PJSIP/101-")
    assert ev["TransfereeChannel"].startswith("PJSIP/carrier-")
    assert ev["DestType"] == "Bridge"
    # Real Asterisk 22 variance: TransferTarget* is sometimes missing from the event (seen ~1 run in 3).
    if "TransferTargetChannel" in ev:
        assert ev["TransferTargetChannel"].startswith("Local/102@from-internal-")
    assert ev["OrigTransfererLinkedid"] == summary["call_id"]


async def test_group_pickup_event(pbx_lab: LiveLab, edge: AmiClient) -> None:
    mark = edge.mark()
    [summary] = await scenarios.inbound_pickup(pbx_lab.scenario_lab)
    ev = await edge.wait_event(lambda e: e.event == "Pickup", since=mark, timeout=5)
    assert ev["Channel"].startswith("PJSIP/102-")
    assert ev["TargetChannel"].startswith("PJSIP/101-")
    assert ev["TargetLinkedid"] == summary["call_id"]


async def test_queue_with_local_members(pbx_lab: LiveLab, edge: AmiClient) -> None:
    mark = edge.mark()
    [summary] = await scenarios.inbound_queue_local_members(pbx_lab.scenario_lab)
    assert sorted(summary["rang"]) == ["103", "104"]
    connect = await edge.wait_event(lambda e: e.event == "AgentConnect", since=mark, timeout=5)
    assert connect["Queue"] == "501"
    assert connect["Interface"] == "Local/103@from-queue/n"
    assert connect["DestChannel"].startswith("Local/103@from-queue-")
    assert connect["Linkedid"] == summary["call_id"]


# Every scenario runs in tests/live/test_agent_on_lab.py, through the edge agent, and checks itself there.
