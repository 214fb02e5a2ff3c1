"""The Bitrix24 operations the CRM logic decides on, as data (the planner's output, the executor's input).

Each operation names the call *leg* it acts on: a call is registered once per leg (one leg unless it was
transferred), so every person who talked has their part of the call in the CRM. ``key`` identifies an
operation within its call, so a step interrupted half-way can tell what it already did.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AttachRecord",
    "CreateClient",
    "CreateTask",
    "FindClient",
    "Finish",
    "Hide",
    "Operation",
    "Register",
    "Show",
]


class _Op(BaseModel):
    model_config = ConfigDict(frozen=True)

    @property
    def key(self) -> str:  # pragma: no cover - every operation overrides it
        raise NotImplementedError


class Register(_Op):
    """``telephony.externalCall.register`` of one leg. Its parameters are fixed once first sent (kept in the
    call's progress), so a retry is recognized by Bitrix24's 30-minute dedupe and returns the same CALL_ID."""

    op: Literal["register"] = "register"
    leg: int
    user_id: int
    phone_number: str
    call_type: int = Field(ge=1, le=5)  # 1 outgoing, 2 incoming, 3 incoming redirected, 4 callback
    line_number: str | None
    external_call_id: str
    call_start_date: str
    crm_create: bool = False
    crm_source: str | None = None

    @property
    def key(self) -> str:
        return f"register:{self.leg}"


class Show(_Op):
    op: Literal["show"] = "show"
    leg: int
    user_ids: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"show:{self.leg}"


class Hide(_Op):
    op: Literal["hide"] = "hide"
    leg: int
    user_ids: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"hide:{self.leg}"


class Finish(_Op):
    op: Literal["finish"] = "finish"
    leg: int
    user_id: int
    duration: int = Field(ge=0)
    status_code: str
    add_to_chat: bool = True

    @property
    def key(self) -> str:
        return f"finish:{self.leg}"


class FindClient(_Op):
    """Who the client is and who is responsible for them (``telephony.externalCall.searchCrmEntities``)."""

    op: Literal["find_client"] = "find_client"
    phone_number: str

    @property
    def key(self) -> str:
        return "find_client"


class CreateClient(_Op):
    """A new lead or contact for an unknown number (``crm.lead.add`` / ``crm.contact.add``)."""

    op: Literal["create_client"] = "create_client"
    kind: Literal["lead", "contact"]
    phone_number: str
    title: str
    source: str
    assigned_by: int

    @property
    def key(self) -> str:
        return "create_client"


class CreateTask(_Op):
    """A follow-up task for a missed call's owner (``tasks.task.add``). At most once: not retried if the
    answer was lost (a missing reminder is better than two)."""

    op: Literal["create_task"] = "create_task"
    responsible: int
    title: str
    description: str
    deadline: str
    crm_bindings: tuple[str, ...] = ()  # "L_4", "C_7": the client the task is about

    @property
    def key(self) -> str:
        return "create_task"


class AttachRecord(_Op):
    """The call's recording on its last leg (``telephony.externalCall.attachRecord``, after ``finish``), by the
    two-step upload: ``FILENAME`` → ``uploadUrl``, then the S3 object streamed to it. Repeating it is harmless
    (Bitrix24 keeps one record per CALL_ID, the last one attached)."""

    op: Literal["attach_record"] = "attach_record"
    leg: int
    call_id: str  # the leg's Bitrix24 CALL_ID
    object_key: str  # in the recordings bucket
    filename: str  # ``.wav`` or ``.mp3``: Bitrix24 refuses anything else

    @property
    def key(self) -> str:
        return "attach_record"


Operation = Annotated[
    Register | Show | Hide | Finish | FindClient | CreateClient | CreateTask | AttachRecord,
    Field(discriminator="op"),
]
