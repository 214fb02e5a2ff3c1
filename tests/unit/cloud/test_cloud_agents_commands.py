"""Commands reach only the tenant's own live agent; a gone socket drops the mapping; results are bound to
the agent the command was sent to."""

from __future__ import annotations

from unittest import mock

import pytest
from cloud_builders import API_ID, sent

from cloud.agents import connections, tokens
from cloud.agents.commands import get_command, record_result, send_command
from cloud.errors import AgentOffline, CommandConflict, RevokedAgent, UnknownAgent
from cloud.runtime import Runtime
from wire_protocol.messages import Command, CommandResult, OriginateCommand, ReloadCommand

pytest_plugins = ["cloud_testkit"]

CONTEXT = {"apiId": API_ID, "stage": "api"}


def originate(command_id: str = "cmd-1") -> Command:
    return Command(command_id=command_id, command=OriginateCommand(extension="101", number="79261234567"))


def online(rt: Runtime, tenant: str, cid: str) -> str:
    agent_id, _ = tokens.issue_token(rt, tenant, "office")
    connections.record(rt, tenant, agent_id, cid)
    return agent_id


def test_a_command_is_recorded_and_pushed_to_the_agents_connection(rt: Runtime) -> None:
    agent_id = online(rt, "portal-a", "CID1=")
    send_command(rt, "portal-a", agent_id, originate(), rt.gateway(CONTEXT))
    assert sent("CID1=") == [originate()]
    stored = get_command(rt, "portal-a", "cmd-1")
    assert stored is not None and (stored["agent_id"], stored["status"], stored["kind"]) == (
        agent_id,
        "sent",
        "originate",
    )


def test_another_tenant_cannot_command_or_see_the_agent(rt: Runtime) -> None:
    agent_id = online(rt, "portal-a", "CID1=")
    online(rt, "portal-b", "CID2=")
    with pytest.raises(UnknownAgent):
        send_command(rt, "portal-b", agent_id, originate(), rt.gateway(CONTEXT))
    assert sent("CID1=") == [] and get_command(rt, "portal-b", "cmd-1") is None


def test_an_offline_agent_cannot_be_commanded(rt: Runtime) -> None:
    agent_id, _ = tokens.issue_token(rt, "portal-a", "office")
    with pytest.raises(AgentOffline):
        send_command(rt, "portal-a", agent_id, originate(), rt.gateway(CONTEXT))


def test_a_revoked_agent_cannot_be_commanded(rt: Runtime) -> None:
    agent_id = online(rt, "portal-a", "CID1=")
    tokens.revoke(rt, "portal-a", agent_id)
    with pytest.raises(RevokedAgent):
        send_command(rt, "portal-a", agent_id, originate(), rt.gateway(CONTEXT))


def test_a_gone_connection_is_dropped_and_reported_offline(rt: Runtime) -> None:
    agent_id = online(rt, "portal-a", "CID1=")
    gateway = rt.gateway(CONTEXT)
    gone = gateway.client.exceptions.GoneException({"Error": {"Code": "GoneException"}}, "PostToConnection")
    with mock.patch.object(gateway.client, "post_to_connection", side_effect=gone), pytest.raises(AgentOffline):
        send_command(rt, "portal-a", agent_id, originate(), gateway)
    assert connections.agent_connection(rt, "portal-a", agent_id) is None


def test_a_command_id_is_bound_to_one_agent(rt: Runtime) -> None:
    first = online(rt, "portal-a", "CID1=")
    second = online(rt, "portal-a", "CID2=")
    send_command(rt, "portal-a", first, originate(), rt.gateway(CONTEXT))
    send_command(rt, "portal-a", first, originate(), rt.gateway(CONTEXT))  # a resend: the agent runs it once
    with pytest.raises(CommandConflict):
        send_command(rt, "portal-a", second, originate(), rt.gateway(CONTEXT))
    assert sent("CID2=") == []


def test_a_result_is_accepted_only_from_the_agent_commanded(rt: Runtime) -> None:
    first = online(rt, "portal-a", "CID1=")
    second = online(rt, "portal-a", "CID2=")
    send_command(rt, "portal-a", first, Command(command_id="cmd-2", command=ReloadCommand()), rt.gateway(CONTEXT))
    assert record_result(rt, "portal-a", second, CommandResult(command_id="cmd-2", ok=True, code="ok")) is False
    assert record_result(rt, "portal-a", first, CommandResult(command_id="cmd-2", ok=True, code="ok")) is True
    stored = get_command(rt, "portal-a", "cmd-2")
    assert stored is not None and (stored["agent_id"], stored["status"], stored["ok"]) == (first, "done", True)
