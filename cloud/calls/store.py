"""Where an event is stored: :func:`record_event`, once per (tenant, agent, event id), with the call state.

Each event is one DynamoDB transaction of two conditional writes:

1. put the event into ``call_events`` if its key is new (``attribute_not_exists``): idempotency;
2. put the call's new state (folded by :func:`cloud.calls.state.apply_event`) into ``calls`` if its
   ``version`` is still the one read: optimistic locking against a concurrent Lambda on the same call.

Both or neither: an event is stored exactly when it is applied, so a crash between them cannot leave one
without the other, and a duplicate (condition 1 fails) changes nothing. A lost race (condition 2 fails) is
re-read and retried. Only after this returns does the link acknowledge the event.
"""

from __future__ import annotations

import json
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from cloud.clock import now_iso
from cloud.errors import StorageConflict
from cloud.runtime import Runtime
from cloud.storage.dynamo import error_code, from_item, to_item
from wire_protocol.call_events import CallEvent

from .state import CallState, apply_event

__all__ = [
    "MAX_ATTEMPTS",
    "get_call",
    "list_calls",
    "list_events",
    "record_event",
    "record_events",
    "remember_writes",
    "remembered_call",
]

MAX_ATTEMPTS = 5


def _events_pk(tenant: str, agent_id: str) -> str:
    return f"{tenant}#{agent_id}"


def _call_key(agent_id: str, call_id: str) -> str:
    return f"{agent_id}#{call_id}"


def _state_from_item(item: dict[str, Any]) -> CallState:
    values = from_item(item)
    values.pop("call_key", None)
    for derived in ("status", "rang", "ringing_now"):
        values.pop(derived, None)
    return CallState.model_validate(values)


def _state_to_item(state: CallState) -> dict[str, Any]:
    values = state.model_dump(mode="json", by_alias=True)
    values["call_key"] = _call_key(state.agent_id, state.call_id)
    # Derived views, stored for readers (the CRM side, the settings pages); never read back.
    values["status"] = state.status
    values["rang"] = state.rang
    values["ringing_now"] = state.ringing_now
    return to_item(values)


def get_call(rt: Runtime, tenant: str, agent_id: str, call_id: str) -> CallState | None:
    response = rt.dynamodb.get_item(
        TableName=rt.tables.calls,
        Key=to_item({"tenant": tenant, "call_key": _call_key(agent_id, call_id)}),
        ConsistentRead=True,
    )
    return _state_from_item(response["Item"]) if "Item" in response else None


def list_calls(rt: Runtime, tenant: str) -> list[CallState]:
    """Every call of ``tenant`` (all its agents); the tenant is the partition key, so nothing else leaks in."""
    paginator = rt.dynamodb.get_paginator("query")
    pages = paginator.paginate(
        TableName=rt.tables.calls,
        KeyConditionExpression="tenant = :t",
        ExpressionAttributeValues=to_item({":t": tenant}),
        ConsistentRead=True,
    )
    return [_state_from_item(item) for page in pages for item in page["Items"]]


def list_events(rt: Runtime, tenant: str, agent_id: str) -> Iterator[dict[str, Any]]:
    """The stored events of one agent, by event id (for support and tests)."""
    paginator = rt.dynamodb.get_paginator("query")
    for page in paginator.paginate(
        TableName=rt.tables.call_events,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues=to_item({":pk": _events_pk(tenant, agent_id)}),
        ConsistentRead=True,
    ):
        for item in page["Items"]:
            yield from_item(item)


def _event_item(tenant: str, agent_id: str, agent_seq: int, event: CallEvent, stored_at: str) -> dict[str, Any]:
    return to_item(
        {
            "pk": _events_pk(tenant, agent_id),
            "event_id": event.event_id,
            "tenant": tenant,
            "agent_id": agent_id,
            "agent_seq": agent_seq,
            "call_id": event.call_id,
            "call_seq": event.seq,
            "type": event.type,
            "at": event.at.isoformat(),
            "event": json.dumps(event.model_dump(mode="json", by_alias=True), separators=(",", ":")),
            "stored_at": stored_at,
        }
    )


def record_event(rt: Runtime, tenant: str, agent_id: str, agent_seq: int, event: CallEvent) -> bool:
    """Store ``event`` and apply it to its call, atomically and at most once.

    Returns ``True`` if it was new, ``False`` if it was already stored (nothing changed). Raises
    :class:`~cloud.errors.StorageConflict` after :data:`MAX_ATTEMPTS` lost races; AWS errors propagate.
    """
    return record_events(rt, tenant, agent_id, [(agent_seq, event)]) == 1


