"""Regressions found by the fuzz tier (tests/fuzz/test_fuzz_wire_protocol.py): frames from the cloud that used to
raise out of ``LinkProtocol.received`` (costing a reconnect) are answered with an ``error`` that fits a frame."""

from __future__ import annotations

from pathlib import Path

from edge_agent.link.protocol import LinkProtocol, LinkTimings, Send
from edge_agent.outbox import Outbox
from wire_protocol.messages import MAX_MESSAGE_BYTES, ErrorMessage, Hello, Welcome, decode_agent_message, encode

T0 = 1_800_000_000.0


def welcomed(tmp_path: Path) -> tuple[LinkProtocol, Outbox]:
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: T0)
    protocol = LinkProtocol(outbox, Hello(agent_version="0.1.0"), timings=LinkTimings(), rng=lambda: 0.5)
    protocol.connection_opened(1, T0)
    protocol.received(1, encode(Welcome(agent_id="a1", tenant="t1", acked_seq=0)), T0)
    return protocol, outbox


def error_replies(effects: list[object]) -> list[ErrorMessage]:
    texts = [e.text for e in effects if isinstance(e, Send)]
    assert all(len(text.encode()) <= MAX_MESSAGE_BYTES for text in texts)
    return [m for m in map(decode_agent_message, texts) if isinstance(m, ErrorMessage)]


def test_json_nested_too_deeply_is_answered_not_raised(tmp_path: Path) -> None:  # was a RecursionError
    protocol, outbox = welcomed(tmp_path)
    try:
        [error] = error_replies(list(protocol.received(1, "[" * 30_000, T0 + 1)))
        assert (error.code, error.about) == ("bad_json", None)
    finally:
        outbox.close()


def test_a_huge_unknown_type_is_echoed_cut_short(tmp_path: Path) -> None:  # the error reply was over a frame
    protocol, outbox = welcomed(tmp_path)
    try:
        [error] = error_replies(list(protocol.received(1, '{"type": "' + "y" * 31_000 + '"}', T0 + 1)))
        assert error.code == "unknown_type" and error.about == "y" * 64
    finally:
        outbox.close()
