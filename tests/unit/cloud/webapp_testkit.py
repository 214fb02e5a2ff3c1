"""Fixtures for the settings pages' tests, loaded as a plugin (``pytest_plugins = ["cloud_testkit",
"webapp_testkit"]``): the Bitrix24 emulator over real HTTP on loopback with two installed portals, and the
cloud's runtime on moto talking to it. Builders are in ``webapp_builders``.

* ``b24``: :class:`webapp_builders.Portals`: ``acme`` (admin Olga #1, Anna #11 ext 101, Boris #12 ext 102, not
  admins) and ``beta`` (its own admin #1); ``b24.token(portal, user)`` is a user's fresh access token.
* ``webrt``: the runtime (tables ``test-``, Bitrix24 app credentials, ``AGENT_WS_URL``), also the app's.
* ``web``: ``chalice.test.Client`` over the app; ``b24.headers(portal, user)`` the API's request headers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chalice.test import Client
from cloud_builders import PROJECT_DIR, REGION
from webapp_builders import AGENT_WS_URL, ANNA, BORIS, CLIENT_ID, OLGA, SECRET, Portals, install

import cloud.app
from cloud.runtime import Runtime
from cloud.settings import Settings
from sandbox.bitrix24 import App, Emulator, EmulatorServer, User


@pytest.fixture
def b24_server() -> Iterator[tuple[Emulator, str]]:
    emulator = Emulator()
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


@pytest.fixture
def webrt(rt: Runtime, b24_server: tuple[Emulator, str]) -> Iterator[Runtime]:
    _, url = b24_server
    settings = Settings(
        table_prefix="test-",
        region=REGION,
        b24_client_id=CLIENT_ID,
        b24_client_secret=SECRET,
        b24_oauth_url=f"{url}/oauth/token/",
        agent_ws_url=AGENT_WS_URL,
    )
    runtime = Runtime(settings)
    cloud.app.use_runtime(runtime)
    try:
        yield runtime
    finally:
        cloud.app.use_runtime(rt)
        runtime.close()


@pytest.fixture
def b24(b24_server: tuple[Emulator, str], webrt: Runtime) -> Portals:
    emulator, url = b24_server
    emulator.add_app(App(CLIENT_ID, SECRET))
    portals = Portals(emulator, url)
    acme = emulator.add_portal("acme.bitrix24.com")  # user 1 is the portal's admin
    acme.users[OLGA].name, acme.users[OLGA].last_name = "Olga", "Owner"
    acme.add_user(User(ANNA, "Anna", "Petrova", phone_inner="101"))
    acme.add_user(User(BORIS, "Boris", "Ivanov", phone_inner="102"))
    emulator.add_portal("beta.bitrix24.com")
    for name in ("acme", "beta"):
        portals.members[name] = install(emulator, webrt, portals.domain(name))
    return portals


@pytest.fixture
def web(webrt: Runtime) -> Client:
    return Client(cloud.app.app, stage_name="dev", project_dir=PROJECT_DIR)
