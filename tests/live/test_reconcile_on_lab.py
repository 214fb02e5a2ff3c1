"""The periodic PBX ↔ CRM check on a real Asterisk 22, into the Bitrix24 emulator through cloud-local.

1. Calls the agent saw: the check reads the lab's real CDR (and CEL) and finds every one in the CRM, with the
   same result as AMI gave (``differs`` 0): the CDR and the AMI interpreter agree on real calls.
2. A reinstall: the agent is stopped, calls are made, and it comes back with an *empty* data directory (same
   token). Its new outbox knows no gap, so backfill has nothing to read; the check — reaching back to the token's
   issue, not to the new outbox — finds those calls missing, the agent sends them, and they are registered and
   finished once each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.reconcile import last_check
from cloud.storage.dynamo import from_item, to_item
from edge_agent import agent as agent_module
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.live import LiveLab
from sandbox.portal_stack import PortalStack, portal_stack, until

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

SEEN = ["inbound_queue_answered", "outbound_answered", "inbound_direct_missed"]
MISSED = ["inbound_direct_answered", "outbound_busy"]


def cdr_env(pbx_lab: LiveLab) -> dict[str, str]:
    return {
        "EDGE_CDR_DSN": f"sqlite://{pbx_lab.paths.pbx_master_db}",
        "EDGE_CDR_TIMEZONE": "UTC",  # the lab's chroot runs in UTC
        "EDGE_CDR_CEL_TABLE": "cel",
        "EDGE_CDR_LATE_SECONDS": "2",
        "EDGE_CDR_RECONCILE_MINUTES": "0.05",
    }


async def make(pbx_lab: LiveLab, names: list[str]) -> set[str]:
    made: set[str] = set()
    for name in names:
        made.update(
            str(dict(expected)["call_id"]) for expected in await scenarios.SCENARIOS[name](pbx_lab.scenario_lab)
        )
    return made


def checked(stack: PortalStack, agent_id: str, calls: set[str]) -> bool:
    """The agent's last check was whole and found every one of ``calls`` in the CRM, nothing missing."""
    check = last_check(stack.rt, stack.tenant, agent_id)
    if check is None or not check.complete or check.error:
        return False
    return check.counts["missing"] == check.counts["open"] == 0 and check.counts["in_crm"] >= len(calls)


async def test_the_check_agrees_with_ami_and_brings_in_calls_a_reinstalled_agent_never_saw(
    pbx_lab: LiveLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "RECONCILE_FIRST_SECONDS", 1.0)
    monkeypatch.setattr(agent_module, "RECONCILE_RETRY_SECONDS", 1.0)
    edge = pbx_lab.edge
    login = AmiLogin(edge.host, edge.port, edge.username, edge.secret)
    async with portal_stack(table_prefix="live-rec-") as stack:
        token = await stack.agent_token("lab PBX")
        try:
            async with running_agent(login, stack.cloud.ws_url, token, tmp_path / "first", extra_env=cdr_env(pbx_lab)):
                seen = await make(pbx_lab, SEEN)
                assert await until(lambda: stack.crm_done(seen), timeout=60)
                agent_id = stack.calls_agent(next(iter(seen)))
                assert await until(lambda: checked(stack, agent_id, seen), timeout=60)
                first = last_check(stack.rt, stack.tenant, agent_id)
            missed = await make(pbx_lab, MISSED)  # the agent is stopped
            async with running_agent(
                login, stack.cloud.ws_url, token, tmp_path / "reinstalled", extra_env=cdr_env(pbx_lab)
            ):
                assert await until(lambda: stack.crm_done(missed), timeout=90)
                assert await until(lambda: checked(stack, agent_id, seen | missed), timeout=60)
        finally:
            await pbx_lab.world.hangup_all()
        audit = stack.portal.audit()
        registrations = {call_id: len(stack.registrations(call_id)) for call_id in seen | missed}
        ends = {c: (stack.crm_item(c) or {}).get("crm_status") for c in missed}
        parts = stack.rt.dynamodb.query(
            TableName=stack.rt.tables.reconciliations,
            KeyConditionExpression="tenant = :t",
            ExpressionAttributeValues=to_item({":t": stack.tenant}),
        )["Items"]
        asked_again = {
            call_id for part in map(from_item, parts) for call_id in part.get("examples", {}).get("missing", [])
        }

    assert first is not None
    assert first.counts["differs"] == 0, first.examples.get("differs")
    assert first.counts["in_crm"] >= len(seen) and first.resent == 0
    assert audit["unfinished"] == [] and audit["open_cards"] == {}
    assert audit["duplicate_external_ids"] == {} and audit["reregistered"] == {}
    assert registrations == dict.fromkeys(seen | missed, 1)  # once each, the missed ones included
    assert set(ends.values()) == {"done"}
    assert missed <= asked_again  # brought in by the check (a new outbox has no gap for backfill to read)
