"""The Lambda-proxy events API Gateway's websocket API sends, built the way AWS builds them.

Shapes follow platform.md §3.1 (Powertools' recorded ``apiGatewayWebSocketApi*`` events): ``$connect`` carries the
handshake's headers and query string, ``$default`` carries only the body, ``$disconnect`` carries the close code
and reason. Keeping them byte-for-byte close matters because the cloud's handlers read ``event.to_dict()``
(``Authorization``, ``sourceIp``, ``disconnectStatusCode``) exactly as they will in Lambda.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "ApiContext",
    "ConnectionInfo",
    "connect_event",
    "disconnect_event",
    "message_event",
    "new_connection_id",
    "new_request_id",
]

Event = dict[str, Any]


def _b64_id() -> str:
    # API Gateway ids are 16 base64 characters ending in "=" ("BFaT_fALIAMCKug="); the standard alphabet here
    # also yields "/" and "+", so code that forgets to URL-encode an id in a path fails locally, not in AWS.
    return base64.b64encode(secrets.token_bytes(11)).decode("ascii")


def new_connection_id() -> str:
    """A fresh connection id shaped like API Gateway's (16 characters, base64, ``=`` padded)."""
    return _b64_id()


def new_request_id() -> str:
    """A request / message id shaped like API Gateway's ``requestId`` and ``messageId``."""
    return _b64_id()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ApiContext:
    """What every event says about the API itself (constant for one gateway)."""

    api_id: str = "pbxlocal"
    stage: str = "api"
    region: str = "us-east-1"

    @property
    def domain_name(self) -> str:
        # AWS's shape, not the local host: code that builds its own endpoint from domainName must use
        # WS_MGMT_ENDPOINT instead, locally and in AWS alike.
        return f"{self.api_id}.execute-api.{self.region}.amazonaws.com"


@dataclass
class ConnectionInfo:
    """One accepted connection, as the gateway remembers it between events."""

    connection_id: str
    source_ip: str
    user_agent: str
    connected_at_ms: int = field(default_factory=now_ms)


def _request_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _request_context(api: ApiContext, conn: ConnectionInfo, route_key: str, event_type: str) -> Event:
    epoch = now_ms()
    request_id = new_request_id()
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(epoch),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": conn.connected_at_ms,
        "requestTimeEpoch": epoch,
        "identity": {"sourceIp": conn.source_ip},
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": conn.connection_id,
        "apiId": api.api_id,
    }


def connect_event(
    api: ApiContext,
    conn: ConnectionInfo,
    *,
    path: str,
    headers: Iterable[tuple[str, str]],
    host_port: int,
) -> Event:
    """The ``$connect`` event for a handshake: headers (single and multi-valued, client's casing kept),
    query string (keys absent when there is none), and the request context."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value  # API Gateway keeps the last value of a repeated header here ...
        multi.setdefault(name, []).append(value)  # ... and all of them here
    for name, value in (
        ("X-Forwarded-For", conn.source_ip),
        ("X-Forwarded-Port", str(host_port)),
        ("X-Forwarded-Proto", "https"),
    ):
        single.setdefault(name, value)
        multi.setdefault(name, [value])
    event: Event = {"headers": single, "multiValueHeaders": multi}
    pairs = parse_qsl(urlsplit(path).query, keep_blank_values=True)
    if pairs:
        query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for key, value in pairs:
            query[key] = value
            multi_query.setdefault(key, []).append(value)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = multi_query
    event["requestContext"] = _request_context(api, conn, "$connect", "CONNECT")
    event["isBase64Encoded"] = False
    return event


def message_event(api: ApiContext, conn: ConnectionInfo, body: str) -> Event:
    """The ``$default`` event for one text message: no headers, the body as a string."""
    context = _request_context(api, conn, "$default", "MESSAGE")
    context["messageId"] = new_request_id()
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(api: ApiContext, conn: ConnectionInfo, status_code: int, reason: str) -> Event:
    """The ``$disconnect`` event: AWS's fixed header set, plus the close code and reason."""
    headers = {"Host": api.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = _request_context(api, conn, "$disconnect", "DISCONNECT")
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
