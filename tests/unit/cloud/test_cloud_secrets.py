"""Secrets by ARN (``cloud.secrets``): read once per container, refreshed, placeholders and failures leave the setting
unset with a log line naming the secret and never a value."""

from __future__ import annotations

import logging

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from cloud.secrets import PLACEHOLDER, REFRESH_S, RETRY_S, SecretCache, with_secrets
from cloud.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_settings_read_secrets_by_arn_from_secrets_manager() -> None:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        b24 = client.create_secret(Name="pbxlink/t/b24", SecretString="s3cr3t-b24")["ARN"]
        key = client.create_secret(Name="pbxlink/t/key", SecretString=PLACEHOLDER)["ARN"]
        env = {"AWS_REGION": "eu-west-1", "B24_CLIENT_SECRET_ARN": b24, "LICENSE_API_KEY_ARN": key}
        resolved = with_secrets(env, cache=SecretCache())
        assert resolved["B24_CLIENT_SECRET"] == "s3cr3t-b24"
        assert "LICENSE_API_KEY" not in resolved  # still the placeholder: unset
        settings = Settings.from_env({**env, "B24_CLIENT_SECRET": "from-env-wins"})
        assert settings.b24_client_secret == "from-env-wins"


def test_values_are_cached_then_refreshed_and_failures_retried() -> None:
    clock, calls = Clock(), []
    values = iter(["v1", "v2"])

    def fetch(secret_id: str, region: str) -> str:
        calls.append(secret_id)
        return next(values)

    cache = SecretCache(fetch, clock)
    assert cache.get("arn:1", "r") == "v1"
    clock.now += REFRESH_S - 1
    assert cache.get("arn:1", "r") == "v1" and len(calls) == 1
    clock.now += 2
    assert cache.get("arn:1", "r") == "v2" and len(calls) == 2

    def broken(secret_id: str, region: str) -> str:
        calls.append(secret_id)
        raise RuntimeError("AccessDenied")

    failing = SecretCache(broken, clock)
    assert failing.get("arn:2", "r") is None
    assert failing.get("arn:2", "r") is None and calls.count("arn:2") == 1  # not hammered
    clock.now += RETRY_S + 1
    assert failing.get("arn:2", "r") is None and calls.count("arn:2") == 2


def test_the_log_names_the_secret_and_never_a_value(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cache = SecretCache(lambda secret_id, region: PLACEHOLDER, Clock())
    assert with_secrets({"B24_CLIENT_SECRET_ARN": "arn:aws:secretsmanager:x:1:secret:b24"}, cache=cache) == {
        "B24_CLIENT_SECRET_ARN": "arn:aws:secretsmanager:x:1:secret:b24"
    }
    assert "arn:aws:secretsmanager:x:1:secret:b24 has no value yet" in caplog.text

    def leaky(secret_id: str, region: str) -> str:
        raise RuntimeError("the secret is hunter2")

    caplog.clear()
    SecretCache(leaky, Clock()).get("arn:3", "r")
    assert "arn:3" in caplog.text and "hunter2" not in caplog.text


def test_nothing_is_fetched_without_an_arn() -> None:
    def refuse(secret_id: str, region: str) -> str:
        raise AssertionError("fetched")

    env = {"B24_CLIENT_SECRET": "x"}
    assert with_secrets(env, cache=SecretCache(refuse)) is env
    assert with_secrets({}, cache=SecretCache(refuse)) == {}
