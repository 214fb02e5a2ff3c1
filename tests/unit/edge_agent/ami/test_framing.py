from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.ami.framing import MAX_MESSAGE_BYTES, AmiFramer, format_action

LOGIN_EXCHANGE = (
    b"Asterisk Call Manager/11.0.0\r\n"
    b"Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"
    b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 13\r\nLastReload: 13\r\nStatus: Fully Booted\r\n\r\n"
)


def test_banner_then_messages() -> None:
    framer = AmiFramer()
    messages = framer.feed(LOGIN_EXCHANGE)
    assert framer.banner == "Asterisk Call Manager/11.0.0"
    assert messages == [
        {"Response": "Success", "ActionID": "1", "Message": "Authentication accepted"},
        {
            "Event": "FullyBooted",
            "Privilege": "system,all",
            "Uptime": "13",
            "LastReload": "13",
            "Status": "Fully Booted",
        },
    ]
    assert framer.malformed_lines == 0


def test_split_anywhere_gives_the_same_messages() -> None:
    whole = AmiFramer().feed(LOGIN_EXCHANGE)
    for cut in range(1, len(LOGIN_EXCHANGE)):
        framer = AmiFramer()
        assert framer.feed(LOGIN_EXCHANGE[:cut]) + framer.feed(LOGIN_EXCHANGE[cut:]) == whole, cut


def test_lf_only_and_cr_split_from_lf() -> None:
    framer = AmiFramer(expect_banner=False)
    assert framer.feed(b"Event: Hangup\nCause: 16\n\nEvent: Newstate\r") == [{"Event": "Hangup", "Cause": "16"}]
    assert framer.feed(b"\n\r\n") == [{"Event": "Newstate"}]


def test_values_keep_colons_spaces_and_empty() -> None:
    framer = AmiFramer(expect_banner=False)
    [message] = framer.feed(b"Event: VarSet\r\nValue: a: b  c\r\nAccountCode: \r\nLanguage:\r\n\r\n")
    assert message == {"Event": "VarSet", "Value": "a: b  c", "AccountCode": "", "Language": ""}


def test_repeated_keys_are_kept_in_order() -> None:
    framer = AmiFramer(expect_banner=False)
    [message] = framer.feed(b"Event: X\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n\r\n")
    assert message["ChanVariable"].split("\n") == ["A=1", "B=2"]


def test_garbage_lines_are_counted_not_fatal() -> None:
    framer = AmiFramer(expect_banner=False)
    messages = framer.feed(b"this is not AMI\r\nEvent: Hangup\r\n\xff\xfe garbage\r\n\r\n\r\n\r\n")
    assert messages == [{"Event": "Hangup"}]
    assert framer.malformed_lines == 2


def test_missing_banner_is_tolerated() -> None:
    framer = AmiFramer()
    assert framer.feed(b"Event: Hangup\r\n\r\n") == [{"Event": "Hangup"}]
    assert framer.banner == ""


def test_a_message_that_never_ends_is_dropped() -> None:
    framer = AmiFramer(expect_banner=False)
    assert framer.feed(b"Event: X\r\nData: " + b"y" * (MAX_MESSAGE_BYTES + 1)) == []
    assert framer.dropped_bytes > MAX_MESSAGE_BYTES
    assert framer.feed(b"Event: Hangup\r\n\r\n") == [{"Event": "Hangup"}]


def test_format_action_round_trips() -> None:
    action = {"Action": "Originate", "Variable": "A=1\nB=2", "Async": "true"}
    wire = format_action(action)
    assert wire.endswith(b"\r\n\r\n") and b"Variable: A=1\r\nVariable: B=2\r\n" in wire
    assert AmiFramer(expect_banner=False).feed(wire) == [action]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_any_bytes_in_any_chunks_never_raise(data: bytes, cuts: list[int]) -> None:
    framer = AmiFramer()
    points = sorted({min(c, len(data)) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        for message in framer.feed(data[start:point]):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in message.items())
        start = point


def test_originate_refuses_values_that_would_break_the_frame() -> None:
    import pytest

    from edge_agent.ami.originate import OriginateRequest, originate_action

    with pytest.raises(ValueError, match="control characters"):
        originate_action(OriginateRequest("c1", "101\r\nAction: Hangup", "79261234567"))
    assert originate_action(OriginateRequest("c1", "101", "79261234567"))["Channel"] == "PJSIP/101"
