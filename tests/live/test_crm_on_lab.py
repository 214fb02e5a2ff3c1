"""Real calls on the Asterisk 22 lab, all the way into Bitrix24: `edge-agent run` (in process) → cloud-local (the
Chalice app, moto as DynamoDB, the license server, the CRM pipeline) → the Bitrix24 emulator, with our app
installed into its portal the way Bitrix24 installs apps. The emulator's state is the judge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud.calls.store import list_calls
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.live import LiveLab
from sandbox.portal_stack import ANNA, BORIS, card_users, portal_stack, until

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

SCENARIOS = [
    "inbound_queue_answered",
    "inbound_direct_missed",
    "blind_transfer",
    "outbound_answered",
    "internal_answered",
]


async def test_lab_calls_land_in_bitrix24_with_cards_owners_statuses_and_talk_time(
    pbx_lab: LiveLab, tmp_path: Path
) -> None:
    edge = pbx_lab.edge
    login = AmiLogin(edge.host, edge.port, edge.username, edge.secret)
    async with portal_stack(table_prefix="live-crm-") as stack:
        try:
            async with running_agent(login, stack.cloud.ws_url, await stack.agent_token("lab PBX"), tmp_path):
                made: dict[str, dict[str, Any]] = {}
                for name in SCENARIOS:
                    (expected,) = await scenarios.SCENARIOS[name](pbx_lab.scenario_lab)
                    made[name] = dict(expected)
                call_ids = {e["call_id"] for e in made.values()}
                assert await until(lambda: stack.crm_done(call_ids), timeout=60)
        finally:
            await pbx_lab.world.hangup_all()
        summaries = {c.call_id: c.summary for c in list_calls(stack.rt, stack.tenant) if c.summary}
        audit = stack.portal.audit()
        legs = {name: stack.registrations(made[name]["call_id"]) for name in SCENARIOS}

    assert audit["unfinished"] == [] and audit["open_cards"] == {}
    assert audit["duplicate_external_ids"] == {} and audit["undocumented_status"] == {}

    (queue,) = legs["inbound_queue_answered"]  # ringall 101 + 102, Boris answers after 2 s
    assert card_users(queue, "show") == {ANNA, BORIS} and card_users(queue, "hide") == {ANNA}
    assert (queue.type, queue.finish_user_id, queue.status_code) == (2, BORIS, "200")
    assert queue.duration == summaries[made["inbound_queue_answered"]["call_id"]].talk_seconds
    assert 2 <= queue.duration <= 5 and queue.line_number == scenarios.LINE_Q500

    (missed,) = legs["inbound_direct_missed"]  # Anna's phone rang 20 s; the client's lead is Boris's now
    assert card_users(missed, "show") == {ANNA} and (missed.status_code, missed.duration) == ("304", 0)
    assert missed.finish_user_id == BORIS

    first, second = legs["blind_transfer"]  # Anna answers, transfers to Boris, who talks to the end
    assert (first.type, first.finish_user_id, first.status_code) == (2, ANNA, "200")
    assert (second.type, second.finish_user_id, second.status_code) == (3, BORIS, "200")
    assert second.duration >= 2

    (outbound,) = legs["outbound_answered"]
    assert (outbound.type, outbound.user_id, outbound.status_code) == (1, ANNA, "200")
    assert outbound.phone_number == "+" + scenarios.OUTSIDE

    assert legs["internal_answered"] == []  # internal calls are not registered by default
