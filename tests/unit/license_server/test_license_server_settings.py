"""The license server's settings from the environment, and its answers to any body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from license_builders import bearer

from license_server.errors import ConfigError
from license_server.settings import Settings

pytest_plugins = ["license_testkit"]


def test_defaults_and_overrides() -> None:
    assert Settings.from_env({}) == Settings()
    custom = Settings.from_env(
        {"LICENSE_TABLE_PREFIX": "lic-prod-", "LICENSE_LEASE_TTL_S": "3600", "LICENSE_GRACE_S": "60"}
    )
    assert (custom.table_prefix, custom.lease_ttl_s, custom.grace_s) == ("lic-prod-", 3600, 60)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LICENSE_TABLE_PREFIX": "bad prefix"}, "LICENSE_TABLE_PREFIX"),
        ({"LICENSE_LEASE_TTL_S": "3d"}, "LICENSE_LEASE_TTL_S"),
        ({"LICENSE_GRACE_S": "-5"}, "LICENSE_GRACE_S"),
    ],
)
def test_malformed_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_signing_key_never_shows_in_a_repr() -> None:
    assert "secret-material" not in repr(Settings(signing_key="k1:secret-material"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=json_values)
def test_any_json_body_gets_a_clear_4xx_never_a_500(server: Client, backend_key: str, body: Any) -> None:
    response = server.http.post("/v1/check", headers=bearer(backend_key), body=json.dumps(body).encode())
    assert 400 <= response.status_code < 500
    assert json.loads(response.body)["error"]["code"] in {"bad_request", "stale_request"}
