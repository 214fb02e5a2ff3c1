"""Retention: each tenant's recordings are deleted ``retention_days`` after their upload.

An S3 lifecycle rule cannot say "N days, N per tenant" for an N anyone may pick (1-3650) without one rule per
value (at most 1,000 rules per bucket), and a tenant changing N would not move objects already tagged. So
every uploaded item carries ``expires_on`` in the sparse ``by_expiry`` index, and :func:`expire_recordings`
(run by the scheduled sweeper) deletes what is due: exact per tenant, and the table tells what was deleted.
The bucket's lifecycle rule is only a safety net (``cloud.recordings.bucket.LIFECYCLE``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, to_item

from .store import EXPIRY_SHARD, iso

__all__ = ["expire_recordings"]

log = logging.getLogger("cloud.recordings")


def expire_recordings(rt: Runtime, now: datetime, limit: int = 200) -> int:
    """Delete the objects whose retention ended; returns how many. Safe to run anywhere, any number of times."""
    response = rt.dynamodb.query(
        TableName=rt.tables.recordings,
        IndexName="by_expiry",
        KeyConditionExpression="expiry_shard = :s AND expires_on <= :now",
        ExpressionAttributeValues=to_item({":s": EXPIRY_SHARD, ":now": iso(now)}),
        Limit=limit,
    )
    expired = 0
    for raw in response.get("Items", []):
        keys = from_item(raw)
        item = rt.dynamodb.get_item(
            TableName=rt.tables.recordings,
            Key=to_item({"tenant": keys["tenant"], "call_key": keys["call_key"]}),
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            continue
        record = from_item(item)
        if record.get("expires_on", "") > iso(now):
            continue  # the index lags: the retention moved
        rt.s3.delete_object(Bucket=rt.settings.bucket, Key=record["key"])
        rt.dynamodb.update_item(
            TableName=rt.tables.recordings,
            Key=to_item({"tenant": keys["tenant"], "call_key": keys["call_key"]}),
            UpdateExpression="SET #s = :e, expired_at = :now REMOVE expiry_shard",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=to_item({":e": "expired", ":now": iso(now)}),
        )
        expired += 1
    if expired:
        log.info("retention: %d recording(s) deleted", expired)
    return expired
