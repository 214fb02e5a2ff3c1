"""DynamoDB transactions in moto that cost what they cost in DynamoDB: the items they touch, not the tables.

moto's ``TransactWriteItems`` deep-copies every table a transaction names before it runs (to roll back on a
failed condition), so each transaction costs the size of the tables: 13 ms at 300 items, 20 ms at 600, and
the local stack slows down the longer it runs. Restoring a whole table on failure also undoes writes other
threads made meanwhile, which DynamoDB never does. This wraps moto's implementation so that the tables are not
copied (its own rollback then restores the same table objects, a no-op); instead transactions run one at a
time and a failed one puts back only the items it changed itself. The transaction's semantics (conditions,
all or nothing, cancellation reasons) stay moto's.

Local stack only: installed by :class:`sandbox.cloud_local.CloudLocal`; the product never imports it.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

__all__ = ["install"]

_inside = threading.local()
_serial = threading.Lock()


class _CopyWithoutTables:
    """Stands in for the ``copy`` module inside moto's DynamoDB models: a table is not copied while a
    transaction runs in this thread; everything else is copied as usual."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, Table) and getattr(_inside, "transaction", False):
            return value
        return copy.deepcopy(value, memo)


def _key_of(backend: DynamoDBBackend, operation: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    table_name = operation.get("TableName")
    if not table_name or table_name not in backend.tables:
        return None
    if "Key" in operation:
        return table_name, operation["Key"]
    attrs = operation.get("Item") or {}
    table = backend.tables[table_name]
    key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs.get(table.range_key_attr)
    if any(value is None for value in key.values()):
        return None  # moto will reject the operation itself
    return table_name, key


def _wrote(
    backend: DynamoDBBackend,
    op_type: str,
    operation: dict[str, Any],
    table_name: str,
    key: dict[str, Any],
    before: dict[str, Any] | None,
) -> bool:
    """Did this (failed) transaction change the item? Only then is it put back: a plain write another thread
    made meanwhile must survive, as it would in DynamoDB."""
    current = backend.get_item(table_name, key)
    now = None if current is None else current.to_json()["Attributes"]
    if op_type == "Put":
        return bool(now == operation.get("Item") and now != before)
    if op_type == "Delete":
        return now is None and before is not None
    if op_type == "Update":
        return now != before
    return False  # ConditionCheck writes nothing


def install() -> None:
    """Idempotent: wrap moto's TransactWriteItems once per process."""
    original = DynamoDBBackend.transact_write_items
    if getattr(original, "_items_only", False):
        return
    setattr(dynamodb_models, "copy", _CopyWithoutTables())  # noqa: B010 - replace moto's module global

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        # One transaction at a time (DynamoDB isolates them; moto's server runs requests in threads).
        with _serial:
            snapshots: list[tuple[str, dict[str, Any], str, dict[str, Any], dict[str, Any] | None]] = []
            for entry in transact_items:
                op_type, operation = next(iter(entry.items()), ("", {}))
                found = _key_of(self, operation) if isinstance(operation, dict) else None
                if found is not None:
                    table_name, key = found
                    try:
                        before = self.get_item(table_name, key)
                    except Exception:  # a malformed key: moto's own validation reports it below
                        continue
                    before_attrs = None if before is None else before.to_json()["Attributes"]
                    snapshots.append((op_type, operation, table_name, key, before_attrs))
            _inside.transaction = True
            try:
                original(self, transact_items)
            except BaseException:
                for op_type, operation, table_name, key, before_attrs in reversed(snapshots):
                    if _wrote(self, op_type, operation, table_name, key, before_attrs):
                        if before_attrs is None:
                            self.delete_item(table_name, key)
                        else:
                            self.put_item(table_name, copy.deepcopy(before_attrs))
                raise
            finally:
                _inside.transaction = False

    transact_write_items._items_only = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
