"""The page's JSON API, one function per section, behind :func:`handle` (which checks who may call what).

=======  ====================  ======  =====================================================================
method   path                  who     what
=======  ====================  ======  =====================================================================
GET      /b24/api/me           anyone  the verified user: id, name, admin
GET      /b24/api/status       anyone  agents (connected or not, since, versions, last event), license
POST     /b24/api/tokens       admin   ``{"name"}`` → a new agent token, shown once, and its command line
DELETE   /b24/api/tokens/{id}  admin   revoke an agent's token (and close its connection)
GET      /b24/api/extensions   admin   extension → user (``UF_PHONE_INNER`` + overrides), unmapped ones
GET      /b24/api/settings     admin   the settings, the form (from ``CrmSettings``), users and agents
PATCH    /b24/api/settings     admin   top-level fields given replace the stored ones; all or nothing
GET      /b24/api/calls        admin   ``?limit=N``: recent calls with what was done in Bitrix24
DELETE   /b24/api/card_users/  admin   free a user's place among those who keep call cards (licensing)
         {user_id}
=======  ====================  ======  =====================================================================

"anyone" is any verified user of the portal; the tenant is always the verified one (:mod:`cloud.webapp.auth`).
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloud import clock
from cloud.agents import connections, tokens
from cloud.bitrix24.errors import Bitrix24Error
from cloud.crm.directory import (
    MIN_REFRESH_INTERVAL,
    Directory,
    load_directory,
    needs_refresh,
    refresh_directory,
    save_directory,
)
from cloud.crm.pipeline import forget_cached
from cloud.crm.settings import CrmSettings, load_settings, save_settings
from cloud.errors import UnknownAgent
from cloud.runtime import Runtime

from . import calltrace, form, hooks, status
from .auth import Viewer, require_admin
from .errors import BadRequest, NotFound

__all__ = ["ApiRequest", "ApiServices", "agent_command", "handle"]

log = logging.getLogger("cloud.webapp.api")

_AGENT_ID = re.compile(r"^ag_[0-9a-f]{16}$")
MAX_AGENT_NAME = 100


def _client_for(rt: Runtime, tenant: str) -> Any:
    from cloud.bitrix24.client import client_for

    return client_for(rt, tenant)


@dataclass
class ApiServices:
    """Collaborators, injectable: the tenant's Bitrix24 client (reading users) and the clock."""

    client_for: Callable[[Runtime, str], Any] = _client_for
    now: Callable[[], datetime] = clock.now


@dataclass(frozen=True)
class ApiRequest:
    method: str
    section: str
    item: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


Handler = Callable[[Runtime, Viewer, ApiRequest, ApiServices], dict[str, Any]]


# -- helpers --------------------------------------------------------------------------------------------------
def _directory(rt: Runtime, tenant: str, services: ApiServices, *, refresh: bool) -> tuple[Directory, str | None]:
    """The tenant's user directory, refreshed from Bitrix24 when stale (or asked and not refreshed within a
    minute); when Bitrix24 cannot be read, the cached one and a warning."""
    directory = load_directory(rt, tenant)
    now = services.now()
    stale = needs_refresh(directory, now)
    asked = refresh and (directory.fetched_at is None or now - directory.fetched_at >= MIN_REFRESH_INTERVAL)
    if not (stale or asked):
        return directory, None
    try:
        fresh = refresh_directory(services.client_for(rt, tenant), directory, now)
    except Bitrix24Error as exc:
        log.warning("tenant %s: users not read from Bitrix24: %s", tenant, exc)
        return directory, "users_unavailable"  # a code: the page words it in its language
    # ``unmapped`` may have grown meanwhile (a call's worker): keep the newest of both.
    latest = load_directory(rt, tenant)
    fresh = fresh.model_copy(update={"unmapped": {**fresh.unmapped, **latest.unmapped}})
    save_directory(rt, tenant, fresh)
    forget_cached(rt, tenant)
    return fresh, None


def _users(directory: Directory) -> list[dict[str, Any]]:
    return [
        {"id": u.id, "name": u.name or f"#{u.id}", "extension": u.extension}
        for u in sorted(directory.users.values(), key=lambda u: (u.name.lower(), u.id))
    ]


