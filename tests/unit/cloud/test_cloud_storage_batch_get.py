"""``batch_get``: 100 keys per request, unprocessed keys asked again, and an incomplete read is an error, never
taken for missing items (the reconciliation would resend calls the cloud has; the call trace would show no CRM)."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.errors import StorageBusy
from cloud.storage.dynamo import batch_get, to_item


class ThrottlingDynamo:
    """Answers ``batch_get_item`` with the items it holds, leaving the first ``hold_back`` keys of each of the first
    ``throttled`` requests unprocessed."""

    def __init__(self, items: dict[str, dict[str, Any]], throttled: int = 0, hold_back: int = 1) -> None:
        self.items, self.throttled, self.hold_back = items, throttled, hold_back
        self.requests: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(RequestItems)
        ((table, spec),) = RequestItems.items()
        keys = spec["Keys"]
        unprocessed = keys[: self.hold_back] if self.throttled > 0 else []
        self.throttled -= 1
        found = [
            self.items[k["call_key"]["S"]] for k in keys if k not in unprocessed and k["call_key"]["S"] in self.items
        ]
        answer: dict[str, Any] = {"Responses": {table: found}}
        if unprocessed:
            answer["UnprocessedKeys"] = {table: {**spec, "Keys": unprocessed}}
        return answer


def items(count: int) -> dict[str, dict[str, Any]]:
    return {f"a#{n}": to_item({"tenant": "t", "call_key": f"a#{n}", "n": n}) for n in range(count)}


def keys(count: int) -> list[dict[str, str]]:
    return [{"tenant": "t", "call_key": f"a#{n}"} for n in range(count)]


def test_keys_go_100_per_request_and_missing_items_are_left_out() -> None:
    dynamo = ThrottlingDynamo(items(230))
    found = list(
        batch_get(dynamo, "calls", keys(250), projection="call_key, #s", names={"#s": "status"}, consistent=True)
    )
    assert sorted(item["n"] for item in found) == list(range(230))
    assert [len(r["calls"]["Keys"]) for r in dynamo.requests] == [100, 100, 50]
    first = dynamo.requests[0]["calls"]
    assert (first["ProjectionExpression"], first["ExpressionAttributeNames"], first["ConsistentRead"]) == (
        "call_key, #s",
        {"#s": "status"},
        True,
    )


def test_unprocessed_keys_are_asked_again_until_read() -> None:
    dynamo = ThrottlingDynamo(items(5), throttled=3)
    found = list(batch_get(dynamo, "calls", keys(5)))
    assert sorted(item["n"] for item in found) == [0, 1, 2, 3, 4]
    assert len(dynamo.requests) == 4 and dynamo.requests[1]["calls"]["Keys"] == [to_item(keys(1)[0])]


def test_keys_left_unread_after_every_try_are_an_error_not_missing_items() -> None:
    dynamo = ThrottlingDynamo(items(5), throttled=100)
    with pytest.raises(StorageBusy, match="unread after 3 tries"):
        list(batch_get(dynamo, "calls", keys(5), tries=3))
