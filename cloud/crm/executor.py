"""Where a plan becomes Bitrix24 requests: one plan, one request (a ``batch`` when it holds several operations).

The executor turns each answer back into progress (:func:`cloud.crm.progress.apply_outcome`) and decides what
a refusal means for the call, so the planner's next look is right:

* a ``finish`` answered "Call is not found" after an earlier attempt was sent: that attempt worked;
  without one, Bitrix24 lost the registration (its 30-minute dedupe, a portal restore): register again;
* a refused ``register`` was certainly not registered: its parameters are forgotten and the refusal kept;
* a refused ``show``/``hide`` cannot be helped by repeating it; a failed client lookup means "no client".

Transport failures (:class:`~cloud.bitrix24.errors.RateLimited`, ``PortalUnavailable``,
``AuthorizationLost``) propagate: the pipeline keeps the progress and resumes the call later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloud.bitrix24.client import BatchResult
from cloud.bitrix24.errors import MethodError

from .operations import AttachRecord, CreateClient, CreateTask, FindClient, Finish, Hide, Operation, Register, Show
from .progress import ClientInfo, CrmProgress, apply_outcome

__all__ = ["Execution", "RecordUpload", "RestClient", "execute", "request_of"]

log = logging.getLogger("cloud.crm")


class RestClient(Protocol):
    """What the executor needs of :class:`cloud.bitrix24.client.Bitrix24Client`."""

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False) -> BatchResult: ...


#: attachRecord's second step: ``(operation, uploadUrl, fieldName)`` → Bitrix24's answer (raises like a call).
RecordUpload = Callable[[AttachRecord, str, str], Any]


@dataclass
class Execution:
    progress: CrmProgress
    #: Refusals, as text for the settings page ("register: User is not found or is not active").
    refusals: list[str] = field(default_factory=list)
    #: A refusal says the extension → user map is stale.
    directory_stale: bool = False


def _flag(value: bool) -> int:
    return 1 if value else 0


def request_of(op: Operation, call_id: str | None) -> tuple[str, dict[str, Any]]:
    """``(method, params)`` of one operation; ``call_id`` is the leg's CALL_ID or a ``$result[...]`` reference."""
    match op:
        case Register():
            params: dict[str, Any] = {
                "USER_ID": op.user_id,
                "PHONE_NUMBER": op.phone_number,
                "TYPE": op.call_type,
                "CALL_START_DATE": op.call_start_date,
                "CRM_CREATE": _flag(op.crm_create),
                "SHOW": 0,  # cards are opened by ``show``, to exactly the users the planner chose
                "EXTERNAL_CALL_ID": op.external_call_id,
            }
            if op.line_number:
                params["LINE_NUMBER"] = op.line_number
            if op.crm_source:
                params["CRM_SOURCE"] = op.crm_source
            return "telephony.externalCall.register", params
        case Show():
            return "telephony.externalCall.show", {"CALL_ID": call_id, "USER_ID": list(op.user_ids)}
        case Hide():
            return "telephony.externalCall.hide", {"CALL_ID": call_id, "USER_ID": list(op.user_ids)}
        case Finish():
            return "telephony.externalCall.finish", {
                "CALL_ID": call_id,
                "USER_ID": op.user_id,
                "DURATION": op.duration,
                "STATUS_CODE": op.status_code,
                "ADD_TO_CHAT": _flag(op.add_to_chat),
            }
        case FindClient():
            return "telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": op.phone_number}
        case CreateClient():
            fields: dict[str, Any] = {
                "PHONE": [{"VALUE": op.phone_number, "VALUE_TYPE": "WORK"}],
                "SOURCE_ID": op.source,
                "ASSIGNED_BY_ID": op.assigned_by,
            }
            if op.kind == "lead":
                fields["TITLE"] = op.title
                return "crm.lead.add", {"fields": fields}
            fields["NAME"] = op.phone_number
            fields["COMMENTS"] = op.title
            return "crm.contact.add", {"fields": fields}
        case CreateTask():
            task: dict[str, Any] = {
                "TITLE": op.title,
                "DESCRIPTION": op.description,
                "RESPONSIBLE_ID": op.responsible,
                "DEADLINE": op.deadline,
            }
            if op.crm_bindings:
                task["UF_CRM_TASK"] = list(op.crm_bindings)
            return "tasks.task.add", {"fields": task}
        case AttachRecord():
            # FILENAME alone: the two-step upload (the file goes to uploadUrl), best for large files (§A7.5)
            return "telephony.externalCall.attachRecord", {"CALL_ID": op.call_id, "FILENAME": op.filename}
    raise AssertionError(f"unknown operation {op!r}")  # pragma: no cover


