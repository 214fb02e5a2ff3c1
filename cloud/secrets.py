"""The cloud's secrets, read from AWS Secrets Manager at run time (:mod:`aws_support.secrets`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aws_support.secrets import PLACEHOLDER, REFRESH_S, RETRY_S, SecretCache
from aws_support.secrets import with_secrets as _with_secrets

__all__ = ["PLACEHOLDER", "REFRESH_S", "RETRY_S", "SECRET_VARIABLES", "SecretCache", "with_secrets"]

SECRET_VARIABLES: Final = ("B24_CLIENT_SECRET", "LICENSE_API_KEY")


def with_secrets(
    environ: Mapping[str, str], names: tuple[str, ...] = SECRET_VARIABLES, cache: SecretCache | None = None
) -> Mapping[str, str]:
    return _with_secrets(environ, names, cache)
