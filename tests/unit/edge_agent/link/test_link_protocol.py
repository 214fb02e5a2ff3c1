"""The link state machine with a fake clock: hello/welcome, replay, window, acks, heartbeats, renewal,
duplicate commands, cloud errors and garbage."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.link.protocol import (
    ApplySettings,
    Close,
    Effect,
    LinkProtocol,
    LinkTimings,
    OpenCandidate,
    RunCommand,
    Send,
)
from edge_agent.outbox import Outbox
from wire_protocol.call_events import CallEvent, CallRinging
from wire_protocol.messages import (
    Ack,
    AgentMessage,
    AgentSettings,
    CallEventsBatch,
    Command,
    CommandResult,
    ErrorMessage,
    Heartbeat,
    Hello,
    OriginateCommand,
    Welcome,
    decode_agent_message,
    encode,
)

T0 = 1_800_000_000.0


def ringing(call: str, seq: int = 1) -> CallEvent:
    return CallRinging(call_id=call, seq=seq, at=datetime(2026, 1, 1, tzinfo=UTC), extension="101")


def sent(effects: list[Effect], conn: int | None = None) -> list[AgentMessage]:
    return [decode_agent_message(e.text) for e in effects if isinstance(e, Send) and conn in (None, e.conn)]


def seqs(effects: list[Effect], conn: int | None = None) -> list[int]:
    return [ev.seq for m in sent(effects, conn) if isinstance(m, CallEventsBatch) for ev in m.events]


def welcome(acked: int = 0) -> str:
    return encode(Welcome(agent_id="a1", tenant="t1", acked_seq=acked))


def ack(up_to: int) -> str:
    return encode(Ack(up_to_seq=up_to))


def command(command_id: str) -> str:
    return encode(Command(command_id=command_id, command=OriginateCommand(extension="101", number="79001234567")))


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.db", clock=lambda: T0)


def link(outbox: Outbox, **timings: float) -> LinkProtocol:
    return LinkProtocol(outbox, Hello(agent_version="0.1.0"), timings=LinkTimings(**timings), rng=lambda: 0.5)  # type: ignore[arg-type]


def connected(protocol: LinkProtocol, conn: int = 1, acked: int = 0, now: float = T0) -> list[Effect]:
    hello = protocol.connection_opened(conn, now)
    assert [type(m) for m in sent(hello)] == [Hello]
    return protocol.received(conn, welcome(acked), now)


def test_hello_first_then_nothing_until_welcome_then_the_outbox_in_order(outbox: Outbox) -> None:
    outbox.append([ringing("a", n) for n in range(1, 4)])
    protocol = link(outbox)
    opened = protocol.connection_opened(1, T0)
    [hello] = sent(opened)
    assert isinstance(hello, Hello) and hello.outbox_depth == 3
    assert protocol.events_stored(T0) == []  # not welcomed yet
    assert seqs(protocol.received(1, welcome(), T0)) == [1, 2, 3]
    outbox.append([ringing("b")])
    assert seqs(protocol.events_stored(T0 + 1)) == [4]


def test_welcome_drops_what_the_cloud_already_holds(outbox: Outbox) -> None:
    outbox.append([ringing("a", n) for n in range(1, 6)])
    outbox.mark_welcomed()  # an earlier session sent 1-5; the cloud stored 1-3 before the link broke
    protocol = link(outbox)
    assert seqs(connected(protocol, acked=3)) == [4, 5]
    assert [e.seq for e in outbox.pending()] == [4, 5]


def test_a_new_outbox_never_forgets_events_because_of_an_earlier_installations_acks(outbox: Outbox) -> None:
    """The data directory was wiped and 1,500 events piled up before the first connection; the cloud holds
    seq 1,000 from the old installation. Nothing of this outbox was ever sent: nothing may be dropped."""
    outbox.append([ringing(f"call-{n}", 1) for n in range(1500)])
    protocol = link(outbox, window_events=5000, window_batches=100)
    sent_seqs = seqs(connected(protocol, acked=1000))
    assert outbox.depth == 1500
    assert sent_seqs == list(range(1001, 2501))


def test_a_cloud_ahead_of_a_reset_outbox_gets_the_pending_events_renumbered_not_dropped(outbox: Outbox) -> None:
    outbox.append([ringing("a", 1), ringing("a", 2)])
    protocol = link(outbox)
    assert seqs(connected(protocol, acked=500)) == [501, 502]
    assert outbox.depth == 2


def test_the_window_bounds_events_in_flight_and_acks_open_it(outbox: Outbox) -> None:
    outbox.append([ringing("a", n) for n in range(1, 13)])
    protocol = link(outbox, window_events=5)
    assert seqs(connected(protocol)) == [1, 2, 3, 4, 5]
    assert protocol.in_flight == 5
    assert seqs(protocol.received(1, ack(3), T0 + 1)) == [6, 7, 8]
    assert outbox.depth == 9 and [e.seq for e in outbox.pending(limit=1)] == [4]
    assert seqs(protocol.received(1, ack(3), T0 + 1)) == []  # a repeated ack changes nothing


def test_every_batch_says_where_it_continues_from(outbox: Outbox) -> None:
    outbox.append([ringing("a", n) for n in range(1, 5)])
    protocol = link(outbox, window_events=2)
    [first] = [m for m in sent(connected(protocol)) if isinstance(m, CallEventsBatch)]
    assert (first.after_seq, [e.seq for e in first.events]) == (0, [1, 2])
    [second] = [m for m in sent(protocol.received(1, ack(2), T0 + 1)) if isinstance(m, CallEventsBatch)]
    assert (second.after_seq, [e.seq for e in second.events]) == (2, [3, 4])
    protocol.connection_closed(1, T0 + 2)
    [again] = [m for m in sent(connected(protocol, conn=2, acked=2, now=T0 + 3)) if isinstance(m, CallEventsBatch)]
    assert again.after_seq == 2  # a replay continues from the cloud's ack


def test_an_ack_beyond_what_was_sent_deletes_nothing_unsent(outbox: Outbox) -> None:
    outbox.append([ringing("a", n) for n in range(1, 4)])
    protocol = link(outbox, window_events=2)
    connected(protocol)
    protocol.received(1, ack(99), T0 + 1)
    assert [e.seq for e in outbox.pending()] == [3]  # 1 and 2 were sent and acked; 3 had not been sent


def test_many_events_are_batched_under_the_frame_limit(outbox: Outbox) -> None:
    outbox.append([ringing(f"call-{n:04d}-" + "x" * 100, 1) for n in range(600)])
    protocol = link(outbox)
    effects = connected(protocol)
    assert len([m for m in sent(effects) if isinstance(m, CallEventsBatch)]) == 2  # window_batches
    delivered = seqs(effects)
    for step in range(1, 20):
        if len(delivered) == 600:
            break
        more = protocol.received(1, ack(delivered[-1]), T0 + step)  # each ack lets the next batch go
        effects += more
        delivered += seqs(more)
    assert delivered == list(range(1, 601))
    assert all(len(e.text.encode()) <= 32_000 for e in effects if isinstance(e, Send))


def test_events_stored_while_a_batch_waits_go_out_together_after_its_ack(outbox: Outbox) -> None:
    protocol = link(outbox, window_batches=1)
    connected(protocol)
    outbox.append([ringing("a", 1)])
    assert seqs(protocol.events_stored(T0 + 1)) == [1]  # an idle link sends at once
    for n in range(2, 7):
        outbox.append([ringing("a", n)])
        assert protocol.events_stored(T0 + 1) == []  # one batch in flight: the rest waits
    after_ack = sent(protocol.received(1, ack(1), T0 + 2))
    assert [[e.seq for e in m.events] for m in after_ack if isinstance(m, CallEventsBatch)] == [[2, 3, 4, 5, 6]]


def test_heartbeat_only_when_idle_and_well_inside_ten_minutes(outbox: Outbox) -> None:
    protocol = link(outbox)
    connected(protocol)
    assert protocol.next_deadline() == T0 + 240
    assert protocol.tick(T0 + 239) == []
    [beat] = sent(protocol.tick(T0 + 240))
    assert isinstance(beat, Heartbeat) and beat.sent_at == datetime.fromtimestamp(T0 + 240, UTC)
    outbox.append([ringing("a")])
    protocol.events_stored(T0 + 300)  # sending anything postpones the next heartbeat
    protocol.received(1, ack(1), T0 + 300)
    assert protocol.next_deadline() == T0 + 540
    assert protocol.tick(T0 + 480) == []


def test_a_clock_set_back_does_not_delay_the_heartbeat(outbox: Outbox) -> None:
    protocol = link(outbox)
    connected(protocol)
    protocol.tick(T0 + 100)
    back = T0 + 100 - 3600  # NTP stepped the clock back an hour
    assert protocol.tick(back) == []
    assert protocol.next_deadline() == back + 140  # still 240 s after the last message, not an hour later
    [beat] = sent(protocol.tick(back + 140))
    assert isinstance(beat, Heartbeat)


def test_ami_state_changes_are_reported_at_once(outbox: Outbox) -> None:
    protocol = link(outbox)
    connected(protocol)
    [beat] = sent(protocol.set_ami_connected(False, T0 + 5))
    assert isinstance(beat, Heartbeat) and beat.ami_connected is False
    assert protocol.set_ami_connected(False, T0 + 6) == []


def test_renewal_is_make_before_break(outbox: Outbox) -> None:
    protocol = link(outbox, heartbeat_idle=10_000)
    connected(protocol)
    retire = T0 + 105 * 60  # rng 0.5: no jitter
    assert protocol.next_deadline() == retire
    assert not any(isinstance(e, OpenCandidate) for e in protocol.tick(retire - 1))
    assert protocol.tick(retire) == [OpenCandidate()]
    outbox.append([ringing("a")])
    assert protocol.events_stored(retire + 1) == []  # paused while the old connection drains
    assert [type(m) for m in sent(protocol.connection_opened(2, retire + 1))] == [Hello]
    effects = protocol.received(2, welcome(0), retire + 2)
    assert Close(1, "renewed") in effects  # the old one closes only once the new one is welcomed
    assert seqs(effects, conn=2) == [1]
    assert protocol.connection_closed(1, retire + 3) == []
    assert protocol.established


def test_a_renewal_that_is_not_welcomed_is_abandoned_and_retried(outbox: Outbox) -> None:
    protocol = link(outbox, heartbeat_idle=10_000)
    connected(protocol)
    retire = T0 + 105 * 60
    protocol.tick(retire)
    protocol.connection_opened(2, retire)
    effects = protocol.tick(retire + 30)
    assert Close(2, "no welcome within 30 s") in effects
    protocol.connection_closed(2, retire + 31)
    assert protocol.established  # the old connection carries on
    assert OpenCandidate() in protocol.tick(retire + 31 + 60)


def test_a_renewal_that_never_opens_does_not_pause_sending_forever(outbox: Outbox) -> None:
    protocol = link(outbox, heartbeat_idle=10_000)
    connected(protocol)
    retire = T0 + 105 * 60
    assert protocol.tick(retire) == [OpenCandidate()]  # and the driver never reports back
    outbox.append([ringing("a")])
    assert protocol.events_stored(retire + 1) == []
    assert protocol.next_deadline() == retire + 60
    assert seqs(protocol.tick(retire + 60)) == [1]


def test_a_cut_connection_resends_what_was_not_acked(outbox: Outbox) -> None:
    outbox.append([ringing("a", n) for n in range(1, 5)])
    protocol = link(outbox)
    connected(protocol)
    protocol.received(1, ack(2), T0 + 1)
    assert protocol.connection_closed(1, T0 + 2) == []
    assert not protocol.has_connection
    assert seqs(connected(protocol, conn=2, acked=2, now=T0 + 5)) == [3, 4]


def test_no_ack_in_time_sends_again(outbox: Outbox) -> None:
    outbox.append([ringing("a", 1)])
    protocol = link(outbox)
    connected(protocol)
    assert protocol.next_deadline() == T0 + 60
    assert seqs(protocol.tick(T0 + 60)) == [1]


def test_a_command_delivered_twice_while_running_runs_once(outbox: Outbox) -> None:
    protocol = link(outbox)
    connected(protocol)
    [run] = protocol.received(1, command("c1"), T0)
    assert isinstance(run, RunCommand) and run.command.command_id == "c1"
    assert protocol.received(1, command("c1"), T0 + 1) == []
    result = CommandResult(command_id="c1", ok=True, code="answered")
    outbox.begin_command("c1")
    outbox.finish_command(result)
    assert sent(protocol.command_finished(result, T0 + 2)) == [result]


def test_command_results_are_resent_after_a_reconnect_until_confirmed(outbox: Outbox) -> None:
    result = CommandResult(command_id="c1", ok=True, code="answered")
    outbox.begin_command("c1")
    outbox.finish_command(result)
    protocol = link(outbox)
    assert result in sent(connected(protocol, now=T0))
    protocol.connection_closed(1, T0 + 1)
    assert result in sent(connected(protocol, conn=2, now=T0 + 2))  # not confirmed: sent again
    outbox.append([ringing("a")])
    protocol.events_stored(T0 + 3)
    protocol.received(2, ack(1), T0 + 3)  # later events acked: proves nothing when the cloud runs in parallel
    assert outbox.undelivered_results() == [result]
    protocol.received(2, encode(Ack(up_to_seq=1, results=["c1"])), T0 + 4)  # confirmed by name
    assert outbox.undelivered_results() == []


def test_an_ack_for_events_sent_before_a_result_does_not_confirm_it(outbox: Outbox) -> None:
    outbox.append([ringing("a", 1)])
    protocol = link(outbox)
    connected(protocol)  # seq 1 in flight
    result = CommandResult(command_id="c1", ok=True, code="answered")
    outbox.begin_command("c1")
    outbox.finish_command(result)
    assert sent(protocol.command_finished(result, T0 + 1)) == [result]
    protocol.received(1, ack(1), T0 + 2)
    assert outbox.undelivered_results() == [result]  # that ack says nothing about the result


def test_a_result_is_sent_even_while_the_connection_is_being_renewed(outbox: Outbox) -> None:
    protocol = link(outbox, heartbeat_idle=10_000)
    connected(protocol)
    assert protocol.tick(T0 + 105 * 60) == [OpenCandidate()]
    result = CommandResult(command_id="c1", ok=False, code="busy")
    assert [
        (e.conn, decode_agent_message(e.text))
        for e in protocol.command_finished(result, T0 + 105 * 60)
        if isinstance(e, Send)
    ] == [(1, result)]


def test_settings_are_handed_over(outbox: Outbox) -> None:
    protocol = link(outbox)
    connected(protocol)
    settings = AgentSettings()
    assert protocol.received(1, encode(settings), T0) == [ApplySettings(settings)]


def test_a_revoked_token_closes_the_connection_as_refused(outbox: Outbox) -> None:
    protocol = link(outbox)
    connected(protocol)
    error = encode(ErrorMessage(code="not_authorized", message="token revoked"))
    assert protocol.received(1, error, T0) == [Close(1, "not authorized", token_refused=True)]


def test_a_batch_the_cloud_failed_to_store_is_resent_later(outbox: Outbox) -> None:
    outbox.append([ringing("a", 1)])
    protocol = link(outbox)
    connected(protocol)
    error = encode(ErrorMessage(code="internal", message="dynamodb throttled", about="call_events"))
    assert protocol.received(1, error, T0 + 1) == []
    assert protocol.next_deadline() == T0 + 11
    assert seqs(protocol.tick(T0 + 11)) == [1]


@pytest.mark.parametrize("failure", ["Internal server error", "Endpoint request timed out"])
def test_api_gateways_failure_frame_resends_the_unacked_events_soon_and_is_not_answered(
    outbox: Outbox, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    """API Gateway's own frame when the handler failed or timed out: not a cloud message, not garbage."""
    outbox.append([ringing("a", 1), ringing("b", 2)])
    protocol = link(outbox, ack_timeout=60)
    assert seqs(connected(protocol)) == [1, 2]
    frame = f'{{"message": "{failure}", "connectionId": "c-1", "requestId": "r-1"}}'
    with caplog.at_level(logging.WARNING):
        assert protocol.received(1, frame, T0 + 1) == []  # no error sent back
    assert failure in caplog.text and protocol.garbage_received == 0
    assert protocol.next_deadline() == T0 + 11  # error_retry, not ack_timeout
    assert seqs(protocol.tick(T0 + 11)) == [1, 2]
    assert protocol.received(1, ack(2), T0 + 12) == []
    assert protocol.received(1, frame, T0 + 13) == []  # nothing in flight: only logged
    deadline = protocol.next_deadline()
    assert deadline is not None and deadline > T0 + 60


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        (b"\x00\x01", "bad_json"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        ('{"type": "ack", "v": 7, "up_to_seq": 1}', "unsupported_version"),
        ('{"type": "ack", "up_to_seq": -1}', "invalid_message"),
        ('{"type": "ack", "up_to_seq": 1, "pad": "' + "x" * 40_000 + '"}', "too_large"),
    ],
)
def test_garbage_is_answered_with_an_error_and_the_connection_kept(
    outbox: Outbox, garbage: str | bytes, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    outbox.append([ringing("a", 1)])
    protocol = link(outbox)
    connected(protocol)
    with caplog.at_level(logging.WARNING, logger="edge_agent.link.protocol"):
        first = protocol.received(1, garbage, T0 + 1)
        again = protocol.received(1, garbage, T0 + 2)
    [reply] = sent(first)
    assert isinstance(reply, ErrorMessage) and reply.code == code
    assert not any(isinstance(e, Close) for e in first + again)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1  # once per kind and connection
    protocol.received(1, ack(1), T0 + 3)  # and the link still works
    assert outbox.depth == 0


def test_an_error_is_never_answered_with_an_error(outbox: Outbox) -> None:
    protocol = link(outbox)
    connected(protocol)
    assert protocol.received(1, '{"type": "error", "code": 5}', T0) == []
    assert protocol.received(1, encode(ErrorMessage(code="bad_json", message="?")), T0) == []


def test_an_event_too_large_for_any_message_is_set_aside_and_the_rest_flows(outbox: Outbox) -> None:
    huge = CallRinging(call_id="b", seq=1, at=datetime(2026, 1, 1, tzinfo=UTC), extension="1" * 40_000)
    outbox.append([ringing("a", 1), huge, ringing("a", 2)])
    protocol = link(outbox)
    assert seqs(connected(protocol)) == [1, 3]
    assert outbox.stats().rejected == 1


def test_no_welcome_closes_the_connection(outbox: Outbox) -> None:
    protocol = link(outbox)
    protocol.connection_opened(1, T0)
    assert protocol.next_deadline() == T0 + 30
    assert protocol.tick(T0 + 30) == [Close(1, "no welcome within 30 s")]


def test_a_result_the_cloud_could_not_store_goes_again_shortly(outbox: Outbox) -> None:
    result = CommandResult(command_id="c1", ok=True, code="answered")
    outbox.begin_command("c1")
    outbox.finish_command(result)
    protocol = link(outbox)
    assert result in sent(connected(protocol, now=T0))
    refused = ErrorMessage(code="internal", message="storage failed", about="command_result")
    assert protocol.received(1, encode(refused), T0 + 1) == []  # no close: the link is fine
    assert result not in sent(protocol.tick(T0 + 5))
    assert result in sent(protocol.tick(T0 + 12))  # error_retry later, not at the next welcome (~105 min)
    protocol.received(1, encode(Ack(up_to_seq=0, results=["c1"])), T0 + 13)
    assert outbox.undelivered_results() == []


def test_a_result_for_someone_elses_command_does_not_look_like_a_revoked_token(outbox: Outbox) -> None:
    protocol = link(outbox)
    connected(protocol)
    refused = ErrorMessage(
        code="not_authorized", message="that command was not sent to this agent", about="command_result"
    )
    assert not any(isinstance(e, Close) for e in protocol.received(1, encode(refused), T0 + 1))
