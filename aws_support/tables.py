"""Creating an app's DynamoDB tables from its definition (cloud-local and tests; in AWS the stack does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["create_tables"]


def create_tables(
    client: Any, prefix: str, tables: Mapping[str, Mapping[str, Any]], ttl_attributes: Mapping[str, str]
) -> list[str]:
    """Create every table of ``tables`` (CreateTable arguments by key) named ``prefix + key``, with its TTL
    attribute from ``ttl_attributes``; tables that already exist are left alone. Returns the names created."""
    existing: set[str] = set()
    for page in client.get_paginator("list_tables").paginate():
        existing.update(page["TableNames"])
    created = []
    for key, kwargs in tables.items():
        name = prefix + key
        if name in existing:
            continue
        client.create_table(TableName=name, **kwargs)
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if key in ttl_attributes:
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attributes[key]}
            )
        created.append(name)
    return created
