"""Where events are stored: once per (tenant, agent, event id), atomically with the call state, and a
concurrent writer on the same call is retried, not overwritten."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from cloud_builders import ended, ringing, started

from cloud.calls import store
from cloud.calls.store import get_call, record_events
from cloud.errors import StorageConflict
from cloud.runtime import Runtime
from wire_protocol.call_events import CallEvent

pytest_plugins = ["cloud_testkit"]


def test_an_event_is_stored_once_with_its_body(rt: Runtime) -> None:
    assert store.record_event(rt, "portal-a", "ag_1", 7, started()) is True
    assert store.record_event(rt, "portal-a", "ag_1", 7, started()) is False
    (event,) = store.list_events(rt, "portal-a", "ag_1")
    assert (event["event_id"], event["agent_seq"], event["type"]) == ("pbx-1.1:1", 7, "call_started")
    assert json.loads(event["event"])["external_number"] == "79261234567"


def test_a_duplicate_the_call_already_applied_costs_no_write(rt: Runtime) -> None:
    store.record_event(rt, "portal-a", "ag_1", 1, started())
    with mock.patch.object(rt.dynamodb, "transact_write_items") as write:
        assert store.record_event(rt, "portal-a", "ag_1", 1, started()) is False
    write.assert_not_called()


def test_a_duplicate_is_detected_by_the_event_table_even_if_the_call_forgot_it(rt: Runtime) -> None:
    store.record_event(rt, "portal-a", "ag_1", 1, started())
    rt.dynamodb.delete_item(
        TableName=rt.tables.calls, Key={"tenant": {"S": "portal-a"}, "call_key": {"S": "ag_1#pbx-1.1"}}
    )
    assert store.record_event(rt, "portal-a", "ag_1", 1, started()) is False
    assert store.get_call(rt, "portal-a", "ag_1", "pbx-1.1") is None  # the transaction wrote nothing


def test_the_same_call_id_stays_apart_across_agents_and_tenants(rt: Runtime) -> None:
    store.record_event(rt, "portal-a", "ag_1", 1, started(number="111"))
    store.record_event(rt, "portal-a", "ag_2", 1, started(number="222"))
    store.record_event(rt, "portal-b", "ag_3", 1, started(number="333"))
    assert [c.external_number for c in store.list_calls(rt, "portal-a")] == ["111", "222"]
    assert [c.external_number for c in store.list_calls(rt, "portal-b")] == ["333"]
    assert len(list(store.list_events(rt, "portal-a", "ag_1"))) == 1


def test_a_concurrent_writer_is_retried_and_both_events_count(rt: Runtime) -> None:
    real = rt.dynamodb.transact_write_items
    raced = False

    def racing(**kwargs: Any) -> Any:
        nonlocal raced
        if not raced:  # another Lambda stores a different event of the same call in between
            raced = True
            with mock.patch.object(rt.dynamodb, "transact_write_items", real):
                store.record_event(rt, "portal-a", "ag_1", 2, ringing("101"))
        return real(**kwargs)

    with mock.patch.object(rt.dynamodb, "transact_write_items", side_effect=racing) as writes:
        assert store.record_event(rt, "portal-a", "ag_1", 1, started()) is True
    assert writes.call_count == 2  # lost once, re-read, won
    call = store.get_call(rt, "portal-a", "ag_1", "pbx-1.1")
    assert call is not None and call.applied == [1, 2] and call.version == 2 and call.rang == ["101"]


def test_endless_races_give_up_with_storage_conflict(rt: Runtime) -> None:
    store.record_event(rt, "portal-a", "ag_1", 1, started())
    stale = store.get_call(rt, "portal-a", "ag_1", "pbx-1.1")
    assert stale is not None
    with (
        mock.patch.object(store, "get_call", return_value=stale.model_copy(update={"version": 99})),
        pytest.raises(StorageConflict),
    ):
        store.record_event(rt, "portal-a", "ag_1", 2, ringing("101"))
    assert len(list(store.list_events(rt, "portal-a", "ag_1"))) == 1


def test_the_stored_call_has_derived_views_for_readers(rt: Runtime) -> None:
    events: list[CallEvent] = [started(), ringing("101"), ended(seq=3)]
    for seq, event in enumerate(events, start=1):
        store.record_event(rt, "portal-a", "ag_1", seq, event)
    item = rt.dynamodb.get_item(
        TableName=rt.tables.calls, Key={"tenant": {"S": "portal-a"}, "call_key": {"S": "ag_1#pbx-1.1"}}
    )["Item"]
    assert item["status"] == {"S": "ended"} and item["result"] == {"S": "answered"}
    assert item["rang"] == {"L": [{"S": "101"}]}


def test_a_run_of_one_calls_events_is_one_write_and_skips_what_is_stored(rt: Runtime) -> None:
    assert record_events(rt, "portal-a", "agent-1", [(1, started()), (2, ringing("101"))]) == 2
    call = get_call(rt, "portal-a", "agent-1", "pbx-1.1")
    assert call is not None and (call.applied, call.version) == ([1, 2], 1)
    run: list[tuple[int, CallEvent]] = [(2, ringing("101")), (3, ringing("102", seq=3)), (3, ringing("102", seq=3))]
    assert record_events(rt, "portal-a", "agent-1", run) == 1  # 2 was stored, 3 came twice
    call = get_call(rt, "portal-a", "agent-1", "pbx-1.1")
    assert call is not None and (call.applied, call.version, call.ringing_now) == ([1, 2, 3], 2, ["101", "102"])
    with pytest.raises(ValueError):
        record_events(rt, "portal-a", "agent-1", [(1, started()), (2, started("pbx-2.1"))])
