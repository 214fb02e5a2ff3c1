"""The connection registry: which websocket connection an agent is on, and which agent a connection is.

Two items per connection in the ``connections`` table, both written on ``$connect``:

* ``agent#<tenant>#<agent_id>`` → ``connection_id``: where to push commands. A newer connection overwrites it
  (the agent opens its next connection before closing the old one, to stay under API Gateway's 2-hour cap).
* ``conn#<connection_id>`` → ``tenant``, ``agent_id``: who sent a ``$default`` message (those events carry
  only the connection id).

``$disconnect`` deletes its ``conn#`` item, and the ``agent#`` item only if it still names this connection,
so the old socket's late disconnect cannot erase the new mapping. ``$disconnect`` is best effort, so both
carry a TTL (``expires_at`` = connected + 2 h + slack) and readers ignore expired items (TTL deletion lags).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cloud.gateway import ConnectionGateway
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item

__all__ = [
    "MAX_CONNECTION_SECONDS",
    "TTL_SLACK_SECONDS",
    "Connection",
    "agent_connection",
    "connection_agent",
    "drop",
    "kick",
    "record",
]

#: API Gateway closes every websocket after 2 hours.
MAX_CONNECTION_SECONDS = 2 * 3600
TTL_SLACK_SECONDS = 600


@dataclass(frozen=True)
class Connection:
    tenant: str
    agent_id: str
    connection_id: str
    connected_at: int  # epoch seconds
    expires_at: int


def _agent_pk(tenant: str, agent_id: str) -> str:
    return f"agent#{tenant}#{agent_id}"


def _conn_pk(connection_id: str) -> str:
    return f"conn#{connection_id}"


def record(
    rt: Runtime,
    tenant: str,
    agent_id: str,
    connection_id: str,
    connected_at: int | None = None,
    *,
    current: bool = True,
) -> Connection:
    """Register a connection on ``$connect``; it becomes the agent's current one unless ``current`` is False
    (a probe such as ``edge-agent doctor``: its messages are answered, but commands keep going to the agent's
    running connection)."""
    connected = int(time.time()) if connected_at is None else connected_at
    conn = Connection(
        tenant, agent_id, connection_id, connected, connected + MAX_CONNECTION_SECONDS + TTL_SLACK_SECONDS
    )
    common = {"tenant": tenant, "agent_id": agent_id, "connection_id": connection_id}
    times = {"connected_at": conn.connected_at, "expires_at": conn.expires_at}
    if not current:
        rt.dynamodb.put_item(
            TableName=rt.tables.connections, Item=to_item({"pk": _conn_pk(connection_id), **common, **times})
        )
        return conn
    rt.dynamodb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": rt.tables.connections,
                    "Item": to_item({"pk": _conn_pk(connection_id), **common, **times}),
                }
            },
            {
                "Put": {
                    "TableName": rt.tables.connections,
                    "Item": to_item({"pk": _agent_pk(tenant, agent_id), **common, **times}),
                }
            },
        ]
    )
    return conn


def _live(item: dict[str, Any] | None, now: int) -> Connection | None:
    if item is None:
        return None
    values = from_item(item)
    if int(values["expires_at"]) <= now:
        return None
    return Connection(
        tenant=values["tenant"],
        agent_id=values["agent_id"],
        connection_id=values["connection_id"],
        connected_at=int(values["connected_at"]),
        expires_at=int(values["expires_at"]),
    )


def connection_agent(rt: Runtime, connection_id: str, *, include_expired: bool = False) -> Connection | None:
    """Who is on this connection (``None`` if unknown, or expired unless ``include_expired``)."""
    response = rt.dynamodb.get_item(
        TableName=rt.tables.connections, Key=to_item({"pk": _conn_pk(connection_id)}), ConsistentRead=True
    )
    return _live(response.get("Item"), 0 if include_expired else int(time.time()))


def agent_connection(rt: Runtime, tenant: str, agent_id: str) -> Connection | None:
    """The agent's current connection in ``tenant`` (``None`` if it has none)."""
    response = rt.dynamodb.get_item(
        TableName=rt.tables.connections, Key=to_item({"pk": _agent_pk(tenant, agent_id)}), ConsistentRead=True
    )
    return _live(response.get("Item"), int(time.time()))


def drop(rt: Runtime, tenant: str, agent_id: str, connection_id: str) -> bool:
    """Forget a connection (``$disconnect``, ``GoneException``, revocation).

    Returns whether the agent's current-connection mapping was removed, i.e. it still named this connection.
    """
    rt.dynamodb.delete_item(TableName=rt.tables.connections, Key=to_item({"pk": _conn_pk(connection_id)}))
    try:
        rt.dynamodb.delete_item(
            TableName=rt.tables.connections,
            Key=to_item({"pk": _agent_pk(tenant, agent_id)}),
            ConditionExpression="connection_id = :cid",
            ExpressionAttributeValues=to_item({":cid": connection_id}),
        )
    except Exception as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def kick(rt: Runtime, tenant: str, agent_id: str, gateway: ConnectionGateway | None = None) -> bool:
    """Close the agent's current connection now (after a revocation) and forget it; ``False`` if it had none.

    Best effort by design: the ``$default`` handler refuses a revoked agent's next message anyway.
    """
    conn = agent_connection(rt, tenant, agent_id)
    if conn is None:
        return False
    (gateway or rt.gateway()).close(conn.connection_id)
    drop(rt, tenant, agent_id, conn.connection_id)
    return True
