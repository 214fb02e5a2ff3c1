"""The license server's settings, read from the environment per invocation (as ``cloud.settings`` does)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from license_server.errors import ConfigError
from license_server.secrets import with_secrets

__all__ = ["DEFAULT_TABLE_PREFIX", "Settings"]

DEFAULT_TABLE_PREFIX = "pbxlink-license-dev-"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{0,200}$")


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw[:20]!r}: a whole number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={value}: must be positive")
    return value


@dataclass(frozen=True)
class Settings:
    table_prefix: str = DEFAULT_TABLE_PREFIX
    region: str = "us-east-1"
    dynamodb_endpoint: str | None = None
    #: ``kid:base64(raw Ed25519 private key)``. In AWS it should come from a secret store, not a plain
    #: environment variable; unset, the server answers checks with ``internal`` errors (admin still works).
    signing_key: str | None = None
    #: How long a lease is good for: the revocation latency, and how often each portal is re-checked (half).
    lease_ttl_s: int = 3 * 86_400
    #: What the lease grants the cloud past its expiry while the server cannot be reached.
    grace_s: int = 72 * 3_600
    trial_days: int = 14
    #: ``sent_at`` may differ from the server's clock by this much; nonces are remembered twice as long.
    replay_window_s: int = 300

    def __repr__(self) -> str:  # the signing key never reaches a log
        return f"Settings(table_prefix={self.table_prefix!r}, region={self.region!r}, signing_key=<hidden>)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = with_secrets(os.environ if environ is None else environ)
        prefix = env.get("LICENSE_TABLE_PREFIX", DEFAULT_TABLE_PREFIX)
        if not _PREFIX_RE.match(prefix):
            raise ConfigError(f"LICENSE_TABLE_PREFIX={prefix!r}: letters, digits, '_', '-', '.' only")
        return cls(
            table_prefix=prefix,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB") or None,
            signing_key=env.get("LICENSE_SIGNING_KEY") or None,
            lease_ttl_s=_seconds(env, "LICENSE_LEASE_TTL_S", 3 * 86_400),
            grace_s=_seconds(env, "LICENSE_GRACE_S", 72 * 3_600),
            trial_days=_seconds(env, "LICENSE_TRIAL_DAYS", 14),
            replay_window_s=_seconds(env, "LICENSE_REPLAY_WINDOW_S", 300),
        )
