"""Click-to-call and callbacks, the I/O side: Bitrix24 events in, ``originate`` commands out, and every failure
finished in Bitrix24 at once so no card stays open.

* :func:`handle_click` (``ONEXTERNALCALLSTART``): Bitrix24 registered the call and opened the user's card;
  we place it on the PBX, or finish it with the reason we did not.
* :func:`handle_callback` (``ONEXTERNALCALLBACKSTART``): we register a callback call (``TYPE=4``) ourselves,
  then place it: ``click_to_call.callback_from`` rings first, then the client.
* :func:`on_command_failed`: the agent answered a failed ``command_result``; the CALL_ID is finished with the
  PBX's reason unless the CRM pipeline owns it (the PBX placed a call and its events arrived first).
  Exactly one of the two finishes a CALL_ID: both claim it on the command item
  (:func:`cloud.agents.commands.claim_crm_finish`).
* :func:`push_settings`: the tenant's agent settings to every connected agent (the settings page calls it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from pydantic import ValidationError

from cloud import clock
from cloud.agents import connections
from cloud.agents.commands import claim_crm_finish, send_command
from cloud.agents.tokens import list_agents
from cloud.bitrix24.errors import Bitrix24Error, MethodError
from cloud.bitrix24.events import B24Event
from cloud.crm.directory import Directory, load_directory, needs_refresh, refresh_directory, save_directory
from cloud.crm.numbers import PhoneNumber
from cloud.crm.settings import CrmSettings, InvalidSettings, load_settings
from cloud.errors import AgentOffline, CommandConflict, RevokedAgent, UnknownAgent, UnknownTenant
from cloud.gateway import ConnectionGateway
from cloud.runtime import Runtime
from cloud.tenants import store
from cloud.tenants.store import Tenant
from wire_protocol.messages import AgentSettings, Command, CommandResult, OriginateCommand

from . import limits, records
from .rules import (
    AgentView,
    CallbackEvent,
    ClickEvent,
    FailureKind,
    Refusal,
    agent_settings,
    callback_command_id,
    check_number,
    choose_agent,
    click_command_id,
    dial_string,
    extension_of,
    refusal,
    refusal_for_result,
)

__all__ = [
    "ClickOutcome",
    "ClickToCallServices",
    "RestClient",
    "handle_callback",
    "handle_click",
    "on_command_failed",
    "push_settings",
    "settings_for_agent",
    "sweep",
]

log = logging.getLogger("cloud.clicktocall")

#: TYPE of ``telephony.externalCall.register`` for a callback (protocols.md §A7.2).
CALLBACK = 4
#: A record not settled by then was left half done by its handler: the sweeper takes it over.
STUCK_AFTER = timedelta(minutes=2)
MAX_BACKOFF = timedelta(minutes=15)
MAX_ATTEMPTS = 12  # about two hours of retries for a failure finish
_STATUS_KINDS: frozenset[str] = frozenset(get_args(FailureKind))


class RestClient(Protocol):
    """What this module needs of :class:`cloud.bitrix24.client.Bitrix24Client`."""

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...


def _client_for(rt: Runtime, tenant: str) -> RestClient:
    from cloud.bitrix24.client import client_for

    return client_for(rt, tenant)


@dataclass
class ClickToCallServices:
    """Collaborators, injectable in tests: the Bitrix24 client, the clocks, the gateway to agents."""

    client_for: Callable[[Runtime, str], RestClient] = _client_for
    now: Callable[[], datetime] = clock.now
    wall_clock: Callable[[], float] = time.time
    gateway: ConnectionGateway | None = None


@dataclass(frozen=True)
class ClickOutcome:
    """What became of one event (for logs and tests)."""

    status: Literal["sent", "duplicate", "refused", "ignored", "postponed"]
    command_id: str | None = None
    refusal: Refusal | None = None
    detail: str = ""


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
    _postpone(rt, tenant, key, services)
    return ClickOutcome("postponed", key, detail=str(exc))


def _click(rt: Runtime, tenant: Tenant, key: str, click: ClickEvent, services: ClickToCallServices) -> ClickOutcome:
    settings = load_settings(rt, tenant.tenant)

    def refuse(kind: FailureKind) -> ClickOutcome:
        return _refuse(rt, tenant, key, refusal(kind, tenant.language), settings, services, claim=False)

    if not settings.click_to_call.enabled:
        return refuse("disabled")
    number = check_number(click.number, settings)
    if isinstance(number, str):
        return refuse(number)
    client = services.client_for(rt, tenant.tenant)
    extension = _extension(rt, tenant.tenant, client, click.USER_ID, settings, services)
    if extension is None:
        return refuse("no_extension")
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
    if not records.claim(
        rt, tenant.tenant, key, due_at=due_at, kind="callback", number=callback.PHONE_NUMBER, line=line
    ):
        log.info("tenant %s: callback %s delivered again; already handled", tenant.tenant, key)
        return ClickOutcome("duplicate", key)
    try:
        return _callback(rt, tenant, key, event, callback, services)
    except Bitrix24Error as exc:
        return _postponed(rt, tenant.tenant, key, exc, services)


def _callback(
    rt: Runtime, tenant: Tenant, key: str, event: B24Event, callback: CallbackEvent, services: ClickToCallServices
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

    def refuse(kind: FailureKind) -> ClickOutcome:
        return _refuse(rt, tenant, key, refusal(kind, tenant.language), settings, services, claim=False)

    if not settings.click_to_call.enabled:
        return refuse("disabled")
    if isinstance(number, str):
        return refuse(number)
    origin = settings.click_to_call.callback_from
    if origin is None:
        return refuse("no_callback_extension")
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
        return _refuse(rt, tenant, key, refusal(choice.failure or "no_agent", language), settings, services)
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
        return _refuse(rt, tenant, key, refusal(kind, language), settings, services)
    try:
        body = OriginateCommand(extension=extension, number=dial_string(number), caller_id=c2c.caller_id)
    except ValidationError:  # an extension Asterisk could not take (``UF_PHONE_INNER`` is free text)
        return _refuse(rt, tenant, key, refusal("no_extension", language), settings, services)
    command = Command(command_id=key, command=body)
    records.update(rt, tenant.tenant, key, agent_id=choice.agent_id, extension=extension, dialed=body.number)
    try:
        send_command(rt, tenant.tenant, choice.agent_id, command, services.gateway, crm_call_id=crm_call_id or None)
    except AgentOffline:
        return _refuse(rt, tenant, key, refusal("agent_offline", language), settings, services, claim=True)
    except (UnknownAgent, RevokedAgent):
        return _refuse(rt, tenant, key, refusal("no_agent", language), settings, services, claim=True)
    except CommandConflict:  # the id derives from the CALL_ID: only an earlier delivery sent it (elsewhere)
        log.warning("tenant %s: command %s already went to another agent", tenant.tenant, key)
        records.update(rt, tenant.tenant, key, settle=True, state="sent")
        return ClickOutcome("duplicate", key)
    records.update(rt, tenant.tenant, key, settle=True, state="sent")
    log.info("tenant %s: %s sent to %s (extension %s)", tenant.tenant, key, choice.agent_id, extension)
    return ClickOutcome("sent", key)


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


# -- failures --------------------------------------------------------------------------------------------------


class _FinishPending(Exception):
    """Bitrix24 could not be reached to finish the call; try again later."""


def _refuse(
    rt: Runtime,
    tenant: Tenant,
    key: str,
    why: Refusal,
    settings: CrmSettings,
    services: ClickToCallServices,
    *,
    claim: bool = False,
) -> ClickOutcome:
    """Finish a call that was not placed (from an event handler: Bitrix24 does not resend events, so a finish
    that cannot be sent now stays ``finishing`` in the record, for support)."""
    try:
        _finish_failed(rt, tenant, key, why, settings, services, claim=claim)
    except _FinishPending as exc:
        log.warning("tenant %s: %s refused (%s); finish postponed: %s", tenant.tenant, key, why.kind, exc)
        _postpone(rt, tenant.tenant, key, services)
    return ClickOutcome("refused", key, why)


def _postpone(rt: Runtime, tenant: str, key: str, services: ClickToCallServices) -> None:
    attempts = int((records.get(rt, tenant, key) or {}).get("attempts", 0)) + 1
    delay = min(MAX_BACKOFF.total_seconds(), 15.0 * 2 ** min(attempts, 10))
    records.update(rt, tenant, key, attempts=attempts, due_at=services.now() + timedelta(seconds=delay))


def _finish_failed(
    rt: Runtime,
    tenant: Tenant,
    key: str,
    why: Refusal,
    settings: CrmSettings,
    services: ClickToCallServices,
    *,
    claim: bool,
) -> bool:
    """Finish the record's CALL_ID as failed; ``False`` when the CRM pipeline owns it. ``claim``: a command
    with this id may have reached an agent, so take it from the pipeline first (conditional write)."""
    if claim and claim_crm_finish(rt, tenant.tenant, key, "failure") == "pipeline":
        records.update(rt, tenant.tenant, key, settle=True, state="pipeline", failure=why.kind)
        log.info("tenant %s: %s failed (%s); the CRM pipeline finishes its call", tenant.tenant, key, why.kind)
        return False
    record = records.get(rt, tenant.tenant, key) or {}
    if record.get("state") in ("finished", "finish_refused"):
        records.update(rt, tenant.tenant, key, settle=True)
        return True
    call_id, user_id = record.get("crm_call_id"), record.get("user_id")
    if not call_id or user_id is None:
        records.update(rt, tenant.tenant, key, settle=True, state="refused", failure=why.kind)
        return True
    attempted_before = bool(record.get("finish_attempted"))
    records.update(
        rt,
        tenant.tenant,
        key,
        state="finishing",
        failure=why.kind,
        status_code=why.status_code,
        reason=why.reason,
        finish_attempted=True,
    )
    params = {
        "CALL_ID": call_id,
        "USER_ID": int(user_id),
        "DURATION": 0,
        "STATUS_CODE": why.status_code,
        "FAILED_REASON": why.reason,
        "ADD_TO_CHAT": 1 if settings.add_to_chat else 0,
    }
    try:
        services.client_for(rt, tenant.tenant).call("telephony.externalCall.finish", params)
    except MethodError as exc:
        if "not found" in exc.description.lower() and attempted_before:
            records.update(rt, tenant.tenant, key, settle=True, state="finished")  # our earlier finish worked
            return True
        records.update(rt, tenant.tenant, key, settle=True, state="finish_refused", detail=str(exc)[:500])
        log.warning("tenant %s: finishing %s refused: %s", tenant.tenant, key, exc)
        return True
    except Bitrix24Error as exc:
        raise _FinishPending(str(exc)) from None
    records.update(rt, tenant.tenant, key, settle=True, state="finished")
    log.info("tenant %s: %s finished as %s (%s)", tenant.tenant, key, why.status_code, why.kind)
    return True


def on_command_failed(
    rt: Runtime, tenant: str, agent_id: str, result: CommandResult, services: ClickToCallServices | None = None
) -> bool:
    """The dispatch hook for a failed ``command_result``: finish the click's CALL_ID with the PBX's reason
    unless the CRM pipeline owns it. ``False``: Bitrix24 could not be reached; the agent should resend the
    result later (it does, until it is confirmed)."""
    if result.ok:
        return True
    services = services or ClickToCallServices()
    record = records.get(rt, tenant, result.command_id)
    if record is None or record.get("agent_id") != agent_id:
        return True  # not a click-to-call of ours (or not this agent's)
    if record.get("state") in ("finished", "finish_refused", "pipeline"):
        return True
    try:
        owner = store.get_tenant(rt, tenant)
    except (UnknownTenant, ValueError):
        return True
    why = refusal_for_result(result.code, result.message, owner.language)
    if why is None:
        return True
    try:
        _finish_failed(rt, owner, result.command_id, why, load_settings(rt, tenant), services, claim=True)
    except _FinishPending as exc:
        log.warning("tenant %s: %s failed on the PBX; finish postponed: %s", tenant, result.command_id, exc)
        _postpone(rt, tenant, result.command_id, services)  # the sweeper or the agent's resend, whichever first
        return False
    return True


# -- the sweeper --------------------------------------------------------------------------------------------------


def sweep(rt: Runtime, services: ClickToCallServices | None = None, limit: int = 100) -> int:
    """Finish what handlers left half done: a failure finish Bitrix24 could not take (retried with backoff, given
    up after :data:`MAX_ATTEMPTS`), or an event whose handler died before it sent or refused the call (finished
    as ``interrupted`` unless the CRM pipeline owns it). Returns how many records it looked at."""
    services = services or ClickToCallServices()
    seen = 0
    for tenant, key in list(records.due(rt, services.now(), limit)):
        seen += 1
        try:
            _sweep_one(rt, tenant, key, services)
        except Exception:
            log.exception("click-to-call sweep of %s/%s failed", tenant, key)
    return seen


def _sweep_one(rt: Runtime, tenant: str, key: str, services: ClickToCallServices) -> None:
    record = records.get(rt, tenant, key)
    if record is None:
        return
    state = record.get("state")
    if state not in ("received", "finishing"):
        records.update(rt, tenant, key, settle=True)
        return
    if int(record.get("attempts", 0)) >= MAX_ATTEMPTS:
        records.update(rt, tenant, key, settle=True, state="abandoned")
        log.error("tenant %s: gave up finishing %s after %s attempts", tenant, key, record.get("attempts"))
        return
    try:
        owner = store.get_tenant(rt, tenant)
    except (UnknownTenant, ValueError):
        records.update(rt, tenant, key, settle=True, state="abandoned")
        return
    kind = record.get("failure")
    if state == "finishing" and kind in _STATUS_KINDS:
        why = Refusal(kind, str(record.get("status_code")), str(record.get("reason") or ""))
    else:  # the handler died before it decided: whatever it sent, the pipeline may own the call
        why = refusal("interrupted", owner.language)
    try:
        _finish_failed(rt, owner, key, why, load_settings(rt, tenant), services, claim=True)
    except _FinishPending as exc:
        log.warning("tenant %s: %s still not finished: %s", tenant, key, exc)
        _postpone(rt, tenant, key, services)


# -- settings for agents ---------------------------------------------------------------------------------------


def settings_for_agent(rt: Runtime, tenant: str) -> AgentSettings:
    """The tenant's :class:`AgentSettings`; the defaults when its stored settings cannot be read."""
    try:
        return agent_settings(load_settings(rt, tenant))
    except InvalidSettings as exc:
        log.error("tenant %s: stored settings do not validate (%s); agents get the defaults", tenant, exc)
        return AgentSettings()


def push_settings(rt: Runtime, tenant: str, gateway: ConnectionGateway | None = None) -> list[str]:
    """Send the tenant's current agent settings to every connected agent (call it after saving settings).
    Returns the agents that got them; a gone connection is dropped (the agent gets them after its next hello)."""
    message = settings_for_agent(rt, tenant)
    pushed: list[str] = []
    for agent in list_agents(rt, tenant):
        if agent.revoked:
            continue
        conn = connections.agent_connection(rt, tenant, agent.agent_id)
        if conn is None:
            continue
        gw = gateway or rt.gateway()
        if gw.send(conn.connection_id, message):
            pushed.append(agent.agent_id)
        else:
            connections.drop(rt, tenant, agent.agent_id, conn.connection_id)
    return pushed
