"""Who is asking: a Bitrix24 user, proven by their own access token, verified against their own portal.

Bitrix24 opens the app page with a POST carrying the user's access token (``AUTH_ID``) and the portal's
``member_id`` (protocols.md §A2.1). The page's script sends both back with every API request, as headers
(``Authorization: Bearer <AUTH_ID>``, ``X-B24-Member-Id``); cookies are never read, so another site cannot make a
browser send a request that authenticates (no CSRF).

The member id only says *which portal to ask*: the request is believed once that portal, at the REST address
stored when it installed the app (never an address from the request), answers ``profile`` for the token
(DOC api-reference/common/users/profile.md: ``ID``, ``ADMIN``, names; scope ``basic``). A token of another
portal is refused by that portal, so the tenant of every request is the one whose portal vouched for the
token, and one tenant can never act on another's data. ``ADMIN`` is what ``user.admin`` also answers (the
``bitrix24_config`` permission on a cloud portal).

The answer is cached for :data:`CACHE_SECONDS` in ``web_sessions`` under ``<tenant>#sha256(token)`` with a TTL
(the token itself is never stored or logged), so a page that makes five requests asks the portal once; the
tenant's own item is still read on every request, so an uninstall ends every session at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from cloud.agents.tokens import validate_tenant
from cloud.bitrix24.responses import classify
from cloud.errors import UnknownTenant
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, to_item
from cloud.tenants import store
from cloud.tenants.store import Tenant

from .errors import Forbidden, NotAuthenticated, PortalUnreachable

__all__ = [
    "CACHE_SECONDS",
    "MEMBER_HEADER",
    "Viewer",
    "authenticate",
    "bearer_token",
    "require_admin",
    "token_hash",
]

log = logging.getLogger("cloud.webapp.auth")

#: How long a verified token is believed without asking the portal again (rights removed take this long).
CACHE_SECONDS = 120
MEMBER_HEADER = "x-b24-member-id"
#: Bitrix24 access tokens are opaque; this only keeps junk (and anything that could break a log line) out.
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{16,512}$")
_NOT_VERIFIED = "the Bitrix24 session could not be verified; open the app from Bitrix24 again"


class Viewer(BaseModel):
    """A verified user of one portal (tenant)."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    user_id: int
    name: str = ""
    admin: bool = False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(headers: Any) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header (``headers``: any case-insensitive mapping)."""
    value = str(headers.get("authorization") or "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _is_admin(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.upper() in ("Y", "TRUE", "1")) or value == 1


def _key(tenant: str, token: str) -> dict[str, Any]:
    return to_item({"pk": f"{tenant}#{token_hash(token)}"})


def _cached(rt: Runtime, tenant: str, token: str, now: float) -> Viewer | None:
    item = rt.dynamodb.get_item(TableName=rt.tables.web_sessions, Key=_key(tenant, token)).get("Item")
    if item is None:
        return None
    values = from_item(item)
    if int(values.get("expires_at", 0)) <= now or values.get("tenant") != tenant:  # TTL deletion lags
        return None
    return Viewer(tenant=tenant, user_id=int(values["user_id"]), name=values.get("name", ""), admin=values["admin"])


def _remember(rt: Runtime, viewer: Viewer, token: str, now: float) -> None:
    item = {
        **from_item(_key(viewer.tenant, token)),
        "tenant": viewer.tenant,
        "user_id": viewer.user_id,
        "name": viewer.name,
        "admin": viewer.admin,
        "expires_at": int(now) + CACHE_SECONDS,
    }
    rt.dynamodb.put_item(TableName=rt.tables.web_sessions, Item=to_item(item))


def ask_portal(rt: Runtime, tenant: Tenant, token: str, now: float) -> Viewer:
    """``profile`` on the tenant's own REST endpoint with the user's token."""
    try:
        response = rt.http.post(tenant.client_endpoint + "profile", json={"auth": token})
    except httpx.TransportError as exc:
        raise PortalUnreachable(f"Bitrix24 did not answer ({type(exc).__name__}); retry in a moment") from None
    answer = classify(response.status_code, response.content, location=response.headers.get("location"), now=now)
    if answer.kind == "expired":
        raise NotAuthenticated("the Bitrix24 session expired; reload the page", code="token_expired")
    if answer.kind in ("auth_lost", "method_error"):
        log.info("tenant %s: settings page token refused by the portal (%s)", tenant.tenant, answer.code)
        raise NotAuthenticated(_NOT_VERIFIED)
    if answer.kind != "ok" or not isinstance(answer.result, dict):
        raise PortalUnreachable(f"Bitrix24 could not verify the session now ({answer.code or answer.kind}); retry")
    result = answer.result
    try:
        user_id = int(result.get("ID") or 0)
    except (TypeError, ValueError):
        user_id = 0
    if user_id <= 0:
        raise NotAuthenticated(_NOT_VERIFIED)
    name = " ".join(str(result.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
    return Viewer(tenant=tenant.tenant, user_id=user_id, name=name[:200], admin=_is_admin(result.get("ADMIN")))


def authenticate(rt: Runtime, member_id: str | None, token: str | None, *, now: float | None = None) -> Viewer:
    """The user behind ``token`` in portal ``member_id``; :class:`NotAuthenticated` (401) unless that portal,
    installed and active, vouches for the token; :class:`PortalUnreachable` (503) when it cannot be asked."""
    if not member_id or not token or not _TOKEN.match(token):
        raise NotAuthenticated("no Bitrix24 session; open the app from Bitrix24")
    try:
        validate_tenant(member_id)
    except ValueError:
        raise NotAuthenticated(_NOT_VERIFIED) from None
    moment = time.time() if now is None else now
    try:
        tenant = store.get_tenant(rt, member_id)
    except UnknownTenant:
        raise NotAuthenticated(_NOT_VERIFIED) from None  # the same answer: which portals are customers is private
    if not tenant.active:  # checked on every request: an uninstall ends every session at once
        raise NotAuthenticated(_NOT_VERIFIED)
    cached = _cached(rt, member_id, token, moment)
    if cached is not None:
        return cached
    viewer = ask_portal(rt, tenant, token, moment)
    _remember(rt, viewer, token, moment)
    return viewer


def require_admin(viewer: Viewer) -> Viewer:
    if not viewer.admin:
        raise Forbidden("only a Bitrix24 administrator can change pbxlink's settings")
    return viewer
