"""Edge cases real traces cannot show: bad input, AMI gaps, memory. Real call flows are in test_replay_*."""

from __future__ import annotations

import pytest
from ami_builders import Pbx

from edge_agent.calls import CallInterpreter
from wire_protocol.call_events import CallEnded, CallEvent, CallRinging, CallRingStopped, CallStarted

Leg = tuple[str, str]


def inbound_answered(pbx: Pbx, it: CallInterpreter, trunk_seq: int, ext: str = "101") -> list[CallEvent]:
    trunk: Leg = (f"PJSIP/carrier-{trunk_seq:08x}", pbx.uid())
    phone: Leg = (f"PJSIP/{ext}-{trunk_seq + 1:08x}", pbx.uid())
    linkedid = trunk[1]
    events = it.feed_many(
        [
            pbx.newchannel(trunk[0], trunk[1], CallerIDNum="79261234567", Exten="74951234567"),
            pbx.newchannel(phone[0], phone[1], linkedid),
            pbx.dial_begin(trunk, phone, linkedid, f"PJSIP/{ext}"),
            pbx.dial_end(trunk, phone, linkedid, "ANSWER"),
            pbx.bridge_enter(phone, linkedid),
            pbx.bridge_enter(trunk, linkedid),
            pbx.hangup(trunk, linkedid),
            pbx.hangup(phone, linkedid),
        ]
    )
    return events


def summaries(events: list[CallEvent]) -> list[dict[str, object]]:
    return [e.summary.to_json_dict() for e in events if isinstance(e, CallEnded)]


def test_sequence_numbers_and_event_ids_are_per_call() -> None:
    events = inbound_answered(Pbx(), CallInterpreter(), 1)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.event_id for e in events}) == len(events)
    assert [e.type for e in events] == ["call_started", "ringing", "answered", "call_ended"]


def test_bad_input_never_raises_and_other_calls_survive() -> None:
    pbx, it = Pbx(), CallInterpreter()
    garbage: list[dict[str, str]] = [
        {},
        {"Event": ""},
        {"Event": "Hangup"},
        {"Event": "Hangup", "Uniqueid": "never-seen"},
        {"Event": "Newchannel"},
        {"Event": "DialBegin", "DestUniqueid": "nope"},
        {"Event": "DialEnd", "DestUniqueid": "nope", "DialStatus": "ANSWER"},
        {"Event": "BlindTransfer", "Result": "Success", "TransfereeUniqueid": "nope"},
        {"Event": "AttendedTransfer", "Result": "Success"},
        {"Event": "Pickup", "Channel": "PJSIP/102-1", "TargetUniqueid": "nope"},
        {"Event": "VarSet", "Variable": "MIXMONITOR_FILENAME"},
        {"Event": "Newexten", "Application": "MixMonitor", "Uniqueid": "nope", "AppData": "x.wav"},
        {"Event": "Newchannel", "Channel": "weird", "Uniqueid": "u1", "_ts": "not-a-time"},
        {"Event": "SomethingNew", "Uniqueid": "u1"},
    ]
    for message in garbage:
        assert it.feed(message) == [] or True  # must not raise
    assert summaries(inbound_answered(pbx, it, 10))[0]["result"] == "answered"
    assert it.anomalies["Hangup for a channel never seen"] == 2


def test_a_duplicate_newchannel_is_ignored() -> None:
    pbx, it = Pbx(), CallInterpreter()
    message = pbx.newchannel("PJSIP/carrier-1", "u1", CallerIDNum="1234567", Exten="74951234567")
    assert len(it.feed(message)) == 1
    assert it.feed(message) == []
    assert it.anomalies["Newchannel for a channel already known"] == 1


def test_memory_is_released_after_every_call() -> None:
    pbx, it = Pbx(), CallInterpreter()
    for n in range(2000):
        inbound_answered(pbx, it, 2 * n + 1, ext=str(100 + n % 50))
    assert it.open_calls == 0 and it.open_channels == 0


