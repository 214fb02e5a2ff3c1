"""The ``licensing`` table: per tenant, the ``lease`` item (:class:`LeaseRecord`) and the ``card_users`` item."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from cloud.errors import StorageConflict
from cloud.licensing.cards import remember
from cloud.licensing.entitlements import LeaseRecord
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item

__all__ = ["due_tenants", "forget_card_user", "load_card_users", "load_lease", "record_card_users", "save_lease"]

_LEASE = "lease"
_CARDS = "card_users"
_ATTEMPTS = 5


def _epoch(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def _from_epoch(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), UTC)


def load_lease(rt: Runtime, tenant: str) -> LeaseRecord | None:
    item = rt.dynamodb.get_item(
        TableName=rt.tables.licensing, Key=to_item({"tenant": tenant, "item": _LEASE}), ConsistentRead=True
    ).get("Item")
    if item is None:
        return None
    values = from_item(item)
    return LeaseRecord(
        tenant=tenant,
        token=values.get("token"),
        checked_at=_from_epoch(values.get("checked_at")),
        leased_at=_from_epoch(values.get("leased_at")),
        denied=values.get("denied"),
        denied_message=values.get("denied_message"),
        last_error=values.get("last_error"),
        next_check_at=_from_epoch(values.get("next_check_at")),
    )


def save_lease(rt: Runtime, record: LeaseRecord) -> None:
    rt.dynamodb.put_item(
        TableName=rt.tables.licensing,
        Item=to_item(
            {
                "tenant": record.tenant,
                "item": _LEASE,
                "token": record.token,
                "checked_at": _epoch(record.checked_at),
                "leased_at": _epoch(record.leased_at),
                "denied": record.denied,
                "denied_message": record.denied_message,
                "last_error": record.last_error,
                "next_check_at": _epoch(record.next_check_at),
            }
        ),
    )


def due_tenants(rt: Runtime, now: datetime) -> Iterator[str]:
    """Tenants whose lease item says it is time to check again (a scan: one item per tenant, run by the schedule)."""
    paginator = rt.dynamodb.get_paginator("scan")
    for page in paginator.paginate(
        TableName=rt.tables.licensing,
        FilterExpression="#item = :lease AND (attribute_not_exists(next_check_at) OR next_check_at <= :now)",
        ExpressionAttributeNames={"#item": "item"},
        ExpressionAttributeValues=to_item({":lease": _LEASE, ":now": int(now.timestamp())}),
        ProjectionExpression="tenant",
    ):
        for item in page["Items"]:
            yield str(from_item(item)["tenant"])


def _load_cards(rt: Runtime, tenant: str) -> tuple[list[str], int]:
    item = rt.dynamodb.get_item(
        TableName=rt.tables.licensing, Key=to_item({"tenant": tenant, "item": _CARDS}), ConsistentRead=True
    ).get("Item")
    if item is None:
        return [], 0
    values = from_item(item)
    return [str(user) for user in values.get("users", [])], int(values.get("version", 0))


def load_card_users(rt: Runtime, tenant: str) -> list[str]:
    return _load_cards(rt, tenant)[0]


def _write_cards(rt: Runtime, tenant: str, users: list[str], version: int) -> None:
    rt.dynamodb.put_item(
        TableName=rt.tables.licensing,
        Item=to_item({"tenant": tenant, "item": _CARDS, "users": users, "version": version + 1}),
        ConditionExpression="attribute_not_exists(tenant) OR version = :version",
        ExpressionAttributeValues=to_item({":version": version}),
    )


def record_card_users(rt: Runtime, tenant: str, user_ids: list[str]) -> list[str]:
    """Append the users not seen before (optimistic write, retried on a concurrent one); returns the order."""
    for _ in range(_ATTEMPTS):
        seen, version = _load_cards(rt, tenant)
        updated = remember(seen, user_ids)
        if updated == seen:
            return seen
        try:
            _write_cards(rt, tenant, updated, version)
            return updated
        except Exception as exc:
            if not is_condition_failure(exc):
                raise
    raise StorageConflict(f"card users of tenant {tenant}: kept losing to concurrent writers")


def forget_card_user(rt: Runtime, tenant: str, user_id: str) -> list[str]:
    """Remove a user from the order (left the company, or the admin moves a card); returns the new order."""
    for _ in range(_ATTEMPTS):
        seen, version = _load_cards(rt, tenant)
        if user_id not in seen:
            return seen
        updated = [user for user in seen if user != user_id]
        try:
            _write_cards(rt, tenant, updated, version)
            return updated
        except Exception as exc:
            if not is_condition_failure(exc):
                raise
    raise StorageConflict(f"card users of tenant {tenant}: kept losing to concurrent writers")
