"""What the product did for each recent call, as a support person reads it: the call as the PBX told it
(``calls``) next to what was done in Bitrix24 (``crm_calls``: status, detail, requests, and per leg the
CALL_ID, the user it was registered for, who saw the card, how it was finished).

"Recent": per agent, the last calls by key. A call's key is ``<agent_id>#<Linkedid>`` and Asterisk's Linkedid
is ``<epoch>.<n>`` (optionally after a system name), so within an agent the key order is the time order; this
reads ``limit`` calls per agent with one query each and their CRM items with one ``BatchGetItem`` per 100,
instead of the tenant's whole history. The merged list is then sorted by start time.
"""

from __future__ import annotations

from typing import Any

from cloud.calls.state import CallState
from cloud.crm.progress import CrmProgress
from cloud.runtime import Runtime
from cloud.storage.dynamo import batch_get, from_item, to_item

__all__ = ["MAX_CALLS", "recent_calls", "trace_of"]

MAX_CALLS = 200
_DERIVED = ("status", "rang", "ringing_now", "call_key")


def _calls_of_agent(rt: Runtime, tenant: str, agent_id: str, limit: int) -> list[CallState]:
    response = rt.dynamodb.query(
        TableName=rt.tables.calls,
        KeyConditionExpression="tenant = :t AND begins_with(call_key, :a)",
        ExpressionAttributeValues=to_item({":t": tenant, ":a": f"{agent_id}#"}),
        ScanIndexForward=False,
        Limit=limit,
    )
    calls = []
    for raw in response.get("Items", []):
        values = from_item(raw)
        for derived in _DERIVED:
            values.pop(derived, None)
        calls.append(CallState.model_validate(values))
    return calls


def _user(users: dict[int, str], user_id: int | None) -> dict[str, Any] | None:
    return None if user_id is None else {"id": user_id, "name": users.get(user_id, "")}


def _crm(item: dict[str, Any] | None, users: dict[int, str]) -> dict[str, Any] | None:
    if item is None:
        return None
    progress = CrmProgress.model_validate_json(item["progress"]) if item.get("progress") else CrmProgress()
    legs = []
    for index, leg in sorted(progress.legs.items()):
        register = leg.registered_with
        legs.append(
            {
                "leg": index,
                "b24_call_id": leg.call_id,
                "user": _user(users, register.user_id if register else None),
                "phone_number": register.phone_number if register else None,
                "line_number": register.line_number if register else None,
                "call_type": register.call_type if register else None,
                "shown_to": [_user(users, u) for u in leg.shown_to],
                "visible_to": [_user(users, u) for u in leg.visible_to],
                "finished": leg.finished,
                "finished_as": leg.finished_as,
                "entity": f"{leg.crm_entity_type} {leg.crm_entity_id}" if leg.crm_entity_type else None,
                "created_lead": leg.created_lead,
            }
        )

    def client(info: Any) -> dict[str, Any] | None:
        if info is None or not info.entity_type:
            return None
        return {"entity": f"{info.entity_type} {info.entity_id}", "responsible": _user(users, info.responsible_id)}

    return {
        "status": item.get("crm_status") or "waiting",
        "detail": item.get("crm_detail") or progress.blocked or progress.skipped or None,
        "requests": int(item.get("requests", progress.requests) or 0),
        "attempts": int(item.get("attempts", 0) or 0),
        "due_at": item.get("due_at"),
        "blocked": progress.blocked,
        "skipped": progress.skipped,
        "last_refusal": progress.last_refusal,
        "unmapped_extensions": list(progress.unmapped_extensions),
        "client": client(progress.client),
        "created_client": client(progress.created_client),
        "legs": legs,
    }


def _when(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def trace_of(call: CallState, crm_item: dict[str, Any] | None, users: dict[int, str]) -> dict[str, Any]:
    """One call's trace (plain JSON)."""
    transfers = [
        {"at": _when(call.transfer_times.get(seq)), **transfer.model_dump(mode="json", by_alias=True)}
        for seq, transfer in sorted(call.transfers.items(), key=lambda kv: int(kv[0]))
    ]
    return {
        "agent_id": call.agent_id,
        "call_id": call.call_id,
        "state": call.status,
        "direction": call.direction,
        "external_number": call.external_number,
        "line": call.line,
        "caller_extension": call.caller_extension,
        "started_at": _when(call.started_at),
        "answered_by": call.answered_by,
        "answered_at": _when(call.answered_at),
        "ended_at": _when(call.ended_at),
        "result": call.result,
        "end_reason": call.end_reason,
        "rang": call.rang,
        "transfers": transfers,
        "recording": call.summary.recording if call.summary is not None else call.recording,
        "click_to_call": call.command_id is not None,
        "crm": _crm(crm_item, users),
    }


def recent_calls(
    rt: Runtime, tenant: str, agent_ids: list[str], users: dict[int, str], limit: int = 50
) -> list[dict[str, Any]]:
    """The ``limit`` most recent calls of the tenant's agents, newest first, each with its trace."""
    limit = max(1, min(limit, MAX_CALLS))
    calls = [call for agent_id in agent_ids for call in _calls_of_agent(rt, tenant, agent_id, limit)]
    calls.sort(key=lambda c: (c.started_at.isoformat() if c.started_at else "", c.call_id), reverse=True)
    calls = calls[:limit]
    keys = [{"tenant": tenant, "call_key": f"{c.agent_id}#{c.call_id}"} for c in calls]
    crm = {str(item["call_key"]): item for item in batch_get(rt.dynamodb, rt.tables.crm_calls, keys)}
    return [trace_of(call, crm.get(f"{call.agent_id}#{call.call_id}"), users) for call in calls]
