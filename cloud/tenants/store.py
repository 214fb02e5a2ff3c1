"""Tenants: one item per Bitrix24 portal in the ``tenants`` table, keyed by the portal's ``member_id``.

The item holds the install data, the SHA-256 of the application token (events are verified against it), and
the portal's OAuth tokens with a ``token_version``. Refresh tokens rotate and a used one is dead, so a refresh is
written with a condition on ``token_version``: of two Lambdas refreshing at once exactly one write wins; the
loser re-reads the winner's tokens (:func:`replace_tokens` returns ``False``).

The item's ``settings`` attribute belongs to ``cloud.crm.settings``; every write here is an ``UpdateItem`` of
this module's own attributes, never a ``PutItem`` of the whole item, so a (re)install keeps the settings.
Tokens are stored as issued (the app must present them; DynamoDB encrypts at rest) but never logged: the models
keep them out of ``repr``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.agents.tokens import validate_tenant
from cloud.clock import now_iso
from cloud.errors import UnknownTenant
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item

__all__ = [
    "Install",
    "OAuthTokens",
    "StoredTokens",
    "Tenant",
    "get_tenant",
    "hash_application_token",
    "list_active_tenants",
    "load_tokens",
    "mark_uninstalled",
    "replace_tokens",
    "save_install",
    "update_endpoint",
    "verify_application_token",
]

TenantStatus = Literal["active", "uninstalled"]
_TOKEN_ATTRIBUTES = ("access_token", "refresh_token", "access_expires_at")


class OAuthTokens(BaseModel):
    """A token pair as the OAuth server issued it; ``access_expires_at`` is unix seconds."""

    model_config = ConfigDict(frozen=True)

    access_token: str = Field(repr=False, min_length=1)
    refresh_token: str = Field(repr=False, min_length=1)
    access_expires_at: int


class StoredTokens(OAuthTokens):
    """The tenant's current pair and its version (the condition of the next :func:`replace_tokens`)."""

    token_version: int


class Install(BaseModel):
    """What an install (UI form or ONAPPINSTALL) told us, after the tokens were checked with the OAuth server."""

    model_config = ConfigDict(frozen=True)

    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    domain: str = Field(min_length=1)
    client_endpoint: str = Field(min_length=1)
    server_endpoint: str = ""
    scope: list[str] = Field(default_factory=list)
    language: str = ""
    application_token: str = Field(repr=False, min_length=1)
    tokens: OAuthTokens


class Tenant(BaseModel):
    """A portal as stored; no tokens (see :func:`load_tokens`) and only the hash of the application token."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    domain: str
    client_endpoint: str
    server_endpoint: str = ""
    scope: list[str] = Field(default_factory=list)
    status: TenantStatus
    language: str = ""
    installed_at: str
    uninstalled_at: str | None = None
    application_token_hash: str = Field(default="", repr=False)
    token_version: int = 0
    #: When our event handlers were last bound (None: not since this install; see ``cloud.bitrix24.install``),
    #: and why the last attempt failed.
    events_bound_at: str | None = None
    bind_error: str = ""

    @property
    def active(self) -> bool:
        return self.status == "active"

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Tenant:
        values = from_item(dict(item))
        return cls.model_validate({key: values[key] for key in cls.model_fields if key in values})


def hash_application_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def verify_application_token(tenant: Tenant, token: str) -> bool:
    """Constant-time check of an event's ``auth[application_token]`` (protocols.md §A6.4)."""
    if not tenant.application_token_hash or not token:
        return False
    return hmac.compare_digest(tenant.application_token_hash.encode(), hash_application_token(token).encode())


def _update(
    rt: Runtime,
    tenant: str,
    set_values: Mapping[str, Any],
    *,
    remove: tuple[str, ...] = (),
    extra_set: tuple[str, ...] = (),
    condition: str | None = None,
    condition_values: Mapping[str, Any] | None = None,
    return_new: bool = False,
) -> dict[str, Any]:
    """``UpdateItem`` of the named attributes only (every name through ``#placeholders``: ``status``, ``domain``,
    ``language`` are DynamoDB reserved words). ``extra_set`` are raw ``SET`` clauses over the same names."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets = []
    for i, (name, value) in enumerate(set_values.items()):
        names[f"#s{i}"] = name
        values[f":s{i}"] = value
        sets.append(f"#s{i} = :s{i}")
    sets.extend(extra_set)
    expression = "SET " + ", ".join(sets)
    if remove:
        for i, name in enumerate(remove):
            names[f"#r{i}"] = name
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
    for clause in (*extra_set, condition or ""):
        for token in clause.replace("(", " ").replace(")", " ").replace(",", " ").split():
            if token.startswith("#") and token not in names:
                names[token] = token[1:]
    values.update(condition_values or {})
    kwargs: dict[str, Any] = {
        "TableName": rt.tables.tenants,
        "Key": to_item({"tenant": tenant}),
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": to_item(values),
    }
    if condition:
        kwargs["ConditionExpression"] = condition
    if return_new:
        kwargs["ReturnValues"] = "ALL_NEW"
    response = rt.dynamodb.update_item(**kwargs)
    attributes: dict[str, Any] = response.get("Attributes", {})
    return attributes


def _raw(rt: Runtime, tenant: str) -> dict[str, Any]:
    """The item of an installed (or once installed) tenant. An item with only ``settings`` (written by the CRM
    settings before any install) is no tenant yet."""
    response = rt.dynamodb.get_item(TableName=rt.tables.tenants, Key=to_item({"tenant": tenant}), ConsistentRead=True)
    if "Item" not in response or "status" not in response["Item"]:
        raise UnknownTenant(f"tenant {tenant!r} is not installed")
    item: dict[str, Any] = response["Item"]
    return item


def get_tenant(rt: Runtime, tenant: str) -> Tenant:
    """The tenant (also when uninstalled: check :attr:`Tenant.active`); :class:`UnknownTenant` if never installed."""
    validate_tenant(tenant)
    return Tenant.from_item(_raw(rt, tenant))


def save_install(rt: Runtime, install: Install) -> Tenant:
    """Store an install or reinstall: install data, fresh tokens (a new ``token_version``), the application
    token's hash, status ``active``. Other attributes (``settings``) are left as they are."""
    validate_tenant(install.tenant)
    values = {
        "domain": install.domain,
        "client_endpoint": install.client_endpoint,
        "server_endpoint": install.server_endpoint,
        "scope": list(install.scope),
        "status": "active",
        "language": install.language,
        "installed_at": now_iso(),
        "application_token_hash": hash_application_token(install.application_token),
        "access_token": install.tokens.access_token,
        "refresh_token": install.tokens.refresh_token,
        "access_expires_at": install.tokens.access_expires_at,
    }
    item = _update(
        rt,
        install.tenant,
        values,
        remove=("uninstalled_at", "events_bound_at"),  # Bitrix24 drops an app's bindings when it is reinstalled
        extra_set=("#token_version = if_not_exists(#token_version, :zero) + :one",),
        condition_values={":zero": 0, ":one": 1},
        return_new=True,
    )
    return Tenant.from_item(item)


