"""The link's part in recordings: the uploader's messages go on a welcomed connection (or not at all), and the
cloud's answers reach the uploader; old peers' unknown types stay harmless."""

from __future__ import annotations

from pathlib import Path

from test_link_protocol import T0, connected, link, sent, welcome

from edge_agent.link.protocol import RecordingMessage
from edge_agent.outbox import Outbox
from wire_protocol.messages import RecordingAck, RecordingReady, RecordingResult, UploadRecording, encode

READY = RecordingReady(call_id="pbx-1.1", size=1234)


def test_nothing_is_sent_before_the_welcome_and_it_is_not_queued(tmp_path: Path) -> None:
    protocol = link(Outbox(tmp_path / "outbox.db", clock=lambda: T0))
    assert protocol.send_recording_message(READY, T0) == []
    protocol.connection_opened(1, T0)
    assert protocol.send_recording_message(READY, T0) == []  # opened, not welcomed
    effects = protocol.received(1, welcome(), T0)
    assert not any(m.type == "recording_ready" for m in sent(effects))  # the uploader asks again itself


def test_on_a_welcomed_connection_it_goes_at_once(tmp_path: Path) -> None:
    protocol = link(Outbox(tmp_path / "outbox.db", clock=lambda: T0))
    connected(protocol)
    result = RecordingResult(call_id="pbx-1.1", ok=False, error="missing", note="not found")
    assert sent(protocol.send_recording_message(READY, T0 + 1)) == [READY]
    assert sent(protocol.send_recording_message(result, T0 + 2)) == [result]


def test_the_clouds_answers_reach_the_uploader(tmp_path: Path) -> None:
    protocol = link(Outbox(tmp_path / "outbox.db", clock=lambda: T0))
    connected(protocol)
    order = UploadRecording(call_id="pbx-1.1", url="https://b.s3.test/k?sig=1", key="t/a/pbx-1.1/recording")
    assert protocol.received(1, encode(order), T0) == [RecordingMessage(order)]
    done = RecordingAck(call_id="pbx-1.1")
    assert protocol.received(1, encode(done), T0) == [RecordingMessage(done)]
