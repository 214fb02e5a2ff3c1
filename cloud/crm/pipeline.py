"""Where stored call events become Bitrix24 requests, exactly once per call, whatever fails.

Each call has an item in ``crm_calls``: its :class:`~cloud.crm.progress.CrmProgress`, a ``wanted`` counter that
every stored event bumps (:func:`request_crm`), the ``done`` value last fully processed, a lease, and while
work is pending a ``due_at`` that puts it in the sweeper's index.

:func:`process_call` takes the lease (a conditional write: one worker per call at a time, in any number of
Lambdas), reads the call, and plans and executes steps until the planner has nothing to do, storing the
progress *before* each request (what is about to be sent) and after it (what came back). It releases only if
``wanted`` did not move meanwhile; otherwise it goes round again, so an event stored while a step was running
is never left unprocessed. When Bitrix24 cannot be reached, rate-limits or loses authorization, the call keeps
its progress and its ``due_at`` moves forward with backoff; :func:`sweep` (scheduled, and run by cloud-local)
picks it up then, and also any call whose worker died mid-way (its lease expires, its ``due_at`` stays).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cloud import clock
from cloud.bitrix24.errors import AuthorizationLost, Bitrix24Error, PortalUnavailable, RateLimited
from cloud.calls.state import CallState, lost_summary
from cloud.calls.store import get_call, remembered_call
from cloud.runtime import Runtime
from cloud.storage.dynamo import error_code, from_item, to_item

from .directory import Directory, load_directory, needs_refresh, refresh_directory, save_directory
from .executor import RecordUpload, RestClient, execute
from .planner import Plan, PlanContext, RecordingRef, plan
from .progress import CrmProgress, mark_attempted
from .settings import CrmSettings, load_settings

__all__ = [
    "CrmServices",
    "Entitled",
    "ProcessResult",
    "call_key",
    "crm_status",
    "forget_cached",
    "licensed",
    "lost_reason",
    "process_call",
    "request_crm",
    "sweep",
    "sweep_for",
]

log = logging.getLogger("cloud.crm")

LEASE = timedelta(seconds=90)  # longer than one pass can take; a dead worker's call waits this long
SAFETY_DELAY = timedelta(seconds=30)  # a requested call not processed by then is the sweeper's
BLOCKED_RECHECK = timedelta(minutes=10)
MAX_BACKOFF = timedelta(minutes=15)
#: A rate limit is Bitrix24 up and saying "slower" (its bucket drains 2 requests/s): never minutes away for it.
RATE_LIMITED_MAX_BACKOFF = timedelta(seconds=60)
MAX_REFUSALS = 3
MAX_STEPS = 12  # per pass; a call needs a handful
#: Calls still open are looked at again this often: one whose PBX call was lost gets finished by the cloud.
OPEN_RECHECK = timedelta(minutes=15)
#: An open call is lost when its agent has not been seen for this long (it would have reported the end)...
AGENT_GONE_AFTER = timedelta(minutes=30)
#: ... or when nothing happened on it for this long even though its agent is alive (a hangup it never saw).
SILENT_CALL_LIMIT = timedelta(hours=6)
DUE_SHARD = "due"


@dataclass(frozen=True)
class Entitled:
    """What the tenant's license lets the CRM logic do (``cloud.licensing`` decides; all on by default)."""

    calls_to_crm: bool = True
    lead_creation: bool = True
    responsible_routing: bool = True
    card_users: frozenset[int] | None = None
    recordings: bool = True


def licensed(rt: Runtime, tenant: str, candidates: list[int], now: datetime) -> Entitled:
    """The tenant's license (``cloud.licensing``, the cached lease: no server call) as the planner needs it;
    ``candidates``: the users this call could show a card to, in the order they rang."""
    from cloud import licensing

    granted = _cached(rt, tenant, "license", lambda: licensing.entitlements(rt, tenant, now))
    card_users: frozenset[int] | None = None
    if granted.limits.users_with_cards is not None and candidates:
        keep = licensing.users_keeping_cards(rt, tenant, [str(user) for user in candidates], now)
        card_users = frozenset(int(user) for user in keep)
    return Entitled(
        calls_to_crm=granted.allows("calls_to_crm"),
        lead_creation=granted.allows("lead_creation"),
        responsible_routing=granted.allows("responsible_routing"),
        card_users=card_users,
        recordings=granted.allows("recordings"),
    )


