"""Valid edge<->cloud messages of every type, and hypothesis strategies that break them (for the fuzz tier)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from wire_protocol.call_events import CallEnded, CallRinging, CallStarted, CallSummary, Transfer
from wire_protocol.messages import (
    Ack,
    AgentSettings,
    CallEventsBatch,
    Command,
    CommandResult,
    ErrorMessage,
    Heartbeat,
    Hello,
    OriginateCommand,
    PlanInfo,
    RecordingAck,
    RecordingReady,
    RecordingResult,
    ReloadCommand,
    SequencedEvent,
    UploadRecording,
    Welcome,
)

__all__ = ["AGENT_MESSAGES", "CLOUD_MESSAGES", "frames", "json_values"]

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

_SUMMARY = CallSummary(
    call_id="1764147600.1",
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


def _events(first_seq: int) -> CallEventsBatch:
    call = "1764147600.1"
    return CallEventsBatch(
        after_seq=first_seq - 1,
        events=[
            SequencedEvent(
                seq=first_seq,
                event=CallStarted(
                    call_id=call,
                    seq=1,
                    at=AT,
                    direction="inbound",
                    external_number="7926",
                    line=None,
                    caller_extension=None,
                ),
            ),
            SequencedEvent(seq=first_seq + 1, event=CallRinging(call_id=call, seq=2, at=AT, extension="101")),
            SequencedEvent(seq=first_seq + 2, event=CallEnded(call_id=call, seq=3, at=AT, summary=_SUMMARY)),
        ],
    )


def _dump(message: Any) -> dict[str, Any]:
    return dict(json.loads(message.model_dump_json(by_alias=True)))


AGENT_MESSAGES: list[dict[str, Any]] = [
    _dump(m)
    for m in (
        Hello(agent_version="0.1.0", pbx_version="Asterisk 22", capabilities=["originate"], outbox_depth=3),
        _events(1),
        CommandResult(command_id="c-1", ok=False, code="busy", message="busy", call_id="1764147600.1"),
        Heartbeat(sent_at=AT, outbox_depth=1),
        RecordingReady(call_id="1764147600.1", size=1000),
        RecordingResult(call_id="1764147600.1", ok=True, key="k", format="mp3", size=10, sha256="0" * 64),
        ErrorMessage(code="bad_json", message="x", about="ack"),
    )
]
CLOUD_MESSAGES: list[dict[str, Any]] = [
    _dump(m)
    for m in (
        Welcome(agent_id="a1", tenant="t1", acked_seq=0, plan=PlanInfo(plan="pro", state="active")),
        Ack(up_to_seq=2, results=["c-1"]),
        Command(command_id="c-1", command=OriginateCommand(extension="101", number="79261234567")),
        Command(command_id="c-2", command=ReloadCommand()),
        AgentSettings(),
        UploadRecording(call_id="1764147600.1", url="https://s3.example/put", headers={"x": "y"}, key="k"),
        UploadRecording(call_id="1764147600.1", reason="disabled"),
        RecordingAck(call_id="1764147600.1"),
        ErrorMessage(code="internal", message="x", about="call_events"),
    )
]

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "hello", "call_events", "2026-11-26T09:00:00Z", "9999-99-99", "101", "\ud800"])
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

#: Raw JSON number spellings no encoder of ours would write: they go straight into the text.
_RAW_NUMBERS = ["1" * 5000, "-" + "9" * 4400, "1e999", "-1e999", "1" + "0" * 40, "NaN", "Infinity", "1.5", "-0"]
_BIG = "\u2063big\u2063"  # a marker string replaced by a raw number after json.dumps


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = root
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return root


def _delete(root: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return root
    node = root
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return root


@st.composite
def _mutated(draw: st.DrawFn, corpus: list[dict[str, Any]]) -> str:
    """A real message with a few fields replaced, deleted, added or given raw numbers, then maybe cut."""
    message = json.loads(json.dumps(draw(st.sampled_from(corpus + AGENT_MESSAGES + CLOUD_MESSAGES))))
    raw: str | None = None
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(message)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add", "big", "type"]))
        if action == "replace":
            message = _set(message, path, draw(json_values))
        elif action == "delete" and path:
            message = _delete(message, path)
        elif action == "add":
            target = message
            for part in path:
                target = target[part]
            if isinstance(target, dict):
                target[draw(st.text(max_size=12))] = draw(json_values)
            elif isinstance(target, list):
                target.append(draw(json_values))
        elif action == "big":
            message = _set(message, path, _BIG)
            raw = draw(st.sampled_from(_RAW_NUMBERS))
        elif action == "type" and isinstance(message, dict):
            message["type"] = draw(st.sampled_from(["hello", "ack", "welcome", "command", "error", "x" * 5000, 7]))
    text = json.dumps(message)
    if raw is not None:
        text = text.replace(json.dumps(_BIG), raw)
    if draw(st.booleans()) and draw(st.booleans()):
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    return text


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def frames(corpus: list[dict[str, Any]]) -> st.SearchStrategy[str | bytes]:
    """Anything a websocket peer could send: text, bytes, JSON of any shape, and mutated real messages."""
    return st.one_of(
        _mutated(corpus),
        _mutated(corpus),
        _mutated(corpus),
        st.text(max_size=200),
        st.binary(max_size=200),
        json_values.map(json.dumps),
        st.sampled_from(
            [
                _deep(100_000)[:31_000],
                '{"type": "hello", "x": ' + _deep(20_000) + "}",
                '{"type": "' + "y" * 31_000 + '"}',
                '{"type": "hello", "agent_version": "1", "' + "k" * 31_000 + '": 1}',
                '{"type": "ack", "up_to_seq": 1, "pad": "' + "x" * 40_000 + '"}',
                '"\\ud800"',
                '{"type": "hello", "agent_version": "\\udfff"}',
                '{"type": "hello", "agent_version": "\udfff"}',  # a raw lone surrogate, not an escape
            ]
        ),
    )
