"""The agent's cumulative ack, kept honest when batches are stored out of order.

``ack N`` tells the agent to delete everything up to N from its outbox. API Gateway invokes ``$default``
once per message, possibly concurrently, so batch B (seqs 101-200) can be stored while batch A (1-100) is
still being stored, or after A's Lambda failed. Acking 200 then would delete A from the agent for good.

So the agent item keeps ``acked_seq``, the top of the gap-free prefix, and ``ack_ranges`` (``after`` → top)
for batches stored beyond a gap. A batch that continues the prefix (its ``after_seq`` ≤ ``acked_seq``)
extends it and absorbs every range it now reaches; one that does not is parked as a range and acked later
by the batch that fills the gap (or replayed by the agent after its next ``welcome``). Updates are
optimistic (``ack_version``), so concurrent Lambdas cannot lose each other's ranges.

Agents that send no ``after_seq`` get the batch's top acked, as before the field existed.
"""

from __future__ import annotations

from typing import Any

from cloud.errors import StorageConflict
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item

__all__ = ["MAX_ATTEMPTS", "advance"]

MAX_ATTEMPTS = 8


def _absorb(acked: int, ranges: dict[int, int]) -> tuple[int, dict[int, int]]:
    pending = dict(ranges)
    moved = True
    while moved:
        moved = False
        for after in sorted(pending):
            if after <= acked:
                acked = max(acked, pending.pop(after))
                moved = True
    return acked, pending


def _extend(rt: Runtime, key: dict[str, Any], after_seq: int, top: int) -> bool:
    """The usual case in one write, without reading first: the batch continues the acked prefix and nothing is
    parked beyond a gap, so the ack simply moves to ``top``. ``False`` when that is not the case (the caller reads
    and decides)."""
    try:
        rt.dynamodb.update_item(
            TableName=rt.tables.agents,
            Key=key,
            UpdateExpression="SET acked_seq = :top, ack_version = if_not_exists(ack_version, :none) + :one",
            ConditionExpression=(
                "attribute_exists(agent_id) AND acked_seq >= :after AND acked_seq < :top"
                " AND (attribute_not_exists(ack_ranges) OR ack_ranges = :empty)"
            ),
            ExpressionAttributeValues=to_item({":top": top, ":after": after_seq, ":one": 1, ":none": 0, ":empty": {}}),
        )
    except Exception as exc:
        if is_condition_failure(exc):
            return False
        raise
    return True


def advance(rt: Runtime, tenant: str, agent_id: str, after_seq: int | None, top: int) -> int:
    """Record that every event in ``(after_seq, top]`` is stored; returns the seq to ack (never lowers).

    ``after_seq=None`` (an agent that does not say) trusts the batch: the ack moves to at least ``top``.
    """
    key = to_item({"tenant": tenant, "agent_id": agent_id})
    if after_seq is not None and _extend(rt, key, after_seq, top):
        return top
    for _ in range(MAX_ATTEMPTS):
        item = rt.dynamodb.get_item(
            TableName=rt.tables.agents,
            Key=key,
            ConsistentRead=True,
            ProjectionExpression="acked_seq, ack_ranges, ack_version",
        ).get("Item", {})
        values: dict[str, Any] = from_item(item)
        acked = int(values.get("acked_seq", 0))
        version = int(values.get("ack_version", 0))
        ranges = {int(after): int(end) for after, end in values.get("ack_ranges", {}).items()}
        if after_seq is None or after_seq <= acked:
            new_acked, new_ranges = _absorb(max(acked, top), ranges)
        else:
            ranges[after_seq] = max(top, ranges.get(after_seq, 0))
            new_acked, new_ranges = acked, ranges
        if new_acked == acked and new_ranges == ranges and after_seq is not None and after_seq <= acked:
            return acked  # a replay of what is already acked: nothing to write
        try:
            rt.dynamodb.update_item(
                TableName=rt.tables.agents,
                Key=key,
                UpdateExpression="SET acked_seq = :acked, ack_ranges = :ranges, ack_version = :next",
                ConditionExpression=(
                    "attribute_exists(agent_id) AND (ack_version = :version OR attribute_not_exists(ack_version))"
                    if version == 0
                    else "ack_version = :version"
                ),
                ExpressionAttributeValues=to_item(
                    {
                        ":acked": new_acked,
                        ":ranges": {str(after): end for after, end in new_ranges.items()},
                        ":next": version + 1,
                        ":version": version,
                    }
                ),
            )
        except Exception as exc:
            if is_condition_failure(exc):
                continue
            raise
        return new_acked
    raise StorageConflict(f"agent {agent_id}: ack state kept changing")
