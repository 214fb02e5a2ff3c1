"""``$connect`` and ``$disconnect``: authenticate the agent's token, keep the connection registry right.

``$connect`` answers with the status API Gateway gives the websocket upgrade: 200, 401 (no token, malformed,
or unknown) or 403 (revoked: the agent should stop retrying and tell its operator).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cloud.agents import connections
from cloud.agents.status import touch
from cloud.agents.tokens import authenticate
from cloud.errors import InvalidToken, RevokedAgent
from cloud.runtime import Runtime

__all__ = ["PROBE_HEADER", "bearer_token", "is_probe", "on_connect", "on_disconnect"]

#: Sent by ``edge-agent doctor``: a check connection that must not take over the running agent's registration.
PROBE_HEADER = "x-pbxlink-probe"

log = logging.getLogger(__name__)


def bearer_token(headers: Mapping[str, Any] | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, looked up case-insensitively."""
    for name, value in (headers or {}).items():
        if name.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def is_probe(headers: Mapping[str, Any] | None) -> bool:
    return any(name.lower() == PROBE_HEADER and str(value).strip() == "1" for name, value in (headers or {}).items())


def on_connect(rt: Runtime, event: Mapping[str, Any]) -> dict[str, int]:
    context = event["requestContext"]
    token = bearer_token(event.get("headers"))
    if token is None:
        return {"statusCode": 401}
    try:
        agent = authenticate(rt, token)
    except InvalidToken:
        log.info("connect refused: unknown token (%s)", context.get("identity", {}).get("sourceIp"))
        return {"statusCode": 401}
    except RevokedAgent as exc:
        log.info("connect refused: agent %s is revoked", exc)
        return {"statusCode": 403}
    connected_ms = context.get("connectedAt")
    connected_at = int(connected_ms) // 1000 if isinstance(connected_ms, int) else None
    probe = is_probe(event.get("headers"))
    connections.record(rt, agent.tenant, agent.agent_id, context["connectionId"], connected_at, current=not probe)
    touch(rt, agent.tenant, agent.agent_id)
    log.info(
        "agent %s/%s connected on %s%s",
        agent.tenant,
        agent.agent_id,
        context["connectionId"],
        " (probe)" if probe else "",
    )
    return {"statusCode": 200}


def on_disconnect(rt: Runtime, event: Mapping[str, Any]) -> None:
    connection_id = event["requestContext"]["connectionId"]
    conn = connections.connection_agent(rt, connection_id, include_expired=True)
    if conn is None:
        return
    still_current = connections.drop(rt, conn.tenant, conn.agent_id, connection_id)
    log.info(
        "agent %s/%s disconnected from %s%s",
        conn.tenant,
        conn.agent_id,
        connection_id,
        "" if still_current else " (already on a newer connection)",
    )
