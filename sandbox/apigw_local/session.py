"""A stand-in for the boto3 session Chalice's ``app.websocket_api`` uses, pinned to the local management API.

Chalice builds its management endpoint from the event's ``apiId`` (``https://{apiId}.execute-api...``) and passes
it explicitly, which beats every ``AWS_ENDPOINT_URL_*`` variable; a session whose ``client()`` ignores that
argument is the only override (Chalice's own tests use the same trick, platform.md §1.3).
"""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped]


class LocalSession:
    """Duck-types ``boto3.Session`` for ``WebsocketAPI``: ``region_name`` and ``client()``."""

    def __init__(self, endpoint_url: str, region_name: str = "us-east-1") -> None:
        self.endpoint_url = endpoint_url
        self.region_name = region_name

    def client(self, service_name: str, endpoint_url: str | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("region_name", self.region_name)
        return boto3.client(service_name, endpoint_url=self.endpoint_url, **kwargs)
