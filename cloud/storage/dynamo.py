"""Small helpers over the low-level DynamoDB client: item (de)serialization and error codes.

The low-level client (not ``boto3.resource``) because conditional transactions need it, and one style is
easier to read than two.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from cloud.errors import StorageBusy

__all__ = ["DynamoClient", "batch_get", "error_code", "from_item", "is_condition_failure", "to_item"]

#: A boto3 DynamoDB client (boto3 ships no type stubs).
DynamoClient = Any

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Plain values → DynamoDB attribute values. ``None`` values are left out (no NULL attributes)."""
    return {key: _SERIALIZER.serialize(value) for key, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    if isinstance(value, set):
        return {_plain(inner) for inner in value}
    return value


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values → plain values (numbers as ``int`` when integral)."""
    return {key: _plain(_DESERIALIZER.deserialize(value)) for key, value in item.items()}


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``None`` for anything else)."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def is_condition_failure(exc: BaseException) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


#: BatchGetItem's limit of keys per request.
BATCH_GET_KEYS = 100


def batch_get(
    dynamodb: DynamoClient,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    projection: str | None = None,
    names: Mapping[str, str] | None = None,
    consistent: bool = False,
    tries: int = 8,
) -> Iterator[dict[str, Any]]:
    """The items of ``table`` under ``keys`` (plain values) that exist, as plain values, 100 keys per request.

    Keys DynamoDB returns unprocessed (throttling) are asked again, ``tries`` rounds in all; any still unread then
    raise :class:`~cloud.errors.StorageBusy`: a caller never mistakes an unread item for a missing one."""
    for start in range(0, len(keys), BATCH_GET_KEYS):
        spec: dict[str, Any] = {"Keys": [to_item(dict(key)) for key in keys[start : start + BATCH_GET_KEYS]]}
        if projection is not None:
            spec["ProjectionExpression"] = projection
        if names:
            spec["ExpressionAttributeNames"] = dict(names)
        if consistent:
            spec["ConsistentRead"] = True
        request: dict[str, Any] = {table: spec}
        for _ in range(tries):
            response = dynamodb.batch_get_item(RequestItems=request)
            for raw in response.get("Responses", {}).get(table, []):
                yield from_item(raw)
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise StorageBusy(f"DynamoDB left keys of {table} unread after {tries} tries; retry later")
