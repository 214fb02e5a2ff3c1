"""Secrets read from AWS Secrets Manager at run time, so they are never in the repository, the template, or the
Lambda's configuration.

A setting ``X`` that the environment does not hold (each app names its own: the cloud's ``B24_CLIENT_SECRET``, the
license server's ``LICENSE_SIGNING_KEY``) is read from the secret whose ARN is in ``X_ARN`` (set by the deployment
template, ``docs/deploy.md``). Values are kept per warm container for :data:`REFRESH_S` (a rotated secret is
picked up within that time); a failed read is retried after :data:`RETRY_S` and leaves the setting unset
meanwhile, with an error in the log that names the secret, never a value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import boto3  # type: ignore[import-untyped]

__all__ = ["PLACEHOLDER", "REFRESH_S", "RETRY_S", "SecretCache", "with_secrets"]

log = logging.getLogger(__name__)

#: What the template creates a secret with; the operator replaces it (``aws secretsmanager put-secret-value``).
PLACEHOLDER: Final = "PBXLINK_UNSET"
REFRESH_S: Final = 300.0
RETRY_S: Final = 60.0

#: (secret id, region) -> the secret's string.
Fetch = Callable[[str, str], str]


def _fetch_from_aws(secret_id: str, region: str) -> str:
    client: Any = boto3.client("secretsmanager", region_name=region)
    return str(client.get_secret_value(SecretId=secret_id)["SecretString"])


class SecretCache:
    def __init__(self, fetch: Fetch = _fetch_from_aws, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._values: dict[str, tuple[str | None, float]] = {}  # secret id -> (value or None, valid until)
        self._lock = threading.Lock()

    def get(self, secret_id: str, region: str) -> str | None:
        """The secret's value; ``None`` when it cannot be read or still holds the placeholder."""
        now = self._clock()
        with self._lock:
            cached = self._values.get(secret_id)
            if cached is not None and now < cached[1]:
                return cached[0]
        value: str | None
        try:
            value = self._fetch(secret_id, region)
            ttl = REFRESH_S
        except Exception as exc:  # any failure: the caller runs without the setting and the log says why
            log.error("secret %s could not be read (%s); retrying in %.0f s", secret_id, type(exc).__name__, RETRY_S)
            value, ttl = None, RETRY_S
        if value == PLACEHOLDER:
            log.error(
                "secret %s has no value yet: aws secretsmanager put-secret-value --secret-id %s", secret_id, secret_id
            )
            value, ttl = None, RETRY_S
        with self._lock:
            self._values[secret_id] = (value, now + ttl)
        return value


_cache = SecretCache()


def with_secrets(
    environ: Mapping[str, str], names: tuple[str, ...], cache: SecretCache | None = None
) -> Mapping[str, str]:
    """``environ`` with each of ``names`` it lacks filled from the secret in ``<name>_ARN`` (when there is one)."""
    wanted = [name for name in names if not environ.get(name) and environ.get(f"{name}_ARN")]
    if not wanted:
        return environ
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    resolved = dict(environ)
    for name in wanted:
        value = (cache or _cache).get(environ[f"{name}_ARN"], region)
        if value is not None:
            resolved[name] = value
    return resolved
