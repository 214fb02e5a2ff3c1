"""Finishing click-to-calls that were not placed, exactly once, and never one the CRM pipeline owns.

* :func:`refuse`: an event handler decided not to place the call: its CALL_ID is finished now with a status
  and a reason; if Bitrix24 cannot take it, the record stays due and :func:`sweep` retries.
* :func:`on_command_failed`: the agent answered a failed ``command_result``; the CALL_ID is finished with the
  PBX's reason unless the CRM pipeline owns it (the PBX placed a call and its events arrived first). Exactly one
  of the two finishes a CALL_ID: both claim it on the command item (:func:`cloud.agents.commands.claim_crm_finish`).
* :func:`sweep`: what handlers left half done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, get_args

from cloud.agents.commands import claim_crm_finish, get_command
from cloud.bitrix24.errors import Bitrix24Error, MethodError
from cloud.crm.settings import CrmSettings, load_settings
from cloud.errors import UnknownTenant
from cloud.runtime import Runtime
from cloud.tenants import store
from cloud.tenants.store import Tenant
from wire_protocol.messages import CommandResult

from . import records
from .context import MAX_ATTEMPTS, MAX_BACKOFF, ClickOutcome, ClickToCallServices
from .rules import FailureKind, Refusal, refusal, refusal_for_result

__all__ = ["on_command_failed", "postpone", "refuse", "sweep"]

log = logging.getLogger("cloud.clicktocall")

_STATUS_KINDS: frozenset[str] = frozenset(get_args(FailureKind))


# -- refusals --------------------------------------------------------------------------------------------------


class _FinishPending(Exception):
    """Bitrix24 could not be reached to finish the call; try again later."""


def refuse(
    rt: Runtime,
    tenant: Tenant,
    key: str,
    why: Refusal,
    settings: CrmSettings,
    services: ClickToCallServices,
    *,
    claim: bool = False,
) -> ClickOutcome:
    """Finish a call that was not placed (from an event handler; a finish Bitrix24 cannot take now stays
    ``finishing`` and due: the sweeper retries it)."""
    try:
        _finish_failed(rt, tenant, key, why, settings, services, claim=claim)
    except _FinishPending as exc:
        log.warning("tenant %s: %s refused (%s); finish postponed: %s", tenant.tenant, key, why.kind, exc)
        postpone(rt, tenant.tenant, key, services)
    return ClickOutcome("refused", key, why)


def postpone(rt: Runtime, tenant: str, key: str, services: ClickToCallServices) -> None:
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
        postpone(rt, tenant, result.command_id, services)  # the sweeper or the agent's resend, whichever first
        return False
    return True


# -- the sweeper --------------------------------------------------------------------------------------------------


#: The sweeper's hook for a record it cannot finish but may complete (a callback Bitrix24 could not register):
#: an outcome if it took the record, ``None`` if not (``cloud.clicktocall.handlers.retry_callback``).
Retry = Callable[[Runtime, Tenant, str, dict[str, Any], ClickToCallServices], ClickOutcome | None]


def sweep(
    rt: Runtime, services: ClickToCallServices | None = None, limit: int = 100, retry: Retry | None = None
) -> int:
    """Finish what handlers left half done: a failure finish Bitrix24 could not take (retried with backoff, given
    up after :data:`MAX_ATTEMPTS`), or an event whose handler died before it sent or refused the call (finished
    as ``interrupted`` unless the CRM pipeline owns it). Returns how many records it looked at."""
    services = services or ClickToCallServices()
    seen = 0
    for tenant, key in list(records.due(rt, services.now(), limit)):
        seen += 1
        try:
            _sweep_one(rt, tenant, key, services, retry)
        except Exception:
            log.exception("click-to-call sweep of %s/%s failed", tenant, key)
    return seen


def _sweep_one(rt: Runtime, tenant: str, key: str, services: ClickToCallServices, retry: Retry | None) -> None:
    record = records.get(rt, tenant, key)
    if record is None:
        return
    state = record.get("state")
    if state == "sent" and _answered(rt, tenant, key):
        records.update(rt, tenant, key, settle=True)  # the result came: the pipeline or the failure path has it
        return
    if state not in ("received", "finishing", "sent"):
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
    if state == "received" and retry is not None and retry(rt, owner, key, record, services) is not None:
        return
    kind = record.get("failure")
    if state == "finishing" and kind in _STATUS_KINDS:
        why = Refusal(kind, str(record.get("status_code")), str(record.get("reason") or ""))
    else:  # the handler died before it decided, or the agent lost the command: the pipeline may own the call
        why = refusal("interrupted", owner.language)
    try:
        _finish_failed(rt, owner, key, why, load_settings(rt, tenant), services, claim=True)
    except _FinishPending as exc:
        log.warning("tenant %s: %s still not finished: %s", tenant, key, exc)
        postpone(rt, tenant, key, services)


def _answered(rt: Runtime, tenant: str, key: str) -> bool:
    """Did the agent answer the command (or did its call reach the CRM pipeline)?"""
    command = get_command(rt, tenant, key)
    return command is not None and (command.get("status") == "done" or command.get("crm_finisher") is not None)
