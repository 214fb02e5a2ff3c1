"""``python -m cloud.admin token ...`` against the configured DynamoDB."""

from __future__ import annotations

import dataclasses
import re
from unittest import mock

import pytest

from cloud import admin
from cloud.agents import connections, tokens
from cloud.runtime import Runtime

pytest_plugins = ["cloud_testkit"]


def create(rt: Runtime, capsys: pytest.CaptureFixture[str], tenant: str, name: str) -> tuple[str, str]:
    assert admin.main(["token", "create", "--tenant", tenant, "--name", name], runtime=rt) == 0
    out = capsys.readouterr().out
    agent = re.search(r"^agent_id:\s+(\S+)", out, re.M)
    token = re.search(r"^token:\s+(\S+)", out, re.M)
    assert agent and token, out
    return agent[1], token[1]


def test_create_list_revoke(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    agent_id, token = create(rt, capsys, "portal-a", "HQ")
    assert tokens.authenticate(rt, token).agent_id == agent_id
    other_id, _ = create(rt, capsys, "portal-a", "Branch")
    connections.record(rt, "portal-a", other_id, "CID1=")

    assert admin.main(["token", "revoke", agent_id], runtime=rt) == 0  # tenant looked up
    assert admin.main(["token", "list", "--tenant", "portal-a"], runtime=rt) == 0
    out = capsys.readouterr().out
    assert token not in out
    assert re.search(rf"^{agent_id}\s+HQ\s+revoked", out, re.M)
    assert re.search(rf"^{other_id}\s+Branch\s+online", out, re.M)


def test_errors_are_reported_with_exit_code_2(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin.main(["token", "revoke", "ag_nope"], runtime=rt) == 2
    assert admin.main(["token", "create", "--tenant", "bad#tenant", "--name", "x"], runtime=rt) == 2
    agent_id, _ = create(rt, capsys, "portal-a", "HQ")
    assert admin.main(["token", "revoke", agent_id, "--tenant", "portal-b"], runtime=rt) == 2
    assert "no agent" in capsys.readouterr().err


def test_create_tables_on_a_fresh_database(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBXLINK_TABLE_PREFIX", "fresh-")
    assert admin.main(["--create-tables", "token", "list", "--tenant", "portal-a"]) == 0
    assert "fresh-agents" in rt.dynamodb.list_tables()["TableNames"]


def test_revoke_closes_a_live_connection_when_the_websocket_api_is_known(
    rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    agent_id, _ = create(rt, capsys, "portal-a", "HQ")
    connections.record(rt, "portal-a", agent_id, "CID1=")
    known = Runtime(dataclasses.replace(rt.settings, ws_api_id="abc123"))
    with mock.patch("cloud.gateway.ConnectionGateway.close", autospec=True, return_value=True) as close:
        assert admin.main(["token", "revoke", agent_id], runtime=known) == 0
    assert [call.args[1] for call in close.call_args_list] == ["CID1="]
    assert "its connection was closed" in capsys.readouterr().out
    assert connections.agent_connection(rt, "portal-a", agent_id) is None
