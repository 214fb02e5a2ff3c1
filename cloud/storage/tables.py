"""The cloud's DynamoDB tables, as data.

One definition serves the app (table names), ``cloud-local`` (creates them in moto) and infra (CloudFormation
``AWS::DynamoDB::Table`` properties map one to one). Names are ``<prefix><key>``, the prefix per stage
(``PBXLINK_TABLE_PREFIX``). Every key that holds tenant data starts with the tenant; see ``docs/cloud-link.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aws_support.tables import create_tables as _create_tables

__all__ = ["TABLES", "TTL_ATTRIBUTES", "TableNames", "create_tables"]


def _s(*names: str) -> list[dict[str, str]]:
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


def _key(hash_key: str, range_key: str | None = None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def _keys_only_index(name: str, hash_key: str) -> dict[str, Any]:
    return {"IndexName": name, "KeySchema": _key(hash_key), "Projection": {"ProjectionType": "KEYS_ONLY"}}


#: CreateTable keyword arguments without ``TableName``, by table key.
TABLES: Final[dict[str, dict[str, Any]]] = {
    # One item per agent: tenant, agent_id, name, token_hash (absent once revoked), revoked_at, created_at,
    # last_seen_at, acked_seq, hello fields. The indexes only map back to the key; reads go to the base table.
    "agents": {
        "KeySchema": _key("tenant", "agent_id"),
        "AttributeDefinitions": _s("tenant", "agent_id", "token_hash"),
        "GlobalSecondaryIndexes": [
            _keys_only_index("by_token_hash", "token_hash"),
            _keys_only_index("by_agent_id", "agent_id"),
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Two kinds of item, both with TTL ``expires_at``:
    #   pk = "agent#<tenant>#<agent_id>"  -> connection_id, connected_at   (who to push to)
    #   pk = "conn#<connection_id>"        -> tenant, agent_id, connected_at (who is talking)
    "connections": {
        "KeySchema": _key("pk"),
        "AttributeDefinitions": _s("pk"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Every call event ever acknowledged: pk = "<tenant>#<agent_id>", event_id = "<call_id>:<call seq>".
    "call_events": {
        "KeySchema": _key("pk", "event_id"),
        "AttributeDefinitions": _s("pk", "event_id"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Call state per tenant: call_key = "<agent_id>#<call_id>" (two PBXs may reuse a Linkedid).
    "calls": {
        "KeySchema": _key("tenant", "call_key"),
        "AttributeDefinitions": _s("tenant", "call_key"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Commands sent to agents and their results; TTL ``expires_at`` (30 days after sending).
    "commands": {
        "KeySchema": _key("tenant", "command_id"),
        "AttributeDefinitions": _s("tenant", "command_id"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # One item per Bitrix24 portal, tenant = its member_id: install data, the application token's hash, the OAuth
    # tokens with their ``token_version`` (cloud.tenants.store).
    "tenants": {
        "KeySchema": _key("tenant"),
        "AttributeDefinitions": _s("tenant"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # The tenant's CRM settings (``cloud.crm.settings``): one item per tenant, ``crm`` = the JSON document.
    "settings": {
        "KeySchema": _key("tenant"),
        "AttributeDefinitions": _s("tenant"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Extension → Bitrix24 user map per tenant, cached from ``user.get`` (``cloud.crm.directory``).
    "directories": {
        "KeySchema": _key("tenant"),
        "AttributeDefinitions": _s("tenant"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # What has been done in Bitrix24 for each call (``cloud.crm.pipeline``), same key as ``calls``. Items with
    # work pending carry ``due_shard``/``due_at`` and so appear in the sparse ``by_due`` index the sweeper reads.
    "crm_calls": {
        "KeySchema": _key("tenant", "call_key"),
        "AttributeDefinitions": _s("tenant", "call_key", "due_shard", "due_at"),
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by_due",
                "KeySchema": _key("due_shard", "due_at"),
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Click-to-calls and callbacks from Bitrix24 (``cloud.clicktocall``): ``key`` = the command id the event
    # becomes (``c2c:<CALL_ID>``, ``cb:<hash>``); written once per event (repeated deliveries place one call).
    # TTL ``expires_at``.
    # Until a record is settled it carries ``due_shard``/``due_at`` and so appears in the sparse ``by_due`` index:
    # the sweeper finishes what a handler left half done (a finish Bitrix24 could not take, a handler that died).
    "click_to_call": {
        "KeySchema": _key("tenant", "key"),
        "AttributeDefinitions": _s("tenant", "key", "due_shard", "due_at"),
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by_due",
                "KeySchema": _key("due_shard", "due_at"),
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Rate-limit counters, one per limit and minute window: ``bucket`` = ``c2c#user#<id>#<minute>`` or
    # ``c2c#tenant#<minute>``, ``n`` = originates in that window. TTL ``expires_at``.
    "rate_limits": {
        "KeySchema": _key("tenant", "bucket"),
        "AttributeDefinitions": _s("tenant", "bucket"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Licensing per tenant (cloud.licensing): item = "lease" (the last verified lease token, when it was checked,
    # the last denial or error, next_check_at) and item = "card_users" (Bitrix24 user ids in the order first
    # seen ringing: who keeps call cards when the plan's users_with_cards is exceeded).
    "licensing": {
        "KeySchema": _key("tenant", "item"),
        "AttributeDefinitions": _s("tenant", "item"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # The settings page's verified Bitrix24 users (``cloud.webapp.auth``): pk = "<tenant>#<sha256 of the user's
    # access token>" (never the token itself), user id and admin flag; TTL ``expires_at`` (a couple of minutes).
    "web_sessions": {
        "KeySchema": _key("pk"),
        "AttributeDefinitions": _s("pk"),
        "BillingMode": "PAY_PER_REQUEST",
    },
    # Call recordings per tenant (``cloud.recordings``), same key as ``calls``: the S3 object, its state, and
    # while it is kept ``expiry_shard``/``expires_on``, the sparse ``by_expiry`` index the retention sweep reads.
    "recordings": {
        "KeySchema": _key("tenant", "call_key"),
        "AttributeDefinitions": _s("tenant", "call_key", "expiry_shard", "expires_on"),
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by_expiry",
                "KeySchema": _key("expiry_shard", "expires_on"),
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    # The periodic CDR-vs-cloud check (``cloud.reconcile``): one item per part of a check, ``check_key`` =
    # ``<agent_id>#<check_id>#<part>`` (check ids sort by time); TTL ``expires_at`` (30 days).
    "reconciliations": {
        "KeySchema": _key("tenant", "check_key"),
        "AttributeDefinitions": _s("tenant", "check_key"),
        "BillingMode": "PAY_PER_REQUEST",
    },
}

#: The TTL attribute of the tables that have one (enabled after creation: it is not a CreateTable argument).
TTL_ATTRIBUTES: Final[dict[str, str]] = {
    "connections": "expires_at",
    "commands": "expires_at",
    "web_sessions": "expires_at",
    "click_to_call": "expires_at",
    "rate_limits": "expires_at",
    "reconciliations": "expires_at",
}


@dataclass(frozen=True)
class TableNames:
    """The physical table names for one prefix."""

    prefix: str

    @property
    def agents(self) -> str:
        return self.prefix + "agents"

    @property
    def connections(self) -> str:
        return self.prefix + "connections"

    @property
    def call_events(self) -> str:
        return self.prefix + "call_events"

    @property
    def calls(self) -> str:
        return self.prefix + "calls"

    @property
    def commands(self) -> str:
        return self.prefix + "commands"

    @property
    def settings(self) -> str:
        return self.prefix + "settings"

    @property
    def directories(self) -> str:
        return self.prefix + "directories"

    @property
    def crm_calls(self) -> str:
        return self.prefix + "crm_calls"

    @property
    def tenants(self) -> str:
        return self.prefix + "tenants"

    @property
    def click_to_call(self) -> str:
        return self.prefix + "click_to_call"

    @property
    def rate_limits(self) -> str:
        return self.prefix + "rate_limits"

    @property
    def licensing(self) -> str:
        return self.prefix + "licensing"

    @property
    def web_sessions(self) -> str:
        return self.prefix + "web_sessions"

    @property
    def recordings(self) -> str:
        return self.prefix + "recordings"

    @property
    def reconciliations(self) -> str:
        return self.prefix + "reconciliations"


def create_tables(client: Any, prefix: str) -> list[str]:
    """Create every table (and its TTL) with ``prefix``; tables that already exist are left alone.

    ``client`` is a boto3 DynamoDB client. Returns the names created. Used by cloud-local and tests.
    """
    return _create_tables(client, prefix, TABLES, TTL_ATTRIBUTES)
