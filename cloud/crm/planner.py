"""The CRM call logic: from a call (what happened on the PBX) and its progress (what Bitrix24 already knows),
decide the next Bitrix24 operations. Pure: no I/O, no clock; the same inputs give the same plan.

The planner is level-based, not edge-based: it does not react to "a ringing event arrived" but compares the
call as it stands with what Bitrix24 shows, and returns the difference. So events that arrive late, twice or
in one burst need no special case; two rings folded before the first step cost one request, not two; a call
whose operations were held up (Bitrix24 down, rate limited) is brought straight to its final state when it
resumes, without opening cards for a call that is long over.

One plan is one request: the operations it returns are sent together as one ``batch`` (a register and the
operations on the call it creates are tied by a ``$result[...]`` reference). Rules, in the words of
``docs/crm-logic.md``:

* A call is registered once per *leg*: the first leg from its start, one more leg per transfer, each owned by
  the person who had the call, each finished with that person's talk time; the call ends owned by whoever
  had it last.
* Cards: open for the users whose phones ring (card mode ``ring``) and for whoever talks (modes ``ring`` and
  ``answer``); closed for the others as soon as they stop ringing; ``finish`` closes the rest.
* A missed call's owner: the client's responsible manager → the last user whose phone rang → the default
  user (the order is a setting). An extension without a Bitrix24 user never blocks a call.
* A click-to-call call finishes the CALL_ID Bitrix24 gave and is never registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cloud.calls.state import CallState

from .directory import Directory
from .numbers import PhoneNumber, normalize
from .operations import AttachRecord, CreateClient, CreateTask, FindClient, Finish, Hide, Operation, Register, Show
from .progress import CrmProgress
from .settings import CrmSettings

__all__ = ["Leg", "Plan", "PlanContext", "RecordingRef", "legs_of", "plan", "status_code"]

#: ``TYPE`` of ``telephony.externalCall.register``.
OUTGOING, INCOMING, INCOMING_REDIRECTED = 1, 2, 3


@dataclass(frozen=True)
class RecordingRef:
    """The call's recording as the cloud holds it (``cloud.recordings``)."""

    state: str  # requested (being uploaded) | uploaded | failed | expired
    object_key: str
    filename: str


@dataclass(frozen=True)
class PlanContext:
    """Everything besides the call that decides its operations."""

    settings: CrmSettings
    directory: Directory
    #: The Bitrix24 CALL_ID of a click-to-call (from ``ONEXTERNALCALLSTART``), when the call is one.
    click_to_call_id: str | None = None
    #: That CALL_ID was already finished as failed (the PBX refused the click-to-call, ``cloud.clicktocall``):
    #: the attempt is in the CRM; only a call that turned into a conversation after all is registered anew.
    click_to_call_finished: bool = False
    #: Users who may have cards under the license (``None``: everyone).
    card_users: frozenset[int] | None = None
    calls_to_crm: bool = True
    lead_creation: bool = True
    responsible_routing: bool = True
    #: Recordings go to the CRM: the settings' ``recordings.enabled`` and the license's ``recordings``.
    recordings: bool = False
    #: The call's recording, once the agent offered one (``None``: it never did, nothing to wait for).
    recording: RecordingRef | None = None


@dataclass(frozen=True)
class Plan:
    ops: list[Operation] = field(default_factory=list)
    #: Nothing can be done until something outside the call changes (settings, the license).
    blocked: str | None = None
    #: The call is deliberately not sent to the CRM.
    skipped: str | None = None
    #: Every operation the call will ever need is done.
    done: bool = False
    unmapped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Leg:
    """A stretch of the call owned by one person: the whole call, or the part between two transfers."""

    index: int
    owner: str | None  # extension; None while an inbound call has not been answered
    start: datetime
    end: datetime | None  # None while it is the current leg of a call in progress
    talk_from: datetime | None  # when its owner started talking (None: never did)


def legs_of(call: CallState) -> list[Leg]:
    """The call's legs; transfers whose time is unknown (a summary-only, backfilled call) do not split it."""
    assert call.started_at is not None
    summary = call.summary
    transfers = sorted(
        ((int(seq), t, call.transfer_times[seq]) for seq, t in call.transfers.items() if seq in call.transfer_times),
        key=lambda item: item[0],
    )
    end = call.ended_at
    first_owner = call.caller_extension if call.direction in ("outbound", "internal") else call.answered_by
    talk_from = call.answered_at if (call.answered_at or call.answered_by) else None
    if talk_from is None and call.answered_by is not None:
        talk_from = call.started_at
    if not transfers:
        owner = first_owner
        if summary is not None and summary.final_extension and call.direction == "inbound" and talk_from:
            owner = summary.final_extension  # a pickup or a transfer the agent saw only in the summary
        return [Leg(0, owner, call.started_at, end, talk_from)]
    legs = [Leg(0, first_owner, call.started_at, transfers[0][2], talk_from)]
    for i, (_, transfer, at) in enumerate(transfers, start=1):
        leg_end = transfers[i][2] if i < len(transfers) else end
        owner = transfer.to
        last = i == len(transfers)
        talked = not last or summary is None or summary.final_extension == transfer.to
        legs.append(Leg(i, owner, at, leg_end, at if talked else None))
    return legs


