"""One item per click-to-call or callback (``click_to_call`` table), keyed by the command it becomes.

The first write is conditional, so of several deliveries of one Bitrix24 event exactly one goes on; later
writes record how far it got (for the failure path, the sweeper, support and tests).

``state``: ``received`` → ``sent`` (the agent has the command) or ``refused`` (never sent, no CALL_ID to close)
→ ``finishing`` (a failure ``finish`` is being sent) → ``finished``; or ``pipeline`` (the PBX placed the call:
the CRM pipeline finishes it), ``finish_refused`` (Bitrix24 refused the finish: nothing left open to close),
``register_refused`` (a callback Bitrix24 would not register), ``abandoned`` (the sweeper gave up).

A record is *due* (``due_shard``/``due_at``, the sparse ``by_due`` index) from its creation until it is
*settled*: if a handler dies half way, Bitrix24 cannot take a finish, or a sent command is never answered,
:func:`cloud.clicktocall.sweep` comes back to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from cloud.clock import now_iso
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item

__all__ = ["DUE_SHARD", "RECORD_TTL_SECONDS", "claim", "due", "get", "iso", "update"]

RECORD_TTL_SECONDS = 30 * 24 * 3600
DUE_SHARD = "due"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def claim(rt: Runtime, tenant: str, key: str, *, due_at: datetime, **fields: Any) -> bool:
    """Create the record, due at ``due_at`` unless settled before; ``False`` if it exists (a repeated delivery
    of the same event)."""
    item = {"tenant": tenant, "key": key, "state": "received", "received_at": now_iso(), **fields}
    item |= {"due_shard": DUE_SHARD, "due_at": iso(due_at), "expires_at": int(time.time()) + RECORD_TTL_SECONDS}
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


def update(
    rt: Runtime, tenant: str, key: str, *, settle: bool = False, due_at: datetime | None = None, **fields: Any
) -> None:
    """Set ``fields`` on an existing record (``None`` values are skipped); ``settle``: nothing is left to do, it
    leaves the sweeper's index; ``due_at``: the sweeper should look again then."""
    values = {name: value for name, value in fields.items() if value is not None}
    if due_at is not None:
        values |= {"due_shard": DUE_SHARD, "due_at": iso(due_at)}
    names = {f"#f{i}": name for i, name in enumerate(values)}
    clauses = [f"#f{i} = :v{i}" for i in range(len(values))]
    expression = ("SET " + ", ".join(clauses)) if clauses else ""
    if settle:
        expression += " REMOVE due_shard, due_at"
    if not expression:
        return
    kwargs: dict[str, Any] = {}
    if values:
        kwargs["ExpressionAttributeValues"] = to_item({f":v{i}": value for i, value in enumerate(values.values())})
    rt.dynamodb.update_item(
        TableName=rt.tables.click_to_call,
        Key=to_item({"tenant": tenant, "key": key}),
        UpdateExpression=expression.strip(),
        ConditionExpression="attribute_exists(#k)",
        ExpressionAttributeNames={**names, "#k": "key"},
        **kwargs,
    )


def due(rt: Runtime, now: datetime, limit: int = 100) -> Iterator[tuple[str, str]]:
    """``(tenant, key)`` of records whose ``due_at`` has passed, oldest first."""
    paginator = rt.dynamodb.get_paginator("query")
    count = 0
    for page in paginator.paginate(
        TableName=rt.tables.click_to_call,
        IndexName="by_due",
        KeyConditionExpression="due_shard = :d AND due_at <= :now",
        ExpressionAttributeValues=to_item({":d": DUE_SHARD, ":now": iso(now)}),
    ):
        for raw in page["Items"]:
            item = from_item(raw)
            yield item["tenant"], item["key"]
            count += 1
            if count >= limit:
                return
