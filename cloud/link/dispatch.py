"""Where an agent message is handled: :func:`handle_agent_message` (``$default``), then :func:`deliver`.

Every frame is checked against the connection registry and the agent's revocation first, then decoded with
:func:`wire_protocol.messages.decode_agent_message`, then dispatched on its type:

==================  ==================================================================================
``hello``           remember the agent's versions and capabilities; answer ``welcome`` + the tenant's ``settings``
``call_events``     store every event (:func:`cloud.calls.store.record_event`), hand its call to the CRM
                    pipeline (:func:`cloud.crm.pipeline.request_crm`), then ``ack`` the gap-free prefix
                    stored (:mod:`cloud.link.acks`); a storage failure acks what was stored and answers
                    ``internal`` (about ``call_events``: the agent resends). While the replies are sent,
                    :func:`on_message` brings those calls' Bitrix24 side up to date, one thread per call.
``heartbeat``       refresh last-seen; no answer
``command_result``  store it (only for a command sent to this agent); a failed click-to-call is finished in
                    Bitrix24 (:func:`cloud.clicktocall.on_command_failed`), or left unconfirmed to come again
``recording_ready`` answer ``upload_recording``: a pre-signed URL, or why not (:mod:`cloud.recordings.service`)
``recording_result`` record it, answer ``recording_ack``, and let the CRM attach the recording
``reconcile_report`` compare one part of the periodic CDR check with what the cloud holds (:mod:`cloud.reconcile`),
                    queue what only needs queueing, answer ``reconcile_resend`` with the calls only the agent
                    can bring
``error``           log it; never answered (two peers must not trade errors forever)
==================  ==================================================================================

A message that cannot be decoded gets an ``error`` with the decoder's code and the connection stays open;
an unknown or revoked agent gets ``not_authorized`` and the connection is closed. Nothing raises out of here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from cloud import licensing
from cloud.agents import connections, tokens
from cloud.agents.commands import record_result
from cloud.agents.connections import Connection
from cloud.agents.status import touch
from cloud.calls.store import record_events, remember_writes, remembered_call
from cloud.clicktocall import on_command_failed, settings_for_agent
from cloud.clock import now
from cloud.crm.pipeline import process_call, request_crm
from cloud.errors import UnknownAgent
from cloud.link import known_connections
from cloud.link.acks import advance
from cloud.reconcile import on_reconcile_report
from cloud.recordings.service import on_recording_ready, on_recording_result
from cloud.runtime import Runtime
from wire_protocol.call_events import CallEvent, CallStarted
from wire_protocol.messages import (
    Ack,
    CallEventsBatch,
    CommandResult,
    ErrorMessage,
    Heartbeat,
    Hello,
    PlanInfo,
    ProtocolError,
    ReconcileReport,
    RecordingReady,
    RecordingResult,
    SequencedEvent,
    Welcome,
    decode_agent_message,
)

__all__ = ["Outcome", "deliver", "handle_agent_message", "on_message"]

log = logging.getLogger(__name__)

#: Told of a call as soon as it is queued for the CRM pipeline (:func:`on_message` starts its pass then).
CrmStarter = Callable[[Connection, str], None]
#: CRM passes run at once for one message's calls. A batch under load carries the events of several calls; one
#: after another, the last call's card waited for every other call's Bitrix24 requests (hundreds of ms each).
MAX_PARALLEL_PASSES = 8


@dataclass
class Outcome:
    """What to send back on the connection, in order, and whether to close it afterwards."""

    replies: list[BaseModel] = field(default_factory=list)
    close: bool = False
    conn: Connection | None = None  # who was talking, when known (to drop the mapping if the socket is gone)
    stored: int = 0  # new events stored (for logs and tests)
    #: Calls with events in this message, already handed to the CRM pipeline (processed after the replies).
    crm_calls: list[str] = field(default_factory=list)


def _not_authorized(message: str, conn: Connection | None = None) -> Outcome:
    return Outcome([ErrorMessage(code="not_authorized", message=message)], close=True, conn=conn)


def _message_type(body: str | bytes | None) -> str | None:
    """The offending message's ``type``, if it got that far (for ``ErrorMessage.about``)."""
    if not isinstance(body, str) or len(body) > 64_000:
        return None
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    return kind[:64] if isinstance(kind, str) else None


def handle_agent_message(
    rt: Runtime, connection_id: str, body: str | bytes | None, start_crm: CrmStarter | None = None
) -> Outcome:
    """The cloud's answer to one frame from an agent. Never raises: a failure becomes an ``internal`` error.

    ``start_crm`` is told of each call as soon as it is queued for the CRM pipeline (its pass may start then);
    every such call is in ``Outcome.crm_calls`` too."""
    try:
        return _handle(rt, connection_id, body, start_crm)
    except Exception:
        log.exception("message on %s failed", connection_id)
        # ``about`` lets the agent tell which message to send again (a ``call_events`` batch is resent)
        failed = ErrorMessage(
            code="internal", message="the cloud failed to handle this; retry later", about=_message_type(body)
        )
        return Outcome([failed])


