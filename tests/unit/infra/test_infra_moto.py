"""The stacks' stateful resources created in moto from the generated templates, and the apps run on them with the
environment the template gives their functions: secrets by ARN, tables by the stage's prefix, the bucket."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from chalice.test import Client
from moto import mock_aws

import aws_support.secrets
import cloud.app
import license_server.app
from cloud.agents import tokens
from cloud.calls.store import get_call
from infra.apps import CLOUD, LICENSE, AppSpec
from infra.resources import apply_stateful_resources, resolve
from infra.template import merge_template
from license_protocol import encode_private_key, generate_signing_key, verify_lease
from license_server import api_keys
from wire_protocol.call_events import CallStarted
from wire_protocol.messages import CallEventsBatch, Hello, SequencedEvent, encode

REGION = "eu-central-1"
API_ID = "abc123"


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "WS_MGMT_ENDPOINT", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # fresh secret caches: nothing read in another test (or another moto) is reused
    monkeypatch.setattr(aws_support.secrets, "_cache", aws_support.secrets.SecretCache())
    with mock_aws():
        yield
    cloud.app.close_runtimes()


def function_environment(app: AppSpec, template: dict[str, Any], names: dict[str, str]) -> dict[str, str]:
    """What a deployed function's environment would hold: the stage's config.json, then the template's Globals."""
    variables = {**app.environment("dev"), **template["Globals"]["Function"]["Environment"]["Variables"]}
    return {key: str(resolve(value, names)) for key, value in variables.items()}


def deploy_to_moto(app: AppSpec, parameters: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    template = merge_template(app, "dev")
    applied = apply_stateful_resources(template, boto3.client, region=REGION, parameters=parameters)
    names = {"WebsocketAPI": API_ID, **applied.refs}
    return applied.names, function_environment(app, template, names)


def ws_event(route: str, connection_id: str, *, body: str | None = None, headers: dict[str, str] | None = None) -> Any:
    kind = {"$connect": "CONNECT", "$default": "MESSAGE", "$disconnect": "DISCONNECT"}[route]
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": kind,
            "connectionId": connection_id,
            "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
            "stage": "api",
            "apiId": API_ID,
            "connectedAt": int(time.time() * 1000),
            "identity": {"sourceIp": "203.0.113.7"},
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body
    if headers is not None:
        event["headers"] = headers
    return event


def test_the_cloud_stack_resources_exist_as_the_template_says() -> None:
    names, _ = deploy_to_moto(CLOUD)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    assert sorted(dynamodb.list_tables()["TableNames"]) == sorted(f"pbxlink-dev-{key}" for key in CLOUD.tables)
    ttl = dynamodb.describe_time_to_live(TableName="pbxlink-dev-connections")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    agents = dynamodb.describe_table(TableName="pbxlink-dev-agents")["Table"]
    assert {index["IndexName"] for index in agents["GlobalSecondaryIndexes"]} == {"by_token_hash", "by_agent_id"}
    bucket = names["RecordingsBucket"]
    assert bucket == f"pbxlink-dev-recordings-123456789012-{REGION}"
    rules = boto3.client("s3", region_name=REGION).get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert {rule["ID"]: rule.get("Expiration") for rule in rules}["expire-recordings"] == {"Days": 30}
    secrets = boto3.client("secretsmanager", region_name=REGION)
    assert secrets.describe_secret(SecretId=names["B24ClientSecret"])["Name"] == "pbxlink/dev/b24-client-secret"


def test_the_cloud_runs_on_the_stack_with_the_environment_its_functions_get(monkeypatch: pytest.MonkeyPatch) -> None:
    names, env = deploy_to_moto(CLOUD, {"B24ClientId": "app.5f1e", "LicensePublicKeys": ""})
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.put_secret_value(SecretId=names["B24ClientSecret"], SecretString="b24-secret-from-the-store")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cloud.app.use_runtime(None)  # what a Lambda does: settings from the environment, secrets from their ARNs
    settings = cloud.app.runtime().settings
    assert (settings.table_prefix, settings.b24_client_id) == ("pbxlink-dev-", "app.5f1e")
    assert settings.b24_client_secret == "b24-secret-from-the-store"
    assert settings.license_api_key is None  # its secret still holds the placeholder: unset, and logged
    assert settings.ws_api_id == API_ID

    rt = cloud.app.runtime()
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    client = Client(cloud.app.app, stage_name="dev", project_dir=str(CLOUD.source))
    connect = ws_event("$connect", "CID1=", headers={"Authorization": f"Bearer {token}"})
    assert client.lambda_.invoke("connect", connect).payload == {"statusCode": 200}
    client.lambda_.invoke("message", ws_event("$default", "CID1=", body=encode(Hello(agent_version="0.1.0"))))
    started = CallStarted(
        call_id="pbx-1.1",
        seq=1,
        at="2026-11-26T09:00:00Z",
        direction="inbound",
        external_number="79261234567",
        line="74950000000",
        caller_extension=None,
    )
    frame = encode(CallEventsBatch(events=[SequencedEvent(seq=1, event=started)]))
    client.lambda_.invoke("message", ws_event("$default", "CID1=", body=frame))
    call = get_call(rt, "portal-a", agent_id, "pbx-1.1")
    assert call is not None and call.external_number == "79261234567"
    stored = boto3.client("dynamodb", region_name=REGION).scan(TableName="pbxlink-dev-call_events")["Items"]
    assert [item["event_id"]["S"] for item in stored] == ["pbx-1.1:1"]

    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=env["PBXLINK_RECORDINGS_BUCKET"], Key="portal-a/ag/pbx-1.1.mp3", Body=b"ID3")
    assert s3.head_object(Bucket=env["PBXLINK_RECORDINGS_BUCKET"], Key="portal-a/ag/pbx-1.1.mp3")["ContentLength"] == 3


def test_the_license_server_signs_with_the_key_from_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    names, env = deploy_to_moto(LICENSE)
    key = generate_signing_key()
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=names["LicenseSigningKey"], SecretString=f"2026-11:{encode_private_key(key)}"
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    license_server.app.use_runtime(None)
    rt = license_server.app.runtime()
    _, backend_key = api_keys.create_key(rt, "backend", "cloud dev")
    server = Client(license_server.app.app, stage_name="dev", project_dir=str(LICENSE.source))
    body = {"member_id": "portal-a", "usage": {}, "nonce": "q0vS3eH7rYt2mN8pLw4xZA", "sent_at": int(time.time())}
    response = server.http.post(
        "/v1/check",
        headers={"Authorization": f"Bearer {backend_key}", "Content-Type": "application/json"},
        body=json.dumps(body).encode(),
    )
    assert response.status_code == 200, response.body
    lease = verify_lease(json.loads(response.body)["lease"], {"2026-11": key.public_key()})
    assert (lease.member_id, lease.trial) == ("portal-a", True)
