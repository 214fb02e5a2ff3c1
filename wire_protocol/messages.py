"""The edge↔cloud wire protocol, version 1: every message either side may send, and how they are framed.

Transport: one websocket per agent, opened by the agent (outbound only), text frames carrying one JSON object
each. API Gateway closes a connection on a frame over 32 KB or a message over 128 KB, so every message this
module encodes stays under :data:`MAX_MESSAGE_BYTES` (one frame); call events are batched up to that size.

Delivery: the agent numbers every call event it stores with a per-agent sequence number (``seq``, from its
durable outbox) and resends until the cloud acknowledges it (``ack``, cumulative: "everything up to ``seq``
is stored"). The cloud stores each event idempotently on its ``event_id`` before acknowledging, so a resend
changes nothing. Commands carry a ``command_id``; the agent runs each id at most once and answers with a
``command_result``.

Every message has ``type`` and ``v`` (the protocol version). A peer that receives a message it cannot accept
answers with an ``error`` (code and message) and keeps the connection: it never crashes on bad input.
See ``docs/wire-protocol.md`` for the message-by-message reference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from wire_protocol.call_events import CallEvent, CallResult, Direction
from wire_protocol.channel_rules import ChannelRules

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "Ack",
    "AgentMessage",
    "AgentSettings",
    "CallEventsBatch",
    "CloudMessage",
    "Command",
    "CommandResult",
    "ErrorCode",
    "ErrorMessage",
    "Heartbeat",
    "Hello",
    "OriginateCommand",
    "PlanInfo",
    "ProtocolError",
    "ReconcileCall",
    "ReconcileReport",
    "ReconcileResend",
    "RecordingAck",
    "RecordingFormat",
    "RecordingReady",
    "RecordingResult",
    "ReloadCommand",
    "SequencedEvent",
    "UploadRecording",
    "Welcome",
    "batch_events",
    "decode_agent_message",
    "decode_cloud_message",
    "encode",
    "reconcile_parts",
]

PROTOCOL_VERSION: Final = 1
#: API Gateway's frame limit is 32 KB; one message is one frame, with room to spare for the envelope.
MAX_MESSAGE_BYTES: Final = 32_000
#: The largest integer a message may carry (JavaScript's safe integers): bigger ones are refused before
#: Python converts them (a 5,000-digit number is a ``ValueError``, not JSON) or DynamoDB stores them (38 digits).
MAX_INTEGER: Final = 2**53

ErrorCode = Literal[
    "bad_json",  # not JSON, or not a JSON object
    "unknown_type",  # a ``type`` this peer does not know
    "unsupported_version",  # a ``v`` this peer does not speak
    "invalid_message",  # fields missing or of the wrong kind
    "too_large",  # over MAX_MESSAGE_BYTES
    "not_authorized",  # the token is revoked or the agent may not do this
    "internal",  # the peer failed; the sender should retry later
]


class ProtocolError(Exception):
    """A message could not be accepted; ``code`` says why (one of :data:`ErrorCode`)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = PROTOCOL_VERSION


#: The cloud is deployed before the agents that customers run, and a newer cloud may add optional fields to what
#: it sends: an agent ignores fields it does not know in a message type it knows (agents' messages stay strict:
#: the cloud is never older than an agent). New message types need a capability in ``hello``.
_LENIENT = ConfigDict(frozen=True, extra="ignore")


class _CloudToAgent(_Message):
    model_config = _LENIENT


# -- agent -> cloud -------------------------------------------------------------------------------------


class Hello(_Message):
    """First message on every connection: who the agent is and what it can do."""

    type: Literal["hello"] = "hello"
    agent_version: str
    pbx_version: str | None = None  # "Asterisk 22.10.1", when the agent could ask
    ami_version: str | None = None  # the AMI banner's version
    capabilities: list[str] = Field(default_factory=list)  # "originate", "recordings", ...
    outbox_depth: int = Field(default=0, ge=0)  # events stored and not yet acknowledged


class SequencedEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=1, description="per-agent, from the durable outbox; strictly increasing")
    event: CallEvent


class CallEventsBatch(_Message):
    type: Literal["call_events"] = "call_events"
    events: list[SequencedEvent] = Field(min_length=1)
    #: The seq this batch continues from: the last seq the agent sent before it (or the acked seq it resumes
    #: from). API Gateway may run two messages' Lambdas concurrently, so a later batch can be stored first;
    #: with this the cloud acks only a gap-free prefix. ``None`` (older agents): the batch's top seq is acked.
    after_seq: int | None = Field(default=None, ge=0)


class CommandResult(_Message):
    type: Literal["command_result"] = "command_result"
    command_id: str = Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")
    ok: bool
    #: "answered", "no_answer", "busy", "congestion", "failed", "rejected", "duplicate", "unknown", ...
    code: str
    message: str = ""
    call_id: str | None = None  # the PBX call the command started, when known


class Heartbeat(_Message):
    """Keeps API Gateway's 10-minute idle timer from closing a quiet connection."""

    type: Literal["heartbeat"] = "heartbeat"
    sent_at: datetime
    outbox_depth: int = Field(default=0, ge=0)
    ami_connected: bool = True


_CallId = Annotated[str, Field(min_length=1, max_length=256)]  # a Linkedid, as in call events
_HEADER_VALUE = r"^[^\x00-\x1f\x7f]{0,1024}$"
RecordingFormat = Literal["wav", "mp3"]


class RecordingReady(_Message):
    """The call ended and its recording is complete on the agent's disk (its size stopped changing): where
    should it go? Sent again after reconnects until the cloud answers with ``upload_recording``."""

    type: Literal["recording_ready"] = "recording_ready"
    call_id: _CallId
    size: int = Field(ge=0)  # bytes of the file as MixMonitor left it (before any conversion)
    #: SHA-256 (hex) of the file the agent will upload (after any conversion), and that file's format: the cloud
    #: signs the ``PUT`` with ``x-amz-checksum-sha256``, so S3 refuses a corrupted body. ``None``: an older agent
    #: (its upload is checked by size only).
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    format: RecordingFormat | None = None


class RecordingResult(_Message):
    """How the upload of a call's recording ended. ``ok``: the object is in the bucket under ``key``; else
    ``error`` says why (a missing or unreadable file, the upload failing for good). Resent until the cloud
    confirms it with ``recording_ack``."""

    type: Literal["recording_result"] = "recording_result"
    call_id: _CallId
    ok: bool
    key: str | None = Field(default=None, max_length=1024)
    format: RecordingFormat | None = None  # what was uploaded (``wav`` when MP3 was asked but not possible)
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: ``missing``, ``unreadable``, ``upload_failed``, ``declined``: why there is no recording.
    error: str | None = Field(default=None, max_length=64)
    #: Human words for the call's CRM status ("MP3 asked, no lame/ffmpeg on the agent: uploaded WAV").
    note: str = Field(default="", max_length=500)