def status_code(call: CallState, leg: Leg) -> str:
    """``STATUS_CODE`` of ``finish``: 200 talked; 304 missed; 603-S the caller gave up an outgoing call;
    486 busy; 503 the call could not be placed."""
    if leg.talk_from is not None:
        return "200"
    if leg.index > 0:
        return "304"  # a transfer nobody took
    result = call.result
    if result == "busy":
        return "486"
    if result == "failed":
        return "503"
    if call.direction == "inbound":
        return "304"
    return "603-S"


def _seconds(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(0, round((end - start).total_seconds()))


class _Planner:
    def __init__(self, call: CallState, progress: CrmProgress, ctx: PlanContext) -> None:
        self.call, self.progress, self.ctx = call, progress, ctx
        self.settings, self.directory = ctx.settings, ctx.directory
        self.unmapped: list[str] = []
        self.number: PhoneNumber = normalize(call.external_number, self.settings.default_country)

    def user(self, extension: str | None) -> int | None:
        user = self.directory.user_of(extension, self.settings)
        if extension is not None and user is None and extension not in self.unmapped:
            self.unmapped.append(extension)
        return user

    def may_have_card(self, user: int) -> bool:
        return self.ctx.card_users is None or user in self.ctx.card_users

    def phone(self) -> str:
        if self.call.direction == "internal":
            target = next(iter(self.call.rang), None) or (
                self.call.summary.final_extension if self.call.summary else None
            )
            return target or self.settings.anonymous_number
        if self.number.kind == "anonymous" or not self.number.value:
            return self.settings.anonymous_number
        return self.number.value

    # -- the plan -------------------------------------------------------------------------------------------

    def plan(self) -> Plan:
        call = self.call
        if call.started_at is None or call.direction is None:
            return Plan()  # the call's start has not arrived yet
        if call.direction == "internal" and not self.settings.register_internal:
            return Plan(skipped="internal calls are not registered (settings)", done=True)
        if call.direction == "outbound" and not self.settings.register_outbound:
            return Plan(skipped="outbound calls are not registered (settings)", done=True)
        if self.ctx.click_to_call_finished and call.answered_at is None:
            return Plan(skipped="a click-to-call already finished as failed", done=True)
        if not self.ctx.calls_to_crm:
            return Plan(blocked="the license does not include calls to the CRM; they wait until it does")
        ops: list[Operation] = []
        blocked: str | None = None
        legs = legs_of(call)
        ended = call.summary is not None
        for leg in legs:
            leg_ops, blocked = self.leg_ops(leg, current=leg.end is None, ended=ended)
            if blocked is not None and not leg_ops:
                break
            ops += leg_ops
            if any(isinstance(op, FindClient) for op in leg_ops):
                break  # the owner of this leg depends on the answer
        done = ended and not ops and blocked is None and all(self.progress.leg(leg.index).finished for leg in legs)
        if done:
            record = self.record_ops(legs[-1])
            if record is not None:  # the recording is still to come ([]) or to attach
                return Plan(ops=record, unmapped=tuple(self.unmapped))
        return Plan(ops=ops, blocked=blocked, done=done, unmapped=tuple(self.unmapped))

    def record_ops(self, last: Leg) -> list[Operation] | None:
        """After the last leg's finish (Bitrix24 attaches only to finished calls): the whole call's recording
        (one file per Linkedid, transfers and queues included) on the last leg. ``[]``: it is being uploaded;
        ``None``: nothing (more) to do."""
        recording, progress = self.ctx.recording, self.progress
        if not self.ctx.recordings or recording is None or progress.record_attached == recording.object_key:
            return None
        if recording.state == "requested":
            return []
        if recording.state != "uploaded":
            return None  # failed on the agent or expired: there is nothing to attach
        adopted = self.ctx.click_to_call_id if last.index == 0 else None
        call_id = progress.leg(last.index).call_id or adopted
        if call_id is None:
            return None
        op = AttachRecord(leg=last.index, call_id=call_id, object_key=recording.object_key, filename=recording.filename)
        return [op]

    def leg_ops(self, leg: Leg, *, current: bool, ended: bool) -> tuple[list[Operation], str | None]:
        progress = self.progress.leg(leg.index)
        if progress.finished:
            return [], None
        adopted = self.ctx.click_to_call_id if leg.index == 0 and not progress.registration_lost else None
        call_id = progress.call_id or adopted
        ops: list[Operation] = []
        visible = self.visible(leg) if current and not ended else set()
        closing = not current or ended
        if call_id is None:
            if self.call.direction == "internal" and not self.call.rang and not closing:
                return [], None  # registered under the number it rings, once that is known
            if not (visible or closing or leg.talk_from is not None or (leg.index == 0 and self.registers_at_start())):
                return [], None  # nobody needs to see it yet: register with the first card
            register = progress.registered_with
            if register is None:
                owner, blocked = self.register_user(leg, closing)
                if owner is None:
                    return ([FindClient(phone_number=self.number.value)], None) if blocked == "find" else ([], blocked)
                register = self.register_op(leg, owner)
            ops.append(register)
        shown = set(progress.visible_to)
        if not closing:
            if visible - shown:
                ops.append(Show(leg=leg.index, user_ids=tuple(sorted(visible - shown))))
            if shown - visible:
                ops.append(Hide(leg=leg.index, user_ids=tuple(sorted(shown - visible))))
            return ops, None
        finisher, blocked = self.finish_user(leg)
        if finisher is None:
            if blocked == "find":
                return [*ops, FindClient(phone_number=self.number.value)], None
            return ops, blocked
        ops += self.client_ops(leg, finisher)
        if any(isinstance(op, FindClient) for op in ops):
            return ops, None
        ops.append(
            Finish(
                leg=leg.index,
                user_id=finisher,
                duration=self.talk_seconds(leg),
                status_code=status_code(self.call, leg),
                add_to_chat=self.settings.add_to_chat,
            )
        )
        ops += self.task_ops(leg, finisher, ops)
        return ops, None

    def task_ops(self, leg: Leg, owner: int, batch: list[Operation]) -> list[Operation]:
        """The missed-call follow-up task, in the finishing request (after any client it creates, so the task
        can name it only when Bitrix24 already knew the client)."""
        call, progress = self.call, self.progress
        if not self.settings.missed_call_task or progress.task_attempted or call.summary is None:
            return []
        if leg.index != 0 or leg.talk_from is not None or call.direction != "inbound":
            return []
        client = (
            [progress.leg(0).crm_entity_type, progress.leg(0).crm_entity_id]
            if progress.leg(0).crm_entity_type
            else [progress.client.entity_type, progress.client.entity_id]
            if progress.client and progress.client.entity_type
            else [None, None]
        )
        prefix = {"LEAD": "L_", "CONTACT": "C_", "COMPANY": "CO_"}.get(str(client[0]))
        bindings = (f"{prefix}{client[1]}",) if prefix and client[1] else ()
        number = self.number.value or self.settings.anonymous_number
        deadline = call.summary.ended_at + timedelta(minutes=self.settings.missed_task_deadline_minutes)
        rang = ", ".join(call.rang) or "-"
        return [
            CreateTask(
                responsible=owner,
                title=self.settings.missed_task_title.replace("{number}", number),
                description=f"{number} → {call.line or '-'}; rang: {rang}; {call.summary.ended_at.isoformat()}",
                deadline=deadline.isoformat(timespec="seconds"),
                crm_bindings=bindings,
            )
        ]

    def registers_at_start(self) -> bool:
        """Outgoing calls are registered as they start (the caller's card opens at once in mode ``ring``)."""
        return self.call.direction in ("outbound", "internal")  # (internal: once the callee rings)

    def visible(self, leg: Leg) -> set[int]:
        """Users whose card should be open on the current leg of a call in progress."""
        users: set[int] = set()
        colleagues_ringing = [] if self.call.direction == "internal" else self.call.ringing_now
        for extension in colleagues_ringing:  # an internal call is the caller's; the callee gets no card
            user = self.user(extension)
            if user is not None and self.settings.card_mode_of(user) == "ring" and self.may_have_card(user):
                users.add(user)
        owner = self.user(leg.owner)
        if owner is not None and self.may_have_card(owner):
            mode = self.settings.card_mode_of(owner)
            if mode == "ring" or (mode == "answer" and leg.talk_from is not None):
                users.add(owner)
        return users

    def register_user(self, leg: Leg, closing: bool) -> tuple[int | None, str | None]:
        """Who a leg is registered to: its owner, else the first user whose phone rang, else (a call that
        ended unanswered) the missed call's owner."""
        candidates = [leg.owner]
        if leg.index == 0:
            candidates += list(self.call.rang)
        for extension in candidates:
            user = self.user(extension)
            if user is not None:
                return user, None
        if closing and leg.talk_from is None and leg.index == 0:
            return self.missed_owner()
        return self.default_or_blocked()

    def finish_user(self, leg: Leg) -> tuple[int | None, str | None]:
        if leg.talk_from is not None:
            user = self.user(leg.owner)
            if user is not None:
                return user, None
            registered = self.progress.leg(leg.index).registered_with
            return (registered.user_id, None) if registered else self.default_or_blocked()
        if leg.index == 0 and self.call.direction == "inbound":
            return self.missed_owner()
        caller = self.user(leg.owner)
        if caller is not None:
            return caller, None
        registered = self.progress.leg(leg.index).registered_with
        return (registered.user_id, None) if registered else self.default_or_blocked()

    def default_or_blocked(self) -> tuple[int | None, str | None]:
        default = self.directory.default_user(self.settings, self.call.line)
        if default is not None:
            return default, None
        return None, "no Bitrix24 user can own this call: map the extensions or set a default user"

    def missed_owner(self) -> tuple[int | None, str | None]:
        """The missed-call policy; ``(None, "find")`` when the client's responsible must be looked up first."""
        for rule in self.settings.missed_owner:
            if rule == "responsible" and self.ctx.responsible_routing and self.number.is_client_number:
                client = self.progress.client
                registered = self.progress.leg(0)
                if registered.created_lead is not None:
                    continue  # a lead created by this call: its responsible is whoever the call ends with
                if client is None:
                    if registered.call_id is not None and registered.crm_entity_type is None:
                        continue  # Bitrix24 matched no client when it registered the call
                    return None, "find"
                if client.responsible_id is not None and self.directory.is_active(client.responsible_id):
                    return client.responsible_id, None
            elif rule == "last_rang":
                for extension in reversed(self.call.rang):
                    user = self.user(extension)
                    if user is not None:
                        return user, None
            elif rule == "default":
                default = self.directory.default_user(self.settings, self.call.line)
                if default is not None:
                    return default, None
        return self.default_or_blocked()

    def register_op(self, leg: Leg, user: int) -> Register:
        call = self.call
        inbound = call.direction == "inbound"
        crm_create = (
            inbound
            and leg.index == 0
            and self.settings.create_client == "always"
            and self.settings.client_kind == "lead"
            and self.ctx.lead_creation
            and self.number.is_client_number
        )
        external = f"{call.agent_id}:{call.call_id}" + (f":{leg.index}" if leg.index else "")
        return Register(
            leg=leg.index,
            user_id=user,
            phone_number=self.phone(),
            call_type=(INCOMING if leg.index == 0 else INCOMING_REDIRECTED) if inbound else OUTGOING,
            line_number=call.line,
            external_call_id=external,
            call_start_date=leg.start.isoformat(timespec="seconds"),
            crm_create=crm_create,
            crm_source=self.settings.lead_source(call.line) if crm_create else None,
        )

    def client_ops(self, leg: Leg, owner: int) -> list[Operation]:
        """A lead or contact for an unknown number, before the call's first leg is finished."""
        settings = self.settings
        call = self.call
        if leg.index != 0 or call.direction != "inbound" or not self.number.is_client_number:
            return []
        if settings.create_client == "never" or not self.ctx.lead_creation:
            return []
        missed = leg.talk_from is None
        if settings.create_client == "on_missed" and not missed:
            return []
        if settings.create_client == "always" and settings.client_kind == "lead":
            return []  # the register created it (CRM_CREATE)
        progress = self.progress
        if progress.created_client is not None:
            return []
        registered = progress.leg(0)
        if registered.crm_entity_type is not None or registered.created_lead is not None:
            return []
        if progress.client is not None and progress.client.entity_type is not None:
            return []
        if progress.client_create_attempted and progress.client is None:
            return [FindClient(phone_number=self.number.value)]  # did the interrupted attempt create it?
        verb = "Missed call" if missed else "Call"
        return [
            CreateClient(
                kind=settings.client_kind,
                phone_number=self.number.value,
                title=f"{verb} from {self.number.value}",
                source=settings.lead_source(call.line),
                assigned_by=owner,
            )
        ]

    def talk_seconds(self, leg: Leg) -> int:
        summary = self.call.summary
        if leg.talk_from is None:
            return 0
        if summary is not None and len(legs_of(self.call)) == 1:
            return summary.talk_seconds  # the agent's own figure for an untransferred call
        return _seconds(leg.talk_from, leg.end)


def plan(call: CallState, progress: CrmProgress, ctx: PlanContext) -> Plan:
    """The next Bitrix24 operations for ``call`` (one request's worth); see the module docstring."""
    return _Planner(call, progress, ctx).plan()
