"""``POST /b24/install``: the app's install handler, in both forms Bitrix24 uses (protocols.md §A2).

* the UI install: query ``DOMAIN, PROTOCOL, LANG, APP_SID``, form ``AUTH_ID, AUTH_EXPIRES, REFRESH_ID,
  SERVER_ENDPOINT, APPLICATION_TOKEN, APPLICATION_SCOPE, member_id, status, PLACEMENT``; answered with a page
  that calls ``BX24.installFinish()`` (until then Bitrix24 sends no events);
* the ``ONAPPINSTALL`` event: form ``event=ONAPPINSTALL&data[...]&auth[access_token]=...&auth[member_id]=...``.

The handler is unauthenticated by nature, so an install is believed only after Bitrix24's OAuth server
(``B24_OAUTH_URL``, our setting, not a URL from the post) accepts its refresh token for *our* client id and
answers for the same ``member_id``; otherwise anyone could overwrite a tenant's application token and then
forge its events. That refresh also gives the trusted ``client_endpoint`` and the tokens we keep.

Then: store the tenant (settings kept on reinstall), bind our events idempotently (``event.get`` first,
"already bound" tolerated; Bitrix24 drops bindings on reinstall, DOC event-bind.md), and call the
:func:`on_installed` hooks (the license check plugs in there).
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.bitrix24.client import client_for, domain_of
from cloud.bitrix24.errors import Bitrix24Error, PortalUnavailable
from cloud.bitrix24.forms import FormError, parse_body
from cloud.bitrix24.oauth import OAuthRefused, refresh_tokens
from cloud.errors import ConfigError, UnknownTenant
from cloud.runtime import Runtime
from cloud.tenants import store
from cloud.tenants.store import Install, Tenant

__all__ = [
    "EVENTS_PATH",
    "EVENTS_TO_BIND",
    "HttpAnswer",
    "InstallClaim",
    "InstallError",
    "bind_events",
    "claim_from_event",
    "claim_from_page",
    "complete_install",
    "ensure_events_bound",
    "events_url",
    "handle_install",
    "install_from_event",
    "on_installed",
    "remove_install_hook",
    "repair_bindings",
]

log = logging.getLogger("cloud.bitrix24.install")

EVENTS_PATH = "/b24/events"
EVENTS_TO_BIND = ("ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART", "ONAPPUNINSTALL")
_MEMBER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

InstallHook = Callable[[Runtime, Tenant], None]
_HOOKS: list[InstallHook] = []


def on_installed(hook: InstallHook) -> InstallHook:
    """Register ``hook(rt, tenant)`` to run after every successful (re)install; usable as a decorator. A hook
    that raises is logged and does not undo the install."""
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    return hook


def remove_install_hook(hook: InstallHook) -> None:
    if hook in _HOOKS:
        _HOOKS.remove(hook)


@dataclass(frozen=True)
class HttpAnswer:
    """What a route answers, without Chalice (``cloud.bitrix24.routes`` turns it into a ``Response``)."""

    status: int
    body: str
    content_type: str = "application/json"


class InstallError(ValueError):
    """The post is not an install Bitrix24 would send; the message names the missing or bad field."""


class InstallClaim(BaseModel):
    """An install as posted, not yet verified."""

    model_config = ConfigDict(frozen=True)

    kind: str  # "page" (UI install) or "event" (ONAPPINSTALL)
    member_id: str = Field(pattern=_MEMBER_ID.pattern)
    domain: str = ""
    server_endpoint: str = ""
    scope: list[str] = Field(default_factory=list)
    language: str = ""
    application_token: str = Field(min_length=1, repr=False)
    refresh_token: str = Field(min_length=1, repr=False)


def _scope(value: Any) -> list[str]:
    return [part for part in re.split(r"[,\s]+", str(value or "")) if part]


def _text(source: Mapping[str, Any], name: str, where: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not value:
        raise InstallError(f"missing {where}{name}")
    return value


def claim_from_page(query: Mapping[str, Any], form: Mapping[str, Any]) -> InstallClaim:
    """The UI install: query ``DOMAIN/PROTOCOL/LANG/APP_SID`` plus form fields (DOC settings/oauth/simple-way.md).
    ``APP_SID`` is a per-render session id, never the application token (CRest's mistake, §A2.1)."""
    merged = {**form, **query}
    try:
        return InstallClaim(
            kind="page",
            member_id=_text(merged, "member_id", ""),
            domain=str(merged.get("DOMAIN") or ""),
            server_endpoint=str(merged.get("SERVER_ENDPOINT") or ""),
            scope=_scope(merged.get("APPLICATION_SCOPE")),
            language=str(merged.get("LANG") or ""),
            application_token=_text(merged, "APPLICATION_TOKEN", ""),
            refresh_token=_text(merged, "REFRESH_ID", ""),
        )
    except ValidationError as exc:
        raise InstallError(f"bad install form: {exc.errors()[0]['loc'][0]} is malformed") from None


def claim_from_event(form: Mapping[str, Any]) -> InstallClaim:
    """The ONAPPINSTALL event (DOC common/events/on-app-install.md); ``scope`` may be comma or space separated."""
    auth = form.get("auth")
    data = form.get("data")
    if not isinstance(auth, dict):
        raise InstallError("missing auth[...] in ONAPPINSTALL")
    data = data if isinstance(data, dict) else {}
    try:
        return InstallClaim(
            kind="event",
            member_id=_text(auth, "member_id", "auth "),
            domain=str(auth.get("domain") or ""),
            server_endpoint=str(auth.get("server_endpoint") or ""),
            scope=_scope(auth.get("scope")),
            language=str(data.get("LANGUAGE_ID") or ""),
            application_token=_text(auth, "application_token", "auth "),
            refresh_token=_text(auth, "refresh_token", "auth "),
        )
    except ValidationError as exc:
        raise InstallError(f"bad ONAPPINSTALL: auth {exc.errors()[0]['loc'][0]} is malformed") from None


def complete_install(rt: Runtime, claim: InstallClaim) -> Tenant:
    """Verify the claim with the OAuth server, store the tenant, bind events, run the hooks.

    Raises :class:`OAuthRefused` (not a genuine install), :class:`PortalUnavailable` (OAuth server down), and
    after the tenant is stored, any :class:`Bitrix24Error` or :class:`ConfigError` from binding events."""
    try:
        grant = refresh_tokens(rt.http, rt.settings, claim.member_id, claim.refresh_token)
    except OAuthRefused as exc:
        existing = _already_installed(rt, claim)
        if exc.code == "invalid_grant" and existing is not None:
            log.info("tenant %s: repeated install post (refresh token already used)", claim.member_id)
            if existing.events_bound_at is None and (failure := ensure_events_bound(rt, existing.tenant)) is not None:
                raise failure from None  # the page's "reload to retry" retries the binding
            return existing
        raise
    if grant.member_id != claim.member_id:
        raise OAuthRefused(claim.member_id, "the OAuth server did not confirm the portal")
    endpoint = grant.client_endpoint or (f"https://{claim.domain}/rest/" if claim.domain else "")
    if not endpoint:
        raise OAuthRefused(claim.member_id, "no REST endpoint for the portal")
    tenant = store.save_install(
        rt,
        Install(
            tenant=claim.member_id,
            domain=domain_of(endpoint) or claim.domain,
            client_endpoint=endpoint,
            server_endpoint=grant.server_endpoint or claim.server_endpoint,
            scope=claim.scope or _scope(grant.scope),
            language=claim.language,
            application_token=claim.application_token,
            tokens=grant.tokens(time.time()),
        ),
    )
    log.info("tenant %s: installed (%s, %s)", tenant.tenant, tenant.domain, claim.kind)
    failure = ensure_events_bound(rt, tenant.tenant)
    for hook in list(_HOOKS):  # also when binding failed: the portal gets its trial, the binding is repaired later
        try:
            hook(rt, tenant)
        except Exception:
            log.exception("tenant %s: install hook %s failed", tenant.tenant, getattr(hook, "__name__", hook))
    if failure is not None:
        raise failure
    return tenant


def _already_installed(rt: Runtime, claim: InstallClaim) -> Tenant | None:
    """The tenant, if this very install was already stored: Bitrix24 may deliver ONAPPINSTALL twice, and the
    second copy's refresh token was used by the first (same application token = same installation)."""
    try:
        tenant = store.get_tenant(rt, claim.member_id)
    except UnknownTenant:
        return None
    if tenant.active and store.verify_application_token(tenant, claim.application_token):
        return tenant
    return None


def events_url(rt: Runtime) -> str:
    base = rt.settings.public_base_url
    if not base.startswith(("https://", "http://")):
        raise ConfigError("PUBLIC_BASE_URL is not set (our REST base URL, where Bitrix24 posts events)")
    return base.rstrip("/") + EVENTS_PATH


def ensure_events_bound(rt: Runtime, tenant: str) -> Bitrix24Error | ConfigError | None:
    """Bind our events and record the outcome on the tenant; the error if it failed (recorded, so
    :func:`repair_bindings` retries it: Bitrix24 never re-sends ONAPPINSTALL, and without the bindings
    click-to-call and uninstall events would never arrive)."""
    try:
        bind_events(rt, tenant)
    except (Bitrix24Error, ConfigError) as exc:
        log.error("tenant %s: binding our events failed (retried every few minutes): %s", tenant, exc)
        store.mark_events_bound(rt, tenant, error=str(exc))
        return exc
    store.mark_events_bound(rt, tenant)
    return None


def repair_bindings(rt: Runtime) -> dict[str, str]:
    """Bind the events of every active tenant whose binding failed (or predates this record): tenant → "bound"
    or the error. Scheduled (``cloud.app``)."""
    outcome: dict[str, str] = {}
    for tenant in store.list_active_tenants(rt):
        if tenant.events_bound_at is not None:
            continue
        try:
            failure = ensure_events_bound(rt, tenant.tenant)
        except Exception as exc:  # one tenant's trouble (its record, a bug) must not stop the others
            log.exception("tenant %s: repairing the event bindings failed", tenant.tenant)
            outcome[tenant.tenant] = f"failed: {exc}"
            continue
        outcome[tenant.tenant] = "bound" if failure is None else str(failure)
    return outcome


def bind_events(rt: Runtime, tenant: str) -> list[str]:
    """Bind :data:`EVENTS_TO_BIND` to our events URL where not bound yet; returns the events newly bound."""
    handler = events_url(rt)
    client = client_for(rt, tenant)
    bound = client.call("event.get")
    existing = {
        (str(b.get("event", "")).upper(), str(b.get("handler", "")))
        for b in (bound if isinstance(bound, list) else [])
        if isinstance(b, dict)
    }
    missing = [event for event in EVENTS_TO_BIND if (event, handler) not in existing]
    if not missing:
        return []
    result = client.batch({event: ("event.bind", {"event": event, "handler": handler}) for event in missing})
    failures = {k: e for k, e in result.errors.items() if e.code.upper() != "ERROR_HANDLER_ALREADY_EXIST"}
    if failures:
        raise next(iter(failures.values()))
    log.info("tenant %s: bound %s", tenant, ", ".join(missing))
    return missing


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pbxlink</title>
<script src="//api.bitrix24.com/api/v1/"></script></head>
<body><p>{message}</p>{script}</body></html>
"""
_FINISH = "<script>BX24.init(function () { BX24.installFinish(); });</script>"


def _page(status: int, message: str, finish: bool = False) -> HttpAnswer:
    body = _PAGE.format(message=html.escape(message), script=_FINISH if finish else "")
    return HttpAnswer(status, body, "text/html; charset=utf-8")


def _json(status: int, **fields: Any) -> HttpAnswer:
    return HttpAnswer(status, json.dumps(fields))


def handle_install(rt: Runtime, query: Mapping[str, str], body: bytes, content_type: str) -> HttpAnswer:
    """The route's logic: parse either form, complete the install, answer as that form expects."""
    try:
        form = parse_body(body, content_type)
    except FormError as exc:
        return _json(400, error="bad_request", message=str(exc))
    if str(form.get("event", "")).upper() == "ONAPPINSTALL":
        return install_from_event(rt, form)
    try:
        claim = claim_from_page(query, form)
    except InstallError as exc:
        return _page(400, f"This is not a Bitrix24 install request: {exc}.")
    try:
        complete_install(rt, claim)
    except OAuthRefused as exc:
        log.warning("install for %s refused: %s", claim.member_id, exc.reason)
        return _page(403, "Bitrix24 did not confirm this installation. Please install the app again from Bitrix24.")
    except (PortalUnavailable, Bitrix24Error, ConfigError) as exc:
        log.error("install for %s incomplete: %s", claim.member_id, exc)
        return _page(502, "The installation could not be completed right now. Please reload this page to retry.")
    return _page(200, "pbxlink is installed.", finish=True)


def install_from_event(rt: Runtime, form: Mapping[str, Any]) -> HttpAnswer:
    """ONAPPINSTALL (posted to the install URL, or to the events URL): JSON answers, Bitrix24 only logs them."""
    try:
        claim = claim_from_event(form)
    except InstallError as exc:
        return _json(400, error="bad_request", message=str(exc))
    try:
        tenant = complete_install(rt, claim)
    except OAuthRefused as exc:
        log.warning("ONAPPINSTALL for %s refused: %s", claim.member_id, exc.reason)
        return _json(403, error="forbidden", message="install not confirmed by Bitrix24's OAuth server")
    except (PortalUnavailable, Bitrix24Error, ConfigError) as exc:
        log.error("ONAPPINSTALL for %s incomplete: %s", claim.member_id, exc)
        return _json(502, error="install_incomplete", message=str(exc))
    return _json(200, result="installed", tenant=tenant.tenant)
