"""Click-to-call and callbacks, the I/O side: Bitrix24 events in, ``originate`` commands out, and every failure
finished in Bitrix24 at once so no card stays open.

* :func:`handle_click` (``ONEXTERNALCALLSTART``): Bitrix24 registered the call and opened the user's card;
  we place it on the PBX, or finish it with the reason we did not.
* :func:`handle_callback` (``ONEXTERNALCALLBACKSTART``): we register a callback call (``TYPE=4``) ourselves,
  then place it: ``click_to_call.callback_from`` rings first, then the client.

Calls that are not placed are finished by :mod:`cloud.clicktocall.failures`.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from cloud import clock, licensing
from cloud.agents import connections
from cloud.agents.commands import send_command
from cloud.agents.tokens import list_agents
from cloud.bitrix24.errors import Bitrix24Error, MethodError
from cloud.bitrix24.events import B24Event
from cloud.crm.directory import Directory, load_directory, needs_refresh, refresh_directory, save_directory
from cloud.crm.numbers import PhoneNumber
from cloud.crm.settings import CrmSettings, load_settings
from cloud.errors import AgentOffline, CommandConflict, RevokedAgent, UnknownAgent
from cloud.runtime import Runtime
from cloud.tenants.store import Tenant
from wire_protocol.messages import Command, OriginateCommand

from . import limits, records
from .context import RESULT_TIMEOUT, STUCK_AFTER, ClickOutcome, ClickToCallServices, RestClient
from .failures import postpone, refuse
from .rules import (
    AgentView,
    CallbackEvent,
    ClickEvent,
    FailureKind,
    callback_command_id,
    check_number,
    choose_agent,
    click_command_id,
    dial_string,
    extension_of,
    refusal,
)

__all__ = ["handle_callback", "handle_click", "retry_callback"]

log = logging.getLogger("cloud.clicktocall")

#: TYPE of ``telephony.externalCall.register`` for a callback (protocols.md §A7.2).
CALLBACK = 4


# -- events -----------------------------------------------------------------------------------------------------


def handle_click(
    rt: Runtime, tenant: Tenant, event: B24Event, services: ClickToCallServices | None = None
) -> ClickOutcome:
    """``ONEXTERNALCALLSTART``: place the call the user clicked, or finish its CALL_ID with the reason why not."""
    services = services or ClickToCallServices()
    click = ClickEvent.parse(event.data)
    if click is None:
        log.warning("tenant %s: ONEXTERNALCALLSTART without a usable CALL_ID/USER_ID; ignored", tenant.tenant)
        return ClickOutcome("ignored", detail="not a click-to-call event")
    key = click_command_id(click.CALL_ID)
    fresh = records.claim(
        rt,
        tenant.tenant,
        key,
        due_at=services.now() + STUCK_AFTER,
        kind="click",
        crm_call_id=click.CALL_ID,
        user_id=click.USER_ID,
        number=click.number,
        line=click.LINE_NUMBER or None,
    )
    if not fresh:
        log.info("tenant %s: click %s delivered again; already handled", tenant.tenant, key)
        return ClickOutcome("duplicate", key)
    try:
        return _click(rt, tenant, key, click, services)
    except Bitrix24Error as exc:
        return _postponed(rt, tenant.tenant, key, exc, services)


def _postponed(rt: Runtime, tenant: str, key: str, exc: Exception, services: ClickToCallServices) -> ClickOutcome:
    """Bitrix24 could not be asked what we needed: the sweeper finishes the call later (``interrupted``)."""
    log.warning("tenant %s: %s interrupted by Bitrix24 (%s); the sweeper finishes it", tenant, key, exc)
    postpone(rt, tenant, key, services)
    return ClickOutcome("postponed", key, detail=str(exc))


def _click(rt: Runtime, tenant: Tenant, key: str, click: ClickEvent, services: ClickToCallServices) -> ClickOutcome:
    settings = load_settings(rt, tenant.tenant)

    def decline(kind: FailureKind) -> ClickOutcome:
        return refuse(rt, tenant, key, refusal(kind, tenant.language), settings, services, claim=False)

    if not settings.click_to_call.enabled:
        return decline("disabled")
    if not _licensed(rt, tenant.tenant):
        return decline("not_licensed")
    number = check_number(click.number, settings)
    if isinstance(number, str):
        return decline(number)
    client = services.client_for(rt, tenant.tenant)
    extension = _extension(rt, tenant.tenant, client, click.USER_ID, settings, services)
    if extension is None:
        return decline("no_extension")
    return _place(rt, tenant, key, extension, number, click.LINE_NUMBER, str(click.USER_ID), settings, services)


def handle_callback(
    rt: Runtime, tenant: Tenant, event: B24Event, services: ClickToCallServices | None = None
) -> ClickOutcome:
    """``ONEXTERNALCALLBACKSTART``: register a callback call, then ring ``callback_from`` and the client."""
    services = services or ClickToCallServices()
    callback = CallbackEvent.parse(event.data)
    if callback is None:
        log.warning("tenant %s: ONEXTERNALCALLBACKSTART without a PHONE_NUMBER; ignored", tenant.tenant)
        return ClickOutcome("ignored", detail="not a callback event")
    key = callback_command_id(tenant.tenant, event.event_handler_id, event.ts, callback)
    line = callback.LINE_NUMBER or None
    due_at = services.now() + STUCK_AFTER
    # the event itself is kept: if Bitrix24 cannot register it now, the sweeper places it later (Bitrix24 never
    # sends an event again, and a client who asked for a callback must get one)
    if not records.claim(
        rt,
        tenant.tenant,
        key,
        due_at=due_at,
        kind="callback",
        number=callback.PHONE_NUMBER,
        line=line,
        callback=callback.model_dump_json(),
    ):
        log.info("tenant %s: callback %s delivered again; already handled", tenant.tenant, key)
        return ClickOutcome("duplicate", key)
    try:
        return _callback(rt, tenant, key, callback, services)
    except Bitrix24Error as exc:
        return _postponed(rt, tenant.tenant, key, exc, services)


def retry_callback(
    rt: Runtime, tenant: Tenant, key: str, record: dict[str, Any], services: ClickToCallServices
) -> ClickOutcome | None:
    """The sweeper's turn on a callback Bitrix24 could not register when its event came (down, rate-limited):
    the whole callback again, from the stored event. ``None``: the record is not such a callback."""
    stored = record.get("callback")
    if record.get("kind") != "callback" or record.get("crm_call_id") or not isinstance(stored, str):
        return None
    try:
        callback = CallbackEvent.model_validate_json(stored)
    except ValidationError:
        return None
    log.info("tenant %s: callback %s tried again (attempt %s)", tenant.tenant, key, int(record.get("attempts", 0)) + 1)
    try:
        return _callback(rt, tenant, key, callback, services)
    except Bitrix24Error as exc:
        return _postponed(rt, tenant.tenant, key, exc, services)


def _callback(
    rt: Runtime, tenant: Tenant, key: str, callback: CallbackEvent, services: ClickToCallServices
) -> ClickOutcome:
    line = callback.LINE_NUMBER or None
    settings = load_settings(rt, tenant.tenant)
    client = services.client_for(rt, tenant.tenant)
    directory = _directory(rt, tenant.tenant, client, services, force=False)
    user = directory.default_user(settings, line)
    if user is None:
        records.update(
            rt, tenant.tenant, key, settle=True, state="register_refused", detail="no user to own the callback"
        )
        log.error("tenant %s: callback not registered: no Bitrix24 user can own it (set a default user)", tenant.tenant)
        return ClickOutcome("ignored", key, detail="no user can own the callback")
    number = check_number(callback.PHONE_NUMBER, settings)
    registered = _register_callback(rt, tenant, key, client, callback, number, user, settings, services)
    if registered is None:
        return ClickOutcome("ignored", key, detail="Bitrix24 refused to register the callback")

    def decline(kind: FailureKind) -> ClickOutcome:
        return refuse(rt, tenant, key, refusal(kind, tenant.language), settings, services, claim=False)

    if not settings.click_to_call.enabled:
        return decline("disabled")
    if not _licensed(rt, tenant.tenant):
        return decline("not_licensed")
    if isinstance(number, str):
        return decline(number)
    origin = settings.click_to_call.callback_from
    if origin is None:
        return decline("no_callback_extension")
    return _place(rt, tenant, key, origin, number, callback.LINE_NUMBER, "callback", settings, services)


def _register_callback(
    rt: Runtime,
    tenant: Tenant,
    key: str,
    client: RestClient,
    callback: CallbackEvent,
    number: PhoneNumber | FailureKind,
    user: int,
    settings: CrmSettings,
    services: ClickToCallServices,
) -> str | None:
    """The callback's CALL_ID. The parameters are fixed by the event (``EXTERNAL_CALL_ID`` = our key), so a
    retried register lands on Bitrix24's 30-minute dedupe and returns the same call."""
    phone = number.value if isinstance(number, PhoneNumber) else callback.PHONE_NUMBER
    params: dict[str, Any] = {
        "USER_ID": user,
        "PHONE_NUMBER": phone,
        "TYPE": CALLBACK,
        "CALL_START_DATE": services.now().isoformat(timespec="seconds"),
        "SHOW": 0,  # cards open for whoever rings (the CRM pipeline), not for the default owner
        "EXTERNAL_CALL_ID": key,
    }
    if callback.LINE_NUMBER:
        params["LINE_NUMBER"] = callback.LINE_NUMBER
    entity = callback.crm_entity()
    if entity is not None:
        params["CRM_ENTITY_TYPE"], params["CRM_ENTITY_ID"] = entity
    elif settings.create_client == "always" and settings.client_kind == "lead":
        params["CRM_CREATE"] = 1
        params["CRM_SOURCE"] = settings.lead_source(callback.LINE_NUMBER or None)
    try:
        result = client.call("telephony.externalCall.register", params)
    except MethodError as exc:
        records.update(rt, tenant.tenant, key, settle=True, state="register_refused", detail=str(exc)[:500])
        log.error("tenant %s: callback %s not registered: %s", tenant.tenant, key, exc)
        return None
    call_id = str(result.get("CALL_ID") or "") if isinstance(result, dict) else ""
    if not call_id:
        records.update(
            rt, tenant.tenant, key, settle=True, state="register_refused", detail="register returned no CALL_ID"
        )
        return None
    records.update(rt, tenant.tenant, key, crm_call_id=call_id, user_id=user)
    return call_id


