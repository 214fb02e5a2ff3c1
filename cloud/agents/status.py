"""What the cloud remembers about a connected agent: last seen, its hello, its heartbeats.

(The acknowledged seq is kept by :mod:`cloud.link.acks`.)
"""

from __future__ import annotations

from typing import Any

from cloud.clock import now_iso
from cloud.runtime import Runtime
from cloud.storage.dynamo import is_condition_failure, to_item

__all__ = ["touch"]


def touch(rt: Runtime, tenant: str, agent_id: str, **fields: Any) -> None:
    """Set ``last_seen_at`` (and any ``fields``) on an existing agent; a deleted agent is left deleted."""
    values = {"last_seen_at": now_iso(), **{k: v for k, v in fields.items() if v is not None}}
    names = {f"#f{i}": key for i, key in enumerate(values)}
    placeholders = {f":v{i}": value for i, value in enumerate(values.values())}
    try:
        rt.dynamodb.update_item(
            TableName=rt.tables.agents,
            Key=to_item({"tenant": tenant, "agent_id": agent_id}),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values))),
            ConditionExpression="attribute_exists(agent_id)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(placeholders),
        )
    except Exception as exc:
        if not is_condition_failure(exc):
            raise
