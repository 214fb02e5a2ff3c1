"""DynamoDB item (de)serialization and error codes (the license server's own copy: it never imports ``cloud``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

__all__ = ["from_item", "is_condition_failure", "to_item"]

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Plain values → attribute values; ``None`` values are left out."""
    return {key: _SERIALIZER.serialize(value) for key, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    return value


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _plain(_DESERIALIZER.deserialize(value)) for key, value in item.items()}


def is_condition_failure(exc: BaseException) -> bool:
    return (
        isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    )
