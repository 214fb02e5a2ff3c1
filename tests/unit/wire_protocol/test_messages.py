import json
from datetime import UTC, datetime

import pytest

from wire_protocol.call_events import CallEnded, CallRinging, CallSummary, Transfer
from wire_protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    CallEventsBatch,
    Command,
    Heartbeat,
    Hello,
    OriginateCommand,
    ProtocolError,
    SequencedEvent,
    Welcome,
    batch_events,
    decode_agent_message,
    decode_cloud_message,
    encode,
)

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def ended(call_id: str) -> CallEnded:
    summary = CallSummary(
        call_id=call_id,
        direction="inbound",
        external_number="79261234567",
        line="74951234567",
        caller_extension=None,
        rang=["101", "102"],
        answered_by="101",
        transfers=[Transfer(from_extension="101", to="102", kind="blind")],
        final_extension="102",
        result="answered",
        started_at=AT,
        answered_at=AT,
        ended_at=AT,
        talk_seconds=12,
        recording="in-1.wav",
        command_id=None,
    )
    return CallEnded(call_id=call_id, seq=5, at=AT, summary=summary)


def test_agent_messages_round_trip() -> None:
    batch = CallEventsBatch(events=[SequencedEvent(seq=1, event=ended("pbx-1.1"))])
    for message in (Hello(agent_version="0.1.0", capabilities=["originate"]), batch, Heartbeat(sent_at=AT)):
        assert decode_agent_message(encode(message)) == message
    assert '"from":"101"' in encode(batch)  # the summary contract's field name on the wire


