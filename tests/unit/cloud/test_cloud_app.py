"""The Chalice websocket handlers end to end: ``chalice.test.Client`` invoking them with API Gateway events,
DynamoDB and the management API in moto."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
from chalice.test import Client
from cloud_builders import auth, batch, closed, ended, sent, started, ws_event

import cloud.app
from cloud.agents import connections, tokens
from cloud.calls.store import get_call
from cloud.gateway import ConnectionGateway
from cloud.runtime import Runtime
from wire_protocol.messages import Ack, AgentSettings, ErrorMessage, Hello, Welcome, encode

pytest_plugins = ["cloud_testkit"]


def without_plan(message: Any) -> Any:
    """The welcome without the license and the token's issue time it carries (what these tests are not about)."""
    assert isinstance(message, Welcome) and message.plan is not None and message.agent_since is not None
    return message.model_copy(update={"plan": None, "agent_since": None})


def connect(client: Client, cid: str, headers: dict[str, str] | None) -> Any:
    return client.lambda_.invoke("connect", ws_event("$connect", cid, headers=headers)).payload


def say(client: Client, cid: str, body: str) -> None:
    client.lambda_.invoke("message", ws_event("$default", cid, body=body))


def test_the_app_registers_the_three_websocket_routes() -> None:
    assert {"connect", "message", "disconnect"} <= set(cloud.app.app.handler_map)
    assert set(cloud.app.app.websocket_handlers) == {"$connect", "$default", "$disconnect"}
    assert "WEBSOCKETS" in cloud.app.app.experimental_feature_flags


def test_connect_with_a_valid_token_records_the_connection(client: Client, rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    connected_ms = int(time.time() * 1000) - 5_000
    event = ws_event("$connect", "CID1=", headers=auth(token), connected_at_ms=connected_ms)
    assert client.lambda_.invoke("connect", event).payload == {"statusCode": 200}
    conn = connections.agent_connection(rt, "portal-a", agent_id)
    assert conn is not None and conn.connection_id == "CID1="
    assert conn.connected_at == connected_ms // 1000  # from requestContext.connectedAt (ms)
    assert tokens.get_agent(rt, "portal-a", agent_id).last_seen_at is not None


@pytest.mark.parametrize("header", ["authorization", "AUTHORIZATION", "Authorization"])
def test_the_authorization_header_is_found_whatever_its_case(client: Client, rt: Runtime, header: str) -> None:
    _, token = tokens.issue_token(rt, "portal-a", "Head office")
    assert connect(client, "CID1=", auth(token, header)) == {"statusCode": 200}


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Host": "x"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer pbxl_" + "A" * 43},
    ],
)
def test_connect_without_a_valid_token_is_401_and_records_nothing(
    client: Client, rt: Runtime, headers: dict[str, str] | None
) -> None:
    tokens.issue_token(rt, "portal-a", "Head office")
    assert connect(client, "CID1=", headers) == {"statusCode": 401}
    assert rt.dynamodb.scan(TableName=rt.tables.connections)["Items"] == []