def _handle(rt: Runtime, connection_id: str, body: str | bytes | None, start_crm: CrmStarter | None) -> Outcome:
    conn = known_connections.connection_agent(rt, connection_id)
    if conn is None:
        return _not_authorized("this connection is not authenticated; reconnect with a valid token")
    try:
        agent = tokens.get_agent(rt, conn.tenant, conn.agent_id)
    except UnknownAgent:
        agent = None
    if agent is None or agent.revoked:
        known_connections.forget(rt, connection_id)
        connections.drop(rt, conn.tenant, conn.agent_id, connection_id)
        return _not_authorized("this agent's token was revoked", conn)
    try:
        message = decode_agent_message(body if body is not None else "")
    except ProtocolError as exc:
        log.info("agent %s/%s sent a bad message: %s", conn.tenant, conn.agent_id, exc)
        about = _message_type(body)
        if about == "error":
            return Outcome(conn=conn)  # a broken error is not answered either: peers must not trade errors
        return Outcome([ErrorMessage(code=exc.code, message=exc.message, about=about)], conn=conn)

    match message:
        case Hello():
            touch(
                rt,
                conn.tenant,
                conn.agent_id,
                agent_version=message.agent_version,
                pbx_version=message.pbx_version,
                ami_version=message.ami_version,
                capabilities=list(message.capabilities),
                outbox_depth=message.outbox_depth,
            )
            welcome = Welcome(
                agent_id=agent.agent_id,
                tenant=agent.tenant,
                acked_seq=agent.acked_seq,
                plan=_plan(rt, conn.tenant),
                agent_since=_since(agent.created_at),
            )
            return Outcome([welcome, settings_for_agent(rt, conn.tenant)], conn=conn)
        case CallEventsBatch():
            return _store_batch(rt, conn, message, start_crm)
        case Heartbeat():
            touch(
                rt,
                conn.tenant,
                conn.agent_id,
                heartbeat_at=message.sent_at.isoformat(),
                outbox_depth=message.outbox_depth,
                ami_connected=message.ami_connected,
            )
            return Outcome(conn=conn)
        case CommandResult():
            # confirmed by name (the agent resends a result until it is), refused ones too: resending cannot help
            confirm = Ack(up_to_seq=agent.acked_seq, results=[message.command_id])
            if record_result(rt, conn.tenant, conn.agent_id, message):
                if not message.ok and not on_command_failed(rt, conn.tenant, conn.agent_id, message):
                    # the click-to-call is not finished in Bitrix24 yet: unconfirmed, the agent resends it
                    later = ErrorMessage(code="internal", message="result stored; resend it", about="command_result")
                    return Outcome([later], conn=conn)
                return Outcome([confirm], conn=conn)
            error = ErrorMessage(
                code="not_authorized", message="that command was not sent to this agent", about="command_result"
            )
            return Outcome([error, confirm], conn=conn)
        case RecordingReady():
            return Outcome([on_recording_ready(rt, conn.tenant, conn.agent_id, message, now())], conn=conn)
        case RecordingResult():
            ack, crm = on_recording_result(rt, conn.tenant, conn.agent_id, message, now())
            if crm:  # before the ack, as for events: an acknowledged result always has its CRM work recorded
                request_crm(rt, conn.tenant, conn.agent_id, message.call_id, now())
            return Outcome([ack], conn=conn, crm_calls=[message.call_id] if crm else [])
        case ReconcileReport():
            resend = on_reconcile_report(rt, conn.tenant, conn.agent_id, message, now())
            return Outcome([resend] if resend is not None else [], conn=conn)
        case ErrorMessage():
            log.warning("agent %s/%s reports %s: %s", conn.tenant, conn.agent_id, message.code, message.message)
            return Outcome(conn=conn)
    raise AssertionError(f"unhandled message {message!r}")  # pragma: no cover - the union is exhaustive


def _runs_by_call(events: list[SequencedEvent]) -> list[list[SequencedEvent]]:
    """Consecutive events of one call, each run stored in one transaction (order and acks stay by seq)."""
    runs: list[list[SequencedEvent]] = []
    for item in events:
        if runs and runs[-1][0].event.call_id == item.event.call_id and len(runs[-1]) < 50:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def changes_crm(event: CallEvent) -> bool:
    """Can this event change what Bitrix24 shows? An inbound or internal call's start cannot (nothing is
    registered before a phone rings, someone answers, or the call ends: each of those comes as its own event,
    and the pass it triggers reads the whole call), nor can a recording (attached once the call ended).
    Skipping them keeps a CRM pass off the ring-to-card path."""
    if isinstance(event, CallStarted):
        return event.direction == "outbound"
    return event.type != "recording"


def _since(created_at: str) -> datetime | None:
    try:
        return datetime.fromisoformat(created_at) if created_at else None
    except ValueError:
        return None


