"""The periodic CDR check on the whole path: calls the PBX made that never reached the cloud — here, the 19 calls
the lab's Asterisk wrote to its CDR while this agent knew of no gap, so backfill had no reason to look — are
found by the check, sent again by the agent, and land in the Bitrix24 emulator once each; the next check finds
nothing missing, and the settings page's status shows it.

Real components: the agent (its CDR reader on a SQLite master.db with the lab's rows), cloud-local (websocket
API, Chalice app, moto server), the Bitrix24 emulator with the app installed. The agent's clock is set to just
after the lab's calls (its CDR rows are from 2026-11-26 09:51 to 09:53 UTC), the check interval to a second.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud.reconcile import last_check
from cloud.storage.dynamo import from_item, to_item
from cloud.webapp.status import agent_views
from edge_agent import agent as agent_module
from edge_agent.calls.channels import ChannelRules
from edge_agent.cdr.readers import open_reader
from edge_agent.cdr.settings import CdrSettings
from edge_agent.cdr.summaries import summarize_rows
from edge_agent.outbox import Outbox, outbox_path
from sandbox.ami_server.server import FakeAmiServer, UserSpec
from sandbox.cdr_fixtures import write_master_db
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.portal_stack import PortalStack, portal_stack, until

pytestmark = [pytest.mark.integration]

#: The agent's "now": twenty minutes after the lab's last call ended.
AGENT_NOW = datetime(2026, 11, 26, 10, 14, tzinfo=UTC).timestamp()
#: Installed before the calls (no check reaches before the agent's first start).
INSTALLED = datetime(2026, 11, 26, 9, 40, tzinfo=UTC).timestamp()


def lab_call_ids(master_db: Path) -> set[str]:
    reader = open_reader(CdrSettings.model_validate({"dsn": f"sqlite://{master_db}", "timezone": "UTC"}))
    try:
        rows = reader.rows(datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    finally:
        reader.close()
    return {s.call_id for s in summarize_rows(rows, ChannelRules())}


def checks(stack: PortalStack, agent_id: str) -> list[dict[str, Any]]:
    response = stack.rt.dynamodb.query(
        TableName=stack.rt.tables.reconciliations,
        KeyConditionExpression="tenant = :t AND begins_with(check_key, :p)",
        ExpressionAttributeValues=to_item({":t": stack.tenant, ":p": f"{agent_id}#"}),
    )
    return [from_item(item) for item in response["Items"]]


async def test_calls_the_cloud_never_got_are_found_sent_again_and_registered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "RECONCILE_FIRST_SECONDS", 0.2)
    monkeypatch.setattr(agent_module, "RECONCILE_RETRY_SECONDS", 0.2)
    master_db = tmp_path / "master.db"
    write_master_db(master_db)
    expected = lab_call_ids(master_db)
    assert len(expected) == 19

    data_dir = tmp_path / "data"
    outbox = Outbox(outbox_path(data_dir))
    outbox.set_meta(agent_module.RECONCILE_FLOOR_KEY, repr(INSTALLED))
    outbox.close()
    offset = AGENT_NOW - time.time()

    async with portal_stack(table_prefix="rec-") as stack, FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami:
        env = {
            "EDGE_CDR_DSN": f"sqlite://{master_db}",
            "EDGE_CDR_TIMEZONE": "UTC",
            "EDGE_CDR_LATE_SECONDS": "0.3",
            "EDGE_CDR_RECONCILE_MINUTES": "0.02",
        }
        login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
        token = await stack.agent_token()
        async with running_agent(
            login, stack.cloud.ws_url, token, data_dir, extra_env=env, clock=lambda: time.time() + offset
        ):
            assert await until(lambda: stack.crm_done(expected), timeout=90)
            agent_id = stack.calls_agent(next(iter(expected)))

            def confirmed() -> bool:
                check = last_check(stack.rt, stack.tenant, agent_id)
                return check is not None and check.complete and check.counts["in_crm"] == len(expected)

            assert await until(confirmed, timeout=60)
            audit = stack.portal.audit()
            registrations = {call_id: len(stack.registrations(call_id)) for call_id in expected}
            statuses = {call_id: (stack.crm_item(call_id) or {}).get("crm_status") for call_id in expected}
            views = agent_views(stack.rt, stack.tenant)
            history = checks(stack, agent_id)

    assert audit["unfinished"] == [] and audit["open_cards"] == {}
    assert audit["duplicate_external_ids"] == {} and audit["reregistered"] == {}
    # one registration per call (the CDR has no transfers without CEL), none twice however many checks ran;
    # internal calls are not registered (the default settings skip them)
    assert registrations == {call_id: 0 if statuses[call_id] == "skipped" else 1 for call_id in expected}
    assert list(statuses.values()).count("done") == 17
    first = min(history, key=lambda item: str(item["check_key"]))
    assert first["counts"]["missing"] == len(expected) and first["resent"] == len(expected)
    (view,) = views
    check = view["last_check"]
    assert check["pbx_calls"] == len(expected) and check["counts"]["in_crm"] == len(expected)
    assert check["counts"]["missing"] == check["counts"]["open"] == check["resent"] == 0 and check["complete"]
