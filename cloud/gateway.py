"""Pushing to a websocket connection: the one place that talks to the API Gateway management API.

Chalice's own ``app.websocket_api`` is not used: it is configured first-wins, caches its client, and cannot be
pointed at cloud-local's management server. This works the same in websocket handlers, REST handlers, tests
and cloud-local.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import boto3  # type: ignore[import-untyped]
from pydantic import BaseModel

from cloud.aws import ClientFactory
from cloud.errors import ConfigError
from cloud.settings import Settings
from cloud.storage.dynamo import error_code
from wire_protocol.messages import encode

__all__ = ["ConnectionGateway", "management_endpoint"]

log = logging.getLogger(__name__)


def management_endpoint(settings: Settings, request_context: Mapping[str, Any]) -> str:
    """``WS_MGMT_ENDPOINT`` when set (cloud-local), else ``https://{apiId}.execute-api.{region}…/{stage}`` from the
    websocket request, else from ``WS_API_ID``/``WS_STAGE`` (a REST handler pushing a command).

    Built from ``apiId``, not ``domainName``: behind a custom domain the latter is not the management host.
    """
    if settings.ws_mgmt_endpoint:
        return settings.ws_mgmt_endpoint.rstrip("/")
    api_id = request_context.get("apiId") or settings.ws_api_id
    stage = request_context.get("stage") or settings.ws_stage
    if not api_id:
        raise ConfigError("no websocket API to push to: set WS_MGMT_ENDPOINT or WS_API_ID")
    suffix = ".com.cn" if settings.region.startswith("cn-") else ".com"
    return f"https://{api_id}.execute-api.{settings.region}.amazonaws{suffix}/{stage}"


class ConnectionGateway:
    """Send to / close one connection. ``False`` means the connection is gone: the caller drops its mapping."""

    def __init__(
        self, endpoint_url: str, client_factory: ClientFactory = boto3.client, region: str = "us-east-1"
    ) -> None:
        self.endpoint_url = endpoint_url
        self._client_factory = client_factory
        self._region = region
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory(
                "apigatewaymanagementapi", region_name=self._region, endpoint_url=self.endpoint_url
            )
        return self._client

    def send(self, connection_id: str, message: BaseModel) -> bool:
        """Post one protocol message; ``False`` on ``GoneException``. Other AWS errors propagate."""
        data = encode(message).encode("utf-8")
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except Exception as exc:
            if error_code(exc) == "GoneException":
                log.info("connection %s is gone", connection_id)
                return False
            raise
        return True

    def close(self, connection_id: str) -> bool:
        """Close the connection from the server side; ``False`` if it was already gone."""
        try:
            self.client.delete_connection(ConnectionId=connection_id)
        except Exception as exc:
            if error_code(exc) == "GoneException":
                return False
            raise
        return True