def mark_events_bound(rt: Runtime, tenant: str, error: str | None = None) -> None:
    """Record the outcome of binding our event handlers: bound now, or ``error`` (the repair schedule retries)."""
    validate_tenant(tenant)
    if error is None:
        _update(
            rt, tenant, {"events_bound_at": now_iso()}, remove=("bind_error",), condition="attribute_exists(#status)"
        )
    else:
        _update(
            rt, tenant, {"bind_error": error[:500]}, remove=("events_bound_at",), condition="attribute_exists(#status)"
        )


def mark_uninstalled(rt: Runtime, tenant: str) -> None:
    """The app was uninstalled: status ``uninstalled``, tokens deleted, ``token_version`` bumped (so a refresh
    in flight cannot write its tokens back). Settings stay for a later reinstall."""
    validate_tenant(tenant)
    try:
        _update(
            rt,
            tenant,
            {"status": "uninstalled", "uninstalled_at": now_iso()},
            remove=_TOKEN_ATTRIBUTES,
            extra_set=("#token_version = if_not_exists(#token_version, :zero) + :one",),
            condition="attribute_exists(#status)",
            condition_values={":zero": 0, ":one": 1},
        )
    except Exception as exc:
        if is_condition_failure(exc):
            raise UnknownTenant(f"tenant {tenant!r} is not installed") from None
        raise


def load_tokens(rt: Runtime, tenant: str) -> StoredTokens:
    """The current tokens (consistent read); :class:`UnknownTenant` if never installed or uninstalled."""
    validate_tenant(tenant)
    values = from_item(_raw(rt, tenant))
    if values.get("status") != "active" or not all(values.get(name) for name in _TOKEN_ATTRIBUTES):
        raise UnknownTenant(f"tenant {tenant!r} has uninstalled the app; it needs a reinstall")
    return StoredTokens(
        access_token=values["access_token"],
        refresh_token=values["refresh_token"],
        access_expires_at=int(values["access_expires_at"]),
        token_version=int(values.get("token_version", 0)),
    )


def replace_tokens(rt: Runtime, tenant: str, new: OAuthTokens, expected_version: int) -> bool:
    """Write a refreshed pair if the stored version is still ``expected_version`` (and the tenant active).

    ``False``: someone else rotated (or uninstalled) first; re-read with :func:`load_tokens`.
    """
    validate_tenant(tenant)
    try:
        _update(
            rt,
            tenant,
            {
                "access_token": new.access_token,
                "refresh_token": new.refresh_token,
                "access_expires_at": new.access_expires_at,
                "token_version": expected_version + 1,
            },
            condition="#token_version = :expected AND #status = :active",
            condition_values={":expected": expected_version, ":active": "active"},
        )
    except Exception as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def update_endpoint(rt: Runtime, tenant: str, client_endpoint: str, domain: str) -> None:
    """The portal was renamed (a 302 to a new host, protocols.md §A1.5): remember its new address."""
    validate_tenant(tenant)
    try:
        _update(
            rt,
            tenant,
            {"client_endpoint": client_endpoint, "domain": domain},
            condition="attribute_exists(#status)",
        )
    except Exception as exc:
        if is_condition_failure(exc):
            raise UnknownTenant(f"tenant {tenant!r} is not installed") from None
        raise


def list_active_tenants(rt: Runtime) -> Iterator[Tenant]:
    """Every tenant with the app installed. A scan: fine for hundreds of portals, called by schedules only."""
    paginator = rt.dynamodb.get_paginator("scan")
    for page in paginator.paginate(
        TableName=rt.tables.tenants,
        FilterExpression="#status = :active",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues=to_item({":active": "active"}),
        ConsistentRead=True,
    ):
        for item in page["Items"]:
            yield Tenant.from_item(item)
