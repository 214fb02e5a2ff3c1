"""The periodic CDR check on the cloud side: each PBX call classified against what the cloud holds, the repairs
(the agent asked for what only it can bring; the cloud queues what it can), the stored result summed over parts,
and one tenant's report never seeing another's calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud_builders import CID, ended, ringing, started

from cloud.agents import connections, tokens
from cloud.calls.store import record_events
from cloud.crm.pipeline import crm_status, request_crm
from cloud.link.dispatch import handle_agent_message
from cloud.reconcile import CloudCall, compare, last_check, on_reconcile_report
from cloud.runtime import Runtime
from cloud.storage.dynamo import to_item
from wire_protocol.messages import ReconcileCall, ReconcileReport, ReconcileResend, encode, reconcile_parts

pytest_plugins = ["cloud_testkit"]

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SINCE, UNTIL = NOW - timedelta(hours=24), NOW - timedelta(minutes=2)


def pbx(call_id: str, result: str = "answered") -> ReconcileCall:
    return ReconcileCall.model_validate(
        {"call_id": call_id, "ended_at": NOW - timedelta(hours=1), "direction": "inbound", "result": result}
    )


def report(
    *calls: ReconcileCall, check_id: str = "20261126T120000Z-aaaaaa", part: int = 1, parts: int = 1
) -> ReconcileReport:
    return ReconcileReport(check_id=check_id, since=SINCE, until=UNTIL, part=part, parts=parts, calls=list(calls))


def set_crm(rt: Runtime, tenant: str, agent_id: str, call_id: str, status: str, detail: str = "") -> None:
    rt.dynamodb.put_item(
        TableName=rt.tables.crm_calls,
        Item=to_item(
            {
                "tenant": tenant,
                "call_key": f"{agent_id}#{call_id}",
                "agent_id": agent_id,
                "call_id": call_id,
                "crm_status": status,
                "crm_detail": detail,
                "wanted": 1,
            }
        ),
    )


def test_compare_gives_each_call_one_finding_and_its_repair() -> None:
    cloud = {
        "done.1": CloudCall(ended=True, result="answered", crm_status="done"),
        "skip.1": CloudCall(ended=True, result="answered", crm_status="skipped"),
        "work.1": CloudCall(ended=True, result="answered", crm_status="deferred"),
        "open.1": CloudCall(ended=False, crm_status="waiting"),
        "noq.1": CloudCall(ended=True, result="answered", crm_status=None),
        "bad.1": CloudCall(ended=True, result="answered", crm_status="failed", crm_detail="user 7 is fired"),
        "diff.1": CloudCall(ended=True, result="missed", crm_status="done"),
    }
    findings = compare([pbx(c) for c in [*cloud, "gone.1"]], cloud)
    assert findings.by_call == {
        "done.1": "in_crm",
        "skip.1": "in_crm",
        "work.1": "pending",
        "open.1": "open",
        "noq.1": "unqueued",
        "bad.1": "failed",
        "diff.1": "in_crm",
        "gone.1": "missing",
    }
    assert findings.to_resend == ["open.1", "gone.1"]
    assert findings.differs == ["diff.1"]
    assert findings.details == {"bad.1": "user 7 is fired"}
    assert findings.counts() == {
        "in_crm": 3,
        "pending": 1,
        "missing": 1,
        "open": 1,
        "unqueued": 1,
        "failed": 1,
        "differs": 1,
    }


def test_a_report_is_compared_with_the_stored_calls_and_repaired(rt: Runtime, agent_id: str) -> None:
    tenant = "portal-a"
    record_events(rt, tenant, agent_id, [(1, started("done.1")), (2, ended("done.1", seq=2))])
    set_crm(rt, tenant, agent_id, "done.1", "done")
    record_events(rt, tenant, agent_id, [(3, started("open.1")), (4, ringing("101", "open.1"))])
    set_crm(rt, tenant, agent_id, "open.1", "waiting")
    record_events(rt, tenant, agent_id, [(5, started("noq.1")), (6, ended("noq.1", seq=2))])  # no CRM item
    record_events(rt, tenant, agent_id, [(7, started("bad.1")), (8, ended("bad.1", seq=2))])
    set_crm(rt, tenant, agent_id, "bad.1", "failed", "Bitrix24 refused it 3 times: user 7")

    resend = on_reconcile_report(
        rt, tenant, agent_id, report(pbx("done.1"), pbx("open.1"), pbx("noq.1"), pbx("bad.1"), pbx("gone.1")), NOW
    )

    assert resend == ReconcileResend(check_id="20261126T120000Z-aaaaaa", call_ids=["open.1", "gone.1"])
    queued = crm_status(rt, tenant, agent_id, "noq.1")
    assert queued is not None and queued["wanted"] == 1 and queued.get("due_at")  # the sweeper will take it
    check = last_check(rt, tenant, agent_id)
    assert check is not None and check.complete and check.pbx_calls == 5
    assert check.counts == {
        "in_crm": 1,
        "pending": 0,
        "missing": 1,
        "open": 1,
        "unqueued": 1,
        "failed": 1,
        "differs": 0,
    }
    assert (check.resent, check.queued) == (2, 1)
    assert check.examples == {"missing": ["gone.1"], "open": ["open.1"], "unqueued": ["noq.1"], "failed": ["bad.1"]}
    assert check.failed_details == {"bad.1": "Bitrix24 refused it 3 times: user 7"}


def test_the_last_check_sums_its_parts_and_says_when_some_are_missing(rt: Runtime, agent_id: str) -> None:
    tenant = "portal-a"
    old = "20261126T100000Z-000000"
    on_reconcile_report(rt, tenant, agent_id, report(pbx("a.1"), check_id=old), NOW - timedelta(hours=2))
    new = "20261126T110000Z-111111"
    on_reconcile_report(rt, tenant, agent_id, report(pbx("b.1"), pbx("c.1"), check_id=new, part=1, parts=3), NOW)
    on_reconcile_report(rt, tenant, agent_id, report(pbx("d.1"), check_id=new, part=3, parts=3), NOW)
    on_reconcile_report(rt, tenant, agent_id, report(pbx("d.1"), check_id=new, part=3, parts=3), NOW)  # redelivered

    check = last_check(rt, tenant, agent_id)
    assert check is not None and check.check_id == new
    assert (check.parts, check.parts_received, check.complete) == (3, 2, False)
    assert check.pbx_calls == 3 and check.counts["missing"] == 3 and check.resent == 3


def test_a_check_that_could_not_read_the_cdr_says_so(rt: Runtime, agent_id: str) -> None:
    failed = ReconcileReport(
        check_id="20261126T120000Z-ffffff", since=SINCE, until=UNTIL, error="the CDR database is unreachable"
    )
    assert on_reconcile_report(rt, "portal-a", agent_id, failed, NOW) is None
    check = last_check(rt, "portal-a", agent_id)
    assert check is not None and check.error == "the CDR database is unreachable" and check.pbx_calls == 0


def test_no_check_yet(rt: Runtime, agent_id: str) -> None:
    assert last_check(rt, "portal-a", agent_id) is None


def test_an_agent_of_another_tenant_never_sees_this_tenants_calls(rt: Runtime, agent_id: str) -> None:
    record_events(rt, "portal-a", agent_id, [(1, started("shared.1")), (2, ended("shared.1", seq=2))])
    set_crm(rt, "portal-a", agent_id, "shared.1", "done")
    other, _ = tokens.issue_token(rt, "portal-b", "Branch")
    # the other tenant's agent reports a call with the same Linkedid: for it, the call is missing
    resend = on_reconcile_report(rt, "portal-b", other, report(pbx("shared.1")), NOW)
    assert resend is not None and resend.call_ids == ["shared.1"]
    assert last_check(rt, "portal-a", other) is None  # nothing written under the first tenant
    check = last_check(rt, "portal-a", agent_id)
    assert check is None


def test_the_link_answers_a_report_with_the_calls_to_resend(rt: Runtime, agent_id: str) -> None:
    record_events(rt, "portal-a", agent_id, [(1, started("here.1")), (2, ended("here.1", seq=2))])
    request_crm(rt, "portal-a", agent_id, "here.1", NOW)
    parts = reconcile_parts("20261126T120000Z-abcdef", SINCE, UNTIL, [pbx("here.1"), pbx("gone.1")])
    outcome = handle_agent_message(rt, CID, encode(parts[0]))
    assert outcome.replies == [ReconcileResend(check_id="20261126T120000Z-abcdef", call_ids=["gone.1"])]
    assert not outcome.close
    check = last_check(rt, "portal-a", agent_id)
    assert check is not None and check.counts["pending"] == 1 and check.counts["missing"] == 1


def test_a_revoked_agent_cannot_report(rt: Runtime, agent_id: str) -> None:
    tokens.revoke(rt, "portal-a", agent_id)
    outcome = handle_agent_message(rt, CID, encode(report(pbx("x.1"))))
    assert outcome.close and last_check(rt, "portal-a", agent_id) is None
    assert connections.connection_agent(rt, CID) is None