def test_anonymous_caller_has_no_external_number() -> None:
    for presented in ("anonymous", "<unknown>", "", "Anonymous"):
        pbx, it = Pbx(), CallInterpreter()
        [started] = it.feed(pbx.newchannel("PJSIP/carrier-1", "u1", CallerIDNum=presented, Exten="74951234567"))
        assert isinstance(started, CallStarted) and started.external_number is None


def test_extension_that_dials_nothing_is_not_a_call() -> None:
    pbx, it = Pbx(), CallInterpreter()
    phone: Leg = ("PJSIP/101-00000001", pbx.uid())
    assert it.feed_many([pbx.newchannel(*phone, Exten="*97"), pbx.hangup(phone, phone[1])]) == []
    assert it.open_calls == 0


def test_ringing_leg_that_vanishes_without_dialend_is_hidden() -> None:
    pbx, it = Pbx(), CallInterpreter()
    trunk: Leg = ("PJSIP/carrier-00000001", pbx.uid())
    phone: Leg = ("PJSIP/101-00000002", pbx.uid())
    lid = trunk[1]
    events = it.feed_many(
        [
            pbx.newchannel(*trunk, CallerIDNum="79261234567", Exten="74951234567"),
            pbx.newchannel(phone[0], phone[1], lid),
            pbx.dial_begin(trunk, phone, lid, "PJSIP/101"),
            pbx.ringing(phone, lid),
            pbx.hangup(phone, lid, cause="19"),
            pbx.hangup(trunk, lid),
        ]
    )
    stopped = [e for e in events if isinstance(e, CallRingStopped)]
    assert [(e.extension, e.reason) for e in stopped] == [("101", "no_answer")]
    assert summaries(events)[0]["result"] == "missed"


def test_a_busy_phone_never_rang() -> None:
    """DialEnd BUSY with no Ringing before it: no card was shown, so there is nothing to hide."""
    pbx, it = Pbx(), CallInterpreter()
    trunk: Leg = ("PJSIP/carrier-00000001", pbx.uid())
    phone: Leg = ("PJSIP/101-00000002", pbx.uid())
    lid = trunk[1]
    events = it.feed_many(
        [
            pbx.newchannel(*trunk, CallerIDNum="79261234567", Exten="74951234567"),
            pbx.newchannel(phone[0], phone[1], lid),
            pbx.dial_begin(trunk, phone, lid, "PJSIP/101"),
            pbx.dial_end(trunk, phone, lid, "BUSY"),
            pbx.hangup(phone, lid, cause="17"),
            pbx.hangup(trunk, lid),
        ]
    )
    assert [e.type for e in events] == ["call_started", "call_ended"]
    [summary] = summaries(events)
    assert summary["rang"] == [] and summary["result"] == "missed"


def test_reconcile_ends_calls_the_pbx_no_longer_has() -> None:
    pbx, it = Pbx(), CallInterpreter()
    trunk: Leg = ("PJSIP/carrier-00000001", pbx.uid())
    phone: Leg = ("PJSIP/101-00000002", pbx.uid())
    lid = trunk[1]
    it.feed_many(
        [
            pbx.newchannel(*trunk, CallerIDNum="79261234567", Exten="74951234567"),
            pbx.newchannel(phone[0], phone[1], lid),
            pbx.dial_begin(trunk, phone, lid, "PJSIP/101"),
            pbx.ringing(phone, lid),
        ]
    )
    events = it.reconcile([], at=pbx.now + 60)
    assert [e.type for e in events] == ["ring_stopped", "call_ended"]
    ended = events[-1]
    assert isinstance(ended, CallEnded) and ended.reason == "lost" and ended.summary.result == "missed"
    assert it.open_calls == 0 and it.open_channels == 0