_CheckId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class ReconcileCall(BaseModel):
    """One call as the PBX's CDR tells it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: _CallId
    ended_at: datetime
    direction: Direction
    result: CallResult


class ReconcileReport(_Message):
    """The periodic check: every call the PBX's CDR says ended in ``[since, until)``, for the cloud to compare
    with what it has (and asks again for what it misses: ``reconcile_resend``). A busy day does not fit one
    frame, so a check is sent in ``parts`` (:func:`reconcile_parts`); ``error`` instead of calls: the CDR could
    not be read, and the check says so. Calls the agent has in progress are left out."""

    type: Literal["reconcile_report"] = "reconcile_report"
    check_id: _CheckId
    since: datetime
    until: datetime
    part: int = Field(default=1, ge=1)
    parts: int = Field(default=1, ge=1, le=10_000)
    calls: list[ReconcileCall] = Field(default_factory=list)
    error: str | None = Field(default=None, max_length=500)


# -- cloud -> agent -------------------------------------------------------------------------------------


class OriginateSettings(BaseModel):
    model_config = _LENIENT

    # Each of these ends up on an AMI action line: no control characters, no room for a second action.
    context: str = Field(default="from-internal", pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    channel_template: str = Field(default="PJSIP/{extension}", pattern=r"^[A-Za-z0-9_./@{}:-]{1,120}$")
    prefix: str = Field(default="", pattern=r"^[0-9*#+]{0,10}$")  # prepended to the number (outside-line prefix)
    ring_seconds: int = Field(default=30, ge=5, le=120)


class AgentSettings(_CloudToAgent):
    """What the agent needs from the tenant's settings; sent after hello and whenever they change."""

    type: Literal["settings"] = "settings"
    originate: OriginateSettings = Field(default_factory=OriginateSettings)
    #: The tenant's number rules (which endpoints are extensions); None: the agent keeps its own ([calls]).
    calls: ChannelRules | None = None


class PlanInfo(BaseModel):
    """The portal's license as the agent shows it (``edge-agent doctor``); the cloud enforces it, not the agent."""

    model_config = _LENIENT

    plan: str = Field(max_length=64)
    state: str = Field(max_length=32)  # trial | active | grace | restricted
    features: list[str] = Field(default_factory=list, max_length=32)
    ends_at: datetime | None = None
    reason: str = Field(default="", max_length=500)


class Welcome(_CloudToAgent):
    """The cloud's answer to hello: the agent is known, and what the cloud already holds."""

    type: Literal["welcome"] = "welcome"
    agent_id: str
    tenant: str  # the Bitrix24 portal (member_id) this agent belongs to
    acked_seq: int = Field(ge=0, description="the highest seq the cloud has stored from this agent")
    plan: PlanInfo | None = None  # None: the cloud could not tell
    #: When this agent's token was issued: the periodic CDR check never reaches before it (calls from before
    #: the customer connected the PBX are not pushed into the CRM), also after a reinstall with a new data dir.
    agent_since: datetime | None = None


class Ack(_CloudToAgent):
    """Everything up to and including ``up_to_seq`` is stored; the agent may forget it. ``results``: the command
    ids whose ``command_result`` the cloud has stored (or refused for good): the agent stops resending them.
    Results are confirmed by name, not by order, because API Gateway may run one connection's messages in
    parallel."""

    type: Literal["ack"] = "ack"
    up_to_seq: int = Field(ge=0)
    results: list[str] = Field(default_factory=list)


class OriginateCommand(BaseModel):
    """Click-to-call: ring ``extension``, then dial ``number`` from it."""

    model_config = _LENIENT

    kind: Literal["originate"] = "originate"
    extension: str = Field(pattern=r"^[A-Za-z0-9_.+*#-]{1,32}$")
    number: str = Field(min_length=1, max_length=40, pattern=r"^\+?[0-9*#]+$")
    caller_id: str | None = Field(default=None, pattern=r"^[^\x00-\x1f\x7f]{0,80}$")


class ReloadCommand(BaseModel):
    """Re-read settings and reconnect to AMI (after an admin changed them)."""

    model_config = _LENIENT

    kind: Literal["reload"] = "reload"


class Command(_CloudToAgent):
    type: Literal["command"] = "command"
    command_id: str = Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")
    command: Annotated[OriginateCommand | ReloadCommand, Field(discriminator="kind")]


