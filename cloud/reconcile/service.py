"""A ``reconcile_report`` part in, repairs and a stored result out; the last result for the settings page.

Each part is stored as its own item in ``reconciliations`` (``check_key`` = ``<agent_id>#<check_id>#<part>``),
written whole with one ``PutItem``: a part handled twice (a redelivered frame) overwrites itself, and parts
handled by concurrent Lambdas never contend. Check ids sort by time, so the agent's newest check is the first
key in descending order. Items expire after :data:`KEEP_DAYS`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, Field

from cloud.crm.pipeline import request_crm
from cloud.runtime import Runtime
from cloud.storage.dynamo import batch_get, from_item, to_item
from wire_protocol.messages import ReconcileReport, ReconcileResend

from .compare import FINDINGS, CloudCall, Findings, compare

__all__ = ["KEEP_DAYS", "CheckResult", "cloud_view", "last_check", "on_reconcile_report"]

log = logging.getLogger(__name__)

KEEP_DAYS: Final = 30
#: Call ids kept per finding and part, for support to look up (the page shows a few).
EXAMPLES: Final = 10


class CheckResult(BaseModel):
    """One check as the settings page shows it, summed over the parts received."""

    check_id: str
    since: datetime
    until: datetime
    received_at: datetime
    parts: int
    parts_received: int
    pbx_calls: int = 0
    counts: dict[str, int] = Field(default_factory=dict)  # FINDINGS + "differs"
    resent: int = 0  # calls the agent was asked to send again
    queued: int = 0  # calls the cloud queued for the CRM itself
    examples: dict[str, list[str]] = Field(default_factory=dict)
    failed_details: dict[str, str] = Field(default_factory=dict)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.parts_received >= self.parts


def cloud_view(rt: Runtime, tenant: str, agent_id: str, call_ids: list[str]) -> dict[str, CloudCall]:
    """What the cloud holds of each call (absent: nothing), in two ``BatchGetItem`` rounds per 100 calls."""
    keys = [{"tenant": tenant, "call_key": f"{agent_id}#{call_id}"} for call_id in dict.fromkeys(call_ids)]
    states = {
        str(item["call_key"]): item
        for item in batch_get(
            rt.dynamodb,
            rt.tables.calls,
            keys,
            projection="call_key, #s, #r",
            names={"#s": "status", "#r": "result"},
            consistent=True,
        )
    }
    crm = {
        str(item["call_key"]): item
        for item in batch_get(
            rt.dynamodb,
            rt.tables.crm_calls,
            keys,
            projection="call_key, crm_status, crm_detail",
            consistent=True,
        )
    }
    view = {}
    prefix = len(agent_id) + 1
    for key, state in states.items():
        item = crm.get(key)
        view[key[prefix:]] = CloudCall(
            ended=state.get("status") == "ended",
            result=state.get("result"),
            # an item without a status was requested but not processed yet: pending, not unqueued
            crm_status=str(item.get("crm_status") or "requested") if item is not None else None,
            crm_detail=str(item.get("crm_detail") or "") if item is not None else None,
        )
    return view


def _check_key(agent_id: str, check_id: str, part: int | None = None) -> str:
    return f"{agent_id}#{check_id}#" + (f"{part:05d}" if part is not None else "")


def on_reconcile_report(
    rt: Runtime, tenant: str, agent_id: str, report: ReconcileReport, now: datetime
) -> ReconcileResend | None:
    """Compare one part, repair what the cloud can, store the part's result; the calls the agent must send
    again (``None``: none). Raises on storage failures (the handler answers ``internal``; the next check
    repeats this one's work)."""
    findings = Findings()
    queued = 0
    if report.error is None and report.calls:
        findings = compare(report.calls, cloud_view(rt, tenant, agent_id, [c.call_id for c in report.calls]))
        for call_id in findings.ids("unqueued"):
            request_crm(rt, tenant, agent_id, call_id, now)  # the sweeper takes it from here
            queued += 1
    counts = findings.counts()
    examples: dict[str, list[str]] = {
        name: findings.ids(name)[:EXAMPLES] for name in FINDINGS if name not in ("in_crm", "pending")
    }
    examples["differs"] = findings.differs[:EXAMPLES]
    item = {
        "tenant": tenant,
        "check_key": _check_key(agent_id, report.check_id, report.part),
        "agent_id": agent_id,
        "check_id": report.check_id,
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "part": report.part,
        "parts": report.parts,
        "received_at": now.isoformat(timespec="seconds"),
        "pbx_calls": len(report.calls),
        "counts": counts,
        "resent": len(findings.to_resend),
        "queued": queued,
        "examples": {name: ids for name, ids in examples.items() if ids},
        "failed_details": dict(list(findings.details.items())[:EXAMPLES]),
        "expires_at": int((now + timedelta(days=KEEP_DAYS)).timestamp()),
    }
    if report.error is not None:
        item["error"] = report.error
    rt.dynamodb.put_item(TableName=rt.tables.reconciliations, Item=to_item(item))
    interesting = {name: n for name, n in counts.items() if n and name not in ("in_crm", "pending")}
    if interesting or report.error:
        log.warning(
            "reconcile %s/%s check %s part %d/%d: %d PBX call(s), %s%s",
            tenant,
            agent_id,
            report.check_id,
            report.part,
            report.parts,
            len(report.calls),
            ", ".join(f"{name} {n}" for name, n in interesting.items()) or "no difference",
            f"; the CDR could not be read: {report.error}" if report.error else "",
        )
    return ReconcileResend(check_id=report.check_id, call_ids=findings.to_resend) if findings.to_resend else None


def _query(
    rt: Runtime, tenant: str, prefix: str, *, newest_first: bool, limit: int | None = None
) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "TableName": rt.tables.reconciliations,
        "KeyConditionExpression": "tenant = :t AND begins_with(check_key, :p)",
        "ExpressionAttributeValues": to_item({":t": tenant, ":p": prefix}),
        "ScanIndexForward": not newest_first,
        "ConsistentRead": True,
    }
    if limit is not None:
        kwargs["Limit"] = limit
    items: list[dict[str, Any]] = []
    while True:
        response = rt.dynamodb.query(**kwargs)
        items.extend(from_item(raw) for raw in response.get("Items", []))
        if limit is not None or "LastEvaluatedKey" not in response:
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def last_check(rt: Runtime, tenant: str, agent_id: str) -> CheckResult | None:
    """The agent's newest check, summed over the parts received so far; ``None`` before the first."""
    newest = _query(rt, tenant, f"{agent_id}#", newest_first=True, limit=1)
    if not newest:
        return None
    check_id = str(newest[0]["check_id"])
    parts = _query(rt, tenant, _check_key(agent_id, check_id), newest_first=False)
    first = parts[0]
    result = CheckResult(
        check_id=check_id,
        since=datetime.fromisoformat(first["since"]),
        until=datetime.fromisoformat(first["until"]),
        received_at=max(datetime.fromisoformat(p["received_at"]) for p in parts),
        parts=int(first["parts"]),
        parts_received=len(parts),
    )
    counts = dict.fromkeys([*FINDINGS, "differs"], 0)
    for part in parts:
        result.pbx_calls += int(part.get("pbx_calls", 0))
        result.resent += int(part.get("resent", 0))
        result.queued += int(part.get("queued", 0))
        for name, n in (part.get("counts") or {}).items():
            counts[name] = counts.get(name, 0) + int(n)
        for name, ids in (part.get("examples") or {}).items():
            result.examples.setdefault(name, []).extend(str(i) for i in ids)
        for call_id, why in (part.get("failed_details") or {}).items():
            result.failed_details[str(call_id)] = str(why)
        if part.get("error"):
            result.error = str(part["error"])
    result.counts = counts
    result.examples = {name: ids[:EXAMPLES] for name, ids in result.examples.items()}
    return result
