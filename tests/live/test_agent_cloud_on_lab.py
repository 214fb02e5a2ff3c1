"""The whole link on a real Asterisk 22: `edge-agent run` (in process) against cloud-local (the Chalice app behind the
local API Gateway, moto as DynamoDB). Calls made on the lab arrive in the cloud's call state with the summaries the
scenarios expect, and a click-to-call pushed from the cloud rings the user, then the client, once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud.agents.commands import get_command, send_command
from cloud.calls.store import list_calls
from sandbox.call_expectations import mismatches
from sandbox.cloud_local import CloudLocal, CloudLocalConfig
from sandbox.cloud_local.agents import AmiLogin, issue_token, running_agent
from sandbox.cloud_local.agents import runtime as cloud_runtime
from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.live import LiveLab
from wire_protocol.messages import Command, OriginateCommand

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

TENANT = "labportal"
SCENARIOS = ["inbound_queue_answered", "inbound_pickup", "blind_transfer", "outbound_busy", "internal_answered"]


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll: neither the agent nor moto offers an event to wait on from outside."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_lab_calls_reach_the_cloud_call_state_and_click_to_call_comes_back(
    pbx_lab: LiveLab, tmp_path: Path
) -> None:
    edge = pbx_lab.edge
    login = AmiLogin(edge.host, edge.port, edge.username, edge.secret)
    async with CloudLocal(CloudLocalConfig(table_prefix="live-")) as cloud:
        runtime = cloud_runtime()
        agent_id, token = await issue_token(TENANT, "lab PBX")
        try:
            async with running_agent(login, cloud.ws_url, token, tmp_path):
                expected: list[dict[str, Any]] = []
                for name in SCENARIOS:
                    expected += [dict(e) for e in await scenarios.SCENARIOS[name](pbx_lab.scenario_lab)]

                await pbx_lab.admin.wait_idle()
                await pbx_lab.world.set_behavior("101", "answer")
                await pbx_lab.world.set_behavior(scenarios.OUTSIDE, "answer:2")
                click = Command(
                    command_id="lab-click-1", command=OriginateCommand(extension="101", number=scenarios.OUTSIDE)
                )
                await asyncio.to_thread(send_command, runtime, TENANT, agent_id, click)
                result: dict[str, Any] = {}

                def command_done() -> bool:
                    result.update(get_command(runtime, TENANT, "lab-click-1") or {})
                    return result.get("status") == "done"

                await until(command_done)
                ended: dict[str, dict[str, Any]] = {}

                def all_ended() -> bool:
                    calls = list_calls(runtime, TENANT)
                    ended.update({c.call_id: c.summary.to_json_dict() for c in calls if c.summary is not None})
                    wanted = {e["call_id"] for e in expected}
                    return wanted <= set(ended) and any(s["command_id"] == "lab-click-1" for s in ended.values())

                await until(all_ended)
        finally:
            await pbx_lab.world.hangup_all()
    assert mismatches(expected, list(ended.values())) == []
    assert (result["ok"], result["code"]) == (True, "answered")
    [click_call] = [s for s in ended.values() if s["command_id"] == "lab-click-1"]
    assert click_call["direction"] == "outbound" and click_call["caller_extension"] == "101"
    assert click_call["external_number"] == scenarios.OUTSIDE and click_call["result"] == "answered"
