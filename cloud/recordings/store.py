"""The ``recordings`` table: one item per call with a recording, keyed like ``calls`` (tenant first).

``state``: ``requested`` (a URL was handed out) → ``uploaded`` (the object is in the bucket, checked) or
``failed`` (the agent could not upload it: ``error``, ``note``) → ``expired`` (retention deleted the object).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item

__all__ = ["EXPIRY_SHARD", "RecordingItem", "call_key", "get_recording", "object_key", "put_recording"]

EXPIRY_SHARD = "exp"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

RecordingState = Literal["requested", "uploaded", "failed", "expired"]


def call_key(agent_id: str, call_id: str) -> str:
    return f"{agent_id}#{call_id}"


def object_key(tenant: str, agent_id: str, call_id: str) -> str:
    """``<tenant>/<agent>/<call>/recording``: tenant first, so a tenant's objects share one prefix (and an IAM
    policy or a deletion can be scoped to it). The call id is a Linkedid; anything unusual in it is replaced."""
    return f"{tenant}/{agent_id}/{_UNSAFE.sub('_', call_id)[:200]}/recording"


@dataclass(frozen=True)
class RecordingItem:
    tenant: str
    agent_id: str
    call_id: str
    state: RecordingState
    key: str
    format: str = "mp3"  # wanted (requested) or uploaded
    size: int | None = None
    sha256: str | None = None
    error: str | None = None
    note: str = ""
    requested_at: str | None = None
    uploaded_at: str | None = None
    expires_on: str | None = None

    @property
    def filename(self) -> str:
        """The name Bitrix24 shows (it takes only ``.wav`` and ``.mp3``)."""
        return f"{_UNSAFE.sub('_', self.call_id)[:120]}.{self.format}"


def get_recording(rt: Runtime, tenant: str, agent_id: str, call_id: str) -> RecordingItem | None:
    response = rt.dynamodb.get_item(
        TableName=rt.tables.recordings,
        Key=to_item({"tenant": tenant, "call_key": call_key(agent_id, call_id)}),
        ConsistentRead=True,
    )
    if "Item" not in response:
        return None
    item = from_item(response["Item"])
    fields = RecordingItem.__dataclass_fields__
    return RecordingItem(**{k: v for k, v in item.items() if k in fields})


def put_recording(rt: Runtime, item: RecordingItem, *, unless_uploaded: bool = False) -> bool:
    """Write the whole item; with ``unless_uploaded`` not over an uploaded one (``False`` then)."""
    values: dict[str, Any] = {k: v for k, v in item.__dict__.items() if v is not None}
    values["call_key"] = call_key(item.agent_id, item.call_id)
    if item.expires_on is not None and item.state == "uploaded":
        values["expiry_shard"] = EXPIRY_SHARD
    extra: dict[str, Any] = {}
    if unless_uploaded:
        extra = {
            "ConditionExpression": "attribute_not_exists(call_key) OR #s <> :u",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": to_item({":u": "uploaded"}),
        }
    try:
        rt.dynamodb.put_item(TableName=rt.tables.recordings, Item=to_item(values), **extra)
    except Exception as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
