"""Agent tokens: hashed at rest, per tenant, revocable, and the token itself says nothing."""

from __future__ import annotations

from unittest import mock

import pytest

from cloud.agents import tokens
from cloud.errors import InvalidToken, RevokedAgent, UnknownAgent
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item

pytest_plugins = ["cloud_testkit"]


def test_issued_token_authenticates_as_its_agent_and_tenant(rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    agent = tokens.authenticate(rt, token)
    assert (agent.tenant, agent.agent_id, agent.name, agent.revoked) == ("portal-a", agent_id, "Head office", False)


def test_only_the_hash_is_stored_and_the_token_names_nothing(rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    items = rt.dynamodb.scan(TableName=rt.tables.agents)["Items"]
    stored = [from_item(item) for item in items]
    assert all(token not in str(item) for item in stored)
    assert stored[0]["token_hash"] == tokens.hash_token(token)
    assert "portal-a" not in token and agent_id not in token
    assert token.startswith(tokens.TOKEN_PREFIX) and len(token) == len(tokens.TOKEN_PREFIX) + 43


def test_each_issue_gives_a_new_agent_and_token(rt: Runtime) -> None:
    first = tokens.issue_token(rt, "portal-a", "Head office")
    second = tokens.issue_token(rt, "portal-a", "Branch")
    assert first[0] != second[0] and first[1] != second[1]
    assert tokens.authenticate(rt, second[1]).agent_id == second[0]


@pytest.mark.parametrize("token", ["", "nope", "pbxl_" + "A" * 43, "Bearer x", "pbxl_" + "A" * 42 + "!"])
def test_unknown_or_malformed_tokens_are_refused(rt: Runtime, token: str) -> None:
    tokens.issue_token(rt, "portal-a", "Head office")
    with pytest.raises(InvalidToken):
        tokens.authenticate(rt, token)


def test_a_revoked_token_is_refused_as_revoked(rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    tokens.revoke(rt, "portal-a", agent_id)
    with pytest.raises(RevokedAgent):
        tokens.authenticate(rt, token)
    first_revoked_at = tokens.get_agent(rt, "portal-a", agent_id).revoked_at
    tokens.revoke(rt, "portal-a", agent_id)  # twice is harmless and keeps the first time
    assert tokens.get_agent(rt, "portal-a", agent_id).revoked_at == first_revoked_at


def test_revoking_touches_only_that_agent(rt: Runtime) -> None:
    revoked_id, _ = tokens.issue_token(rt, "portal-a", "Head office")
    _, other_token = tokens.issue_token(rt, "portal-a", "Branch")
    tokens.revoke(rt, "portal-a", revoked_id)
    assert tokens.authenticate(rt, other_token).name == "Branch"


def test_a_tenant_cannot_revoke_or_see_another_tenants_agent(rt: Runtime) -> None:
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    with pytest.raises(UnknownAgent):
        tokens.revoke(rt, "portal-b", agent_id)
    with pytest.raises(UnknownAgent):
        tokens.get_agent(rt, "portal-b", agent_id)
    assert list(tokens.list_agents(rt, "portal-b")) == []
    assert tokens.authenticate(rt, token).tenant == "portal-a"


def test_a_stale_index_entry_does_not_authenticate(rt: Runtime) -> None:
    """The index only points at an agent; the hash is compared again on the consistently read item."""
    agent_id, token = tokens.issue_token(rt, "portal-a", "Head office")
    rt.dynamodb.delete_item(TableName=rt.tables.agents, Key={"tenant": {"S": "portal-a"}, "agent_id": {"S": agent_id}})
    with pytest.raises(InvalidToken):
        tokens.authenticate(rt, token)


def test_an_index_entry_pointing_at_another_agent_does_not_authenticate(rt: Runtime) -> None:
    """If the index lags behind a change of hash, the consistently read item's hash decides."""
    _, token = tokens.issue_token(rt, "portal-a", "Head office")
    other_id, _ = tokens.issue_token(rt, "portal-b", "Elsewhere")
    wrong = {"Items": [{"tenant": {"S": "portal-b"}, "agent_id": {"S": other_id}}]}
    with mock.patch.object(rt.dynamodb, "query", return_value=wrong), pytest.raises(InvalidToken):
        tokens.authenticate(rt, token)


def test_list_and_find_tenant(rt: Runtime) -> None:
    a1, _ = tokens.issue_token(rt, "portal-a", "Head office")
    a2, _ = tokens.issue_token(rt, "portal-a", "Branch")
    b1, _ = tokens.issue_token(rt, "portal-b", "Only")
    assert sorted(agent.agent_id for agent in tokens.list_agents(rt, "portal-a")) == sorted([a1, a2])
    assert tokens.find_tenant(rt, b1) == "portal-b"
    with pytest.raises(UnknownAgent):
        tokens.find_tenant(rt, "ag_missing")


@pytest.mark.parametrize("tenant", ["", "a#b", "x" * 65, "with space"])
def test_tenants_that_would_break_keys_are_refused(rt: Runtime, tenant: str) -> None:
    with pytest.raises(ValueError):
        tokens.issue_token(rt, tenant, "x")