def _plan(rt: Runtime, tenant: str) -> PlanInfo | None:
    """The tenant's license for the agent to show (``edge-agent doctor``); never fails the hello."""
    try:
        granted = licensing.entitlements(rt, tenant, now())
        return PlanInfo(
            plan=granted.plan,
            state=granted.state,
            features=sorted(granted.features),
            ends_at=granted.ends_at,
            reason=granted.reason[:500],
        )
    except Exception:
        log.exception("tenant %s: license state unavailable for the welcome", tenant)
        return None


def _store_batch(rt: Runtime, conn: Connection, batch: CallEventsBatch, start_crm: CrmStarter | None) -> Outcome:
    """Store in seq order, then ack what is stored without a gap (:mod:`cloud.link.acks`): an ack always
    means "everything up to here is safe". A batch parked behind a gap gets no ack yet."""
    outcome = Outcome(conn=conn)
    remember_writes(rt)  # this container's own writes are the call states it starts from next time
    stored_up_to: int | None = None
    stored_versions: dict[str, int | None] = {}
    failure: ErrorMessage | None = None
    for run in _runs_by_call(sorted(batch.events, key=lambda e: e.seq)):
        try:
            new = record_events(rt, conn.tenant, conn.agent_id, [(item.seq, item.event) for item in run])
            outcome.stored += new
            # the version stored, for the CRM pass to trust this container's copy (None: not known to be ours)
            written = remembered_call(rt, conn.tenant, conn.agent_id, run[0].event.call_id) if new else None
            stored_versions[run[0].event.call_id] = written.version if written is not None else None
        except Exception:
            log.exception("storing events from seq %s of %s/%s failed", run[0].seq, conn.tenant, conn.agent_id)
            message = f"events from seq {run[0].seq} were not stored; resend"
            failure = ErrorMessage(code="internal", message=message, about="call_events")
            break
        stored_up_to = run[-1].seq
    if stored_up_to is not None:
        touched = list(
            dict.fromkeys(
                item.event.call_id for item in batch.events if item.seq <= stored_up_to and changes_crm(item.event)
            )
        )
        try:
            # before the ack: an acked event whose call the CRM pipeline was not told about would never reach it
            for call_id in touched:
                version = stored_versions.get(call_id)
                request_crm(rt, conn.tenant, conn.agent_id, call_id, now(), call_version=version)
        except Exception:
            log.exception("handing calls of %s/%s to the CRM failed", conn.tenant, conn.agent_id)
            message = "events were stored but not queued for the CRM; resend"
            outcome.replies.append(ErrorMessage(code="internal", message=message, about="call_events"))
            return outcome
        outcome.crm_calls = touched
        if start_crm is not None:
            for call_id in touched:
                start_crm(conn, call_id)
        # After a failure only a prefix is stored: it continues from after_seq but its top is stored_up_to.
        acked = advance(rt, conn.tenant, conn.agent_id, batch.after_seq, stored_up_to)
        if failure is not None:
            acked = min(acked, stored_up_to)  # the rest comes again; ack no further than this message proves
        if batch.after_seq is None or acked >= stored_up_to:
            outcome.replies.append(Ack(up_to_seq=acked))
    if failure is not None:
        outcome.replies.append(failure)
    return outcome


def deliver(rt: Runtime, request_context: Mapping[str, Any], connection_id: str, outcome: Outcome) -> None:
    """Send the replies and close if asked; a gone connection drops its mapping. Never raises."""
    try:
        gateway = rt.gateway(request_context)
        for reply in outcome.replies:
            if not gateway.send(connection_id, reply):
                if outcome.conn is not None:
                    known_connections.forget(rt, connection_id)
                    connections.drop(rt, outcome.conn.tenant, outcome.conn.agent_id, connection_id)
                return
        if outcome.close:
            gateway.close(connection_id)
    except Exception:
        log.exception("replying on %s failed", connection_id)


def on_message(rt: Runtime, event: Mapping[str, Any]) -> Outcome:
    """The whole ``$default`` handler. Each call the message brings to the CRM pipeline gets its pass in a
    thread of its own as soon as it is queued, before the ack is even decided: neither waits for the other (the
    agent does not wait for Bitrix24; a card is not held up by the ack's write and delivery)."""
    context = event["requestContext"]
    connection_id = context["connectionId"]
    started: set[str] = set()
    with ThreadPoolExecutor(MAX_PARALLEL_PASSES, thread_name_prefix="crm-pass") as passes:  # waits for them all

        def start_crm(conn: Connection, call_id: str) -> None:
            if call_id not in started:
                started.add(call_id)
                passes.submit(_crm_pass, rt, conn.tenant, conn.agent_id, call_id)

        outcome = handle_agent_message(rt, connection_id, event.get("body"), start_crm)
        if outcome.conn is not None:
            for call_id in outcome.crm_calls:
                start_crm(outcome.conn, call_id)
        deliver(rt, context, connection_id, outcome)
    return outcome


def _crm_pass(rt: Runtime, tenant: str, agent_id: str, call_id: str) -> None:
    try:
        process_call(rt, tenant, agent_id, call_id)
    except Exception:
        log.exception("CRM processing of %s failed; the sweeper retries it", call_id)
