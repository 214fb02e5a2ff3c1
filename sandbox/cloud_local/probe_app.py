"""A tiny Chalice app for checking cloud-local itself, independent of the real cloud app:
``python -m sandbox.cloud_local --app sandbox.cloud_local.probe_app:app``.

``$connect`` accepts ``Authorization: Bearer <PROBE_TOKEN>`` (env, default ``probe``), answers 401 without a
header and 403 with another token; ``$default`` echoes each message back through the management API and
records it in DynamoDB; ``GET /health`` and ``GET /connections`` show what the stack sees.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3  # type: ignore[import-untyped]
from chalice.app import Chalice, WebsocketEvent

app = Chalice(app_name="cloud-local-probe")
app.experimental_feature_flags.update(["WEBSOCKETS"])

TABLE_KEY = "probe_connections"


def create_tables(client: Any, prefix: str) -> list[str]:
    """The probe's one table (``<prefix>probe_connections``, key ``connection_id``); existing is fine."""
    name = prefix + TABLE_KEY
    if name not in client.list_tables()["TableNames"]:
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "connection_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    return [name]


def _table() -> str:
    return os.environ.get("PBXLINK_TABLE_PREFIX", "") + TABLE_KEY


def _dynamodb() -> Any:
    return boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION", "us-east-1"))


def _push(connection_id: str, data: str) -> None:
    endpoint = os.environ["WS_MGMT_ENDPOINT"]
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, region_name=os.environ["AWS_REGION"])
    client.post_to_connection(ConnectionId=connection_id, Data=data.encode())


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, Any]:
    raw = event.to_dict()
    auth = raw["headers"].get("Authorization")
    if auth is None:
        return {"statusCode": 401}
    if auth != "Bearer " + os.environ.get("PROBE_TOKEN", "probe"):
        return {"statusCode": 403}
    site = (raw.get("queryStringParameters") or {}).get("site", "")
    item = {"connection_id": {"S": event.connection_id}, "site": {"S": site}, "at": {"N": str(int(time.time()))}}
    _dynamodb().put_item(TableName=_table(), Item=item)
    return {"statusCode": 200}


@app.on_ws_message()
def message(event: WebsocketEvent) -> None:
    _push(event.connection_id, json.dumps({"echo": event.body, "connection_id": event.connection_id}))


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> None:
    _dynamodb().delete_item(TableName=_table(), Key={"connection_id": {"S": event.connection_id}})


@app.route("/health")
def health() -> dict[str, Any]:
    return {"ok": True, "table_prefix": os.environ.get("PBXLINK_TABLE_PREFIX")}


@app.route("/connections")
def connections() -> dict[str, Any]:
    items = _dynamodb().scan(TableName=_table())["Items"]
    return {"connections": sorted(item["connection_id"]["S"] for item in items)}