def test_reconcile_keeps_live_calls_and_adopts_new_ones() -> None:
    pbx, it = Pbx(), CallInterpreter()
    trunk: Leg = ("PJSIP/carrier-00000001", pbx.uid())
    it.feed(pbx.newchannel(*trunk, CallerIDNum="79261234567", Exten="74951234567"))
    gap_trunk: Leg = ("PJSIP/carrier-00000005", "pbx-new.5")
    gap_phone: Leg = ("PJSIP/102-00000006", "pbx-new.6")
    snapshot = [
        {"Event": "CoreShowChannel", "Channel": trunk[0], "Uniqueid": trunk[1], "Linkedid": trunk[1]},
        {
            "Event": "CoreShowChannel",
            "Channel": gap_phone[0],
            "Uniqueid": gap_phone[1],
            "Linkedid": gap_trunk[1],
            "ChannelState": "6",
        },
        {
            "Event": "CoreShowChannel",
            "Channel": gap_trunk[0],
            "Uniqueid": gap_trunk[1],
            "Linkedid": gap_trunk[1],
            "CallerIDNum": "79031112233",
            "Exten": "74951234500",
            "ChannelState": "6",
        },
    ]
    events = it.reconcile(snapshot, at=pbx.now + 5)
    assert [(e.type, e.call_id) for e in events] == [("call_started", gap_trunk[1]), ("answered", gap_trunk[1])]
    assert it.open_calls == 2
    pbx.tick(10)
    ended = it.feed_many([pbx.hangup(gap_trunk, gap_trunk[1]), pbx.hangup(gap_phone, gap_trunk[1])])
    [summary] = summaries(ended)
    assert summary["answered_by"] == "102" and summary["external_number"] == "79031112233"


def test_originate_ringing_the_user_first_is_not_an_internal_call() -> None:
    """Originate(Local/101@from-internal) rings 101 through the Local pair, then dials the client."""
    pbx, it = Pbx(), CallInterpreter()
    local1: Leg = ("Local/101@from-internal-00000001;1", pbx.uid())
    local2: Leg = ("Local/101@from-internal-00000001;2", pbx.uid())
    phone: Leg = ("PJSIP/101-00000003", pbx.uid())
    trunk: Leg = ("PJSIP/carrier-00000004", pbx.uid())
    lid = local1[1]
    events = it.feed_many(
        [
            pbx.newchannel(*local1),
            pbx.newchannel(local2[0], local2[1], lid),
            {"Event": "VarSet", "Uniqueid": local1[1], "Variable": "PBXLINK_COMMAND_ID", "Value": "cmd-1"},
            {"Event": "VarSet", "Uniqueid": local1[1], "Variable": "PBXLINK_DIAL_NUMBER", "Value": "79261234567"},
            pbx.newchannel(phone[0], phone[1], lid),
            pbx.dial_begin(local2, phone, lid, "PJSIP/101"),
            pbx.dial_end(local2, phone, lid, "ANSWER"),
            pbx.newchannel(trunk[0], trunk[1], lid),
            pbx.dial_begin(local1, trunk, lid, "PJSIP/79261234567@carrier"),
            pbx.dial_end(local1, trunk, lid, "BUSY"),
            pbx.hangup(trunk, lid, "17"),
            pbx.hangup(local1, lid),
            pbx.hangup(local2, lid),
            pbx.hangup(phone, lid),
        ]
    )
    assert not any(isinstance(e, CallRinging) for e in events)
    [summary] = summaries(events)
    assert summary["direction"] == "outbound" and summary["caller_extension"] == "101"
    assert summary["external_number"] == "79261234567" and summary["command_id"] == "cmd-1"
    assert summary["result"] == "busy" and summary["rang"] == []


def test_originate_the_user_never_answers() -> None:
    pbx, it = Pbx(), CallInterpreter()
    phone: Leg = ("PJSIP/101-00000001", pbx.uid())
    events = it.feed_many(
        [
            pbx.newchannel(*phone),
            {"Event": "VarSet", "Uniqueid": phone[1], "Variable": "__PBXLINK_COMMAND_ID", "Value": "cmd-2"},
            {"Event": "VarSet", "Uniqueid": phone[1], "Variable": "PBXLINK_DIAL_NUMBER", "Value": "79261234567"},
            pbx.dial_begin(None, phone, phone[1], "PJSIP/101"),
            pbx.dial_end(None, phone, phone[1], "NOANSWER"),
            pbx.hangup(phone, phone[1], "19"),
        ]
    )
    [summary] = summaries(events)
    assert summary["direction"] == "outbound" and summary["result"] == "no_answer"
    assert summary["command_id"] == "cmd-2" and summary["external_number"] == "79261234567"