def test_connect_with_a_revoked_token_is_403(client: Client, rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    tokens.revoke(rt, "portal-a", agent_id)
    assert connect(client, "CID1=", auth(token)) == {"statusCode": 403}
    assert rt.dynamodb.scan(TableName=rt.tables.connections)["Items"] == []


def test_disconnect_removes_only_its_own_connection(client: Client, rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    connect(client, "OLD=", auth(token))
    connect(client, "NEW=", auth(token))
    client.lambda_.invoke("disconnect", ws_event("$disconnect", "OLD="))
    conn = connections.agent_connection(rt, "portal-a", agent_id)
    assert conn is not None and conn.connection_id == "NEW="
    client.lambda_.invoke("disconnect", ws_event("$disconnect", "NEW="))
    assert connections.agent_connection(rt, "portal-a", agent_id) is None
    client.lambda_.invoke("disconnect", ws_event("$disconnect", "NEVER="))  # unknown: nothing to do, no error


def test_a_probe_connection_is_answered_but_does_not_take_over_the_agent(client: Client, rt: Runtime) -> None:
    """`edge-agent doctor` checks the token while the agent runs: commands must keep reaching the agent."""
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    connect(client, "AGENT=", auth(token))
    assert connect(client, "DOCTOR=", {**auth(token), "X-Pbxlink-Probe": "1"}) == {"statusCode": 200}
    say(client, "DOCTOR=", encode(Hello(agent_version="0.1.0")))
    assert without_plan(sent("DOCTOR=")[0]) == Welcome(agent_id=agent_id, tenant="portal-a", acked_seq=0)
    conn = connections.agent_connection(rt, "portal-a", agent_id)
    assert conn is not None and conn.connection_id == "AGENT="
    client.lambda_.invoke("disconnect", ws_event("$disconnect", "DOCTOR="))
    conn = connections.agent_connection(rt, "portal-a", agent_id)
    assert conn is not None and conn.connection_id == "AGENT="


def test_hello_then_events_through_the_handlers(client: Client, rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    connect(client, "CID1=", auth(token))
    say(client, "CID1=", encode(Hello(agent_version="0.1.0", capabilities=["originate"])))
    say(client, "CID1=", batch((1, started()), (2, ended(seq=2))))
    replies = sent("CID1=")
    assert without_plan(replies[0]) == Welcome(agent_id=agent_id, tenant="portal-a", acked_seq=0)
    assert isinstance(replies[1], AgentSettings)
    assert replies[2] == Ack(up_to_seq=2)
    call = get_call(rt, "portal-a", agent_id, "pbx-1.1")
    assert call is not None and call.status == "ended" and call.result == "answered"


def test_welcome_reports_what_the_cloud_already_holds(client: Client, rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    connect(client, "CID1=", auth(token))
    say(client, "CID1=", batch((7, started())))
    connect(client, "CID2=", auth(token))  # the agent reconnects
    say(client, "CID2=", encode(Hello(agent_version="0.1.0")))
    assert without_plan(sent("CID2=")[0]) == Welcome(agent_id=agent_id, tenant="portal-a", acked_seq=7)


def test_a_message_on_an_unknown_connection_is_refused_and_closed(client: Client, rt: Runtime) -> None:
    with (
        mock.patch.object(ConnectionGateway, "send", autospec=True, return_value=True) as send,
        mock.patch.object(ConnectionGateway, "close", autospec=True, return_value=True) as close,
    ):
        say(client, "CID1=", encode(Hello(agent_version="1")))
    replies = [call.args[2] for call in send.call_args_list]
    assert [(type(m), getattr(m, "code", None)) for m in replies] == [(ErrorMessage, "not_authorized")]
    assert [call.args[1] for call in close.call_args_list] == ["CID1="]


def test_revoked_while_connected_gets_not_authorized_and_is_closed(client: Client, rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    connect(client, "CID1=", auth(token))
    say(client, "CID1=", encode(Hello(agent_version="0.1.0")))
    tokens.revoke(rt, "portal-a", agent_id)
    with mock.patch("cloud.gateway.ConnectionGateway.close", autospec=True, return_value=True) as close:
        say(client, "CID1=", batch((1, started())))
    last = sent("CID1=")[-1]
    assert isinstance(last, ErrorMessage) and last.code == "not_authorized"
    assert [call.args[1] for call in close.call_args_list] == ["CID1="]
    assert get_call(rt, "portal-a", agent_id, "pbx-1.1") is None  # nothing stored
    assert connections.agent_connection(rt, "portal-a", agent_id) is None


def test_revoked_while_connected_closes_the_socket_in_moto(client: Client, rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    connect(client, "CID1=", auth(token))
    tokens.revoke(rt, "portal-a", agent_id)
    say(client, "CID1=", encode(Hello(agent_version="0.1.0")))
    assert closed("CID1=")  # delete_connection reached the management API


def test_gone_connection_drops_the_mapping(client: Client, rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    connect(client, "CID1=", auth(token))
    gateway = rt.gateway({"apiId": "abc123", "stage": "api"})
    gone = gateway.client.exceptions.GoneException(
        {"Error": {"Code": "GoneException", "Message": "gone"}}, "PostToConnection"
    )
    with (
        mock.patch.object(rt, "gateway", return_value=gateway),
        mock.patch.object(gateway.client, "post_to_connection", side_effect=gone) as post,
    ):
        say(client, "CID1=", batch((1, started())))
    assert post.call_count == 1
    assert connections.agent_connection(rt, "portal-a", agent_id) is None
    assert connections.connection_agent(rt, "CID1=") is None
    assert get_call(rt, "portal-a", agent_id, "pbx-1.1") is not None  # stored; the agent resends, deduplicated


def test_pushes_go_to_the_endpoint_built_from_the_request(client: Client, rt: Runtime) -> None:
    _, token = tokens.issue_token(rt, "portal-a", "Head office")
    connect(client, "CID1=", auth(token))
    endpoints: list[str] = []
    real = rt.gateway

    def spy(context: Any = None) -> Any:
        gateway = real(context)
        endpoints.append(gateway.endpoint_url)
        return gateway

    with mock.patch.object(rt, "gateway", side_effect=spy):
        say(client, "CID1=", encode(Hello(agent_version="0.1.0")))
    assert endpoints == ["https://abc123.execute-api.us-east-1.amazonaws.com/api"]
