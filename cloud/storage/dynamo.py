"""Small helpers over the low-level DynamoDB client: item (de)serialization and error codes.

The low-level client (not ``boto3.resource``) because conditional transactions need it, and one style is
easier to read than two.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

__all__ = ["DynamoClient", "error_code", "from_item", "is_condition_failure", "to_item"]

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