def _client_for(rt: Runtime, tenant: str) -> RestClient:
    """The tenant's Bitrix24 client, kept a few seconds per container (it reads the tenant and its tokens once;
    a token another container rotated meanwhile is re-read on ``expired_token``)."""
    from cloud.bitrix24.client import client_for

    client: RestClient = _cached(rt, tenant, "client", lambda: client_for(rt, tenant))
    return client


def _record_upload(rt: Runtime, client: RestClient) -> RecordUpload | None:
    from cloud.recordings.attach import record_upload

    return record_upload(rt, client)


def _recording(rt: Runtime, tenant: str, call: CallState) -> RecordingRef | None:
    from cloud.recordings.store import get_recording

    item = get_recording(rt, tenant, call.agent_id, call.call_id)
    return None if item is None else RecordingRef(item.state, item.key, item.filename)


@dataclass
class CrmServices:
    """The pipeline's collaborators, injectable: the Bitrix24 client, the clock, the license, the uploader of
    recordings."""

    client_for: Callable[[Runtime, str], RestClient] = _client_for
    record_upload: Callable[[Runtime, RestClient], RecordUpload | None] = _record_upload
    now: Callable[[], datetime] = clock.now
    entitled: Callable[[Runtime, str, list[int], datetime], Entitled] = licensed
    random: Callable[[], float] = field(default_factory=lambda: random.Random().random)


@dataclass
class ProcessResult:
    status: str  # done | waiting | blocked | skipped | deferred | busy | failed | missing
    requests: int = 0
    detail: str | None = None


def call_key(agent_id: str, call_id: str) -> str:
    return f"{agent_id}#{call_id}"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def request_crm(
    rt: Runtime, tenant: str, agent_id: str, call_id: str, now: datetime, call_version: int | None = None
) -> None:
    """Note that ``call`` has new events to reflect in Bitrix24 (after they are stored, before processing).

    ``call_version``: the version of the call state the caller just stored, when it knows it; kept in the item's
    ``versions`` so a pass can tell whether the state its container wrote is the newest one (see
    :func:`_call_for_pass`).
    """
    values: dict[str, Any] = {
        ":one": 1,
        ":a": agent_id,
        ":c": call_id,
        ":d": DUE_SHARD,
        ":due": _iso(now + SAFETY_DELAY),
    }
    versions = ""
    if call_version is not None:
        values[":v"] = {call_version}
        versions = ", versions :v"
    rt.dynamodb.update_item(
        TableName=rt.tables.crm_calls,
        Key=to_item({"tenant": tenant, "call_key": call_key(agent_id, call_id)}),
        UpdateExpression=f"ADD wanted :one{versions} SET agent_id = :a, call_id = :c, due_shard = :d, due_at = :due",
        ExpressionAttributeValues=to_item(values),
    )


def _call_for_pass(rt: Runtime, tenant: str, agent_id: str, call_id: str, item: dict[str, Any]) -> CallState | None:
    """The call as a pass must see it: the state this container stored last for it when that is provably the
    newest one any request was made for, else read. Every ``wanted`` bump that named a version added it to
    ``versions`` (each stored version is new), so ``len(versions) == wanted`` means no request came without one,
    and the largest is the newest requested. An event stored meanwhile whose request lands later moves ``wanted``
    before the release, so the pass goes round again (and reads), exactly as when a read is outdated."""
    written = remembered_call(rt, tenant, agent_id, call_id)
    versions = item.get("versions") or set()
    complete = bool(versions) and len(versions) == int(item.get("wanted", 0))
    if written is not None and complete and written.version == max(versions):
        return written
    return get_call(rt, tenant, agent_id, call_id)


class _LeaseLost(Exception):
    """Another worker took the call over (this one outlived its lease)."""


