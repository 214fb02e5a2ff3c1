"""A local API Gateway websocket API in front of a Chalice app: the piece ``chalice local`` lacks.

Agents connect to it exactly as to AWS. Each connection becomes the same three Lambda-proxy events API Gateway
sends (``$connect``, ``$default`` per message, ``$disconnect``), run through the app's ``handler_map`` so Chalice's
own wrapper (middleware, ``configure_from_api_id``, return-value mapping) runs as in Lambda. The AWS behaviours
the agent must survive are reproduced: ``$connect`` holds the upgrade and can refuse it, binary frames close with
1003, frames over 32 KiB and messages over 128 KiB close with 1009, idle and maximum-duration closes with 1001,
and pushes go through an HTTP ``@connections`` management API on a second port (``websockets`` only parses GET,
so it cannot share the websocket port) that answers unknown ids with ``GoneException``. Handlers run in worker
threads, as separate Lambdas would, so a slow handler never stalls other connections. See ``docs/cloud-local.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit
from weakref import WeakKeyDictionary

from chalice.app import Chalice
from chalice.local import LambdaContext
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from sandbox.apigw_local.events import (
    ApiContext,
    ConnectionInfo,
    connect_event,
    disconnect_event,
    message_event,
    new_connection_id,
    new_request_id,
)
from sandbox.apigw_local.session import LocalSession

__all__ = ["MAX_FRAME_BYTES", "MAX_MESSAGE_BYTES", "GatewaySettings", "LocalApiGateway"]

log = logging.getLogger("sandbox.apigw_local")

#: API Gateway's message payload limit (both directions); a bigger incoming message closes the socket with 1009.
MAX_MESSAGE_BYTES: Final = 128 * 1024
#: API Gateway's frame limit: a bigger incoming frame closes with 1009 too, and pushes go out in frames this big.
MAX_FRAME_BYTES: Final = 32 * 1024
#: Deployed Lambda names Chalice gives the three routes (what ``context.function_name`` says in AWS).
_FUNCTION_NAMES: Final = {
    "$connect": "websocket_connect",
    "$default": "websocket_message",
    "$disconnect": "websocket_disconnect",
}
_DEFAULT_REASONS: Final[dict[int, str]] = {
    CloseCode.NO_STATUS_RCVD: "Client-side close frame status not set",
    CloseCode.ABNORMAL_CLOSURE: "Connection closed abnormally",
}
_T = TypeVar("_T")


@dataclass(frozen=True)
class GatewaySettings:
    """Ports (0 = pick a free one), the API's identity in events, and AWS's limits (shrink them in tests)."""

    host: str = "127.0.0.1"
    ws_port: int = 0
    mgmt_port: int = 0
    api: ApiContext = field(default_factory=ApiContext)
    idle_timeout: float = 600.0  # AWS: 10 min without a message in either direction
    max_duration: float = 7200.0  # AWS: 2 h per connection
    integration_timeout: float = 29.0  # AWS: an integration answering later is an error
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_frame_bytes: int = MAX_FRAME_BYTES
    handler_threads: int = 16  # concurrent handler invocations ("Lambdas") across all connections
    #: AWS invokes $default per message without waiting for the previous one, so one connection's messages
    #: may be handled concurrently and finish out of order. Off by default (one at a time, in order); turn it
    #: on to test code that must survive that.
    concurrent_messages: bool = False


@dataclass
class _Live:
    """A connection after ``$connect`` accepted it: what the management API and the watchdog need."""

    info: ConnectionInfo
    socket: ServerConnection
    opened: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_active_wall: float = field(default_factory=time.time)

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_wall = time.time()


@dataclass
class _Handshake:
    info: ConnectionInfo
    headers: dict[str, str]


class LocalApiGateway:
    """Serve ``app``'s websocket routes on ``ws_url`` and the ``@connections`` API on ``mgmt_url``.

    Use as ``async with LocalApiGateway(app, settings) as gateway:``; it binds Chalice's own
    ``app.websocket_api`` to the management API too, so ``app.websocket_api.send`` works locally.
    """

    def __init__(self, app: Chalice, settings: GatewaySettings | None = None) -> None:
        self.app = app
        self.settings = settings or GatewaySettings()
        self._connections: dict[str, _Live] = {}
        self._handshakes: WeakKeyDictionary[ServerConnection, _Handshake] = WeakKeyDictionary()
        self._executor: ThreadPoolExecutor | None = None
        self._server: Server | None = None
        self._mgmt: _ManagementServer | None = None
        self._mgmt_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind both ports (0 = free ones) and serve; on failure (a port in use) nothing is left running."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(settings.handler_threads, thread_name_prefix="apigw-lambda")
        self._mgmt = _ManagementServer((settings.host, settings.mgmt_port), self)
        mgmt = self._mgmt
        self._mgmt_thread = threading.Thread(
            target=lambda: mgmt.serve_forever(poll_interval=0.05), name="apigw-mgmt", daemon=True
        )
        self._mgmt_thread.start()
        self._server = await serve(
            self._handle,
            settings.host,
            settings.ws_port,
            process_request=self._process_request,
            process_response=self._process_response,
            max_size=(settings.max_message_bytes, settings.max_frame_bytes),
            ping_interval=None,  # API Gateway answers pings but never sends any
            compression=None,  # nor does it negotiate permessage-deflate: sizes are what goes on the wire
            server_header=None,
        )
        self.bind_websocket_api()
        log.info("local API Gateway: websocket %s, management %s", self.ws_url, self.mgmt_url)

    async def stop(self) -> None:
        """Close every connection with 1001 (each gets its ``$disconnect``), then the management API."""
        if self._server is not None:
            self._server.close()  # closes open connections with 1001 and waits for their handlers
            await self._server.wait_closed()
            self._server = None
        if self._mgmt is not None:
            await asyncio.to_thread(self._mgmt.shutdown)
            self._mgmt.server_close()
            self._mgmt = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def __aenter__(self) -> LocalApiGateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def ws_port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def mgmt_port(self) -> int:
        if self._mgmt is None:
            raise RuntimeError("the gateway is not started")
        return self._mgmt.server_address[1]

    @property
    def ws_url(self) -> str:
        """Where agents connect (``EDGE_CLOUD_URL``)."""
        return f"ws://{self.settings.host}:{self.ws_port}"

    @property
    def mgmt_url(self) -> str:
        """The management API endpoint, stage included, as ``WS_MGMT_ENDPOINT`` expects."""
        return f"http://{self.settings.host}:{self.mgmt_port}/{self.settings.api.stage}"

    def connection_ids(self) -> list[str]:
        """Ids of the connections currently open (after ``$connect``, before ``$disconnect``)."""
        return list(self._connections)

    def bind_websocket_api(self) -> None:
        """Point Chalice's ``app.websocket_api`` at this management API (its endpoint is otherwise the
        hard-coded ``https://{apiId}.execute-api...``, which no env var can override; platform.md §1.3)."""
        websocket_api = self.app.websocket_api
        websocket_api.session = LocalSession(self.mgmt_url, self.settings.api.region)
        websocket_api._client = None  # drop a client cached against an earlier endpoint

    # -- websocket side -----------------------------------------------------------------------------------

    async def _invoke(self, route: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """Run the app's handler for ``route`` in a worker thread, like a Lambda; None if the app has none."""
        config = self.app.websocket_handlers.get(route)
        log.info("%s %s", route, event["requestContext"]["connectionId"])
        if config is None:
            return None
        handler: Callable[[dict[str, Any], Any], Any] = self.app.handler_map[config.name]
        timeout = self.settings.integration_timeout
        context = LambdaContext(_FUNCTION_NAMES[route], memory_size=128, max_runtime_ms=int(timeout * 1000))
        loop = asyncio.get_running_loop()
        result = await asyncio.wait_for(loop.run_in_executor(self._executor, handler, event, context), timeout)
        return result if isinstance(result, dict) else None

    async def _process_request(self, socket: ServerConnection, request: Request) -> Response | None:
        """``$connect``: the upgrade waits for the handler, and a non-2xx answer refuses it with that status."""
        source_ip = str(socket.remote_address[0]) if socket.remote_address else "127.0.0.1"
        info = ConnectionInfo(
            connection_id=_unique_id(self._connections),
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent", ""),
        )
        event = connect_event(
            self.settings.api, info, path=request.path, headers=request.headers.raw_items(), host_port=self.ws_port
        )
        try:
            result = await self._invoke("$connect", event)
        except TimeoutError:
            log.error("$connect handler timed out for %s", info.connection_id)
            return socket.respond(HTTPStatus.GATEWAY_TIMEOUT, "Endpoint request timed out\n")
        except Exception:
            log.exception("$connect handler failed for %s", info.connection_id)
            return socket.respond(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error\n")
        status = int((result or {}).get("statusCode", 200))
        if not 200 <= status < 300:
            log.info("$connect refused %s with %s", info.connection_id, status)
            try:
                http_status = HTTPStatus(status)
            except ValueError:
                http_status = HTTPStatus.INTERNAL_SERVER_ERROR
            return socket.respond(http_status, f"{http_status.phrase}\n")
        headers = (result or {}).get("headers") or {}
        self._handshakes[socket] = _Handshake(info, {str(k): str(v) for k, v in headers.items()})
        return None

    def _process_response(self, socket: ServerConnection, request: Request, response: Response) -> Response | None:
        # Headers a $connect handler returns (e.g. Sec-WebSocket-Protocol) reach the client, as in AWS.
        handshake = self._handshakes.get(socket)
        if handshake is not None and response.status_code == HTTPStatus.SWITCHING_PROTOCOLS:
            for name, value in handshake.headers.items():
                response.headers[name] = value
        return None

    async def _handle(self, socket: ServerConnection) -> None:
        handshake = self._handshakes.pop(socket, None)
        if handshake is None:  # pragma: no cover - process_request always records accepted handshakes
            await socket.close(CloseCode.INTERNAL_ERROR)
            return
        live = _Live(handshake.info, socket)
        cid = live.info.connection_id
        self._connections[cid] = live
        watchdog = asyncio.create_task(self._watchdog(live), name=f"apigw-watchdog-{cid}")
        in_flight: set[asyncio.Task[None]] = set()
        try:
            async for message in socket:
                live.touch()
                if isinstance(message, bytes):
                    # API Gateway without binary media types disconnects a client that sends binary.
                    await socket.close(CloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
                    break
                if self.settings.concurrent_messages:
                    task = asyncio.create_task(self._on_message(live, message))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                else:
                    await self._on_message(live, message)
        except ConnectionClosed:
            pass  # 1009 (too big) or an abnormal close; $disconnect below says which
        finally:
            watchdog.cancel()
            self._connections.pop(cid, None)
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            await socket.wait_closed()
            code = socket.close_code or CloseCode.ABNORMAL_CLOSURE
            reason = socket.close_reason or _DEFAULT_REASONS.get(code, "")
            await self._on_disconnect(live, code, reason)

    async def _on_message(self, live: _Live, body: str) -> None:
        cid = live.info.connection_id
        try:
            await self._invoke("$default", message_event(self.settings.api, live.info, body))
        except Exception as exc:
            # What API Gateway sends the client when the integration fails or times out.
            if isinstance(exc, TimeoutError):
                log.error("$default handler timed out for %s", cid)
                text = "Endpoint request timed out"
            else:
                log.exception("$default handler failed for %s", cid)
                text = "Internal server error"
            error = {"message": text, "connectionId": cid, "requestId": new_request_id()}
            with contextlib.suppress(ConnectionClosed):
                await live.socket.send(json.dumps(error))
                live.touch()

    async def _on_disconnect(self, live: _Live, code: int, reason: str) -> None:
        try:
            await self._invoke("$disconnect", disconnect_event(self.settings.api, live.info, code, reason))
        except Exception:
            log.exception("$disconnect handler failed for %s", live.info.connection_id)

    async def _watchdog(self, live: _Live) -> None:
        """Close with 1001 after ``idle_timeout`` without a message either way, or after ``max_duration``."""
        settings = self.settings
        while True:
            idle_at = live.last_active + settings.idle_timeout
            hard_at = live.opened + settings.max_duration
            delay = min(idle_at, hard_at) - time.monotonic()
            if delay <= 0:
                why = "idle timeout" if idle_at <= hard_at else "maximum connection duration"
                log.info("closing %s: %s", live.info.connection_id, why)
                await live.socket.close(CloseCode.GOING_AWAY, "Going away")
                return
            await asyncio.sleep(delay)

    # -- management side (called from the HTTP threads through the loop) -----------------------------------

    def call_in_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the gateway's event loop from a management-API thread and wait for it."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the gateway is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def post_to_connection(self, connection_id: str, data: str) -> bool:
        """Deliver one text message; False when the connection is gone (the API answers 410)."""
        live = self._connections.get(connection_id)
        if live is None:
            return False
        try:
            await live.socket.send(_frames(data, self.settings.max_frame_bytes))
        except ConnectionClosed:
            return False
        live.touch()
        return True

    async def delete_connection(self, connection_id: str) -> bool:
        """Close the connection (1000; AWS's exact code is not documented); False when it is gone."""
        live = self._connections.get(connection_id)
        if live is None:
            return False
        await live.socket.close(CloseCode.NORMAL_CLOSURE, "Connection deleted")
        return True

    async def get_connection(self, connection_id: str) -> dict[str, Any] | None:
        """``GetConnection``'s JSON body (wire names; botocore maps them to ``ConnectedAt``...), or None when
        the connection is gone."""
        live = self._connections.get(connection_id)
        if live is None:
            return None
        return {
            "connectedAt": _iso(live.info.connected_at_ms / 1000),
            "identity": {"sourceIp": live.info.source_ip, "userAgent": live.info.user_agent},
            "lastActiveAt": _iso(live.last_active_wall),
        }


def _frames(text: str, limit: int) -> str | list[str]:
    """``text`` as API Gateway sends it: one frame, or text frames of at most ``limit`` bytes each (split on
    character boundaries), which the client reassembles into one message."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    chunks: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # never cut a UTF-8 sequence
            end -= 1
        chunks.append(data[start:end].decode("utf-8"))
        start = end
    return chunks


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unique_id(taken: dict[str, _Live]) -> str:
    while (cid := new_connection_id()) in taken:  # pragma: no cover - 88 random bits
        pass
    return cid


class _ManagementServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], gateway: LocalApiGateway) -> None:
        self.gateway = gateway
        super().__init__(address, _ManagementHandler)


class _ManagementHandler(BaseHTTPRequestHandler):
    """``POST|GET|DELETE [/{stage}]/@connections/{url-encoded id}``, answered the way botocore expects:
    errors carry ``x-amzn-ErrorType`` so the client raises the modeled exception (``GoneException``...)."""

    protocol_version = "HTTP/1.1"  # botocore keeps connections alive
    server: _ManagementServer

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("management API: " + format, *args)

    def _dispatch(self, method: str) -> None:
        gateway = self.server.gateway
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        connection_id = self._connection_id(gateway.settings.api.stage)
        if connection_id is None:
            self._error(HTTPStatus.NOT_FOUND, "NotFoundException", "No such route")
            return
        try:
            if method == "POST":
                if len(body) > gateway.settings.max_message_bytes:
                    self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "PayloadTooLargeException", "Payload too large")
                    return
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    self._error(HTTPStatus.BAD_REQUEST, "BadRequestException", "Data must be UTF-8 text (text frames)")
                    return
                found = gateway.call_in_loop(gateway.post_to_connection(connection_id, text))
                self._reply(found, HTTPStatus.OK, None)
            elif method == "DELETE":
                found = gateway.call_in_loop(gateway.delete_connection(connection_id))
                self._reply(found, HTTPStatus.NO_CONTENT, None)
            else:
                info = gateway.call_in_loop(gateway.get_connection(connection_id))
                self._reply(info is not None, HTTPStatus.OK, info)
        except Exception:
            log.exception("management API %s %s failed", method, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "InternalServerErrorException", "Internal server error")

    def _connection_id(self, stage: str) -> str | None:
        path = urlsplit(self.path).path
        prefix, sep, encoded = path.partition("/@connections/")
        if not sep or not encoded or prefix not in ("", f"/{stage}"):
            return None
        return unquote(encoded)

    def _reply(self, found: bool, status: HTTPStatus, payload: dict[str, Any] | None) -> None:
        if not found:
            self._error(HTTPStatus.GONE, "GoneException", None)
            return
        body = json.dumps(payload).encode() if payload is not None else b""
        self._send(status, body, {})

    def _error(self, status: HTTPStatus, error_type: str, message: str | None) -> None:
        self._send(status, json.dumps({"message": message}).encode(), {"x-amzn-ErrorType": error_type})

    def _send(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", new_request_id())
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)
