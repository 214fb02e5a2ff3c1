"""Fault knobs of the emulator, set over its control API (anchors.md §6: tokens, limits, outages)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.bitrix24 import App, Emulator, EmulatorServer
from sandbox.bitrix24.testing import http, post_json

pytestmark = pytest.mark.integration

DOMAIN = "acme.bitrix24.com"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emulator = Emulator(seed=7)
    with EmulatorServer(emulator) as srv:
        emulator.add_app(App("local.app", "s"))
        emulator.add_portal(DOMAIN)
        yield srv


@pytest.fixture
def tokens(server: EmulatorServer) -> dict[str, Any]:
    return server.emulator.install(DOMAIN, "local.app")[1]


def faults(server: EmulatorServer, **knobs: Any) -> dict[str, Any]:
    answer = post_json(f"{server.url}/_emulator/faults", knobs)
    assert answer.status == 200, answer.body
    return dict(answer.json())


def current(tokens: dict[str, Any]) -> int:
    return http(f"{tokens['client_endpoint']}user.current?auth={tokens['access_token']}").status


def test_error_rates_and_latency(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    assert faults(server, server_error_rate=1.0)["server_error_rate"] == 1.0
    answer = http(f"{tokens['client_endpoint']}user.current?auth={tokens['access_token']}")
    assert (answer.status, answer.json()["error"]) == (500, "INTERNAL_SERVER_ERROR")
    faults(server, server_error_rate=0, query_limit_rate=0.5)
    statuses = {current(tokens) for _ in range(20)}
    assert statuses == {200, 503}
    faults(server, query_limit_rate=0, latency=0.2)
    started = time.monotonic()
    assert current(tokens) == 200
    assert time.monotonic() - started >= 0.2
    assert post_json(f"{server.url}/_emulator/faults", {"nonsense": 1}).status == 400


def test_token_expiry_knobs(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    faults(server, expire_every=2)
    assert [current(tokens) for _ in range(2)] == [200, 401]
    faults(server, expire_every=0)
    assert current(tokens) == 401  # that token stays expired
    fresh = server.emulator.issue(DOMAIN, "local.app", 1)
    assert current(fresh) == 200
    faults(server, expire_tokens_now=True)
    answer = http(f"{fresh['client_endpoint']}user.current?auth={fresh['access_token']}")
    assert (answer.status, answer.json()["error"]) == (401, "expired_token")


def test_outage_then_recovery(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    faults(server, outage_seconds=0.3)
    down = http(f"{tokens['client_endpoint']}user.current?auth={tokens['access_token']}")
    assert down.status == 503 and b"Service Temporarily Unavailable" in down.body
    assert http(f"{server.url}/oauth/token/?grant_type=refresh_token").status == 503
    assert http(f"{server.url}/_emulator/state").status == 200  # the control API is never down
    time.sleep(0.35)
    assert current(tokens) == 200


def test_outage_by_connection_reset(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    faults(server, outage_seconds=5, outage_mode="reset")
    with socket.create_connection((server.host, server.port), timeout=2) as sock:
        sock.sendall(f"GET /rest/user.current?auth={tokens['access_token']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(100) == b""  # closed without an answer
    faults(server, outage_seconds=0)
    assert current(tokens) == 200