# -- placing the call -----------------------------------------------------------------------------------------


def _place(
    rt: Runtime,
    tenant: Tenant,
    key: str,
    extension: str,
    number: PhoneNumber,
    line: str,
    rate_user: str,
    settings: CrmSettings,
    services: ClickToCallServices,
) -> ClickOutcome:
    """Agent, rate limits, then the command carrying the CALL_ID (so the CRM pipeline finishes that call)."""
    language = tenant.language
    record = records.get(rt, tenant.tenant, key) or {}
    crm_call_id = str(record.get("crm_call_id") or "")
    choice = choose_agent(settings, line or None, _agent_views(rt, tenant.tenant))
    if choice.failure is not None or choice.agent_id is None:
        return refuse(rt, tenant, key, refusal(choice.failure or "no_agent", language), settings, services)
    c2c = settings.click_to_call
    hit = limits.take(
        rt,
        tenant.tenant,
        rate_user,
        per_user=c2c.per_user_per_minute,
        per_tenant=c2c.per_tenant_per_minute,
        clock=services.wall_clock,
    )
    if hit is not None:
        kind: FailureKind = "rate_limited_user" if hit == "user" else "rate_limited_tenant"
        return refuse(rt, tenant, key, refusal(kind, language), settings, services)
    try:
        body = OriginateCommand(extension=extension, number=dial_string(number), caller_id=c2c.caller_id)
    except ValidationError:  # an extension Asterisk could not take (``UF_PHONE_INNER`` is free text)
        return refuse(rt, tenant, key, refusal("no_extension", language), settings, services)
    command = Command(command_id=key, command=body)
    records.update(rt, tenant.tenant, key, agent_id=choice.agent_id, extension=extension, dialed=body.number)
    try:
        send_command(rt, tenant.tenant, choice.agent_id, command, services.gateway, crm_call_id=crm_call_id or None)
    except AgentOffline:
        return refuse(rt, tenant, key, refusal("agent_offline", language), settings, services, claim=True)
    except (UnknownAgent, RevokedAgent):
        return refuse(rt, tenant, key, refusal("no_agent", language), settings, services, claim=True)
    except CommandConflict:  # the id derives from the CALL_ID: only an earlier delivery sent it (elsewhere)
        log.warning("tenant %s: command %s already went to another agent", tenant.tenant, key)
        records.update(rt, tenant.tenant, key, settle=True, state="sent")
        return ClickOutcome("duplicate", key)
    # still due: if no result ever comes (the agent lost the command), the sweeper closes the card
    records.update(rt, tenant.tenant, key, state="sent", due_at=services.now() + RESULT_TIMEOUT)
    log.info("tenant %s: %s sent to %s (extension %s)", tenant.tenant, key, choice.agent_id, extension)
    return ClickOutcome("sent", key)