class _Worker:
    def __init__(self, rt: Runtime, services: CrmServices, tenant: str, key: str) -> None:
        self.rt, self.services, self.tenant, self.key = rt, services, tenant, key
        self.me = uuid.uuid4().hex
        self.latest: CrmProgress | None = None  # the progress after the last step, for a pass cut short
        self.table = rt.tables.crm_calls
        self.item_key = to_item({"tenant": tenant, "call_key": key})

    def _update(self, expression: str, values: dict[str, Any], condition: str, **extra: Any) -> dict[str, Any]:
        response = self.rt.dynamodb.update_item(
            TableName=self.table,
            Key=self.item_key,
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=to_item(values),
            **extra,
        )
        return from_item(response.get("Attributes", {}))

    def acquire(self) -> dict[str, Any] | None:
        now = self.services.now()
        try:
            return self._update(
                "SET lease_owner = :me, lease_until = :until",
                {":me": self.me, ":until": _iso(now + LEASE), ":now": _iso(now)},
                "attribute_exists(call_key) AND (attribute_not_exists(lease_until) OR lease_until < :now)",
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise

    def save(self, progress: CrmProgress, status: str, detail: str | None = None) -> None:
        try:
            self._update(
                "SET progress = :p, crm_status = :s, crm_detail = :d, requests = :r, lease_until = :until",
                {
                    ":p": progress.model_dump_json(),
                    ":s": status,
                    ":d": detail or "",
                    ":r": progress.requests,
                    ":until": _iso(self.services.now() + LEASE),
                    ":me": self.me,
                },
                "lease_owner = :me",
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise _LeaseLost from None
            raise

    def release(
        self, wanted: int, *, due: datetime | None, progress: CrmProgress, status: str, detail: str | None
    ) -> bool:
        """Store the outcome and give the lease back, in one write; ``False`` if ``wanted`` moved (more events
        arrived: nothing is written, go round again)."""
        values: dict[str, Any] = {
            ":me": self.me,
            ":w": wanted,
            ":p": progress.model_dump_json(),
            ":s": status,
            ":det": detail or "",
            ":r": progress.requests,
            ":zero": 0,
        }
        # Bitrix24 answered this pass: a later deferral's backoff starts over (attempts counts failures in a row)
        outcome = "done = :w, progress = :p, crm_status = :s, crm_detail = :det, requests = :r, attempts = :zero"
        if due is None:
            expression = f"SET {outcome} REMOVE lease_owner, lease_until, due_at, due_shard"
        else:
            expression = f"SET {outcome}, due_shard = :d, due_at = :due REMOVE lease_owner, lease_until"
            values |= {":d": DUE_SHARD, ":due": _iso(due)}
        try:
            self._update(expression, values, "lease_owner = :me AND wanted = :w")
            return True
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        current = self.read()
        if current.get("lease_owner") != self.me:
            raise _LeaseLost
        return False

    def defer(self, due: datetime, attempts: int) -> None:
        try:
            self._update(
                "SET due_shard = :d, due_at = :due, attempts = :n REMOVE lease_owner, lease_until",
                {":me": self.me, ":d": DUE_SHARD, ":due": _iso(due), ":n": attempts},
                "lease_owner = :me",
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def read(self) -> dict[str, Any]:
        response = self.rt.dynamodb.get_item(TableName=self.table, Key=self.item_key, ConsistentRead=True)
        return from_item(response.get("Item", {}))


#: How long a warm container trusts what it read of a tenant's settings, user map and license: a change made
#: elsewhere (the settings page) reaches calls within this; the ring-to-card path saves three reads.
CACHE_SECONDS = 5.0
_cache_lock = threading.Lock()


def _cached(rt: Runtime, tenant: str, kind: str, load: Callable[[], Any]) -> Any:
    key, now = (tenant, kind), time.monotonic()
    with _cache_lock:
        hit = rt.memo.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    value = load()
    with _cache_lock:
        rt.memo[key] = (now, value)
    return value


def forget_cached(rt: Runtime, tenant: str) -> None:
    """Drop what this container cached about ``tenant`` (after it changed something itself)."""
    with _cache_lock:
        for key in [k for k in rt.memo if k[0] == tenant]:
            del rt.memo[key]


def _context(rt: Runtime, services: CrmServices, tenant: str, call: CallState, client: RestClient) -> PlanContext:
    settings: CrmSettings = _cached(rt, tenant, "settings", lambda: load_settings(rt, tenant))
    directory: Directory = _cached(rt, tenant, "directory", lambda: load_directory(rt, tenant))
    now = services.now()
    extensions = {*call.rang, *(e for e in (call.answered_by, call.caller_extension) if e)}
    unknown = any(directory.user_of(e, settings) is None for e in extensions if e not in settings.extension_overrides)
    if needs_refresh(directory, now, unknown_extension=unknown):
        try:
            directory = refresh_directory(client, directory, now)
            save_directory(rt, tenant, directory)
            forget_cached(rt, tenant)
        except Bitrix24Error as exc:
            if directory.fetched_at is None:
                raise
            log.warning("tenant %s: user map not refreshed (%s); using the cached one", tenant, exc)
    candidates = [
        user
        for user in dict.fromkeys(
            directory.user_of(e, settings) for e in [*call.rang, call.answered_by, call.caller_extension]
        )
        if user is not None
    ]
    entitled = services.entitled(rt, tenant, candidates, now)
    click_to_call_id = None
    click_to_call_finished = False
    if call.command_id:
        from cloud.agents.commands import claim_crm_finish, get_command

        command = get_command(rt, tenant, call.command_id) or {}
        if command.get("agent_id") == call.agent_id and command.get("crm_call_id"):
            # the click-to-call failure path may have finished this CALL_ID already (cloud.clicktocall)
            owner = command.get("crm_finisher") or claim_crm_finish(rt, tenant, call.command_id, "pipeline")
            if owner == "failure":
                click_to_call_finished = True
            else:
                click_to_call_id = command["crm_call_id"]
    return PlanContext(
        settings=settings,
        directory=directory,
        click_to_call_id=click_to_call_id,
        click_to_call_finished=click_to_call_finished,
        card_users=entitled.card_users,
        calls_to_crm=entitled.calls_to_crm,
        lead_creation=entitled.lead_creation,
        responsible_routing=entitled.responsible_routing,
        recordings=settings.recordings.enabled and entitled.recordings,
        recording=_recording(rt, tenant, call) if call.summary is not None else None,
    )


def _adopt_click_to_call(progress: CrmProgress, ctx: PlanContext) -> CrmProgress:
    """A click-to-call's first leg has Bitrix24's CALL_ID from the start: the executor addresses ``show`` and
    ``finish`` by the progress's CALL_ID (unless Bitrix24 lost that registration and the leg is registered anew)."""
    leg = progress.leg(0)
    if ctx.click_to_call_id and leg.call_id is None and not leg.registration_lost:
        return progress.with_leg(0, call_id=ctx.click_to_call_id)
    return progress


def _record_unmapped(rt: Runtime, tenant: str, extensions: tuple[str, ...], now: datetime) -> None:
    """Remember extensions with no user for the settings page (at most once an hour each: a write per call
    would be a write per ring)."""
    cached: Directory = _cached(rt, tenant, "directory", lambda: load_directory(rt, tenant))
    if all(e in cached.unmapped and now - cached.unmapped[e] < timedelta(hours=1) for e in extensions):
        return
    directory = load_directory(rt, tenant)
    unmapped = {**directory.unmapped, **dict.fromkeys(extensions, now)}
    save_directory(rt, tenant, directory.model_copy(update={"unmapped": unmapped}))
    forget_cached(rt, tenant)


def _backoff(services: CrmServices, attempts: int, floor: float = 1.0, ceiling: timedelta = MAX_BACKOFF) -> timedelta:
    seconds = min(ceiling.total_seconds(), max(floor, 2.0 ** min(attempts, 12)))
    return timedelta(seconds=seconds * (0.5 + services.random() / 2))


def process_call(
    rt: Runtime, tenant: str, agent_id: str, call_id: str, services: CrmServices | None = None
) -> ProcessResult:
    """Bring the call's Bitrix24 side up to date; see the module docstring. Never raises for Bitrix24 trouble."""
    services = services or CrmServices()
    worker = _Worker(rt, services, tenant, call_key(agent_id, call_id))
    item = worker.acquire()
    if item is None:
        if not worker.read():
            return ProcessResult("missing", detail="no CRM work was requested for this call")
        return ProcessResult("busy")  # another worker has it, and will see our ``wanted`` bump
    progress = CrmProgress.model_validate_json(item["progress"]) if item.get("progress") else CrmProgress()
    attempts = int(item.get("attempts", 0))
    requests_before = progress.requests
    try:
        for _ in range(10):  # passes: one more each time events arrive during the previous one
            wanted = int(item.get("wanted", 0))
            call = _call_for_pass(rt, tenant, agent_id, call_id, item)
            if call is None:
                worker.release(wanted, due=None, progress=progress, status="missing", detail="no such call")
                return ProcessResult("missing", detail="no such call")
            lost = lost_reason(rt, tenant, call, services.now())
            if lost is not None and call.last_event_at is not None:
                summary = lost_summary(call, call.last_event_at)
                call = call.model_copy(
                    update={
                        "summary": summary,
                        "ended_at": summary.ended_at,
                        "end_reason": "lost",
                        "result": summary.result,
                    }
                )
            client = services.client_for(rt, tenant)
            ctx = _context(rt, services, tenant, call, client)
            progress = _adopt_click_to_call(progress, ctx)
            upload = services.record_upload(rt, client)
            progress, step, stale = _run_steps(worker, client, call, progress, ctx, upload)
            _record_unmapped(rt, tenant, step.unmapped, services.now())
            if stale:  # Bitrix24 refused a user we mapped: read the users again and replan
                forget_cached(rt, tenant)
                save_directory(rt, tenant, ctx.directory.model_copy(update={"fetched_at": None}))
                continue
            status, due, detail = _status(step, progress, services)
            if lost is not None and status == "done":
                detail = f"finished by the cloud with what was known: {lost}"
            if worker.release(wanted, due=due, progress=progress, status=status, detail=detail):
                return ProcessResult(status, progress.requests - requests_before, detail)
            item = worker.read()
        return ProcessResult("waiting", progress.requests - requests_before)
    except _LeaseLost:
        return ProcessResult("busy", progress.requests - requests_before, "lease lost to another worker")
    except (RateLimited, PortalUnavailable, AuthorizationLost) as exc:
        progress = worker.latest or progress
        # Bitrix24 answered before this: not a failure in a row. The upload is attachRecord's second step, so
        # Bitrix24 answered its first (the exception left ``execute`` before its count came back).
        if progress.requests > requests_before or getattr(exc, "method", "") == "upload":
            attempts = 0
        floor = exc.retry_after if isinstance(exc, RateLimited) else 1.0
        if isinstance(exc, AuthorizationLost):
            floor = BLOCKED_RECHECK.total_seconds()
        ceiling = RATE_LIMITED_MAX_BACKOFF if isinstance(exc, RateLimited) else MAX_BACKOFF
        due = services.now() + _backoff(services, attempts, floor, ceiling)
        try:
            worker.save(progress, "deferred", str(exc))
        except _LeaseLost:
            return ProcessResult("busy", progress.requests - requests_before)
        worker.defer(due, attempts + 1)
        return ProcessResult("deferred", progress.requests - requests_before, str(exc))


def _run_steps(
    worker: _Worker,
    client: RestClient,
    call: CallState,
    progress: CrmProgress,
    ctx: PlanContext,
    upload: RecordUpload | None = None,
) -> tuple[CrmProgress, Plan, bool]:
    """Plan and execute until done, blocked or stuck; the flag: the user map proved stale."""
    step = plan(call, progress, ctx)
    for _ in range(MAX_STEPS):
        if not step.ops or progress.refusals >= MAX_REFUSALS:
            break
        sent_before = {leg for leg, p in progress.legs.items() if p.finish_attempted}
        marked = mark_attempted(progress, step.ops)
        if marked != progress:
            # write-ahead: what a retry must repeat exactly (a register's parameters) or must not repeat blindly
            # (a finish, a client creation). Shows and hides need none: repeating them is harmless.
            worker.save(marked, "sending")
        progress = worker.latest = marked
        execution = execute(client, progress, step.ops, finish_sent_before=sent_before, upload=upload)
        progress = execution.progress
        if execution.refusals:
            progress = progress.model_copy(
                update={"refusals": progress.refusals + 1, "last_refusal": "; ".join(execution.refusals)}
            )
        elif progress.refusals:
            progress = progress.model_copy(update={"refusals": 0})
        worker.latest = progress
        step = plan(call, progress, ctx)
        if execution.directory_stale:
            return progress, step, True
    return progress, step, False


def _status(step: Plan, progress: CrmProgress, services: CrmServices) -> tuple[str, datetime | None, str | None]:
    """The call's CRM status, and when to look at it again (``None``: when its next event arrives)."""
    now = services.now()
    if progress.refusals >= MAX_REFUSALS:
        return "failed", None, f"Bitrix24 refused it {progress.refusals} times: {progress.last_refusal}"
    if step.skipped:
        return "skipped", None, step.skipped
    if step.blocked:
        return "blocked", now + BLOCKED_RECHECK, step.blocked
    if step.done:
        return "done", None, None
    if step.ops:
        return "waiting", now, "more steps than one pass takes"
    return "waiting", now + OPEN_RECHECK, None  # in progress: its end comes as an event, or it is lost


def lost_reason(rt: Runtime, tenant: str, call: CallState, now: datetime) -> str | None:
    """Why an open call will never hear its end from the PBX (so the cloud finishes it), or ``None``.

    Its agent reports every end, also of calls that ended while it was away (it reconciles with the PBX on
    reconnect); so a call is lost only when its agent stays away, or when it went silent for hours.
    """
    if call.summary is not None or call.last_event_at is None or call.started_at is None or call.direction is None:
        return None
    silent = now - call.last_event_at
    if silent >= SILENT_CALL_LIMIT:
        return f"no event for {silent.total_seconds() / 3600:.1f} h"
    if silent < AGENT_GONE_AFTER:
        return None
    from cloud.agents.connections import agent_connection
    from cloud.agents.tokens import get_agent
    from cloud.errors import UnknownAgent

    try:
        agent = get_agent(rt, tenant, call.agent_id)
    except UnknownAgent:
        return "its agent no longer exists"
    if agent.revoked:
        return "its agent's token was revoked"
    seen = datetime.fromisoformat(agent.last_seen_at) if agent.last_seen_at else None
    if agent_connection(rt, tenant, call.agent_id) is not None and seen is not None and now - seen < AGENT_GONE_AFTER:
        return None
    since = f" since {agent.last_seen_at}" if agent.last_seen_at else ""
    return f"its agent has been away{since}"


def due_calls(rt: Runtime, now: datetime, limit: int = 100) -> Iterator[tuple[str, str]]:
    """``(tenant, call_key)`` of calls whose ``due_at`` has passed, oldest first."""
    paginator = rt.dynamodb.get_paginator("query")
    count = 0
    for page in paginator.paginate(
        TableName=rt.tables.crm_calls,
        IndexName="by_due",
        KeyConditionExpression="due_shard = :d AND due_at <= :now",
        ExpressionAttributeValues=to_item({":d": DUE_SHARD, ":now": _iso(now)}),
    ):
        for raw in page["Items"]:
            item = from_item(raw)
            yield item["tenant"], item["call_key"]
            count += 1
            if count >= limit:
                return


def sweep(rt: Runtime, services: CrmServices | None = None, limit: int = 100) -> list[ProcessResult]:
    """Process every call that is due (deferred, blocked for a while, or left by a dead worker)."""
    services = services or CrmServices()
    results = []
    for tenant, key in list(due_calls(rt, services.now(), limit)):
        agent_id, _, call_id = key.partition("#")
        try:
            results.append(process_call(rt, tenant, agent_id, call_id, services))
        except Exception:
            log.exception("CRM sweep of %s/%s failed", tenant, key)
    return results


def sweep_for(rt: Runtime, seconds: float, services: CrmServices | None = None, pause: float = 1.0) -> int:
    """Sweep repeatedly for ``seconds`` (the scheduled Lambda runs once a minute; deferred calls are due
    sooner than that). Returns how many calls were processed."""
    services = services or CrmServices()
    deadline = time.monotonic() + seconds
    processed = 0
    while time.monotonic() < deadline:
        processed += len(sweep(rt, services))
        time.sleep(pause)
    return processed


def crm_status(rt: Runtime, tenant: str, agent_id: str, call_id: str) -> dict[str, Any] | None:
    """The call's CRM item (status, detail, progress, and ``recording``: its state, format, error and note) for
    support, the settings page and tests."""
    response = rt.dynamodb.get_item(
        TableName=rt.tables.crm_calls,
        Key=to_item({"tenant": tenant, "call_key": call_key(agent_id, call_id)}),
        ConsistentRead=True,
    )
    if "Item" not in response:
        return None
    item = from_item(response["Item"])
    if item.get("progress"):
        item["progress"] = CrmProgress.model_validate_json(item["progress"])
    from cloud.recordings.store import get_recording

    recording = get_recording(rt, tenant, agent_id, call_id)
    if recording is not None:  # what became of the call's recording, in the agent's words when it failed
        item["recording"] = {
            "state": recording.state,
            "format": recording.format,
            "size": recording.size,
            "error": recording.error,
            "note": recording.note,
        }
    return item