def _leg_of(op: Operation) -> int | None:
    return op.leg if isinstance(op, Register | Show | Hide | Finish) else None


def execute(
    client: RestClient,
    progress: CrmProgress,
    ops: list[Operation],
    *,
    finish_sent_before: set[int],
    upload: RecordUpload | None = None,
) -> Execution:
    """Send ``ops`` as one request and fold the answers in. ``finish_sent_before``: legs whose ``finish`` was
    already sent by an earlier, interrupted pass (the progress is marked before sending). ``upload``: how an
    ``AttachRecord`` (always alone in its plan) sends the file to the ``uploadUrl`` Bitrix24 answers."""
    registering = {op.leg for op in ops if isinstance(op, Register)}
    requests: dict[str, tuple[str, dict[str, Any]]] = {}
    for op in ops:
        leg = _leg_of(op)
        call_id = None
        if leg is not None and not isinstance(op, Register):
            call_id = f"$result[register:{leg}][CALL_ID]" if leg in registering else progress.leg(leg).call_id
        requests[op.key] = request_of(op, call_id)
    outcome = Execution(progress.model_copy(update={"requests": progress.requests + 1}))
    if len(ops) == 1:
        (op,) = ops
        method, params = requests[op.key]
        try:
            result = client.call(method, params)
            if isinstance(op, AttachRecord):
                result = _upload_record(op, result, upload)
            _done(outcome, op, result)
        except MethodError as exc:
            _refused(outcome, op, exc, finish_sent_before)
        return outcome
    answer = client.batch(requests)
    failed_registers = {op.leg for op in ops if isinstance(op, Register) and op.key in answer.errors}
    for op in ops:
        if op.key in answer.results:
            _done(outcome, op, answer.results[op.key])
        elif op.key in answer.errors:
            if _leg_of(op) in failed_registers and not isinstance(op, Register):
                continue  # it referred to a CALL_ID that was never made: not executed, nothing learned
            _refused(outcome, op, answer.errors[op.key], finish_sent_before)
    return outcome


def _upload_record(op: AttachRecord, answer: Any, upload: RecordUpload | None) -> Any:
    method = "telephony.externalCall.attachRecord"
    url = answer.get("uploadUrl") if isinstance(answer, dict) else None
    if not isinstance(url, str) or not url:
        raise MethodError("", "attachRecord answered without an uploadUrl", None, method)
    if upload is None:
        raise MethodError("", "this Bitrix24 client cannot upload files", None, method)
    return upload(op, url, str(answer.get("fieldName") or "file"))


def _done(outcome: Execution, op: Operation, result: Any) -> None:
    outcome.progress = apply_outcome(outcome.progress, op, result)


def _refused(outcome: Execution, op: Operation, error: MethodError, finish_sent_before: set[int]) -> None:
    description = error.description or error.code
    progress = outcome.progress
    match op:
        case Finish() if "not found" in description.lower():
            if op.leg in finish_sent_before:
                outcome.progress = apply_outcome(progress, op, None)  # the earlier attempt finished it
                return
            # Bitrix24 no longer has the registration: make a new one and finish that
            outcome.progress = progress.with_leg(
                op.leg,
                call_id=None,
                registered_with=None,
                visible_to=(),
                finish_attempted=False,
                registration_lost=True,
            )
        case Register():
            outcome.progress = progress.with_leg(op.leg, registered_with=None)
            outcome.directory_stale = outcome.directory_stale or "user" in description.lower()
        case Finish():
            outcome.directory_stale = outcome.directory_stale or "user" in description.lower()
            outcome.progress = progress.with_leg(op.leg, finish_attempted=False)
        case Show() | Hide():
            leg = progress.leg(op.leg)
            if isinstance(op, Show):  # as if shown: repeating it cannot help, and hide/finish close it anyway
                outcome.progress = progress.with_leg(op.leg, visible_to=tuple(sorted({*leg.visible_to, *op.user_ids})))
            else:
                outcome.progress = progress.with_leg(
                    op.leg, visible_to=tuple(u for u in leg.visible_to if u not in op.user_ids)
                )
        case FindClient():
            outcome.progress = progress.model_copy(update={"client": ClientInfo()})
        case CreateClient():
            outcome.progress = progress.model_copy(update={"created_client": ClientInfo()})
        case CreateTask():
            pass  # not retried: ``task_attempted`` stays, the refusal is reported
    text = f"{op.op}: {description}"
    log.warning("Bitrix24 refused %s", text)
    outcome.refusals.append(text)
