"""Regressions found by the fuzz tier (tests/fuzz/test_fuzz_call_interpreter.py): orphan events, the channel cap."""

from __future__ import annotations

from edge_agent.calls import CallInterpreter
from edge_agent.calls.interpreter import MAX_OPEN_CHANNELS
from wire_protocol.call_events import CallEnded


def test_a_call_whose_start_was_missed_sends_no_orphan_answer_or_transfer() -> None:
    """Its first channel's Newchannel never came, so its direction is unknown and it never starts: an answer or a
    transfer seen on it used to go out as lone events the cloud could never tie to a started or ended call."""
    it = CallInterpreter()
    events = it.feed_many(
        [
            {"Event": "Newchannel", "Channel": "PJSIP/101-00000001", "Uniqueid": "u1", "Linkedid": "u1", "_ts": "1"},
            {
                "Event": "AttendedTransfer",
                "Result": "Success",
                "TransfereeUniqueid": "u1",
                "OrigTransfererChannel": "PJSIP/101-00000001",
                "TransferTargetChannel": "PJSIP/102-00000002",
                "_ts": "2",
            },
            {"Event": "Hangup", "Channel": "PJSIP/101-00000001", "Uniqueid": "u1", "Linkedid": "u1", "_ts": "3"},
        ]
    )
    assert events == []
    assert it.open_calls == 0 and it.anomalies["internal error while interpreting"] == 0


def test_channels_beyond_the_cap_push_the_oldest_out_as_lost() -> None:
    it = CallInterpreter()
    ended: list[CallEnded] = []
    for n in range(MAX_OPEN_CHANNELS + 3):
        uid = f"c{n}"
        message = {"Event": "Newchannel", "Channel": f"PJSIP/carrier-{n:08x}", "Uniqueid": uid, "Linkedid": uid}
        ended += [e for e in it.feed(message) if isinstance(e, CallEnded)]
    assert it.open_channels == MAX_OPEN_CHANNELS
    assert [(e.call_id, e.reason) for e in ended] == [("c0", "lost"), ("c1", "lost"), ("c2", "lost")]
    assert it.anomalies["too many open channels"] == 3
