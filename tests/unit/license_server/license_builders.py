"""Builders for the license server's tests (fixtures are in ``license_testkit``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
from chalice.test import Client

import license_server.app
from license_protocol import encode_private_key, generate_signing_key
from license_server.runtime import Runtime
from license_server.settings import Settings
from license_server.tables import create_tables

REGION = "us-east-1"
PROJECT_DIR = str(Path(license_server.app.__file__).resolve().parent)
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SIGNING = generate_signing_key()
PUBLIC_KEYS = {"k1": SIGNING.public_key()}


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def license_runtime(clock: Clock, prefix: str = "lic-") -> Runtime:
    """Tables under ``prefix`` in the current moto, signing with ``k1``, reading ``clock``."""
    create_tables(boto3.client("dynamodb", region_name=REGION), prefix)
    settings = Settings(table_prefix=prefix, region=REGION, signing_key=f"k1:{encode_private_key(SIGNING)}")
    return Runtime(settings, clock=clock)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def post(server: Client, path: str, key: str | None, body: Any) -> tuple[int, Any]:
    headers = bearer(key) if key else {"Content-Type": "application/json"}
    response = server.http.post(path, headers=headers, body=json.dumps(body).encode())
    return response.status_code, json.loads(response.body)


def get(server: Client, path: str, key: str | None) -> tuple[int, Any]:
    response = server.http.get(path, headers=bearer(key) if key else {})
    return response.status_code, json.loads(response.body)