def test_new_rules_apply_to_channels_from_then_on() -> None:
    from wire_protocol.channel_rules import ChannelRules

    pbx, it = Pbx(), CallInterpreter()
    [started] = it.feed(pbx.newchannel("PJSIP/reception-00000001", "u1", CallerIDNum="200", Exten="79261234567"))
    assert isinstance(started, CallStarted) and started.direction == "inbound"  # "reception" looked like a trunk
    it.set_rules(ChannelRules(extensions=frozenset({"reception"})))
    assert it.feed(pbx.newchannel("PJSIP/reception-00000002", "u2", Exten="79261234567")) == []  # an extension now


def test_a_phone_that_reports_ringing_before_its_dialbegin_still_rang() -> None:
    """Asterisk publishes a member's Newstate Ringing and the queue's DialBegin from different threads: seen live,
    Ringing first. The extension rang all the same, and its card must be shown and hidden."""
    pbx, it = Pbx(), CallInterpreter()
    trunk: Leg = ("PJSIP/carrier-00000001", pbx.uid())
    a: Leg = ("PJSIP/101-00000002", pbx.uid())
    b: Leg = ("PJSIP/102-00000003", pbx.uid())
    lid = trunk[1]
    ringing_a = pbx.dial_begin(trunk, a, lid, "PJSIP/101")
    ringing_a["DestChannelState"] = "5"
    events = it.feed_many(
        [
            pbx.newchannel(*trunk, CallerIDNum="79261234567", Exten="74951234500"),
            pbx.newchannel(a[0], a[1], lid),
            pbx.ringing(a, lid),  # before its DialBegin
            ringing_a,
            pbx.newchannel(b[0], b[1], lid),
            pbx.dial_begin(trunk, b, lid, "PJSIP/102"),
            pbx.ringing(b, lid),
            pbx.dial_end(trunk, b, lid, "ANSWER"),
            pbx.dial_end(trunk, a, lid, "CANCEL"),
            pbx.hangup(a, lid, "26"),
            pbx.hangup(trunk, lid),
            pbx.hangup(b, lid),
        ]
    )
    [summary] = summaries(events)
    assert summary["rang"] == ["101", "102"] and summary["answered_by"] == "102"
    assert [(e.extension, e.reason) for e in events if isinstance(e, CallRingStopped)] == [
        ("101", "answered_elsewhere")
    ]


def test_ringing_before_dialbegin_is_remembered_even_without_dest_state() -> None:
    pbx, it = Pbx(), CallInterpreter()
    trunk: Leg = ("PJSIP/carrier-00000001", pbx.uid())
    a: Leg = ("PJSIP/101-00000002", pbx.uid())
    lid = trunk[1]
    events = it.feed_many(
        [
            pbx.newchannel(*trunk, CallerIDNum="79261234567", Exten="74951234567"),
            pbx.newchannel(a[0], a[1], lid),
            pbx.ringing(a, lid),
            pbx.dial_begin(trunk, a, lid, "PJSIP/101"),  # no DestChannelState in this event
        ]
    )
    assert [e.type for e in events] == ["call_started", "ringing"]


def test_anomaly_logs_mask_phone_numbers(caplog: pytest.LogCaptureFixture) -> None:
    it = CallInterpreter()
    it.feed({"Event": "Hangup", "Uniqueid": "pbx-1.9", "Channel": "PJSIP/carrier-1", "CallerIDNum": "79261234567"})
    assert "Hangup for a channel never seen" in caplog.text
    assert "79261234567" not in caplog.text and "pbx-1.9" in caplog.text
