"""One item per click-to-call or callback (``click_to_call`` table), keyed by the command it becomes.

The first write is conditional, so of several deliveries of one Bitrix24 event exactly one goes on; later
writes record how far it got (for the failure path, support and tests).

``state``: ``received`` → ``sent`` (the agent has the command) or ``refused`` (never sent) → ``finishing``
(a failure ``finish`` was sent) → ``finished``; or ``pipeline`` (the PBX placed the call: the CRM pipeline
finishes it), ``finish_refused`` (Bitrix24 refused the finish; nothing left open to close), ``register_refused``
(a callback Bitrix24 would not register).
"""

from __future__ import annotations

import time
from typing import Any

from cloud.clock import now_iso
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item

__all__ = ["RECORD_TTL_SECONDS", "claim", "get", "update"]

RECORD_TTL_SECONDS = 30 * 24 * 3600


def claim(rt: Runtime, tenant: str, key: str, **fields: Any) -> bool:
    """Create the record; ``False`` if it exists (a repeated delivery of the same event)."""
    item = {"tenant": tenant, "key": key, "state": "received", "received_at": now_iso(), **fields}
    item["expires_at"] = int(time.time()) + RECORD_TTL_SECONDS
    try:
        rt.dynamodb.put_item(
            TableName=rt.tables.click_to_call,
            Item=to_item(item),
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": "key"},
        )
    except Exception as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def get(rt: Runtime, tenant: str, key: str) -> dict[str, Any] | None:
    response = rt.dynamodb.get_item(
        TableName=rt.tables.click_to_call, Key=to_item({"tenant": tenant, "key": key}), ConsistentRead=True
    )
    return from_item(response["Item"]) if "Item" in response else None


def update(rt: Runtime, tenant: str, key: str, **fields: Any) -> None:
    """Set ``fields`` on an existing record (``None`` values are skipped)."""
    values = {name: value for name, value in fields.items() if value is not None}
    if not values:
        return
    names = {f"#f{i}": name for i, name in enumerate(values)}
    expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values)))
    rt.dynamodb.update_item(
        TableName=rt.tables.click_to_call,
        Key=to_item({"tenant": tenant, "key": key}),
        UpdateExpression=expression,
        ConditionExpression="attribute_exists(#k)",
        ExpressionAttributeNames={**names, "#k": "key"},
        ExpressionAttributeValues=to_item({f":v{i}": value for i, value in enumerate(values.values())}),
    )