class ErrorMessage(_Message):
    """Either side's answer to a message it could not accept. The connection stays open."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    about: str | None = None  # the offending message's type, when it had one


class UploadRecording(_CloudToAgent):
    """The answer to ``recording_ready``: a pre-signed HTTPS ``PUT`` for the file (the websocket never carries
    recordings: 32 KB frames), the ``headers`` to send with it, and the ``format`` the tenant wants. Without
    ``url`` the recording is not wanted (``reason``); with ``retry`` the agent asks again later."""

    type: Literal["upload_recording"] = "upload_recording"
    call_id: _CallId
    url: str | None = Field(default=None, max_length=8192, pattern=r"^https?://[^\s]+$")
    headers: dict[str, Annotated[str, Field(pattern=_HEADER_VALUE)]] = Field(default_factory=dict, max_length=20)
    key: str | None = Field(default=None, max_length=1024)
    format: RecordingFormat = "mp3"
    expires_at: datetime | None = None
    #: Without ``url``: ``disabled``, ``not_licensed``, ``already_uploaded``, ``unknown_call``, ...
    reason: str | None = Field(default=None, max_length=200)
    retry: bool = False


class RecordingAck(_CloudToAgent):
    """The cloud stored the ``recording_result`` of ``call_id``: the agent forgets the recording (unless
    ``retry``)."""

    type: Literal["recording_ack"] = "recording_ack"
    call_id: _CallId
    #: The object in the bucket did not match the SHA-256 the agent announced (a corrupted upload): it was deleted,
    #: and the agent uploads again with a fresh URL (counted as a failed attempt). Sent only to agents that
    #: announced a ``sha256`` in ``recording_ready``.
    retry: bool = False
    reason: str | None = Field(default=None, max_length=200)


class ReconcileResend(_CloudToAgent):
    """The cloud's answer to a ``reconcile_report`` part: these calls ended on the PBX but the cloud does not have
    their end. The agent sends each again from the CDR as a backfilled ``call_ended``."""

    type: Literal["reconcile_resend"] = "reconcile_resend"
    check_id: _CheckId
    call_ids: list[_CallId] = Field(default_factory=list, max_length=1000)


AgentMessage = Annotated[
    Hello
    | CallEventsBatch
    | CommandResult
    | Heartbeat
    | RecordingReady
    | RecordingResult
    | ReconcileReport
    | ErrorMessage,
    Field(discriminator="type"),
]
CloudMessage = Annotated[
    Welcome | Ack | Command | AgentSettings | UploadRecording | RecordingAck | ReconcileResend | ErrorMessage,
    Field(discriminator="type"),
]

_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_AGENT: TypeAdapter[AgentMessage] = TypeAdapter(AgentMessage)
_CLOUD: TypeAdapter[CloudMessage] = TypeAdapter(CloudMessage)
_AGENT_TYPES: Final = frozenset(
    {
        "hello",
        "call_events",
        "command_result",
        "heartbeat",
        "recording_ready",
        "recording_result",
        "reconcile_report",
        "error",
    }
)
_CLOUD_TYPES: Final = frozenset(
    {"welcome", "ack", "command", "settings", "upload_recording", "recording_ack", "reconcile_resend", "error"}
)


def encode(message: BaseModel) -> str:
    """JSON text for one message; raises :class:`ProtocolError` (``too_large``) rather than send a frame
    API Gateway would close the connection over."""
    text = message.model_dump_json(by_alias=True)
    size = len(text.encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"{getattr(message, 'type', '?')} message is {size} bytes")
    return text


def _bounded_int(digits: str) -> int:
    """``json.loads``'s ``parse_int``: refuse integers no peer sends before converting them."""
    if len(digits.lstrip("-")) > 16 or abs(value := int(digits)) > MAX_INTEGER:
        raise ProtocolError("invalid_message", f"integer {digits[:20]}... is out of range (max {MAX_INTEGER})")
    return value


