"""``POST /b24/events``: every event Bitrix24 pushes to us, verified before anything happens.

An event is believed only if ``auth[application_token]`` matches the hash stored for ``auth[member_id]`` at
install (constant-time; the only check Bitrix24 offers, DOC api-reference/events/safe-event-handlers.md).
Unknown portal or wrong token → 403, nothing changes; a body that is not an event → 400; never a 500 for
bad input. ``ONAPPUNINSTALL`` marks the tenant uninstalled and deletes its tokens; other events go to the
handler registered for them (:func:`register_event_handler`), or get a 200 and a log line. Bitrix24 does not
retry and throttles slow handlers (DOC events/index.md), so handlers must be quick.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloud.bitrix24.forms import FormError, parse_body
from cloud.bitrix24.install import HttpAnswer, install_from_event
from cloud.errors import UnknownTenant
from cloud.runtime import Runtime
from cloud.tenants import store
from cloud.tenants.store import Tenant

__all__ = [
    "B24Event",
    "EventHandler",
    "event_handler",
    "handle_event",
    "register_event_handler",
    "unregister_event_handler",
]

log = logging.getLogger("cloud.bitrix24.events")

_EVENT_NAME = re.compile(r"^[A-Z0-9_]{1,64}$")


class B24Event(BaseModel):
    """A verified event. ``data`` as posted (strings, nested per the PHP brackets); ``user_id`` is whose
    tokens came with it. The event's own tokens are deliberately not kept: use ``client_for(rt, tenant)``."""

    model_config = ConfigDict(frozen=True)

    event: str
    tenant: str
    domain: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    event_handler_id: str = ""
    ts: str = ""


EventHandler = Callable[[Runtime, Tenant, B24Event], None]
_HANDLERS: dict[str, EventHandler] = {}


def register_event_handler(event: str, handler: EventHandler) -> None:
    """Route ``event`` (e.g. ``"ONEXTERNALCALLSTART"``) to ``handler(rt, tenant, event)``; a later registration
    replaces an earlier one."""
    name = event.upper()
    if not _EVENT_NAME.match(name) or name in ("ONAPPINSTALL", "ONAPPUNINSTALL"):
        raise ValueError(f"cannot register a handler for {event!r}")
    _HANDLERS[name] = handler


def unregister_event_handler(event: str) -> None:
    _HANDLERS.pop(event.upper(), None)


@contextlib.contextmanager
def event_handler(event: str, handler: EventHandler) -> Iterator[None]:
    """``handler`` for ``event`` within the block, then whatever was registered before (tests, one-off tools):
    the registry is process-wide, and the product's own handlers must survive."""
    name = event.upper()
    previous = _HANDLERS.get(name)
    register_event_handler(name, handler)
    try:
        yield
    finally:
        if previous is None:
            _HANDLERS.pop(name, None)
        else:
            _HANDLERS[name] = previous


def _answer(status: int, **fields: Any) -> HttpAnswer:
    return HttpAnswer(status, json.dumps(fields))


def _bad(message: str) -> HttpAnswer:
    return _answer(400, error="bad_request", message=message)


_FORBIDDEN = _answer(403, error="forbidden", message="unknown portal or application token")


def handle_event(rt: Runtime, body: bytes, content_type: str) -> HttpAnswer:
    try:
        form = parse_body(body, content_type)
    except FormError as exc:
        return _bad(str(exc))
    name = form.get("event")
    if not isinstance(name, str) or not _EVENT_NAME.match(name.upper()):
        return _bad("missing or malformed 'event'")
    name = name.upper()
    if name == "ONAPPINSTALL":
        return install_from_event(rt, form)
    auth = form.get("auth")
    if not isinstance(auth, Mapping):
        return _bad("missing auth[...]")
    member_id, app_token = auth.get("member_id"), auth.get("application_token")
    if not isinstance(member_id, str) or not member_id or not isinstance(app_token, str) or not app_token:
        return _bad("missing auth[member_id] or auth[application_token]")
    try:
        tenant = store.get_tenant(rt, member_id)
    except (UnknownTenant, ValueError):
        log.warning("event %s for unknown portal %r refused", name, member_id[:64])
        return _FORBIDDEN
    if not store.verify_application_token(tenant, app_token):
        log.warning("tenant %s: event %s with a wrong application token refused", tenant.tenant, name)
        return _FORBIDDEN
    if name == "ONAPPUNINSTALL":
        if tenant.active:
            store.mark_uninstalled(rt, tenant.tenant)
            log.info("tenant %s: uninstalled", tenant.tenant)
        return _answer(200, result="uninstalled")
    if not tenant.active:
        log.info("tenant %s: event %s after uninstall ignored", tenant.tenant, name)
        return _FORBIDDEN
    data = form.get("data")
    event = B24Event(
        event=name,
        tenant=tenant.tenant,
        domain=str(auth.get("domain") or tenant.domain),
        data=data if isinstance(data, dict) else {},
        event_handler_id=str(form.get("event_handler_id") or ""),
        ts=str(form.get("ts") or ""),
    )
    handler = _HANDLERS.get(name)
    if handler is None:
        log.info("tenant %s: event %s has no handler; ignored", tenant.tenant, name)
        return _answer(200, result="ignored")
    try:
        handler(rt, tenant, event)
    except Exception:
        log.exception("tenant %s: handler of %s failed", tenant.tenant, name)
        return _answer(500, error="handler_failed", message=f"the {name} handler failed; see the cloud's log")
    return _answer(200, result="handled")
