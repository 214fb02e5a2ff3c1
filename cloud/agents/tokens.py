"""Agent tokens: one per agent, per tenant, revocable, stored only as a hash.

A token is 32 random bytes (``pbxl_`` + url-safe base64): it names neither tenant nor agent. The cloud keeps
its SHA-256 (a salt adds nothing to 256 bits of entropy) and finds the agent through the ``by_token_hash``
index, then re-reads the agent consistently and compares the hashes in constant time, so a stale index entry
or a revocation a moment ago never lets a token through.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cloud.clock import now_iso
from cloud.errors import InvalidToken, RevokedAgent, UnknownAgent
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item

__all__ = [
    "TOKEN_PREFIX",
    "Agent",
    "authenticate",
    "find_tenant",
    "get_agent",
    "hash_token",
    "issue_token",
    "list_agents",
    "revoke",
    "validate_tenant",
]

TOKEN_PREFIX = "pbxl_"
_TOKEN_RE = re.compile(r"^pbxl_[A-Za-z0-9_-]{43}$")
#: Tenants (Bitrix24 member ids) and agent names go into keys joined by '#', so they may not contain one.
_TENANT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Agent:
    tenant: str
    agent_id: str
    name: str
    created_at: str
    revoked_at: str | None = None
    last_seen_at: str | None = None
    acked_seq: int = 0

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Agent:
        values = from_item(item)
        return cls(
            tenant=values["tenant"],
            agent_id=values["agent_id"],
            name=values.get("name", ""),
            created_at=values.get("created_at", ""),
            revoked_at=values.get("revoked_at"),
            last_seen_at=values.get("last_seen_at"),
            acked_seq=int(values.get("acked_seq", 0)),
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_tenant(tenant: str) -> str:
    if not _TENANT_RE.match(tenant):
        raise ValueError(f"tenant {tenant!r}: 1-64 letters, digits, '_', '-', '.'")
    return tenant


def issue_token(rt: Runtime, tenant: str, agent_name: str) -> tuple[str, str]:
    """Create an agent in ``tenant``; returns ``(agent_id, token)``. The token is shown once, never stored."""
    validate_tenant(tenant)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent_id = "ag_" + secrets.token_hex(8)
    item = {
        "tenant": tenant,
        "agent_id": agent_id,
        "name": agent_name,
        "token_hash": hash_token(token),
        "created_at": now_iso(),
        "acked_seq": 0,
    }
    rt.dynamodb.put_item(
        TableName=rt.tables.agents, Item=to_item(item), ConditionExpression="attribute_not_exists(agent_id)"
    )
    return agent_id, token


def get_agent(rt: Runtime, tenant: str, agent_id: str) -> Agent:
    """The agent, read consistently; :class:`UnknownAgent` if ``tenant`` has no such agent."""
    return Agent.from_item(_raw_agent(rt, tenant, agent_id))


def revoke(rt: Runtime, tenant: str, agent_id: str) -> None:
    """Revoke the agent's token: refused at the next ``$connect``, and on its next message if connected.

    The hash stays, so a revoked token is told apart from an unknown one (403, not 401: the agent stops
    retrying); revoking twice keeps the first ``revoked_at``.
    """
    try:
        rt.dynamodb.update_item(
            TableName=rt.tables.agents,
            Key=to_item({"tenant": tenant, "agent_id": agent_id}),
            UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now)",
            ConditionExpression="attribute_exists(agent_id)",
            ExpressionAttributeValues=to_item({":now": now_iso()}),
        )
    except Exception as exc:
        if is_condition_failure(exc):
            raise UnknownAgent(agent_id) from None
        raise


def authenticate(rt: Runtime, token: str) -> Agent:
    """The agent this token belongs to; :class:`InvalidToken` or :class:`RevokedAgent` otherwise."""
    if not _TOKEN_RE.match(token):
        raise InvalidToken("not a pbxlink agent token")
    digest = hash_token(token)
    response = rt.dynamodb.query(
        TableName=rt.tables.agents,
        IndexName="by_token_hash",
        KeyConditionExpression="token_hash = :h",
        ExpressionAttributeValues=to_item({":h": digest}),
    )
    for key in response.get("Items", []):
        keys = from_item(key)
        try:
            agent_item = _raw_agent(rt, keys["tenant"], keys["agent_id"])
        except UnknownAgent:
            continue
        stored = from_item(agent_item).get("token_hash", "")
        if hmac.compare_digest(stored.encode(), digest.encode()):
            agent = Agent.from_item(agent_item)
            if agent.revoked:
                raise RevokedAgent(agent.agent_id)
            return agent
    raise InvalidToken("unknown token")


def _raw_agent(rt: Runtime, tenant: str, agent_id: str) -> dict[str, Any]:
    response = rt.dynamodb.get_item(
        TableName=rt.tables.agents, Key=to_item({"tenant": tenant, "agent_id": agent_id}), ConsistentRead=True
    )
    if "Item" not in response:
        raise UnknownAgent(agent_id)
    item: dict[str, Any] = response["Item"]
    return item


def list_agents(rt: Runtime, tenant: str) -> Iterator[Agent]:
    """Every agent of ``tenant`` (revoked ones too), in agent id order."""
    paginator = rt.dynamodb.get_paginator("query")
    for page in paginator.paginate(
        TableName=rt.tables.agents,
        KeyConditionExpression="tenant = :t",
        ExpressionAttributeValues=to_item({":t": tenant}),
        ConsistentRead=True,
    ):
        for item in page["Items"]:
            yield Agent.from_item(item)


def find_tenant(rt: Runtime, agent_id: str) -> str:
    """The tenant of an agent id, for the operator's admin command only (the app always knows its tenant)."""
    response = rt.dynamodb.query(
        TableName=rt.tables.agents,
        IndexName="by_agent_id",
        KeyConditionExpression="agent_id = :a",
        ExpressionAttributeValues=to_item({":a": agent_id}),
    )
    items = response.get("Items", [])
    if not items:
        raise UnknownAgent(agent_id)
    return str(from_item(items[0])["tenant"])
