"""The local API Gateway against a small Chalice app of its own: events, limits, closes, the management API.

Every behaviour here is one the edge agent or the cloud relies on in AWS (platform.md §3-4), so each test
asserts what API Gateway would do, seen from a plain ``websockets`` client and a plain boto3 client.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from chalice.app import Chalice, WebsocketDisconnectedError, WebsocketEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from sandbox.apigw_local import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, GatewaySettings, LocalApiGateway

pytestmark = [pytest.mark.integration]

app = Chalice(app_name="apigw-local-probe")
app.experimental_feature_flags.update(["WEBSOCKETS"])

EVENTS: list[dict[str, Any]] = []
THREADS: list[str] = []
_lock = threading.Lock()


def _record(event: WebsocketEvent) -> dict[str, Any]:
    raw: dict[str, Any] = event.to_dict()
    with _lock:
        EVENTS.append(raw)
        THREADS.append(threading.current_thread().name)
    return raw


@app.on_ws_connect()
def connect_handler(event: WebsocketEvent) -> dict[str, Any]:
    headers = _record(event)["headers"]
    auth = headers.get("Authorization")
    if auth == "Bearer good":
        return {"statusCode": 200}
    if auth == "Bearer protocol":  # AWS forwards headers $connect returns, e.g. the chosen subprotocol
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "pbxlink.v1"}}
    if auth == "Bearer crash":
        raise RuntimeError("connect handler bug")
    return {"statusCode": 401 if auth is None else 403}


@app.on_ws_message()
def message_handler(event: WebsocketEvent) -> None:
    _record(event)
    body = event.json_body
    if body.get("boom"):
        raise RuntimeError("handler bug")
    time.sleep(float(body.get("sleep", 0)))
    if body.get("send_to"):
        try:
            app.websocket_api.send(body["send_to"], "x")
        except WebsocketDisconnectedError as exc:
            app.websocket_api.send(event.connection_id, json.dumps({"disconnected": exc.connection_id}))
        return
    app.websocket_api.send(event.connection_id, json.dumps({"echo": body, "cid": event.connection_id}))


@app.on_ws_disconnect()
def disconnect_handler(event: WebsocketEvent) -> None:
    _record(event)


GOOD = {"Authorization": "Bearer good"}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with _lock:
        EVENTS.clear()
        THREADS.clear()
    yield


@pytest.fixture
async def gateway() -> AsyncIterator[LocalApiGateway]:
    async with LocalApiGateway(app, GatewaySettings(integration_timeout=5)) as gw:
        yield gw


def events(route: str) -> list[dict[str, Any]]:
    with _lock:
        return [e for e in EVENTS if e["requestContext"]["routeKey"] == route]


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def mgmt_client(endpoint: str) -> Any:
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1")


async def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return closed.value.rcvd.code if closed.value.rcvd else None


async def test_connect_refused_with_the_handlers_status(gateway: LocalApiGateway) -> None:
    with pytest.raises(InvalidStatus) as missing:
        await connect(gateway.ws_url)
    assert missing.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as wrong:
        await connect(gateway.ws_url, additional_headers={"Authorization": "Bearer bad"})
    assert wrong.value.response.status_code == 403
    assert gateway.connection_ids() == []
    assert events("$disconnect") == []  # a refused connection never existed


async def test_connect_handler_failure_refuses_with_500(gateway: LocalApiGateway) -> None:
    with pytest.raises(InvalidStatus) as crashed:
        await connect(gateway.ws_url, additional_headers={"Authorization": "Bearer crash"})
    assert crashed.value.response.status_code == 500


async def test_headers_returned_by_connect_reach_the_client(gateway: LocalApiGateway) -> None:
    headers = {"Authorization": "Bearer protocol"}
    async with connect(gateway.ws_url, additional_headers=headers, subprotocols=[Subprotocol("pbxlink.v1")]) as ws:
        assert ws.subprotocol == "pbxlink.v1"


async def test_connect_event_has_api_gateways_shape(gateway: LocalApiGateway) -> None:
    async with connect(
        gateway.ws_url + "/?site=s1&tag=a&tag=b", additional_headers=GOOD, user_agent_header="probe"
    ) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers  # no permessage-deflate, as in AWS
    (event,) = events("$connect")
    assert event["headers"]["Authorization"] == "Bearer good"
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["multiValueHeaders"]["Authorization"] == ["Bearer good"]
    assert event["queryStringParameters"] == {"site": "s1", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"site": ["s1"], "tag": ["a", "b"]}
    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["stage"] == "api"
    assert context["apiId"] == "pbxlocal"
    assert context["domainName"] == "pbxlocal.execute-api.us-east-1.amazonaws.com"
    assert context["identity"] == {"sourceIp": "127.0.0.1"}
    assert abs(context["requestTimeEpoch"] - time.time() * 1000) < 5000
    assert context["connectedAt"] <= context["requestTimeEpoch"]
    cid = context["connectionId"]
    assert len(cid) == 16 and cid.endswith("=")


async def test_query_string_keys_absent_without_a_query(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD):
        pass
    (event,) = events("$connect")
    assert "queryStringParameters" not in event and "multiValueQueryStringParameters" not in event


async def test_message_runs_default_and_chalice_send_reaches_the_client(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        # A message split into frames is one $default event, as in AWS.
        await ws.send(['{"type": ', '"split"}'])
        split = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply["echo"] == {"type": "hello"}
    assert split["echo"] == {"type": "split"}
    first = events("$default")[0]
    assert first["body"] == '{"type": "hello"}'
    assert "headers" not in first
    assert first["requestContext"]["eventType"] == "MESSAGE"
    assert first["requestContext"]["messageId"]
    assert first["requestContext"]["connectionId"] == reply["cid"]
    assert all(name.startswith("apigw-lambda") for name in THREADS)  # never on the event loop's thread


async def test_push_through_the_management_api_with_plain_boto3(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        await eventually(lambda: len(gateway.connection_ids()) == 1)
        (cid,) = gateway.connection_ids()
        staged, root = mgmt_client(gateway.mgmt_url), mgmt_client(gateway.mgmt_url.rsplit("/", 1)[0])
        await asyncio.to_thread(staged.post_to_connection, ConnectionId=cid, Data=b'{"cmd":"originate"}')
        assert await asyncio.wait_for(ws.recv(), 5) == '{"cmd":"originate"}'
        await asyncio.to_thread(root.post_to_connection, ConnectionId=cid, Data=b"root")
        assert await asyncio.wait_for(ws.recv(), 5) == "root"
        info = await asyncio.to_thread(staged.get_connection, ConnectionId=cid)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        assert info["LastActiveAt"] >= info["ConnectedAt"]


async def test_push_through_the_clouds_connection_gateway(gateway: LocalApiGateway) -> None:
    cloud_gateway = pytest.importorskip("cloud.gateway")
    from wire_protocol.messages import Ack

    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        await eventually(lambda: len(gateway.connection_ids()) == 1)
        (cid,) = gateway.connection_ids()
        pusher = cloud_gateway.ConnectionGateway(gateway.mgmt_url)
        assert await asyncio.to_thread(pusher.send, cid, Ack(up_to_seq=7)) is True
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["up_to_seq"] == 7
        assert await asyncio.to_thread(pusher.send, "gone+id/==", Ack(up_to_seq=8)) is False


async def test_unknown_connection_is_gone(gateway: LocalApiGateway) -> None:
    client = mgmt_client(gateway.mgmt_url)
    for call in (client.post_to_connection, client.get_connection, client.delete_connection):
        kwargs = {"ConnectionId": "nope+/x=", **({"Data": b"x"} if call == client.post_to_connection else {})}
        with pytest.raises(client.exceptions.GoneException):
            await asyncio.to_thread(call, **kwargs)
    # Chalice's own websocket_api maps the same answer to WebsocketDisconnectedError.
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        await ws.send(json.dumps({"send_to": "nope="}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"disconnected": "nope="}


async def test_oversized_push_is_rejected_with_413(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD):
        await eventually(lambda: len(gateway.connection_ids()) == 1)
        client = mgmt_client(gateway.mgmt_url)
        big = b"x" * (MAX_MESSAGE_BYTES + 1)
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            await asyncio.to_thread(client.post_to_connection, ConnectionId=gateway.connection_ids()[0], Data=big)


async def test_delete_connection_closes_it_and_runs_disconnect(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        await eventually(lambda: len(gateway.connection_ids()) == 1)
        client = mgmt_client(gateway.mgmt_url)
        await asyncio.to_thread(client.delete_connection, ConnectionId=gateway.connection_ids()[0])
        assert await close_code(ws) == 1000
    await eventually(lambda: len(events("$disconnect")) == 1)


async def test_client_close_runs_disconnect_with_code_and_reason(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        await eventually(lambda: len(gateway.connection_ids()) == 1)
        (cid,) = gateway.connection_ids()
        await ws.close(4000, "agent restarting")
    await eventually(lambda: len(events("$disconnect")) == 1)
    (event,) = events("$disconnect")
    context = event["requestContext"]
    assert (context["connectionId"], context["eventType"]) == (cid, "DISCONNECT")
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (4000, "agent restarting")
    assert event["headers"]["x-api-key"] == ""
    assert gateway.connection_ids() == []
    client = mgmt_client(gateway.mgmt_url)
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"late")


async def test_binary_frame_closes_with_1003(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        await ws.send(b"\x00\x01")
        assert await close_code(ws) == 1003
    await eventually(lambda: len(events("$disconnect")) == 1)
    assert events("$default") == []
    assert events("$disconnect")[0]["requestContext"]["disconnectStatusCode"] == 1003


def in_frames(text: str, size: int = MAX_FRAME_BYTES) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def test_message_over_128_kib_closes_with_1009(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD, max_size=None) as ws:
        await ws.send(in_frames("x" * MAX_MESSAGE_BYTES))  # exactly the limit is fine ... (not JSON: $default fails)
        assert "Internal server error" in await asyncio.wait_for(ws.recv(), 5)
        await ws.send(in_frames("x" * (MAX_MESSAGE_BYTES + 1)))  # ... one byte more is not
        assert await close_code(ws) == 1009
    await eventually(lambda: len(events("$disconnect")) == 1)
    assert len(events("$default")) == 1


async def test_frame_over_32_kib_closes_with_1009(gateway: LocalApiGateway) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        body = json.dumps({"pad": "x" * MAX_FRAME_BYTES})  # a little over one frame's worth
        await ws.send(in_frames(body))  # split into frames, API Gateway takes it ...
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["echo"]["pad"] == "x" * MAX_FRAME_BYTES
        await ws.send(body)  # ... in one frame, it closes the connection
        assert await close_code(ws) == 1009


async def test_big_push_arrives_whole_in_frames_of_32_kib(gateway: LocalApiGateway) -> None:
    frames: list[int] = []
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        original = ws.protocol.recv_frame

        def spy(frame: Any) -> None:
            frames.append(len(frame.data))
            original(frame)

        ws.protocol.recv_frame = spy  # type: ignore[method-assign]
        await eventually(lambda: len(gateway.connection_ids()) == 1)
        text = "é" * MAX_FRAME_BYTES  # 2 bytes per character: frames must not split one
        client = mgmt_client(gateway.mgmt_url)
        await asyncio.to_thread(client.post_to_connection, ConnectionId=gateway.connection_ids()[0], Data=text.encode())
        assert await asyncio.wait_for(ws.recv(), 5) == text
    assert len(frames) >= 2 and max(frames) <= MAX_FRAME_BYTES


async def test_handler_error_answers_internal_server_error_and_keeps_the_connection(
    gateway: LocalApiGateway,
) -> None:
    async with connect(gateway.ws_url, additional_headers=GOOD) as ws:
        await ws.send(json.dumps({"boom": True}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["message"] == "Internal server error"
        assert error["connectionId"] and error["requestId"]
        await ws.send(json.dumps({"after": 1}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["echo"] == {"after": 1}


async def test_handler_over_the_integration_timeout_answers_timed_out() -> None:
    async with (
        LocalApiGateway(app, GatewaySettings(integration_timeout=0.2)) as gateway,
        connect(gateway.ws_url, additional_headers=GOOD) as ws,
    ):
        await ws.send(json.dumps({"sleep": 0.4}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["message"] == "Endpoint request timed out"


async def test_slow_handler_does_not_stall_other_connections(gateway: LocalApiGateway) -> None:
    async with (
        connect(gateway.ws_url, additional_headers=GOOD) as slow,
        connect(gateway.ws_url, additional_headers=GOOD) as fast,
    ):
        await fast.send(json.dumps({"n": 0}))  # warm up: the first send builds Chalice's boto3 client
        await asyncio.wait_for(fast.recv(), 5)
        await slow.send(json.dumps({"sleep": 0.6}))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await fast.send(json.dumps({"n": 1}))
        assert json.loads(await asyncio.wait_for(fast.recv(), 5))["echo"] == {"n": 1}
        assert time.monotonic() - started < 0.3
        assert json.loads(await asyncio.wait_for(slow.recv(), 5))["echo"] == {"sleep": 0.6}


@pytest.mark.parametrize("concurrent", [False, True])
async def test_one_connections_messages_in_order_unless_concurrent(concurrent: bool) -> None:
    async with (
        LocalApiGateway(app, GatewaySettings(concurrent_messages=concurrent)) as gateway,
        connect(gateway.ws_url, additional_headers=GOOD) as ws,
    ):
        await ws.send(json.dumps({"n": 0}))  # warm up: the first send builds Chalice's boto3 client
        await asyncio.wait_for(ws.recv(), 5)
        await ws.send(json.dumps({"n": 1, "sleep": 0.3}))
        await ws.send(json.dumps({"n": 2}))
        replies = [json.loads(await asyncio.wait_for(ws.recv(), 5))["echo"]["n"] for _ in range(2)]
    assert replies == ([2, 1] if concurrent else [1, 2])


async def test_idle_connection_closes_with_1001_and_traffic_keeps_it_open() -> None:
    async with (
        LocalApiGateway(app, GatewaySettings(idle_timeout=0.6)) as gateway,
        connect(gateway.ws_url, additional_headers=GOOD) as ws,
    ):
        await eventually(lambda: len(gateway.connection_ids()) == 1)
        cid = gateway.connection_ids()[0]
        client = mgmt_client(gateway.mgmt_url)
        started = time.monotonic()
        for _ in range(3):  # pushes count as activity, like messages from the agent
            await asyncio.sleep(0.25)
            await asyncio.to_thread(client.post_to_connection, ConnectionId=cid, Data=b"keepalive")
            assert await asyncio.wait_for(ws.recv(), 5) == "keepalive"
        assert await close_code(ws) == 1001
        assert 0.75 + 0.6 - 0.05 <= time.monotonic() - started < 3  # last push + idle_timeout
    assert events("$disconnect")[0]["requestContext"]["disconnectStatusCode"] == 1001


async def test_connection_closes_with_1001_at_max_duration_even_when_busy() -> None:
    async with (
        LocalApiGateway(app, GatewaySettings(idle_timeout=5, max_duration=0.5)) as gateway,
        connect(gateway.ws_url, additional_headers=GOOD) as ws,
    ):
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.send(json.dumps({"n": 1}))
                await asyncio.wait_for(ws.recv(), 5)
                await asyncio.sleep(0.1)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert 0.45 <= time.monotonic() - started < 2


async def test_stopping_the_gateway_disconnects_everyone() -> None:
    gateway = LocalApiGateway(app)
    await gateway.start()
    ws = await connect(gateway.ws_url, additional_headers=GOOD)
    await eventually(lambda: len(gateway.connection_ids()) == 1)
    await gateway.stop()
    assert await close_code(ws) == 1001
    assert len(events("$disconnect")) == 1


async def test_a_port_in_use_fails_start_and_leaves_nothing_running() -> None:
    async with LocalApiGateway(app) as running:
        busy = LocalApiGateway(app, GatewaySettings(ws_port=running.ws_port))
        with pytest.raises(OSError):
            await busy.start()
        assert busy._mgmt is None and busy._executor is None