def _decode(text: str | bytes, adapter: TypeAdapter[object], known: frozenset[str]) -> object:
    if isinstance(text, bytes):
        raise ProtocolError("bad_json", "binary frames are not part of the protocol; send text")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate decoded from the transport's own escaping
        raise ProtocolError("bad_json", "the text is not valid Unicode (a lone UTF-16 surrogate)") from None
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message over {MAX_MESSAGE_BYTES} bytes")
    try:
        raw = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"not JSON: {exc.msg}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):  # a lone one cannot be stored (DynamoDB wants valid UTF-8)
        try:
            json.dumps(raw, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("bad_json", "a string holds a lone UTF-16 surrogate") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_json", "a message is a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in known:
        raise ProtocolError("unknown_type", f"unknown message type {str(kind)[:64]!r}")
    version = raw.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        shown = str(version)[:16]
        raise ProtocolError("unsupported_version", f"protocol version {shown!r}; this peer speaks {PROTOCOL_VERSION}")
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part)[:64] for part in first["loc"])[:300]  # a key can be as long as the frame
        raise ProtocolError("invalid_message", f"{kind}: {where}: {first['msg'][:300]}") from None


def decode_agent_message(text: str | bytes) -> AgentMessage:
    """What the cloud calls on every frame from an agent; raises :class:`ProtocolError`, nothing else."""
    return _decode(text, _AGENT, _AGENT_TYPES)  # type: ignore[arg-type,return-value]


def decode_cloud_message(text: str | bytes) -> CloudMessage:
    """What the agent calls on every frame from the cloud; raises :class:`ProtocolError`, nothing else."""
    return _decode(text, _CLOUD, _CLOUD_TYPES)  # type: ignore[arg-type,return-value]


def batch_events(
    events: Iterable[SequencedEvent], max_bytes: int = MAX_MESSAGE_BYTES, after_seq: int | None = None
) -> Iterator[CallEventsBatch]:
    """Pack events, in order, into as few ``call_events`` messages as fit ``max_bytes`` each.

    With ``after_seq`` (the last seq sent before ``events``) every batch carries the seq it continues from.
    """
    overhead = len(encode(CallEventsBatch(events=[_PLACEHOLDER], after_seq=2**53)).encode()) - len(_PLACEHOLDER_JSON)
    batch: list[SequencedEvent] = []
    size = overhead
    for event in events:
        event_size = len(event.model_dump_json(by_alias=True).encode()) + 1  # + the comma
        if event_size + overhead > max_bytes:
            raise ProtocolError("too_large", f"event seq {event.seq} alone is {event_size} bytes")
        if batch and size + event_size > max_bytes:
            yield CallEventsBatch(events=batch, after_seq=after_seq)
            if after_seq is not None:
                after_seq = batch[-1].seq
            batch, size = [], overhead
        batch.append(event)
        size += event_size
    if batch:
        yield CallEventsBatch(events=batch, after_seq=after_seq)


def reconcile_parts(
    check_id: str,
    since: datetime,
    until: datetime,
    calls: list[ReconcileCall],
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[ReconcileReport]:
    """One check's calls packed into as few ``reconcile_report`` messages as fit ``max_bytes`` each, numbered
    ``part`` of ``parts`` (at least one, so an empty period is reported too)."""
    empty = ReconcileReport(check_id=check_id, since=since, until=until, part=10_000, parts=10_000)
    overhead = len(encode(empty).encode())
    chunks: list[list[ReconcileCall]] = [[]]
    size = overhead
    for call in calls:
        call_size = len(call.model_dump_json().encode()) + 1
        if chunks[-1] and size + call_size > max_bytes:
            chunks.append([])
            size = overhead
        chunks[-1].append(call)
        size += call_size
    return [
        ReconcileReport(check_id=check_id, since=since, until=until, part=i, parts=len(chunks), calls=chunk)
        for i, chunk in enumerate(chunks, start=1)
    ]


_PLACEHOLDER = SequencedEvent.model_validate(
    {
        "seq": 1,
        "event": {"type": "ringing", "call_id": "x", "seq": 1, "at": "2026-01-01T00:00:00Z", "extension": "1"},
    }
)
_PLACEHOLDER_JSON = _PLACEHOLDER.model_dump_json(by_alias=True)
