"""Regression found by the fuzz tier (tests/fuzz/test_fuzz_wire_protocol.py): an ``error`` the cloud cannot
decode is not answered with another error (peers must not trade errors), like a valid one."""

from __future__ import annotations

import pytest
from cloud_builders import CID

from cloud.link.dispatch import handle_agent_message
from cloud.runtime import Runtime

pytest_plugins = ["cloud_testkit"]


@pytest.mark.parametrize(
    "body",
    [
        '{"type": "error", "v": 1e999, "code": "bad_json", "message": "x"}',
        '{"type": "error", "code": "no-such-code", "message": "x"}',
        '{"type": "error"}',
    ],
)
def test_a_malformed_error_from_an_agent_gets_no_answer(rt: Runtime, agent_id: str, body: str) -> None:
    outcome = handle_agent_message(rt, CID, body)
    assert outcome.replies == [] and not outcome.close


def test_other_malformed_messages_are_still_answered(rt: Runtime, agent_id: str) -> None:
    [reply] = handle_agent_message(rt, CID, '{"type": "heartbeat"}').replies
    assert getattr(reply, "code", None) == "invalid_message"
