"""Regressions found by the fuzz tier (tests/fuzz/test_fuzz_wire_protocol.py): the decoders raise only
``ProtocolError``, and the error built from it fits one frame."""

from __future__ import annotations

import pytest

from wire_protocol.messages import (
    MAX_INTEGER,
    MAX_MESSAGE_BYTES,
    ErrorMessage,
    Heartbeat,
    ProtocolError,
    decode_agent_message,
    decode_cloud_message,
    encode,
)


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "hello", "agent_version": "1", "outbox_depth": ' + "1" * 5000 + "}",  # was a bare ValueError
        '{"type": "heartbeat", "sent_at": "2026-01-01T00:00:00Z", "outbox_depth": ' + str(MAX_INTEGER + 1) + "}",
        '{"type": "call_events", "events": [{"seq": -' + "9" * 40 + ', "event": {}}]}',
    ],
)
def test_integers_out_of_range_are_invalid_messages(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_agent_message(text)
    assert caught.value.code == "invalid_message" and "out of range" in caught.value.message


def test_the_largest_integer_is_still_accepted() -> None:
    beat = decode_agent_message(
        '{"type": "heartbeat", "sent_at": "2026-01-01T00:00:00Z", "outbox_depth": 9007199254740992}'
    )
    assert isinstance(beat, Heartbeat) and beat.outbox_depth == MAX_INTEGER


@pytest.mark.parametrize("kind", ["[]", "{}", "[1]", "null", "7"])
def test_a_type_that_is_not_a_string_is_an_unknown_type(kind: str) -> None:  # [] and {} were TypeErrors
    for decode in (decode_agent_message, decode_cloud_message):
        with pytest.raises(ProtocolError) as caught:
            decode('{"type": ' + kind + "}")
        assert caught.value.code == "unknown_type"


def test_a_raw_lone_surrogate_is_bad_json() -> None:  # was a UnicodeEncodeError
    with pytest.raises(ProtocolError) as caught:
        decode_agent_message('{"type": "hello", "agent_version": "\udfff"}')
    assert caught.value.code == "bad_json"


def test_an_error_about_a_huge_unknown_key_still_fits_one_frame() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_agent_message('{"type": "hello", "agent_version": "1", "' + "k" * 31_000 + '": 1}')
    assert caught.value.code == "invalid_message"
    reply = ErrorMessage(code=caught.value.code, message=caught.value.message, about="hello")
    assert len(encode(reply).encode()) < 2_000 < MAX_MESSAGE_BYTES
