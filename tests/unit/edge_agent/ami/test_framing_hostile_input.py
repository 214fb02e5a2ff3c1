"""Regression found by the fuzz tier (tests/fuzz/test_fuzz_ami_framing.py): a message dripping in a byte at a time
used to copy the whole buffer on every read (quadratic: 200 KB took 83 s of CPU); the buffer now grows in place and
only the new bytes are searched. Not a timed assertion: with the old code this test takes minutes, with the new one
well under a second."""

from __future__ import annotations

from edge_agent.ami.framing import MAX_MESSAGE_BYTES, AmiFramer


def test_a_large_message_dripping_in_byte_by_byte_is_framed_and_the_buffer_reused() -> None:
    framer = AmiFramer(expect_banner=False)
    assert framer.feed(b"Event: CoreShowChannel\r\nData: ") == []
    buffer = framer._buffer
    for _ in range(200_000):
        framer.feed(b"y")
    assert framer._buffer is buffer and framer.buffered < MAX_MESSAGE_BYTES
    assert framer.feed(b"\r\n") == []
    [message] = framer.feed(b"\r\n")
    assert message == {"Event": "CoreShowChannel", "Data": "y" * 200_000}


def test_a_blank_line_split_across_reads_still_ends_the_message() -> None:
    framer = AmiFramer(expect_banner=False)
    assert framer.feed(b"Event: Hangup\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\nEvent: Newchannel\r\n\r\n") == [{"Event": "Hangup"}, {"Event": "Newchannel"}]
