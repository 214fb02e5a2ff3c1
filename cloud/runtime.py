"""The outside world as handlers and services see it: settings, table names, DynamoDB, the gateway.

Built from the environment on each invocation by ``cloud.app`` (cheap: clients are created lazily), or by
tests and cloud-local with their own client factory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import boto3  # type: ignore[import-untyped]
import httpx

from cloud.aws import ClientFactory
from cloud.gateway import ConnectionGateway, management_endpoint
from cloud.settings import Settings
from cloud.storage.tables import TableNames

__all__ = ["HttpClientFactory", "Runtime", "default_http_client"]

#: Builds the shared HTTP client (Bitrix24 REST and OAuth); tests pass one over ``httpx.MockTransport``.
HttpClientFactory = Callable[[], httpx.Client]


def default_http_client() -> httpx.Client:
    """Short connect timeout (a dead portal must not eat the Lambda), reads bounded below API Gateway's 29 s;
    redirects are handled by the Bitrix24 client itself (a renamed portal's 302, protocols.md §A1.5)."""
    return httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), follow_redirects=False)


class Runtime:
    """DynamoDB's endpoint: ``AWS_ENDPOINT_URL_DYNAMODB`` (moto server) when set, else boto3's default."""

    def __init__(
        self,
        settings: Settings,
        client_factory: ClientFactory = boto3.client,
        http_client_factory: HttpClientFactory = default_http_client,
    ) -> None:
        self.settings = settings
        self.tables = TableNames(settings.table_prefix)
        self.client_factory = client_factory
        self.http_client_factory = http_client_factory
        self._dynamodb: Any = None
        self._s3: Any = None
        #: What a warm container keeps for a few seconds (``cloud.crm.pipeline``): it lives and dies with this
        #: runtime, so a runtime built for another stage or test never sees it.
        self.memo: dict[tuple[str, str], tuple[float, Any]] = {}
        self._http: httpx.Client | None = None
        self._gateways: dict[str, ConnectionGateway] = {}
        # boto3's default session is not thread-safe while it builds clients (cloud-local runs handlers in threads)
        self._lock = threading.Lock()

    @property
    def dynamodb(self) -> Any:
        with self._lock:
            if self._dynamodb is None:
                self._dynamodb = self.client_factory(
                    "dynamodb", region_name=self.settings.region, endpoint_url=self.settings.dynamodb_endpoint
                )
            return self._dynamodb

    @property
    def s3(self) -> Any:
        """The recordings bucket's client (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``: moto server in
        cloud-local). Pre-signed URLs are SigV4 (SigV2 ones are refused in newer regions), path-style against
        a custom endpoint (an IP address has no bucket subdomains)."""
        from botocore.config import Config  # type: ignore[import-untyped]

        endpoint = self.settings.s3_endpoint
        config = Config(signature_version="s3v4", s3={"addressing_style": "path" if endpoint else "auto"})
        with self._lock:
            if self._s3 is None:
                self._s3 = self.client_factory(
                    "s3", region_name=self.settings.region, endpoint_url=endpoint, config=config
                )
            return self._s3

    @property
    def http(self) -> httpx.Client:
        """One HTTP client per runtime (connection reuse across invocations of a warm Lambda)."""
        with self._lock:
            if self._http is None:
                self._http = self.http_client_factory()
            return self._http

    def close(self) -> None:
        """Close the HTTP client (tests, cloud-local); a Lambda's runtime lives as long as its container."""
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def gateway(self, request_context: Mapping[str, Any] | None = None) -> ConnectionGateway:
        """The gateway of the websocket API: from the websocket request, or from settings outside one.

        One per endpoint, kept with the runtime, so a warm Lambda builds its management client once.
        """
        endpoint = management_endpoint(self.settings, request_context or {})
        with self._lock:
            if endpoint not in self._gateways:
                gateway = ConnectionGateway(endpoint, self.client_factory, self.settings.region)
                gateway.client  # noqa: B018 - built now, under the lock
                self._gateways[endpoint] = gateway
            return self._gateways[endpoint]
