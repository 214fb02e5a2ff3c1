"""Builders and inspectors for the cloud's tests (fixtures are in ``cloud_testkit``).

* ``ws_event``: API Gateway websocket events as in platform.md §3.1.
* ``sent`` / ``closed``: what moto's management API received per connection id, decoded.
* call event builders and ``batch`` (a ``call_events`` frame).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.core.models import DEFAULT_ACCOUNT_ID

import cloud.app
from wire_protocol.call_events import CallEnded, CallEvent, CallRinging, CallStarted, CallSummary
from wire_protocol.messages import CallEventsBatch, CloudMessage, SequencedEvent, decode_cloud_message, encode

PROJECT_DIR = str(Path(cloud.app.__file__).resolve().parent)
API_ID = "abc123"
REGION = "us-east-1"
CID = "CID1="  # the connection the ``agent_id`` fixture is on

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def ws_event(
    route: str,
    connection_id: str,
    *,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    connected_at_ms: int | None = None,
) -> dict[str, Any]:
    """An API Gateway websocket event (Lambda proxy) for ``$connect``/``$default``/``$disconnect``."""
    event_type = {"$connect": "CONNECT", "$default": "MESSAGE", "$disconnect": "DISCONNECT"}[route]
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": event_type,
            "connectionId": connection_id,
            "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
            "stage": "api",
            "apiId": API_ID,
            "messageDirection": "IN",
            "connectedAt": connected_at_ms if connected_at_ms is not None else int(time.time() * 1000),
            "identity": {"sourceIp": "203.0.113.7"},
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body
    if headers is not None:
        event["headers"] = headers
    return event


def auth(token: str, header: str = "Authorization") -> dict[str, str]:
    return {"Host": f"{API_ID}.execute-api.{REGION}.amazonaws.com", header: f"Bearer {token}"}


def sent(connection_id: str) -> list[CloudMessage]:
    """Every message moto's management API received for ``connection_id``, decoded, in order."""
    connections = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION].connections
    key = quote(connection_id, safe="")
    if key not in connections:
        return []
    data = connections[key].data.decode("utf-8")
    decoder = json.JSONDecoder()
    messages: list[CloudMessage] = []
    index = 0
    while index < len(data):
        _, end = decoder.raw_decode(data, index)
        messages.append(decode_cloud_message(data[index:end]))
        index = end
    return messages


def closed(connection_id: str) -> bool:
    """Whether the cloud deleted the connection (moto pops it from its registry)."""
    connections = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION].connections
    return quote(connection_id, safe="") not in connections


def started(call_id: str = "pbx-1.1", seq: int = 1, number: str = "79261234567") -> CallStarted:
    return CallStarted(
        call_id=call_id,
        seq=seq,
        at=AT,
        direction="inbound",
        external_number=number,
        line="74950000000",
        caller_extension=None,
    )


def ringing(extension: str, call_id: str = "pbx-1.1", seq: int = 2) -> CallRinging:
    return CallRinging(call_id=call_id, seq=seq, at=AT, extension=extension)


def ended(call_id: str = "pbx-1.1", seq: int = 3, answered_by: str | None = "101") -> CallEnded:
    summary = CallSummary(
        call_id=call_id,
        direction="inbound",
        external_number="79261234567",
        line="74950000000",
        caller_extension=None,
        rang=["101"],
        answered_by=answered_by,
        transfers=[],
        final_extension=answered_by,
        result="answered" if answered_by else "missed",
        started_at=AT,
        answered_at=AT if answered_by else None,
        ended_at=AT,
        talk_seconds=12 if answered_by else 0,
        recording=None,
        command_id=None,
    )
    return CallEnded(call_id=call_id, seq=seq, at=AT, summary=summary)


def batch(*events: tuple[int, CallEvent], after: int | None = None) -> str:
    """A ``call_events`` frame from ``(agent seq, event)`` pairs, continuing from ``after`` when given."""
    items = [SequencedEvent(seq=seq, event=event) for seq, event in events]
    return encode(CallEventsBatch(events=items, after_seq=after))
