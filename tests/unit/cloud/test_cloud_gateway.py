"""The one gateway over the management API: where it points, and GoneException as ``False``."""

from __future__ import annotations

from unittest import mock

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from cloud_builders import sent

from cloud.errors import ConfigError
from cloud.gateway import ConnectionGateway, management_endpoint
from cloud.runtime import Runtime
from cloud.settings import Settings
from wire_protocol.messages import Ack

pytest_plugins = ["cloud_testkit"]


def test_the_endpoint_is_built_from_the_api_id_not_the_domain() -> None:
    context = {"apiId": "abc123", "stage": "api", "domainName": "ws.example.com"}
    assert management_endpoint(Settings(region="eu-west-1"), context) == (
        "https://abc123.execute-api.eu-west-1.amazonaws.com/api"
    )
    assert management_endpoint(Settings(region="cn-north-1"), context).endswith(".amazonaws.com.cn/api")


def test_ws_mgmt_endpoint_wins_and_rest_handlers_use_the_configured_api() -> None:
    local = Settings(ws_mgmt_endpoint="http://127.0.0.1:8081/")
    assert management_endpoint(local, {"apiId": "abc123", "stage": "api"}) == "http://127.0.0.1:8081"
    rest = Settings(ws_api_id="xyz789", ws_stage="prod")
    assert management_endpoint(rest, {}) == "https://xyz789.execute-api.us-east-1.amazonaws.com/prod"
    with pytest.raises(ConfigError):
        management_endpoint(Settings(), {})


def test_settings_from_the_environment() -> None:
    settings = Settings.from_env({"PBXLINK_TABLE_PREFIX": "p-", "AWS_REGION": "eu-central-1", "WS_MGMT_ENDPOINT": "x"})
    assert (settings.table_prefix, settings.region, settings.ws_mgmt_endpoint) == ("p-", "eu-central-1", "x")
    assert Settings.from_env({}).table_prefix == "pbxlink-dev-"
    with pytest.raises(ConfigError, match="PBXLINK_TABLE_PREFIX"):
        Settings.from_env({"PBXLINK_TABLE_PREFIX": "bad prefix"})


def test_send_posts_the_encoded_message(rt: Runtime) -> None:
    gateway = rt.gateway({"apiId": "abc123", "stage": "api"})
    assert gateway.send("CID1=", Ack(up_to_seq=3)) is True
    assert sent("CID1=") == [Ack(up_to_seq=3)]


def test_gone_is_false_and_other_errors_propagate(rt: Runtime) -> None:
    gateway = rt.gateway({"apiId": "abc123", "stage": "api"})
    gone = gateway.client.exceptions.GoneException({"Error": {"Code": "GoneException"}}, "PostToConnection")
    with mock.patch.object(gateway.client, "post_to_connection", side_effect=gone):
        assert gateway.send("CID1=", Ack(up_to_seq=1)) is False
    with mock.patch.object(gateway.client, "delete_connection", side_effect=gone):
        assert gateway.close("CID1=") is False
    limit = ClientError({"Error": {"Code": "LimitExceededException"}}, "PostToConnection")
    with mock.patch.object(gateway.client, "post_to_connection", side_effect=limit), pytest.raises(ClientError):
        gateway.send("CID1=", Ack(up_to_seq=1))


def test_the_client_comes_from_the_injected_factory() -> None:
    factory = mock.Mock()
    gateway = ConnectionGateway("http://127.0.0.1:9", factory, region="eu-west-1")
    gateway.send("CID1=", Ack(up_to_seq=1))
    factory.assert_called_once_with(
        "apigatewaymanagementapi", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9"
    )
    factory.return_value.post_to_connection.assert_called_once_with(
        ConnectionId="CID1=", Data=b'{"v":1,"type":"ack","up_to_seq":1,"results":[]}'
    )


def test_the_app_runtime_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached runtime is per settings, DynamoDB endpoint included (cloud-local restarts moto on new ports)."""
    import cloud.app

    monkeypatch.setenv("PBXLINK_TABLE_PREFIX", "one-")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:5001")
    first = cloud.app.runtime()
    assert first is cloud.app.runtime() and first.tables.agents == "one-agents"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:5002")
    second = cloud.app.runtime()
    assert second is not first and second.settings.dynamodb_endpoint == "http://127.0.0.1:5002"
    assert second.dynamodb.meta.endpoint_url == "http://127.0.0.1:5002"
