"""The license server's outside world: settings, tables, DynamoDB, the signing key and the clock.

Tests and cloud-local build their own (moto, a fixed clock); the Chalice app builds one per warm container.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from license_protocol import MalformedKey, parse_signing_key
from license_server.errors import ConfigError
from license_server.settings import Settings
from license_server.tables import TableNames

__all__ = ["Clock", "Runtime", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    def __init__(self, settings: Settings, client_factory: Callable[..., Any] = boto3.client, clock: Clock = utc_now):
        self.settings = settings
        self.tables = TableNames(settings.table_prefix)
        self.client_factory = client_factory
        self.clock = clock
        self._dynamodb: Any = None
        self._signing: tuple[str, Ed25519PrivateKey] | None = None
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
    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        """(kid, key) from ``LICENSE_SIGNING_KEY``; raises :class:`ConfigError` when unset or malformed."""
        if self._signing is None:
            if not self.settings.signing_key:
                raise ConfigError("LICENSE_SIGNING_KEY is not set: the server cannot sign leases")
            try:
                self._signing = parse_signing_key(self.settings.signing_key)
            except MalformedKey as exc:
                raise ConfigError(f"LICENSE_SIGNING_KEY: {exc}") from None
        return self._signing
