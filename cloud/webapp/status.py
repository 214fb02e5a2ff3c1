"""What everyone on the page may see: each edge agent's state (with its last CDR check), and the license.

Agents are read from the tenant's partition of ``agents`` (versions and heartbeats as the link stored them,
``cloud.agents.status``), their live connection from the registry, and their latest stored call event from
``call_events`` (its range key starts with the call id, an Asterisk ``Linkedid`` = ``<epoch>.<n>``, so the last
key is the newest call's; an approximation that needs no index).

The license comes from ``cloud.licensing`` when that module is installed (branch ``license``); without it
the page says "unknown" (:func:`license_status`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from cloud import licensing
from cloud.agents import connections
from cloud.reconcile import last_check
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, to_item

__all__ = ["AgentView", "agent_views", "forget_card_user", "license_status"]

log = logging.getLogger("cloud.webapp.status")

AgentView = dict[str, Any]


def _iso(epoch: int | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else None


def _last_event(rt: Runtime, tenant: str, agent_id: str) -> dict[str, Any] | None:
    response = rt.dynamodb.query(
        TableName=rt.tables.call_events,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues=to_item({":pk": f"{tenant}#{agent_id}"}),
        ScanIndexForward=False,
        Limit=1,
    )
    items = response.get("Items", [])
    if not items:
        return None
    event = from_item(items[0])
    return {"at": event.get("at"), "type": event.get("type"), "call_id": event.get("call_id")}


def _last_check(rt: Runtime, tenant: str, agent_id: str) -> dict[str, Any] | None:
    """The agent's last CDR check (``cloud.reconcile``); never fails the page."""
    try:
        check = last_check(rt, tenant, agent_id)
    except Exception:
        log.exception("tenant %s: the last CDR check of %s is unreadable", tenant, agent_id)
        return None
    if check is None:
        return None
    return check.model_dump(mode="json") | {"complete": check.complete}


def agent_views(rt: Runtime, tenant: str) -> list[AgentView]:
    """Every agent of the tenant (revoked ones last), with its connection and versions."""
    views: list[AgentView] = []
    paginator = rt.dynamodb.get_paginator("query")
    for page in paginator.paginate(
        TableName=rt.tables.agents,
        KeyConditionExpression="tenant = :t",
        ExpressionAttributeValues=to_item({":t": tenant}),
        ConsistentRead=True,
    ):
        for raw in page["Items"]:
            item = from_item(raw)
            agent_id = str(item["agent_id"])
            revoked = item.get("revoked_at") is not None
            conn = None if revoked else connections.agent_connection(rt, tenant, agent_id)
            views.append(
                {
                    "agent_id": agent_id,
                    "name": item.get("name", ""),
                    "state": "revoked" if revoked else ("online" if conn else "offline"),
                    "connected_since": _iso(conn.connected_at) if conn else None,
                    "created_at": item.get("created_at"),
                    "revoked_at": item.get("revoked_at"),
                    "last_seen_at": item.get("last_seen_at"),
                    "heartbeat_at": item.get("heartbeat_at"),
                    "agent_version": item.get("agent_version"),
                    "pbx_version": item.get("pbx_version"),
                    "ami_version": item.get("ami_version"),
                    "ami_connected": item.get("ami_connected"),
                    "outbox_depth": item.get("outbox_depth"),
                    "last_event": _last_event(rt, tenant, agent_id),
                    "last_check": _last_check(rt, tenant, agent_id),
                }
            )
    return sorted(views, key=lambda v: (v["state"] == "revoked", v["name"], v["agent_id"]))


def _when(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else None


def license_status(rt: Runtime, tenant: str, now: datetime) -> dict[str, Any]:
    """The license as the page shows it (the cached lease, no call to the license server); ``state: unknown``
    when it cannot be read."""
    try:
        ent = licensing.entitlements(rt, tenant, now)
        cards = licensing.card_users(rt, tenant)
    except Exception:
        log.exception("tenant %s: license state unavailable", tenant)
        return {"state": "unknown", "available": False}
    return {
        "state": str(ent.state),
        "available": True,
        "plan": str(ent.plan),
        "ends_at": _when(ent.ends_at),
        "grace_ends_at": _when(ent.grace_ends_at) if ent.state == "grace" else None,
        "reason": str(ent.reason),
        "features": sorted(str(f) for f in ent.features),
        "users_with_cards": {"used": len(cards), "limit": ent.limits.users_with_cards},
        #: who keeps call cards when the plan's limit is exceeded: the first ``limit`` in this order
        "card_order": [str(user) for user in cards],
    }


def forget_card_user(rt: Runtime, tenant: str, user_id: str) -> list[str]:
    """Free a user's place in the call-card order."""
    return [str(user) for user in licensing.forget_card_user(rt, tenant, user_id)]
