"""``$default``: each message type, bad input answered without storing anything, and batches that arrive
twice, late, or out of order stored exactly once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from cloud_builders import CID, batch, ended, ringing, started

from cloud.agents import connections
from cloud.agents.commands import get_command
from cloud.calls import store
from cloud.calls.store import get_call, list_events
from cloud.link import acks
from cloud.link.dispatch import Outcome, handle_agent_message
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item
from wire_protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    AgentSettings,
    CommandResult,
    ErrorMessage,
    Heartbeat,
    Hello,
    Welcome,
    encode,
)

pytest_plugins = ["cloud_testkit"]


def handle(rt: Runtime, body: str | bytes | None) -> Outcome:
    return handle_agent_message(rt, CID, body)


def agent_item(rt: Runtime, agent_id: str) -> dict[str, Any]:
    key = {"tenant": {"S": "portal-a"}, "agent_id": {"S": agent_id}}
    return from_item(rt.dynamodb.get_item(TableName=rt.tables.agents, Key=key)["Item"])


def stored_count(rt: Runtime) -> int:
    return len(rt.dynamodb.scan(TableName=rt.tables.call_events)["Items"])


def test_hello_is_welcomed_with_settings_and_remembered(rt: Runtime, agent_id: str) -> None:
    hello = Hello(agent_version="0.2.0", pbx_version="Asterisk 22.10.1", capabilities=["originate"], outbox_depth=3)
    outcome = handle(rt, encode(hello))
    welcome, settings = outcome.replies
    assert isinstance(welcome, Welcome) and welcome.plan is not None
    assert welcome.model_copy(update={"plan": None, "agent_since": None}) == Welcome(
        agent_id=agent_id, tenant="portal-a", acked_seq=0
    )
    assert welcome.agent_since is not None  # when the token was issued: the CDR check never reaches before it
    assert (welcome.plan.plan, welcome.plan.state) == ("free", "restricted")  # no lease yet: the free tier
    assert settings == AgentSettings()
    assert not outcome.close
    item = agent_item(rt, agent_id)
    assert (item["agent_version"], item["pbx_version"], item["capabilities"]) == (
        "0.2.0",
        "Asterisk 22.10.1",
        ["originate"],
    )


def test_events_are_stored_then_acked_up_to_the_highest_seq(rt: Runtime, agent_id: str) -> None:
    outcome = handle(rt, batch((10, started()), (11, ringing("101")), (12, ended(seq=3))))
    assert outcome.replies == [Ack(up_to_seq=12)] and outcome.stored == 3
    assert [e["event_id"] for e in list_events(rt, "portal-a", agent_id)] == ["pbx-1.1:1", "pbx-1.1:2", "pbx-1.1:3"]
    assert agent_item(rt, agent_id)["acked_seq"] == 12
    call = get_call(rt, "portal-a", agent_id, "pbx-1.1")
    assert call is not None
    assert (call.direction, call.external_number, call.rang, call.answered_by, call.result, call.status) == (
        "inbound",
        "79261234567",
        ["101"],
        "101",
        "answered",
        "ended",
    )
    assert call.summary is not None and call.summary.talk_seconds == 12 and call.last_agent_seq == 12


def test_the_same_batch_twice_is_stored_once_and_acked_twice(rt: Runtime, agent_id: str) -> None:
    frame = batch((1, started()), (2, ringing("101")))
    first, second = handle(rt, frame), handle(rt, frame)
    assert first.replies == second.replies == [Ack(up_to_seq=2)]
    assert (first.stored, second.stored) == (2, 0)
    assert stored_count(rt) == 2
    call = get_call(rt, "portal-a", agent_id, "pbx-1.1")
    assert call is not None and call.applied == [1, 2] and call.version == 1  # one write; the second delivery none


def test_a_replayed_old_batch_does_not_lower_the_high_water_mark(rt: Runtime, agent_id: str) -> None:
    handle(rt, batch((1, started()), (2, ringing("101"))))
    handle(rt, batch((3, ended(seq=3))))
    replay = handle(rt, batch((1, started())))
    assert replay.replies == [Ack(up_to_seq=3)] and replay.stored == 0  # the ack is cumulative: never lower
    assert agent_item(rt, agent_id)["acked_seq"] == 3


def test_out_of_order_batches_build_the_same_call(rt: Runtime, agent_id: str) -> None:
    handle(rt, batch((3, ended(seq=3))))
    handle(rt, batch((1, started()), (2, ringing("101"))))
    late = get_call(rt, "portal-a", agent_id, "pbx-1.1")
    assert late is not None and late.status == "ended" and late.rang == ["101"] and late.applied == [1, 2, 3]
    assert agent_item(rt, agent_id)["acked_seq"] == 3


def test_events_within_a_batch_are_stored_in_seq_order(rt: Runtime, agent_id: str) -> None:
    frame = batch((2, ringing("101")), (3, started("pbx-2.1")), (1, started()))
    with mock.patch("cloud.link.dispatch.record_events", wraps=store.record_events) as record:
        assert handle(rt, frame).replies == [Ack(up_to_seq=3)]
    assert [[seq for seq, _ in call.args[3]] for call in record.call_args_list] == [[1, 2], [3]]  # a run per call


def test_a_storage_failure_acks_only_what_was_stored(rt: Runtime, agent_id: str) -> None:
    real = store.record_events

    def flaky(rt_: Runtime, tenant: str, agent: str, items: list[tuple[int, Any]]) -> int:
        if any(seq == 3 for seq, _ in items):
            raise RuntimeError("DynamoDB throttled")
        return real(rt_, tenant, agent, items)

    with mock.patch("cloud.link.dispatch.record_events", side_effect=flaky):
        outcome = handle(rt, batch((1, started()), (2, ringing("101")), (3, started("pbx-2.1", seq=1))))
    assert outcome.replies[0] == Ack(up_to_seq=2)
    error = outcome.replies[1]
    assert isinstance(error, ErrorMessage) and (error.code, error.about) == ("internal", "call_events")
    assert stored_count(rt) == 2 and not outcome.close
    assert handle(rt, batch((3, started("pbx-2.1", seq=1)))).replies == [Ack(up_to_seq=3)]  # the resend completes it


def test_a_failure_on_the_first_event_acks_nothing(rt: Runtime, agent_id: str) -> None:
    with mock.patch("cloud.link.dispatch.record_events", side_effect=RuntimeError("down")):
        outcome = handle(rt, batch((1, started())))
    assert [type(reply) for reply in outcome.replies] == [ErrorMessage]


def test_heartbeat_refreshes_last_seen_without_a_reply(rt: Runtime, agent_id: str) -> None:
    assert "last_seen_at" not in agent_item(rt, agent_id)
    beat = Heartbeat(sent_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC), outbox_depth=4, ami_connected=False)
    outcome = handle(rt, encode(beat))
    assert outcome.replies == [] and not outcome.close
    item = agent_item(rt, agent_id)
    assert item["last_seen_at"].startswith("20")
    assert (item["outbox_depth"], item["ami_connected"], item["heartbeat_at"]) == (
        4,
        False,
        "2026-11-26T10:00:00+00:00",
    )


def test_command_result_is_stored(rt: Runtime, agent_id: str) -> None:
    result = CommandResult(command_id="cmd-1", ok=False, code="busy", message="101 is busy", call_id="pbx-9.1")
    assert handle(rt, encode(result)).replies == [Ack(up_to_seq=0, results=["cmd-1"])]  # confirmed by name
    stored = get_command(rt, "portal-a", "cmd-1")
    assert stored is not None
    assert (stored["agent_id"], stored["ok"], stored["code"], stored["status"]) == (agent_id, False, "busy", "done")


def test_an_agents_error_is_logged_not_answered(rt: Runtime, agent_id: str, caplog: pytest.LogCaptureFixture) -> None:
    outcome = handle(rt, encode(ErrorMessage(code="invalid_message", message="bad settings", about="settings")))
    assert outcome.replies == [] and not outcome.close
    assert "bad settings" in caplog.text


@pytest.mark.parametrize(
    ("body", "code", "about"),
    [
        ("not json", "bad_json", None),
        ("[1, 2]", "bad_json", None),
        (b'{"type": "hello"}', "bad_json", None),
        ('{"type": "subscribe"}', "unknown_type", "subscribe"),
        ('{"type": "ack", "up_to_seq": 3}', "unknown_type", "ack"),
        ('{"type": "hello", "v": 2, "agent_version": "9"}', "unsupported_version", "hello"),
        ('{"type": "call_events", "events": []}', "invalid_message", "call_events"),
        ('{"type": "call_events", "events": [{"seq": 0}]}', "invalid_message", "call_events"),
        (None, "bad_json", None),
    ],
)
def test_bad_input_gets_an_error_keeps_the_connection_and_stores_nothing(
    rt: Runtime, agent_id: str, body: str | bytes | None, code: str, about: str | None
) -> None:
    outcome = handle(rt, body)
    assert outcome.replies == [ErrorMessage(code=code, message=outcome.replies[0].message, about=about)]  # type: ignore[attr-defined]
    assert not outcome.close
    assert stored_count(rt) == 0


def test_an_oversized_message_is_refused_unparsed(rt: Runtime, agent_id: str) -> None:
    events = [(seq, ringing(str(100 + seq), seq=seq)) for seq in range(1, 400)]
    frame = json.dumps(
        {"type": "call_events", "events": [{"seq": s, "event": e.model_dump(mode="json")} for s, e in events]}
    )
    assert len(frame.encode()) > MAX_MESSAGE_BYTES
    outcome = handle(rt, frame)
    assert [(type(r), getattr(r, "code", None)) for r in outcome.replies] == [(ErrorMessage, "too_large")]
    assert stored_count(rt) == 0 and not outcome.close


def test_an_unexpected_failure_becomes_an_internal_error(rt: Runtime, agent_id: str) -> None:
    with mock.patch("cloud.link.dispatch.touch", side_effect=KeyError("boom")):
        outcome = handle(rt, encode(Hello(agent_version="1")))
    assert [(type(r), getattr(r, "code", None)) for r in outcome.replies] == [(ErrorMessage, "internal")]
    with mock.patch("cloud.link.dispatch.advance", side_effect=RuntimeError("throttled")):
        outcome = handle(rt, batch((1, started())))
    error = outcome.replies[0]
    assert isinstance(error, ErrorMessage) and (error.code, error.about) == ("internal", "call_events")  # resent


def test_a_deleted_agent_is_not_authorized(rt: Runtime, agent_id: str) -> None:
    rt.dynamodb.delete_item(TableName=rt.tables.agents, Key={"tenant": {"S": "portal-a"}, "agent_id": {"S": agent_id}})
    outcome = handle(rt, encode(Hello(agent_version="1")))
    assert outcome.close and [getattr(r, "code", None) for r in outcome.replies] == ["not_authorized"]
    assert connections.connection_agent(rt, CID) is None


def test_the_calls_of_one_message_get_their_crm_passes_at_once_while_the_ack_is_sent(
    rt: Runtime, agent_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load one batch carries several calls: one pass after another, the last card waited for every other
    call's Bitrix24 requests. Each pass here waits until all three run at once, and the ack goes out meanwhile;
    run one after another, the barrier breaks and the passes fail. The passes start before the ack is even
    decided (its write is not on the ring-to-card path)."""
    from cloud.link import dispatch

    together = threading.Barrier(4, timeout=10)  # three passes and the ack's delivery
    passing = threading.Event()
    passed: list[str] = []
    delivered: list[list[Any]] = []

    def crm_pass(rt_: Runtime, tenant: str, agent: str, call_id: str) -> None:
        passing.set()
        together.wait()
        passed.append(call_id)

    def advance_after_a_pass_started(*args: Any) -> int:
        assert passing.wait(10), "no CRM pass started before the ack was decided"
        return acks.advance(*args)

    def deliver(rt_: Runtime, context: Any, connection_id: str, outcome: Outcome) -> None:
        together.wait()
        delivered.append(outcome.replies)

    monkeypatch.setattr(dispatch, "process_call", crm_pass)
    monkeypatch.setattr(dispatch, "deliver", deliver)
    monkeypatch.setattr(dispatch, "advance", advance_after_a_pass_started)
    body = batch(*[(seq, ringing("101", call, seq)) for seq, call in enumerate(["c1", "c2", "c3"], start=1)])
    outcome = dispatch.on_message(rt, {"requestContext": {"connectionId": CID}, "body": body})
    assert sorted(passed) == ["c1", "c2", "c3"]
    assert delivered == [[Ack(up_to_seq=3)]] and outcome.crm_calls == ["c1", "c2", "c3"]


def test_a_failing_crm_pass_does_not_stop_the_others(
    rt: Runtime, agent_id: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cloud.link import dispatch

    passed: list[str] = []

    def crm_pass(rt_: Runtime, tenant: str, agent: str, call_id: str) -> None:
        if call_id == "c1":
            raise RuntimeError("bitrix24 exploded")
        passed.append(call_id)

    monkeypatch.setattr(dispatch, "process_call", crm_pass)
    monkeypatch.setattr(dispatch, "deliver", lambda *args: None)
    body = batch((1, ringing("101", "c1", 1)), (2, ringing("101", "c2", 2)))
    dispatch.on_message(rt, {"requestContext": {"connectionId": CID}, "body": body})
    assert passed == ["c2"] and "CRM processing of c1 failed; the sweeper retries it" in caplog.text
