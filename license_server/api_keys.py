"""API keys: ``backend`` keys for the cloud deployments that check licenses, ``admin`` keys for the vendor.

A key is ``plk_`` + 32 random bytes (url-safe base64); the server keeps only its SHA-256 (256 bits of entropy
need no salt) and a short public ``key_id`` to list and revoke it by. Each endpoint asks for exactly one role:
a backend key on the admin API, or an admin key on the check endpoint, is 403 — never a way in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from license_server.dynamo import from_item, to_item
from license_server.errors import BadRequest, Forbidden, Unauthenticated
from license_server.runtime import Runtime

__all__ = ["ApiKey", "Role", "authenticate", "create_key", "hash_key", "list_keys", "revoke_key"]

Role = Literal["backend", "admin"]
ROLES: tuple[Role, ...] = ("backend", "admin")
_KEY_RE = re.compile(r"^plk_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    role: Role
    name: str
    created_at: str
    revoked_at: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ApiKey:
        values = from_item(item)
        return cls(values["key_id"], values["role"], values["name"], values["created_at"], values.get("revoked_at"))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(rt: Runtime, role: Role, name: str) -> tuple[ApiKey, str]:
    """A new key of ``role``; the secret is returned once and never stored."""
    if role not in ROLES:
        raise BadRequest(f"role {role!r}: one of {', '.join(ROLES)}")
    if not 1 <= len(name) <= 100:
        raise BadRequest("a key needs a name of 1 to 100 characters (who holds it)")
    secret = "plk_" + secrets.token_urlsafe(32)
    key_hash = hash_key(secret)
    key = ApiKey(key_hash[:12], role, name, rt.clock().isoformat(timespec="seconds"))
    rt.dynamodb.put_item(
        TableName=rt.tables.api_keys,
        Item=to_item({"key_hash": key_hash, **key.__dict__}),
        ConditionExpression="attribute_not_exists(key_hash)",
    )
    return key, secret


def authenticate(rt: Runtime, authorization: str | None, role: Role) -> ApiKey:
    """The key in an ``Authorization: Bearer <key>`` header if it is known, live and of ``role``."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not _KEY_RE.match(secret):
        raise Unauthenticated("send 'Authorization: Bearer <API key>' with a key this server issued")
    item = rt.dynamodb.get_item(
        TableName=rt.tables.api_keys, Key={"key_hash": {"S": hash_key(secret)}}, ConsistentRead=True
    ).get("Item")
    if item is None:
        raise Unauthenticated("unknown API key")
    key = ApiKey.from_item(item)
    if key.revoked_at is not None:
        raise Unauthenticated(f"API key {key.key_id} was revoked")
    if key.role != role:
        raise Forbidden(f"a {key.role} key cannot be used here; this endpoint needs a {role} key")
    return key


def list_keys(rt: Runtime) -> Iterator[ApiKey]:
    for page in rt.dynamodb.get_paginator("scan").paginate(TableName=rt.tables.api_keys):
        for item in page["Items"]:
            yield ApiKey.from_item(item)


def revoke_key(rt: Runtime, key_id: str, now: datetime) -> ApiKey:
    """Revoke by public key id; the key is refused from the next request on."""
    for page in rt.dynamodb.get_paginator("scan").paginate(TableName=rt.tables.api_keys):
        for item in page["Items"]:
            if from_item(item)["key_id"] == key_id:
                rt.dynamodb.update_item(
                    TableName=rt.tables.api_keys,
                    Key={"key_hash": item["key_hash"]},
                    UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :at)",
                    ExpressionAttributeValues={":at": {"S": now.isoformat(timespec="seconds")}},
                )
                return ApiKey.from_item(item | {"revoked_at": {"S": now.isoformat(timespec="seconds")}})
    raise BadRequest(f"no API key with id {key_id[:20]!r}")
