"""Rate limits on originates (toll-fraud guard): per user and per tenant, per minute, in DynamoDB.

One counter per limit and one-minute window (``rate_limits`` table, TTL). Both counters are taken in one
transaction, each with the condition "below its limit", so Lambdas racing on one tenant never let more calls
through than the limit, and a call refused by one limit does not use up the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from cloud.errors import StorageConflict
from cloud.runtime import Runtime
from cloud.storage.dynamo import error_code, to_item

__all__ = ["WINDOW_SECONDS", "LimitHit", "take"]

WINDOW_SECONDS = 60
_ATTEMPTS = 5
LimitHit = Literal["user", "tenant"]


def _buckets(scope: str, user: str, window: int) -> tuple[str, str]:
    return f"{scope}#user#{user}#{window}", f"{scope}#tenant#{window}"


def take(
    rt: Runtime,
    tenant: str,
    user: str,
    *,
    per_user: int,
    per_tenant: int,
    scope: str = "c2c",
    clock: Callable[[], float] = time.time,
) -> LimitHit | None:
    """Count one originate for ``user``; ``None`` if it is within both limits, else which limit it hit (then
    nothing was counted)."""
    window = int(clock()) // WINDOW_SECONDS
    expires = (window + 2) * WINDOW_SECONDS + 60  # TTL: the window is long over, DynamoDB deletes it lazily
    user_bucket, tenant_bucket = _buckets(scope, user, window)

    def update(bucket: str, limit: int) -> dict[str, object]:
        return {
            "Update": {
                "TableName": rt.tables.rate_limits,
                "Key": to_item({"tenant": tenant, "bucket": bucket}),
                "UpdateExpression": "ADD n :one SET expires_at = :exp",
                "ConditionExpression": "attribute_not_exists(n) OR n < :limit",
                "ExpressionAttributeValues": to_item({":one": 1, ":exp": expires, ":limit": limit}),
            }
        }

    for _ in range(_ATTEMPTS):
        try:
            rt.dynamodb.transact_write_items(
                TransactItems=[update(user_bucket, per_user), update(tenant_bucket, per_tenant)]
            )
        except Exception as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
            codes = [str(r.get("Code", "")) for r in reasons]
            if codes and codes[0] == "ConditionalCheckFailed":
                return "user"
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return "tenant"
            continue  # a concurrent transaction on the same counters: take them again
        return None
    raise StorageConflict(f"rate-limit counters of {tenant} kept conflicting; retry later")
