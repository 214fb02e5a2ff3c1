"""The license server's DynamoDB tables, as data (the same shape as ``cloud.storage.tables``).

Names are ``<prefix><key>`` with ``LICENSE_TABLE_PREFIX``; the server's tables are its own, never the cloud's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aws_support.tables import create_tables as _create_tables

__all__ = ["TABLES", "TTL_ATTRIBUTES", "TableNames", "create_tables"]

TABLES: Final[dict[str, dict[str, Any]]] = {
    # One item per portal: member_id, plan, features, limit_users_with_cards, limit_agents, valid_until (epoch s),
    # trial, status (active|revoked), created_at, revoked_at, last_check_at, usage_users_with_cards, usage_agents,
    # checked_by (the backend key's id).
    "licenses": {
        "KeySchema": [{"AttributeName": "member_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "member_id", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    },
    # API keys, stored only as SHA-256: key_hash, key_id, role (backend|admin), name, created_at, revoked_at.
    "api_keys": {
        "KeySchema": [{"AttributeName": "key_hash", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "key_hash", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Nonces seen: pk = "<member_id>#<nonce>", TTL expires_at (twice the replay window).
    "nonces": {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    },
}

TTL_ATTRIBUTES: Final[dict[str, str]] = {"nonces": "expires_at"}


@dataclass(frozen=True)
class TableNames:
    prefix: str

    @property
    def licenses(self) -> str:
        return self.prefix + "licenses"

    @property
    def api_keys(self) -> str:
        return self.prefix + "api_keys"

    @property
    def nonces(self) -> str:
        return self.prefix + "nonces"


def create_tables(client: Any, prefix: str) -> list[str]:
    """Create the missing tables (and TTLs) with ``prefix``; returns the names created."""
    return _create_tables(client, prefix, TABLES, TTL_ATTRIBUTES)
