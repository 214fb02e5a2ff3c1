"""The connection registry: both directions, TTL, and a late disconnect never erasing a newer connection."""

from __future__ import annotations

import time
from unittest import mock

from cloud.agents import connections
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item

pytest_plugins = ["cloud_testkit"]


def test_record_maps_both_ways_with_a_two_hour_ttl(rt: Runtime) -> None:
    conn = connections.record(rt, "portal-a", "ag_1", "CID1=", connected_at=1_000)
    assert conn.expires_at == 1_000 + 2 * 3600 + connections.TTL_SLACK_SECONDS
    assert connections.connection_agent(rt, "CID1=", include_expired=True) == conn
    items = [from_item(item) for item in rt.dynamodb.scan(TableName=rt.tables.connections)["Items"]]
    assert sorted(item["pk"] for item in items) == ["agent#portal-a#ag_1", "conn#CID1="]
    assert all(item["expires_at"] == conn.expires_at for item in items)


def test_expired_items_are_ignored_because_ttl_deletion_lags(rt: Runtime) -> None:
    connections.record(rt, "portal-a", "ag_1", "CID1=", connected_at=int(time.time()) - 3 * 3600)
    assert connections.connection_agent(rt, "CID1=") is None
    assert connections.agent_connection(rt, "portal-a", "ag_1") is None
    fresh = connections.record(rt, "portal-a", "ag_1", "CID2=")
    assert connections.agent_connection(rt, "portal-a", "ag_1") == fresh


def test_a_newer_connection_survives_the_old_ones_late_disconnect(rt: Runtime) -> None:
    connections.record(rt, "portal-a", "ag_1", "OLD=")
    new = connections.record(rt, "portal-a", "ag_1", "NEW=")  # make-before-break
    assert connections.drop(rt, "portal-a", "ag_1", "OLD=") is False
    assert connections.agent_connection(rt, "portal-a", "ag_1") == new
    assert connections.connection_agent(rt, "OLD=") is None
    assert connections.drop(rt, "portal-a", "ag_1", "NEW=") is True
    assert connections.agent_connection(rt, "portal-a", "ag_1") is None


def test_the_agent_mapping_is_per_tenant(rt: Runtime) -> None:
    connections.record(rt, "portal-a", "ag_1", "CID1=")
    assert connections.agent_connection(rt, "portal-b", "ag_1") is None


def test_kick_closes_the_current_connection_and_forgets_it(rt: Runtime) -> None:
    connections.record(rt, "portal-a", "ag_1", "CID1=")
    gateway = rt.gateway({"apiId": "abc123", "stage": "api"})
    with mock.patch.object(gateway, "close", return_value=True) as close:
        assert connections.kick(rt, "portal-a", "ag_1", gateway) is True
        assert connections.kick(rt, "portal-a", "ag_1", gateway) is False
    close.assert_called_once_with("CID1=")
    assert connections.connection_agent(rt, "CID1=") is None