def _licensed(rt: Runtime, tenant: str) -> bool:
    """Does the tenant's plan include click-to-call (the cached lease: no call to the license server)?"""
    return licensing.entitlements(rt, tenant, clock.now()).allows("click_to_call")


def _agent_views(rt: Runtime, tenant: str) -> list[AgentView]:
    return [
        AgentView(
            a.agent_id, a.revoked, not a.revoked and connections.agent_connection(rt, tenant, a.agent_id) is not None
        )
        for a in list_agents(rt, tenant)
    ]


def _directory(
    rt: Runtime, tenant: str, client: RestClient, services: ClickToCallServices, *, force: bool
) -> Directory:
    directory = load_directory(rt, tenant)
    now = services.now()
    if needs_refresh(directory, now, unknown_extension=force):
        try:
            directory = refresh_directory(client, directory, now)
            save_directory(rt, tenant, directory)
        except Bitrix24Error as exc:
            if directory.fetched_at is None:
                raise  # no user map at all: not "you have no extension"
            log.warning("tenant %s: user map not refreshed (%s); using the cached one", tenant, exc)
    return directory


def _extension(
    rt: Runtime, tenant: str, client: RestClient, user_id: int, settings: CrmSettings, services: ClickToCallServices
) -> str | None:
    """The clicking user's extension; an unknown one refreshes the user map first (at most once a minute)."""
    directory = _directory(rt, tenant, client, services, force=False)
    extension = extension_of(user_id, directory, settings)
    if extension is None and directory.fetched_at is not None:
        directory = _directory(rt, tenant, client, services, force=True)
        extension = extension_of(user_id, directory, settings)
    return extension