def test_cloud_messages_round_trip() -> None:
    command = Command(command_id="c1", command=OriginateCommand(extension="101", number="+79261234567"))
    for message in (Ack(up_to_seq=7), command):
        assert decode_cloud_message(encode(message)) == message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        ('{"type": "ack", "up_to_seq": 1}', "unknown_type"),  # a cloud message sent by an agent
        ('{"type": "hello", "v": 2, "agent_version": "9"}', "unsupported_version"),
        ('{"type": "hello"}', "invalid_message"),
        ('{"type": "call_events", "events": []}', "invalid_message"),
        ('{"type": "heartbeat", "sent_at": "2026-01-01T00:00:00Z", "extra": 1}', "invalid_message"),
        ("x" * (MAX_MESSAGE_BYTES + 1), "too_large"),
    ],
)
def test_bad_agent_messages_get_a_clear_code(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_agent_message(text)
    assert caught.value.code == code


def test_binary_frames_are_refused() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        decode_cloud_message(b'{"type": "ack", "up_to_seq": 1}')


def test_originate_numbers_are_digits_only() -> None:
    bad = {"type": "command", "command_id": "c", "command": {"kind": "originate", "extension": "101", "number": "1;x"}}
    with pytest.raises(ProtocolError, match="invalid_message"):
        decode_cloud_message(json.dumps(bad))


def test_batches_keep_order_and_stay_under_the_frame_limit() -> None:
    events = [
        SequencedEvent(
            seq=n, event=ended(f"pbx-1.{n}") if n % 3 else CallRinging(call_id="c", seq=n, at=AT, extension="101")
        )
        for n in range(1, 400)
    ]
    batches = list(batch_events(events))
    assert len(batches) > 1
    assert [e.seq for b in batches for e in b.events] == list(range(1, 400))
    assert all(len(encode(b).encode()) <= MAX_MESSAGE_BYTES for b in batches)
    small = list(batch_events(events, max_bytes=4000))
    assert all(len(encode(b).encode()) <= 4000 for b in small)


@pytest.mark.parametrize(
    "command",
    [
        {"kind": "originate", "extension": "1\r\n\r\nAction: Hangup\r\nChannel: .*", "number": "79261234567"},
        {"kind": "originate", "extension": "101", "number": "79261234567", "caller_id": "x\r\nAction: Hangup"},
    ],
)
def test_nothing_from_the_cloud_can_smuggle_an_ami_action(command: dict[str, str]) -> None:
    with pytest.raises(ProtocolError, match="invalid_message"):
        decode_cloud_message(json.dumps({"type": "command", "command_id": "c", "command": command}))
    with pytest.raises(ProtocolError, match="invalid_message"):
        decode_cloud_message(
            json.dumps({"type": "command", "command_id": "c\r\nAction: Hangup", "command": {"kind": "reload"}})
        )
    with pytest.raises(ProtocolError, match="invalid_message"):
        decode_cloud_message(json.dumps({"type": "settings", "originate": {"context": "x\r\nAction: Hangup"}}))


def test_deeply_nested_json_is_bad_json_not_a_crash() -> None:
    with pytest.raises(ProtocolError, match="bad_json"):
        decode_agent_message("[" * 5000)


def test_values_the_cloud_could_never_store_are_refused_at_the_door() -> None:
    lone = '{"type": "heartbeat", "sent_at": "2026-01-01T00:00:00Z", "outbox_depth": 0, "x": "\\ud800"}'
    with pytest.raises(ProtocolError, match="bad_json"):
        decode_agent_message(lone)
    paired = '{"type": "hello", "agent_version": "\\ud83d\\ude00"}'  # an emoji: a valid pair
    assert decode_agent_message(paired) == Hello(agent_version="\U0001f600")
    long_call = {"type": "ringing", "call_id": "x" * 300, "seq": 1, "at": "2026-01-01T00:00:00Z", "extension": "1"}
    with pytest.raises(ProtocolError, match="invalid_message"):
        decode_agent_message(json.dumps({"type": "call_events", "events": [{"seq": 1, "event": long_call}]}))
    with pytest.raises(ProtocolError, match="invalid_message"):
        decode_agent_message(json.dumps({"type": "command_result", "command_id": "", "ok": True, "code": "x"}))
    with pytest.raises(ProtocolError) as caught:
        decode_agent_message(json.dumps({"type": "t" * 20_000}))
    assert len(caught.value.message) < 200  # the error quotes only the start of the bad value


def test_recording_messages_round_trip_and_stay_small() -> None:
    from wire_protocol.messages import RecordingAck, RecordingReady, RecordingResult, UploadRecording

    url = "https://pbxlink-recordings.s3.amazonaws.com/" + "t" * 64 + "/ag_0123456789abcdef/" + "c" * 256
    url += "/recording?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + "k" * 1200 + "&X-Amz-Signature=" + "f" * 64
    order = UploadRecording(call_id="c" * 256, url=url, key="k" * 1024, headers={"x-amz-meta-a": "b" * 1024})
    assert decode_cloud_message(encode(order)) == order
    assert len(encode(order)) < MAX_MESSAGE_BYTES // 4
    for message in (
        RecordingReady(call_id="pbx-1.1", size=0),
        RecordingResult(call_id="pbx-1.1", ok=True, key="k", format="mp3", size=1, sha256="0" * 64),
        RecordingResult(call_id="pbx-1.1", ok=False, error="missing", note="n" * 500),
    ):
        assert decode_agent_message(encode(message)) == message
    assert decode_cloud_message(encode(RecordingAck(call_id="pbx-1.1"))) == RecordingAck(call_id="pbx-1.1")


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "upload_recording", "call_id": "c", "url": "file:///etc/passwd"},
        {"type": "upload_recording", "call_id": "c", "url": "https://x", "headers": {"a": "b\r\nInjected: 1"}},
        {"type": "upload_recording", "call_id": "c", "format": "ogg"},
        {"type": "upload_recording", "call_id": ""},
    ],
)
def test_an_upload_order_the_agent_must_not_follow_is_invalid(raw: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_cloud_message(json.dumps(raw))
    assert caught.value.code == "invalid_message"


def test_a_result_with_a_bad_hash_is_invalid() -> None:
    raw = {"type": "recording_result", "call_id": "c", "ok": True, "sha256": "xyz"}
    with pytest.raises(ProtocolError, match="sha256"):
        decode_agent_message(json.dumps(raw))


def test_the_announced_hash_and_the_retry_ack_round_trip_and_old_forms_still_read() -> None:
    from wire_protocol.messages import RecordingAck, RecordingReady

    ready = RecordingReady(call_id="pbx-1.1", size=10, sha256="a" * 64, format="wav")
    assert decode_agent_message(encode(ready)) == ready
    old = decode_agent_message(json.dumps({"type": "recording_ready", "call_id": "pbx-1.1", "size": 10}))
    assert isinstance(old, RecordingReady) and (old.sha256, old.format) == (None, None)  # an older agent
    ack = RecordingAck(call_id="pbx-1.1", retry=True, reason="the object's SHA-256 is not the one announced")
    assert decode_cloud_message(encode(ack)) == ack
    plain = decode_cloud_message(json.dumps({"type": "recording_ack", "call_id": "pbx-1.1"}))
    assert isinstance(plain, RecordingAck) and not plain.retry  # an older cloud
    with pytest.raises(ProtocolError, match="sha256"):
        decode_agent_message(json.dumps({"type": "recording_ready", "call_id": "c", "size": 1, "sha256": "A" * 64}))


def test_an_agent_ignores_fields_a_newer_cloud_adds_but_the_cloud_stays_strict() -> None:
    welcome = {"type": "welcome", "agent_id": "a", "tenant": "t", "acked_seq": 3, "added_later": {"x": 1}}
    assert decode_cloud_message(json.dumps(welcome)) == Welcome(agent_id="a", tenant="t", acked_seq=3)
    command = {
        "type": "command",
        "command_id": "c",
        "command": {"kind": "originate", "extension": "101", "number": "+7926", "priority": "high"},
        "deadline": "soon",
    }
    decoded = decode_cloud_message(json.dumps(command))
    assert isinstance(decoded, Command) and decoded.command == OriginateCommand(extension="101", number="+7926")
    with pytest.raises(ProtocolError, match="invalid_message"):  # what agents send is checked field by field
        decode_agent_message('{"type": "hello", "agent_version": "1", "added_later": 1}')
