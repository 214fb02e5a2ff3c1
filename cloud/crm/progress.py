"""What has been done in Bitrix24 for one call: the other half of the planner's input.

The planner compares the call (what happened on the PBX) with the progress (what Bitrix24 knows) and decides
the difference; :func:`apply_outcome` folds each operation's answer back in. Pure data and pure functions:
the pipeline stores the progress after every step, so a crash repeats at most the step it interrupted.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .operations import AttachRecord, CreateClient, CreateTask, FindClient, Finish, Hide, Operation, Register, Show

__all__ = ["ClientInfo", "CrmProgress", "LegProgress", "apply_outcome", "mark_attempted"]


class LegProgress(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: Parameters of the register as first sent: a retry sends exactly these (Bitrix24's dedupe key).
    registered_with: Register | None = None
    call_id: str | None = None  # Bitrix24's CALL_ID (from register, or from a click-to-call)
    visible_to: tuple[int, ...] = ()  # users whose card is open now
    shown_to: tuple[int, ...] = ()  # everyone it was ever shown to
    finish_attempted: bool = False
    finished: bool = False
    finished_as: str | None = None  # STATUS_CODE
    crm_entity_type: str | None = None
    crm_entity_id: int | None = None
    created_lead: int | None = None
    #: Bitrix24 answered a finish with "Call is not found" before any finish was sent: it lost the
    #: registration, so the leg is registered anew (never again under a click-to-call's CALL_ID).
    registration_lost: bool = False


class ClientInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    entity_type: str | None = None
    entity_id: int | None = None
    responsible_id: int | None = None


class CrmProgress(BaseModel):
    model_config = ConfigDict(frozen=True)

    legs: dict[int, LegProgress] = Field(default_factory=dict)
    client: ClientInfo | None = None  # None: not looked up
    client_create_attempted: bool = False
    created_client: ClientInfo | None = None
    task_attempted: bool = False
    task_id: int | None = None
    #: The recording: tried (write-ahead, informational: repeating it is harmless) and attached (its S3 key).
    record_attempted: bool = False
    record_attached: str | None = None
    #: Why the call is not (yet) in the CRM, for the settings page (``None`` once it is in).
    blocked: str | None = None
    #: Extensions this call met that have no Bitrix24 user (their cards could not open).
    unmapped_extensions: tuple[str, ...] = ()
    skipped: str | None = None  # the call is deliberately not sent (an internal call, by settings)
    requests: int = 0  # Bitrix24 HTTP requests made for this call
    refusals: int = 0  # operations Bitrix24 refused, in a row; the pipeline gives up after a few
    last_refusal: str | None = None

    def leg(self, index: int) -> LegProgress:
        return self.legs.get(index) or LegProgress()

    def with_leg(self, index: int, **changes: Any) -> CrmProgress:
        return self.model_copy(update={"legs": {**self.legs, index: self.leg(index).model_copy(update=changes)}})


def mark_attempted(progress: CrmProgress, ops: list[Operation]) -> CrmProgress:
    """What must be stored *before* ``ops`` are sent: the parameters of registers, and that a finish or a
    client creation was tried (a retry of a finish that already worked gets "Call is not found"; a retried
    creation first looks for the client it may have created)."""
    for op in ops:
        match op:
            case Register() if progress.leg(op.leg).registered_with is None:
                progress = progress.with_leg(op.leg, registered_with=op)
            case Finish():
                progress = progress.with_leg(op.leg, finish_attempted=True)
            case CreateTask():
                progress = progress.model_copy(update={"task_attempted": True})
            case AttachRecord():
                progress = progress.model_copy(update={"record_attempted": True})
            case CreateClient():
                # forget the lookup: a retry must look again, the interrupted attempt may have created it
                progress = progress.model_copy(update={"client_create_attempted": True, "client": None})
    return progress


def _entity(result: dict[str, Any]) -> tuple[str | None, int | None]:
    kind = result.get("CRM_ENTITY_TYPE") or None
    try:
        ident = int(result.get("CRM_ENTITY_ID") or 0) or None
    except (TypeError, ValueError):
        ident = None
    return (str(kind).upper() if kind and ident else None), (ident if kind else None)


def apply_outcome(progress: CrmProgress, op: Operation, result: Any) -> CrmProgress:
    """Fold one successful operation's Bitrix24 ``result`` into the progress."""
    match op:
        case Register():
            data = result if isinstance(result, dict) else {}
            kind, ident = _entity(data)
            lead = data.get("CRM_CREATED_LEAD")
            return progress.with_leg(
                op.leg,
                call_id=str(data["CALL_ID"]),
                crm_entity_type=kind,
                crm_entity_id=ident,
                created_lead=int(lead) if lead else None,
            )
        case Show():
            leg = progress.leg(op.leg)
            visible = tuple(sorted({*leg.visible_to, *op.user_ids}))
            shown = tuple(sorted({*leg.shown_to, *op.user_ids}))
            return progress.with_leg(op.leg, visible_to=visible, shown_to=shown)
        case Hide():
            leg = progress.leg(op.leg)
            return progress.with_leg(op.leg, visible_to=tuple(u for u in leg.visible_to if u not in op.user_ids))
        case Finish():
            return progress.with_leg(op.leg, finished=True, finished_as=op.status_code, visible_to=())
        case FindClient():
            return progress.model_copy(update={"client": _client_from_search(result)})
        case CreateClient():
            kind = "LEAD" if op.kind == "lead" else "CONTACT"
            created = ClientInfo(entity_type=kind, entity_id=int(result), responsible_id=op.assigned_by)
            return progress.model_copy(update={"created_client": created})
        case CreateTask():
            task = result.get("task", {}) if isinstance(result, dict) else {}
            try:
                task_id = int(task.get("id") or 0) or None
            except (TypeError, ValueError):
                task_id = None
            return progress.model_copy(update={"task_id": task_id})
        case AttachRecord():
            return progress.model_copy(update={"record_attached": op.object_key})
    raise AssertionError(f"unknown operation {op!r}")  # pragma: no cover


def _client_from_search(result: Any) -> ClientInfo:
    """The first match of ``searchCrmEntities`` (Bitrix24 orders them by its own priority)."""
    if not isinstance(result, list) or not result:
        return ClientInfo()
    first = result[0] if isinstance(result[0], dict) else {}
    kind, ident = _entity(first)
    try:
        responsible = int(first.get("ASSIGNED_BY_ID") or 0) or None
    except (TypeError, ValueError):
        responsible = None
    return ClientInfo(entity_type=kind, entity_id=ident, responsible_id=responsible)