#: Call states a warm container wrote last, per runtime (see :func:`remember_writes`).
MAX_REMEMBERED = 2048
_written: weakref.WeakKeyDictionary[Runtime, OrderedDict[tuple[str, str, str], CallState]] = weakref.WeakKeyDictionary()
_written_lock = threading.Lock()


def remember_writes(rt: Runtime) -> None:
    """From now on, :func:`record_events` on ``rt`` starts from the state it wrote last for a call instead of
    reading it (the websocket handler: a call's events usually come through one connection, so one container):
    one read less per message. Safe because the write is conditional on that state's ``version``: if another
    writer moved the call on, the transaction is refused and the call read again, as after any lost race."""
    with _written_lock:
        _written.setdefault(rt, OrderedDict())


def remembered_call(rt: Runtime, tenant: str, agent_id: str, call_id: str) -> CallState | None:
    """The state this container stored last for the call (with :func:`remember_writes`), or ``None``. Not
    necessarily the newest: another container may have stored more since."""
    with _written_lock:
        known = _written.get(rt)
        return None if known is None else known.get((tenant, agent_id, call_id))


def _remember(rt: Runtime, state: CallState | None, tenant: str, agent_id: str, call_id: str) -> None:
    with _written_lock:
        known = _written.get(rt)
        if known is None:
            return  # not asked to (remember_writes)
        key = (tenant, agent_id, call_id)
        if state is None:
            known.pop(key, None)
            return
        known[key] = state
        known.move_to_end(key)
        while len(known) > MAX_REMEMBERED:
            known.popitem(last=False)


def record_events(rt: Runtime, tenant: str, agent_id: str, events: list[tuple[int, CallEvent]]) -> int:
    """Store several events of ONE call (``(agent seq, event)``) and apply them, in one transaction: a burst
    (two phones starting to ring) costs one write instead of one each. Returns how many were new.

    All or nothing, like :func:`record_event`; an event already stored is left out and the rest retried.
    """
    if not events:
        return 0
    call_id = events[0][1].call_id
    if any(event.call_id != call_id for _, event in events) or len(events) > 99:
        raise ValueError("record_events takes at most 99 events of one call")
    stored_at = now_iso()
    pending = list(events)
    for attempt in range(MAX_ATTEMPTS):
        known = remembered_call(rt, tenant, agent_id, call_id) if attempt == 0 else None
        current = (
            known
            or get_call(rt, tenant, agent_id, call_id)
            or CallState(tenant=tenant, agent_id=agent_id, call_id=call_id)
        )
        fresh: dict[int, tuple[int, CallEvent]] = {}
        for agent_seq, event in pending:
            if event.seq not in current.applied:
                fresh.setdefault(event.seq, (agent_seq, event))  # a call seq twice in one batch: the first
        pending = list(fresh.values())
        if not pending:
            return 0  # applied ⇔ stored (one transaction), so these are duplicates
        new = current
        for agent_seq, event in pending:
            new = apply_event(new, agent_seq, event)
        new = new.model_copy(update={"version": current.version + 1})
        if current.version == 0:
            call_condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(call_key)"}
        else:
            call_condition = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": to_item({":v": current.version}),
            }
        puts: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": rt.tables.call_events,
                    "Item": _event_item(tenant, agent_id, agent_seq, event, stored_at),
                    "ConditionExpression": "attribute_not_exists(event_id)",
                }
            }
            for agent_seq, event in pending
        ]
        try:
            rt.dynamodb.transact_write_items(
                TransactItems=[
                    *puts,
                    {"Put": {"TableName": rt.tables.calls, "Item": _state_to_item(new), **call_condition}},
                ]
            )
        except Exception as exc:
            _remember(rt, None, tenant, agent_id, call_id)
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]  # type: ignore[attr-defined]
            duplicates = {i for i, code in enumerate(reasons[: len(pending)]) if code == "ConditionalCheckFailed"}
            if duplicates:
                pending = [item for i, item in enumerate(pending) if i not in duplicates]  # already stored
                continue
            if (len(reasons) > len(pending) and reasons[len(pending)] == "ConditionalCheckFailed") or (
                "TransactionConflict" in reasons
            ):
                # another writer updated the call first (or is doing so now): re-read and re-apply
                time.sleep(random.uniform(0.005, 0.025) * (attempt + 1))
                continue
            raise
        _remember(rt, new, tenant, agent_id, call_id)
        return len(pending)
    raise StorageConflict(f"call {call_id}: {MAX_ATTEMPTS} concurrent updates in a row")
