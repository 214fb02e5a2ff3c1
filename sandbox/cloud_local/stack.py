"""The whole cloud in one process: moto as AWS, the app's REST routes, its websocket routes behind the local
API Gateway, all on loopback. The CLI (``python -m sandbox.cloud_local``), integration tests and the demo all
start it through :class:`CloudLocal`, so they run the same stack.

The app's handlers run in this process, as Lambdas would in theirs, and read their configuration from the
environment exactly as in AWS; so :class:`CloudLocal` sets that environment (and restores it on exit).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import boto3  # type: ignore[import-untyped]
from chalice.app import Chalice
from moto.server import ThreadedMotoServer

from sandbox.apigw_local import ApiContext, GatewaySettings, LocalApiGateway
from sandbox.cloud_local import moto_speedups, moto_transactions
from sandbox.cloud_local.rest import LocalRestServer

__all__ = [
    "DEFAULT_APP",
    "DEFAULT_TABLES",
    "AwsMode",
    "CloudLocal",
    "CloudLocalConfig",
    "LocalService",
    "chalice_stage_env",
    "load_app",
    "load_table_creator",
]

log = logging.getLogger("sandbox.cloud_local")

DEFAULT_APP = "cloud.app:app"
DEFAULT_TABLES = "cloud.storage.tables:create_tables"
#: Creates the app's S3 buckets in moto: ``(s3 client) -> names`` (the app's settings come from the environment).
DEFAULT_BUCKETS = "cloud.recordings.bucket:create_app_buckets"
#: moto: AWS in-process (default). moto-process: the same moto server in a child process (its own core and GIL,
#: as DynamoDB is outside a Lambda's process; the load benchmark's choice). dynamodb-endpoint: an external
#: DynamoDB (moto_server, DynamoDB Local). aws: real AWS with the ambient credentials (AWS_PROFILE, ...): only
#: ever chosen explicitly.
AwsMode = Literal["moto", "moto-process", "dynamodb-endpoint", "aws"]
_DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Ambient settings that would send a local run to a real account or break dummy credentials.
_AMBIENT_AWS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL")

TableCreator = Callable[[Any, str], Sequence[str]]
BucketCreator = Callable[[Any], Sequence[str]]


@dataclass(frozen=True)
class CloudLocalConfig:
    """Everything ``cloud-local`` can be told; the defaults are the embedded ones (ports 0 = free ports)."""

    app: str | Chalice = DEFAULT_APP
    host: str = "127.0.0.1"
    ws_port: int = 0
    mgmt_port: int = 0
    rest_port: int = 0
    moto_port: int = 0
    aws: AwsMode = "moto"
    dynamodb_endpoint: str | None = None  # with aws="dynamodb-endpoint"
    region: str = "us-east-1"
    #: ``PBXLINK_TABLE_PREFIX``; None: the Chalice stage's value, else ``pbxlink-local-``.
    table_prefix: str | None = None
    #: The ``.chalice/config.json`` stage whose ``environment_variables`` the app gets (as ``chalice local
    #: --stage`` would); cloud-local's own variables win. None: read none. Only for apps given as a path.
    chalice_stage: str | None = "local"
    stage: str = "api"
    api_id: str = "pbxlocal"
    idle_timeout: float = 600.0
    max_duration: float = 7200.0
    concurrent_messages: bool = False  # see GatewaySettings.concurrent_messages
    #: Creates the app's tables: ``(dynamodb client, prefix) -> names``, or its ``"module:function"`` path.
    create_tables: TableCreator | str = DEFAULT_TABLES
    #: Creates the app's buckets (with ``aws="moto"`` only), or ``None``.
    create_buckets: BucketCreator | str | None = DEFAULT_BUCKETS
    extra_env: Mapping[str, str] = field(default_factory=dict)


class LocalService(Protocol):
    """Something else cloud-local runs next to the cloud (the license server, the Bitrix24 emulator): started
    after the cloud with its environment in place, stopped before it."""

    name: str

    async def start(self, cloud: CloudLocal) -> None: ...

    async def stop(self) -> None: ...

    def urls(self) -> dict[str, str]: ...


def chalice_stage_env(app_spec: str, stage: str) -> dict[str, str]:
    """The ``environment_variables`` (global, then the stage's) of the ``.chalice/config.json`` next to the
    app's module; empty when there is none. Found without importing the app, so they apply before it loads."""
    spec = importlib.util.find_spec(app_spec.partition(":")[0])
    if spec is None or spec.origin is None:
        return {}
    path = Path(spec.origin).parent / ".chalice" / "config.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    env = dict(data.get("environment_variables", {}))
    env.update(data.get("stages", {}).get(stage, {}).get("environment_variables", {}))
    return {str(name): str(value) for name, value in env.items()}


def _load(spec: str, default_attribute: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute or default_attribute)


def load_app(spec: str) -> Chalice:
    """``"package.module:attribute"`` → the Chalice app (imported late, after the environment is set)."""
    app = _load(spec, "app")
    if not isinstance(app, Chalice):
        raise TypeError(f"{spec} is a {type(app).__name__}, not a Chalice app")
    return app


def load_table_creator(spec: str) -> TableCreator:
    """``"package.module:function"`` → the function creating the app's tables."""
    creator = _load(spec, "create_tables")
    if not callable(creator):
        raise TypeError(f"{spec} is not callable")
    return creator  # type: ignore[no-any-return]


class CloudLocal:
    """``async with CloudLocal(CloudLocalConfig(...)) as cloud:`` → ``cloud.ws_url``, ``cloud.rest_url``,
    ``cloud.mgmt_url``, ``cloud.dynamodb_url``, ``cloud.dynamodb`` (a boto3 client on the same DynamoDB),
    ``cloud.environment`` (what was set for the app), ``cloud.app``, ``cloud.gateway``."""

    def __init__(self, config: CloudLocalConfig | None = None, services: Sequence[LocalService] = ()) -> None:
        self.config = config or CloudLocalConfig()
        self.services = list(services)
        self.environment: dict[str, str] = {}
        self.tables: list[str] = []
        self.buckets: list[str] = []
        self.table_prefix = config.table_prefix if config and config.table_prefix else "pbxlink-local-"
        self._saved_env: dict[str, str | None] = {}
        self._moto: ThreadedMotoServer | None = None
        self._moto_process: subprocess.Popen[str] | None = None
        self._dynamodb_url: str | None = None
        self._app: Chalice | None = None
        self._gateway: LocalApiGateway | None = None
        self._rest: LocalRestServer | None = None
        self._dynamodb: Any = None
        self._started: list[LocalService] = []

    # -- what callers use -----------------------------------------------------------------------------------

    @property
    def app(self) -> Chalice:
        if self._app is None:
            raise RuntimeError("cloud-local is not started")
        return self._app

    @property
    def gateway(self) -> LocalApiGateway:
        if self._gateway is None:
            raise RuntimeError("cloud-local is not started")
        return self._gateway

    @property
    def ws_url(self) -> str:
        """Where agents connect (``EDGE_CLOUD_URL``), exactly as to the API Gateway websocket URL."""
        return self.gateway.ws_url

    @property
    def mgmt_url(self) -> str:
        return self.gateway.mgmt_url

    @property
    def rest_url(self) -> str:
        if self._rest is None:
            raise RuntimeError("cloud-local is not started")
        return self._rest.url

    @property
    def dynamodb_url(self) -> str | None:
        """moto's (or the given) DynamoDB endpoint; None against real AWS."""
        return self._dynamodb_url

    @property
    def dynamodb(self) -> Any:
        """A boto3 DynamoDB client on the cloud's DynamoDB (for tests and admin scripts)."""
        if self._dynamodb is None:
            self._dynamodb = boto3.client("dynamodb", region_name=self.config.region, endpoint_url=self._dynamodb_url)
        return self._dynamodb

    def urls(self) -> dict[str, str]:
        """Name → URL of everything running, the cloud's first, then each service's."""
        urls = {"ws": self.ws_url, "rest": self.rest_url, "mgmt": self.mgmt_url}
        if self._dynamodb_url:
            urls["dynamodb"] = self._dynamodb_url
        for service in self._started:
            urls.update(service.urls())
        return urls

    def set_environment(self, values: Mapping[str, str]) -> None:
        """Set variables for the app (services use it: the license server's URL and keys); restored on stop."""
        self._set_env(values)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        self.environment = {}
        try:
            await asyncio.to_thread(self._start_aws)
            self._app = config.app if isinstance(config.app, Chalice) else load_app(config.app)
            settings = GatewaySettings(
                host=config.host,
                ws_port=config.ws_port,
                mgmt_port=config.mgmt_port,
                api=ApiContext(api_id=config.api_id, stage=config.stage, region=config.region),
                idle_timeout=config.idle_timeout,
                max_duration=config.max_duration,
                concurrent_messages=config.concurrent_messages,
            )
            self._gateway = LocalApiGateway(self._app, settings)
            await self._gateway.start()
            self._set_env({"WS_MGMT_ENDPOINT": self._gateway.mgmt_url})
            if "AGENT_WS_URL" not in config.extra_env:
                self._set_env({"AGENT_WS_URL": self._gateway.ws_url})  # shown with agent tokens on the settings page
            creator = config.create_tables
            if isinstance(creator, str):
                creator = load_table_creator(creator)
            self.tables = sorted(await asyncio.to_thread(creator, self.dynamodb, self.table_prefix))
            if config.aws in ("moto", "moto-process") and config.create_buckets is not None:
                buckets = config.create_buckets
                if isinstance(buckets, str):
                    buckets = _load(buckets, "create_app_buckets")
                s3 = boto3.client("s3", region_name=config.region, endpoint_url=self._dynamodb_url)
                self.buckets = sorted(await asyncio.to_thread(buckets, s3))
            self._rest = LocalRestServer(self._app, config.host, config.rest_port)
            if not os.environ.get("PUBLIC_BASE_URL"):  # where Bitrix24 (the emulator) posts events to us
                self._set_env({"PUBLIC_BASE_URL": self._rest.url})
            self._rest.start()
            if "PUBLIC_BASE_URL" not in config.extra_env:
                self._set_env({"PUBLIC_BASE_URL": self.rest_url})  # where Bitrix24 posts install and events
            for service in self.services:
                await service.start(self)
                self._started.append(service)
        except BaseException:
            await self.stop()
            raise
        log.info("cloud-local up: %s", self.urls())

    async def stop(self) -> None:
        """Stop everything that started, in reverse order, and restore the environment."""
        for service in reversed(self._started):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
        self._started.clear()
        if self._rest is not None:
            await asyncio.to_thread(self._rest.stop)
            self._rest = None
        if self._gateway is not None:
            await self._gateway.stop()
            self._gateway = None
        if isinstance(self.config.app, str):
            # the app's module may cache runtimes holding HTTP clients to services this stack stops
            closer = getattr(sys.modules.get(self.config.app.partition(":")[0]), "close_runtimes", None)
            if callable(closer):
                closer()
        if self._moto is not None:
            await asyncio.to_thread(self._moto.stop)
            self._moto = None
        if self._moto_process is not None:
            await asyncio.to_thread(_stop_process, self._moto_process)
            self._moto_process = None
        self._dynamodb = None
        self._restore_env()

    async def __aenter__(self) -> CloudLocal:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- internals ------------------------------------------------------------------------------------------

    def _start_aws(self) -> None:
        config = self.config
        if config.chalice_stage and isinstance(config.app, str):
            self._set_env(chalice_stage_env(config.app, config.chalice_stage))
        self.table_prefix = config.table_prefix or os.environ.get("PBXLINK_TABLE_PREFIX") or "pbxlink-local-"
        env = {
            "AWS_DEFAULT_REGION": config.region,
            "AWS_REGION": config.region,
            "PBXLINK_TABLE_PREFIX": self.table_prefix,
        }
        if config.aws == "aws":
            self._set_env(env | dict(config.extra_env))
            return
        for name in _AMBIENT_AWS:
            self._unset_env(name)
        if config.aws == "dynamodb-endpoint":
            if not config.dynamodb_endpoint:
                raise ValueError("aws='dynamodb-endpoint' needs dynamodb_endpoint")
            self._dynamodb_url = config.dynamodb_endpoint.rstrip("/")
        else:
            if config.aws == "moto-process":
                self._moto_process, port = _start_moto_process(config.moto_port)
                host = "127.0.0.1"
            else:
                moto_transactions.install()  # transactions that cost the items they touch, as in DynamoDB
                moto_speedups.install()
                logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
                self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=config.moto_port, verbose=False)
                self._moto.start()
                host, port = self._moto.get_host_and_port()
            self._dynamodb_url = f"http://{host}:{port}"
            # moto keeps its state in module globals, shared by every moto server (and mock_aws) in this
            # process: start from an empty AWS, as a fresh `moto_server` would. One CloudLocal at a time per process.
            reset = urllib.request.Request(f"{self._dynamodb_url}/moto-api/reset", method="POST")
            urllib.request.urlopen(reset, timeout=10).close()
            # Every other AWS service the app might call goes to moto too: nothing leaks to a real account.
            env["AWS_ENDPOINT_URL"] = self._dynamodb_url
        env["AWS_ENDPOINT_URL_DYNAMODB"] = self._dynamodb_url
        self._set_env(_DUMMY_CREDENTIALS | env | dict(config.extra_env))

    def _set_env(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
            self.environment[name] = value

    def _unset_env(self, name: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ.pop(name, None)

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()


def _start_moto_process(port: int) -> tuple[subprocess.Popen[str], int]:
    """moto server in a child process (:mod:`sandbox.cloud_local.moto_process`): it and its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cloud_local.moto_process", "--port", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the child prints its port once it listens
    if not line.strip().isdigit():
        _stop_process(process)
        raise RuntimeError(f"moto server did not start in its own process (it printed {line!r})")
    return process, int(line)


def _stop_process(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        process.stdin.close()  # the child serves until its stdin closes
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
