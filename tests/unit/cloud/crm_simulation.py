"""Drive the planner the way the pipeline does, against a tiny in-memory Bitrix24, and write down what it did.

Events are folded one at a time (as if each arrived in its own message), and after each the planner runs until
it has nothing more to do; every plan is one request. The in-memory portal answers like Bitrix24 does for
what the planner needs (CALL_IDs, a client found by number, new lead ids); the real emulator is exercised by
the integration tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cloud.calls.state import CallState, apply_event
from cloud.crm.directory import Directory, DirectoryUser
from cloud.crm.operations import (
    AttachRecord,
    CreateClient,
    CreateTask,
    FindClient,
    Finish,
    Hide,
    Operation,
    Register,
    Show,
)
from cloud.crm.planner import Plan, PlanContext, plan
from cloud.crm.progress import CrmProgress, apply_outcome, mark_attempted
from cloud.crm.settings import CrmSettings
from wire_protocol.call_events import CallEvent

#: 101 → Anna (11), 102 → Boris (12); the portal owner (1) has no phone.
DIRECTORY = Directory(
    users={
        1: DirectoryUser(id=1, name="Owner"),
        11: DirectoryUser(id=11, name="Anna", extension="101"),
        12: DirectoryUser(id=12, name="Boris", extension="102"),
    }
)


@dataclass
class MiniPortal:
    """Known clients by E.164 number: (entity type, id, responsible user)."""

    clients: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    next_id: int = 100

    def answer(self, op: Operation) -> Any:
        match op:
            case Register():
                found = self.clients.get(op.phone_number)
                result: dict[str, Any] = {"CALL_ID": f"externalCall.{op.external_call_id}"}
                if found:
                    result |= {"CRM_ENTITY_TYPE": found[0], "CRM_ENTITY_ID": found[1]}
                elif op.crm_create:
                    self.next_id += 1
                    self.clients[op.phone_number] = ("LEAD", self.next_id, op.user_id)
                    result |= {
                        "CRM_ENTITY_TYPE": "LEAD",
                        "CRM_ENTITY_ID": self.next_id,
                        "CRM_CREATED_LEAD": self.next_id,
                    }
                return result
            case FindClient():
                found = self.clients.get(op.phone_number)
                if not found:
                    return []
                return [{"CRM_ENTITY_TYPE": found[0], "CRM_ENTITY_ID": found[1], "ASSIGNED_BY_ID": found[2]}]
            case CreateClient():
                self.next_id += 1
                self.clients[op.phone_number] = (op.kind.upper(), self.next_id, op.assigned_by)
                return self.next_id
            case Show() | Hide():
                return True
            case Finish():
                return {"CALL_ID": "x"}
            case CreateTask():
                self.next_id += 1
                return {"task": {"id": str(self.next_id)}}
            case AttachRecord():
                self.next_id += 1
                return {"FILE_ID": self.next_id}
        raise AssertionError(op)


def describe(op: Operation) -> str:
    match op:
        case Register():
            extra = " crm_create" if op.crm_create else ""
            return f"register {op.leg} user={op.user_id} type={op.call_type} phone={op.phone_number}{extra}"
        case Show():
            return f"show {op.leg} {list(op.user_ids)}"
        case Hide():
            return f"hide {op.leg} {list(op.user_ids)}"
        case Finish():
            return f"finish {op.leg} user={op.user_id} {op.status_code} {op.duration}s"
        case FindClient():
            return f"find {op.phone_number}"
        case CreateClient():
            return f"create {op.kind} assigned={op.assigned_by}"
        case CreateTask():
            return f"task for={op.responsible} about={','.join(op.crm_bindings) or '-'}"
        case AttachRecord():
            return f"attach {op.leg} {op.call_id} {op.filename}"
    raise AssertionError(op)


@dataclass
class Outcome:
    requests: list[list[str]]  # one entry per request: the operations it carried
    progress: CrmProgress
    last_plan: Plan

    @property
    def flat(self) -> list[str]:
        return [op for request in self.requests for op in request]


def run(
    events: Iterable[CallEvent],
    *,
    settings: CrmSettings | None = None,
    portal: MiniPortal | None = None,
    context: dict[str, Any] | None = None,
    tenant: str = "t",
    agent_id: str = "a1",
    burst: timedelta | None = None,
) -> dict[str, Outcome]:
    """Per call id: the requests made while the call's events arrived one by one, or (``burst``) in groups of
    events less than ``burst`` apart, as the agent batches what one AMI read produced."""
    portal = portal or MiniPortal()
    ctx = PlanContext(settings=settings or CrmSettings(), directory=DIRECTORY, **(context or {}))
    states: dict[str, CallState] = {}
    outcomes: dict[str, Outcome] = {}
    pending: list[CallEvent] = []

    def deliver() -> None:
        for call_id in dict.fromkeys(e.call_id for e in pending):
            outcome = outcomes.setdefault(call_id, Outcome([], CrmProgress(), Plan()))
            outcome.progress, outcome.last_plan = settle(states[call_id], outcome, ctx, portal)
            unmapped = tuple(dict.fromkeys([*outcome.progress.unmapped_extensions, *outcome.last_plan.unmapped]))
            outcome.progress = outcome.progress.model_copy(update={"unmapped_extensions": unmapped})
        pending.clear()

    for n, event in enumerate(events, start=1):
        if pending and (burst is None or event.at - pending[-1].at >= burst):
            deliver()
        state = states.get(event.call_id) or CallState(tenant=tenant, agent_id=agent_id, call_id=event.call_id)
        states[event.call_id] = apply_event(state, n, event)
        pending.append(event)
    deliver()
    return outcomes


def settle(state: CallState, outcome: Outcome, ctx: PlanContext, portal: MiniPortal) -> tuple[CrmProgress, Plan]:
    progress = outcome.progress
    for _ in range(20):
        step = plan(state, progress, ctx)
        if not step.ops:
            return progress, step
        outcome.requests.append([describe(op) for op in step.ops])
        progress = mark_attempted(progress, step.ops)
        for op in step.ops:
            progress = apply_outcome(progress, op, portal.answer(op))
    raise AssertionError(f"the planner does not settle: {outcome.requests[-3:]}")


def only(outcomes: dict[str, Outcome], ids: Sequence[str] | None = None) -> Outcome:
    assert len(outcomes) == 1, sorted(outcomes)
    return next(iter(outcomes.values()))
