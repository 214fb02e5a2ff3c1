"""The table definitions are the one source: creating them twice is a no-op and TTL is on where declared."""

from __future__ import annotations

from cloud.runtime import Runtime
from cloud.storage.tables import TABLES, TTL_ATTRIBUTES, TableNames, create_tables

pytest_plugins = ["cloud_testkit"]


def test_every_table_exists_with_its_ttl(rt: Runtime) -> None:
    names = set(rt.dynamodb.list_tables()["TableNames"])
    assert names == {"test-" + key for key in TABLES}
    for key, attribute in TTL_ATTRIBUTES.items():
        ttl = rt.dynamodb.describe_time_to_live(TableName="test-" + key)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": attribute}


def test_create_tables_is_idempotent_and_prefixes_are_separate(rt: Runtime) -> None:
    assert create_tables(rt.dynamodb, "test-") == []
    assert sorted(create_tables(rt.dynamodb, "other-")) == sorted("other-" + key for key in TABLES)


def test_table_names_follow_the_prefix() -> None:
    names = TableNames("pbxlink-prod-")
    assert {key: getattr(names, key) for key in TABLES} == {key: "pbxlink-prod-" + key for key in TABLES}
    assert {"agents", "connections", "calls", "commands", "crm_calls", "tenants", "licensing"} <= set(TABLES)
