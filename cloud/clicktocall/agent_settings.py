"""The tenant's settings as agents need them (originate settings, channel rules), after ``hello`` and pushed
whenever an admin changes them."""

from __future__ import annotations

import logging

from cloud.agents import connections
from cloud.agents.tokens import list_agents
from cloud.crm.settings import InvalidSettings, load_settings
from cloud.gateway import ConnectionGateway
from cloud.runtime import Runtime
from wire_protocol.messages import AgentSettings

from .rules import agent_settings

__all__ = ["push_settings", "settings_for_agent"]

log = logging.getLogger("cloud.clicktocall")


def settings_for_agent(rt: Runtime, tenant: str) -> AgentSettings:
    """The tenant's :class:`AgentSettings`; the defaults when its stored settings cannot be read."""
    try:
        return agent_settings(load_settings(rt, tenant))
    except InvalidSettings as exc:
        log.error("tenant %s: stored settings do not validate (%s); agents get the defaults", tenant, exc)
        return AgentSettings()


def push_settings(rt: Runtime, tenant: str, gateway: ConnectionGateway | None = None) -> list[str]:
    """Send the tenant's current agent settings to every connected agent (call it after saving settings).
    Returns the agents that got them; a gone connection is dropped (the agent gets them after its next hello)."""
    message = settings_for_agent(rt, tenant)
    pushed: list[str] = []
    for agent in list_agents(rt, tenant):
        if agent.revoked:
            continue
        conn = connections.agent_connection(rt, tenant, agent.agent_id)
        if conn is None:
            continue
        gw = gateway or rt.gateway()
        if gw.send(conn.connection_id, message):
            pushed.append(agent.agent_id)
        else:
            connections.drop(rt, tenant, agent.agent_id, conn.connection_id)
    return pushed
