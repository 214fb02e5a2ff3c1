"""Hostile websocket frames on both ends of the link (docs/reliability.md, "Hostile input").

* ``decode_agent_message`` / ``decode_cloud_message``: raise :class:`ProtocolError` and nothing else, and the
  ``error`` reply built from it always fits one frame.
* the agent (:class:`edge_agent.link.protocol.LinkProtocol`): whatever the cloud sends, ``received`` returns
  effects (never raises, which would cost a reconnect), every frame it sends decodes, and the link still works
  afterwards (events stored next are sent).
* the cloud (:func:`cloud.link.dispatch.handle_agent_message` on moto): whatever an agent sends, the answer is
  never ``internal`` (that would be an unhandled exception), never closes the connection, and fits a frame.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from fuzz_profile import fake_aws_credentials, fuzz
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws
from wire_corpus import AGENT_MESSAGES, CLOUD_MESSAGES, frames

from cloud.agents import connections, tokens
from cloud.link.dispatch import handle_agent_message
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.storage.tables import create_tables
from edge_agent.link.protocol import LinkProtocol, LinkTimings, Send
from edge_agent.outbox import Outbox
from wire_protocol.call_events import CallRinging
from wire_protocol.messages import (
    MAX_MESSAGE_BYTES,
    CallEventsBatch,
    ErrorMessage,
    Hello,
    ProtocolError,
    Welcome,
    decode_agent_message,
    decode_cloud_message,
    encode,
)

pytestmark = [pytest.mark.filterwarnings("ignore:Generating overly large repr")]  # a failing frame is big

T0 = 1_800_000_000.0
REGION = "us-east-1"
CID = "FUZZ="


def _fits(message: ErrorMessage) -> None:
    assert len(encode(message).encode()) <= MAX_MESSAGE_BYTES


@fuzz(1000)
@given(frames(AGENT_MESSAGES))
def test_the_cloud_side_decoder_raises_only_protocol_errors(frame: str | bytes) -> None:
    try:
        decode_agent_message(frame)
    except ProtocolError as exc:
        _fits(ErrorMessage(code=exc.code, message=exc.message))


@fuzz(1000)
@given(frames(CLOUD_MESSAGES))
def test_the_agent_side_decoder_raises_only_protocol_errors(frame: str | bytes) -> None:
    try:
        decode_cloud_message(frame)
    except ProtocolError as exc:
        _fits(ErrorMessage(code=exc.code, message=exc.message))


# -- the agent --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """In memory when the host has /dev/shm: each example opens a new outbox, and its fsyncs are not the point."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(prefix="pbxlink-fuzz-", dir=shm) as name:
            yield Path(name)
    else:
        yield tmp_path_factory.mktemp("fuzz-link")


_runs = iter(range(1_000_000))


@fuzz(200)
@given(st.lists(frames(CLOUD_MESSAGES), min_size=1, max_size=6))
def test_the_agent_survives_any_frames_from_the_cloud_and_keeps_sending(
    data_dir: Path, garbage: list[str | bytes]
) -> None:
    outbox = Outbox(data_dir / f"outbox-{next(_runs)}.db", clock=lambda: T0)
    try:
        protocol = LinkProtocol(outbox, Hello(agent_version="0-fuzz"), timings=LinkTimings(), rng=lambda: 0.5)
        effects = protocol.connection_opened(1, T0)
        effects += protocol.received(1, encode(Welcome(agent_id="a1", tenant="t1", acked_seq=0)), T0)
        for n, frame in enumerate(garbage):
            effects += protocol.received(1, frame, T0 + n)  # never raises
        for effect in effects:
            if isinstance(effect, Send):
                assert len(effect.text.encode()) <= MAX_MESSAGE_BYTES
                decode_agent_message(effect.text)
        if protocol.established and protocol.in_flight == 0 and protocol.acked_seq == 0:
            # still usable: a new event goes out
            outbox.append([CallRinging(call_id="c1", seq=1, at=datetime(2026, 1, 1, tzinfo=UTC), extension="101")])
            later = T0 + 1000  # past any retry delay a cloud error asked for
            after = protocol.events_stored(later) + protocol.tick(later)
            sent = [decode_agent_message(e.text) for e in after if isinstance(e, Send)]
            assert any(isinstance(m, CallEventsBatch) for m in sent)
    finally:
        outbox.close()


# -- the cloud --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rt() -> Iterator[Runtime]:
    with fake_aws_credentials(REGION), mock_aws():
        create_tables(boto3.client("dynamodb", region_name=REGION), "fuzz-")
        runtime = Runtime(Settings(table_prefix="fuzz-", region=REGION))
        agent_id, _ = tokens.issue_token(runtime, "portal-f", "Fuzz")
        connections.record(runtime, "portal-f", agent_id, CID)
        try:
            yield runtime
        finally:
            runtime.close()


@fuzz(250)
@given(frames(AGENT_MESSAGES))
def test_the_cloud_answers_any_frame_from_an_agent_without_failing(rt: Runtime, frame: str | bytes) -> None:
    outcome = handle_agent_message(rt, CID, frame)
    assert not outcome.close
    for reply in outcome.replies:
        assert len(encode(reply).encode()) <= MAX_MESSAGE_BYTES
        if isinstance(reply, ErrorMessage):
            assert reply.code != "internal", reply  # internal = an exception the handler did not expect
    if isinstance(frame, str):
        try:
            raw = json.loads(frame)
        except (ValueError, RecursionError):
            return
        if isinstance(raw, dict) and raw.get("type") == "error":
            assert outcome.replies == []  # an error is never answered with an error