def _names(directory: Directory) -> dict[int, str]:
    return {u.id: u.name for u in directory.users.values()}


def agent_command(rt: Runtime, token: str) -> tuple[str, str]:
    """``(cloud url, the command line to paste on the PBX host)``."""
    url = rt.settings.agent_cloud_url()
    return url, f"EDGE_CLOUD_URL={shlex.quote(url)} EDGE_TOKEN={shlex.quote(token)} edge-agent run"


# -- sections -------------------------------------------------------------------------------------------------
def me(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    return viewer.model_dump()


def _card_order(license_: dict[str, Any], names: dict[int, str]) -> None:
    """The license's call-card order with names, and who has a card now (the first ``limit``)."""
    order = license_.pop("card_order", None)
    if order is None:
        return
    limit = (license_.get("users_with_cards") or {}).get("limit")
    license_["card_users"] = [
        {
            "id": user,
            "name": names.get(int(user), "") if user.isdigit() else "",
            "has_card": limit is None or index < limit,
        }
        for index, user in enumerate(order)
    ]


def status_view(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    license_ = status.license_status(rt, viewer.tenant, services.now())
    _card_order(license_, _names(load_directory(rt, viewer.tenant)))
    return {"viewer": viewer.model_dump(), "agents": status.agent_views(rt, viewer.tenant), "license": license_}


def forget_card_user(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    """Free a user's place among those who keep call cards (the next in line gets it)."""
    user_id = request.item or ""
    if not user_id.isdigit() or len(user_id) > 12:
        raise NotFound("no such user")
    order = status.forget_card_user(rt, viewer.tenant, user_id)
    log.info("tenant %s: user %s's call-card place freed by user %s", viewer.tenant, user_id, viewer.user_id)
    return {"card_order": order}


def create_token(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    body = request.body if isinstance(request.body, dict) else {}
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_AGENT_NAME or not name.isprintable():
        raise BadRequest(f"name: 1 to {MAX_AGENT_NAME} printable characters", code="invalid_name")
    agent_id, token = tokens.issue_token(rt, viewer.tenant, name.strip())
    url, command = agent_command(rt, token)
    log.info("tenant %s: agent %s created by user %s", viewer.tenant, agent_id, viewer.user_id)
    return {"agent_id": agent_id, "name": name.strip(), "token": token, "cloud_url": url, "command": command}


def revoke_token(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    agent_id = request.item or ""
    if not _AGENT_ID.match(agent_id):
        raise NotFound("no such agent")
    try:
        tokens.revoke(rt, viewer.tenant, agent_id)
    except UnknownAgent:
        raise NotFound("no such agent") from None
    log.info("tenant %s: agent %s revoked by user %s", viewer.tenant, agent_id, viewer.user_id)
    disconnected = False
    if rt.settings.ws_mgmt_endpoint or rt.settings.ws_api_id:
        try:
            disconnected = connections.kick(rt, viewer.tenant, agent_id)
        except Exception:  # best effort: the link refuses a revoked agent's next message anyway
            log.exception("tenant %s: closing agent %s's connection failed", viewer.tenant, agent_id)
    return {"revoked": agent_id, "disconnected": disconnected}


def extensions_view(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    directory, warning = _directory(rt, viewer.tenant, services, refresh=request.query.get("refresh") == "1")
    settings = load_settings(rt, viewer.tenant)
    names = _names(directory)
    from_b24 = directory.by_extension()
    overrides = settings.extension_overrides
    rows = []
    for extension in sorted({*from_b24, *overrides}, key=lambda e: (len(e), e)):
        user_id = directory.user_of(extension, settings)
        source = "override" if extension in overrides else "bitrix24"
        rows.append(
            {
                "extension": extension,
                "user_id": user_id,
                "user_name": names.get(user_id, "") if user_id is not None else "",
                "source": source if user_id is not None or source == "override" else "none",
                "bitrix24_user_id": from_b24.get(extension),
                "overridden": extension in overrides,
            }
        )
    unmapped = [
        {"extension": extension, "last_seen": seen.isoformat(timespec="seconds")}
        for extension, seen in sorted(directory.unmapped.items(), key=lambda kv: kv[1], reverse=True)
        if directory.user_of(extension, settings) is None and extension not in overrides  # "nobody" is a choice
    ]
    return {
        "users": _users(directory),
        "extensions": rows,
        "unmapped": unmapped,
        "overrides": {k: v for k, v in overrides.items()},
        "fetched_at": directory.fetched_at.isoformat(timespec="seconds") if directory.fetched_at else None,
        "warning": warning,
    }


def _settings_payload(settings: CrmSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


def settings_view(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    directory, warning = _directory(rt, viewer.tenant, services, refresh=False)
    agents = [
        {"agent_id": a["agent_id"], "name": a["name"]}
        for a in status.agent_views(rt, viewer.tenant)
        if a["state"] != "revoked"
    ]
    return {
        "settings": _settings_payload(load_settings(rt, viewer.tenant)),
        "form": [spec.model_dump(mode="json") for spec in form.describe()],
        "users": _users(directory),
        "agents": agents,
        "warning": warning,
    }


def patch_settings(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    """Top-level fields of the body replace the stored ones; the result is validated as a whole (the one
    schema), and saved only if every field is valid."""
    if not isinstance(request.body, dict) or not request.body:
        raise BadRequest("send a JSON object of the settings fields to change", code="invalid_settings")
    current = load_settings(rt, viewer.tenant)
    document = {**current.model_dump(mode="json"), **request.body}
    settings, message, fields = form.validate(document)
    if settings is None:
        raise InvalidFields(message, fields)
    save_settings(rt, viewer.tenant, settings, by_user=viewer.user_id)
    forget_cached(rt, viewer.tenant)  # this container's CRM cache sees the change at once (others within 5 s)
    log.info("tenant %s: settings %s changed by user %s", viewer.tenant, sorted(request.body), viewer.user_id)
    failed = hooks.settings_saved(rt, viewer.tenant)
    return {"settings": _settings_payload(settings), "hooks_failed": failed}


def calls_view(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices) -> dict[str, Any]:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= calltrace.MAX_CALLS:
        raise BadRequest(f"limit: a whole number from 1 to {calltrace.MAX_CALLS}")
    agent_ids = [a["agent_id"] for a in status.agent_views(rt, viewer.tenant)]
    names = _names(load_directory(rt, viewer.tenant))
    return {"calls": calltrace.recent_calls(rt, viewer.tenant, agent_ids, names, int(raw))}


class InvalidFields(BadRequest):
    """400 with ``fields``: every problem by field path (``InvalidSettings``' message in ``message``)."""

    code = "invalid_settings"

    def __init__(self, message: str, fields: dict[str, str]) -> None:
        super().__init__(message)
        self.fields = fields


#: (method, section, has item) -> (handler, admin only)
ROUTES: dict[tuple[str, str, bool], tuple[Handler, bool]] = {
    ("GET", "me", False): (me, False),
    ("GET", "status", False): (status_view, False),
    ("POST", "tokens", False): (create_token, True),
    ("DELETE", "tokens", True): (revoke_token, True),
    ("GET", "extensions", False): (extensions_view, True),
    ("GET", "settings", False): (settings_view, True),
    ("PATCH", "settings", False): (patch_settings, True),
    ("GET", "calls", False): (calls_view, True),
    ("DELETE", "card_users", True): (forget_card_user, True),
}


def handle(rt: Runtime, viewer: Viewer, request: ApiRequest, services: ApiServices | None = None) -> dict[str, Any]:
    """Run the section's handler for a verified viewer; :class:`NotFound` for an unknown route,
    :class:`~cloud.webapp.errors.Forbidden` when a non-admin asks for an admin section."""
    route = ROUTES.get((request.method.upper(), request.section, request.item is not None))
    if route is None:
        raise NotFound(f"no API route {request.method.upper()} {request.section}")
    handler, admin_only = route
    if admin_only:
        require_admin(viewer)
    return handler(rt, viewer, request, services or ApiServices())
