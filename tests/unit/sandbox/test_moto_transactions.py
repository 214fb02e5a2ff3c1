"""cloud-local's moto transactions: all or nothing as before, without copying (and restoring) whole tables."""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws
from moto.dynamodb.models import dynamodb_backends

from sandbox.cloud_local import moto_transactions


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    moto_transactions.install()
    with mock_aws():
        client = boto3.client("dynamodb")
        for table in ("a", "b"):
            client.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        yield client


def put(table: str, pk: str, **extra: str) -> dict[str, Any]:
    item = {"pk": {"S": pk}, **{k: {"S": v} for k, v in extra.items()}}
    return {"Put": {"TableName": table, "Item": item}}


def test_a_failed_transaction_leaves_every_item_as_it_was(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="a", Item={"pk": {"S": "kept"}, "v": {"S": "before"}})
    dynamodb.put_item(TableName="b", Item={"pk": {"S": "exists"}})
    backend = dynamodb_backends["123456789012"]["us-east-1"]
    table_a = backend.tables["a"]
    refused = put("b", "exists", v="x")
    refused["Put"]["ConditionExpression"] = "attribute_not_exists(pk)"
    failing = [put("a", "new"), put("a", "kept", v="after"), refused]
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException) as caught:
        dynamodb.transact_write_items(TransactItems=failing)
    reasons = [r["Code"] for r in caught.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    assert "Item" not in dynamodb.get_item(TableName="a", Key={"pk": {"S": "new"}})
    assert dynamodb.get_item(TableName="a", Key={"pk": {"S": "kept"}})["Item"]["v"]["S"] == "before"
    assert "v" not in dynamodb.get_item(TableName="b", Key={"pk": {"S": "exists"}})["Item"]
    assert backend.tables["a"] is table_a  # the table was not swapped for a copy: other writes survive


def test_a_successful_transaction_writes_everything(dynamodb: Any) -> None:
    dynamodb.transact_write_items(TransactItems=[put("a", "one"), put("b", "two")])
    assert dynamodb.scan(TableName="a", Select="COUNT")["Count"] == 1
    assert dynamodb.scan(TableName="b", Select="COUNT")["Count"] == 1


def test_a_failed_transaction_keeps_what_another_writer_stored_meanwhile(dynamodb: Any) -> None:
    """The race seen in review: T1 snapshots an item, T2 stores it, T1 fails on it: T2's write must survive."""
    from moto.dynamodb.models import DynamoDBBackend

    backend = dynamodb_backends["123456789012"]["us-east-1"]
    wrapped = DynamoDBBackend.transact_write_items
    refused = put("a", "event")
    refused["Put"]["ConditionExpression"] = "attribute_not_exists(pk)"
    other_writer = put("a", "event", v="stored by T2")["Put"]["Item"]
    original_get = backend.get_item
    calls = {"n": 0}

    def get_then_race(table_name: str, key: dict[str, Any], projection: Any = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:  # right after T1's snapshot, T2 writes the item
            snapshot = original_get(table_name, key)
            backend.put_item("a", other_writer)
            return snapshot
        return original_get(table_name, key)

    backend.get_item = get_then_race  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(Exception, match="ConditionalCheckFailed"):  # moto's own exception, backend level
            wrapped(backend, [refused])
    finally:
        del backend.get_item
    assert dynamodb.get_item(TableName="a", Key={"pk": {"S": "event"}})["Item"]["v"]["S"] == "stored by T2"
