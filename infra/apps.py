"""The two Chalice apps we deploy, as data: what each Lambda bundles, its tables, secrets and stage settings.

A Lambda's zip holds exactly ``packages`` (copied to ``vendor/``, which Chalice puts at the zip root) and the
PyPI distributions in ``requirements``: never ``edge_agent`` or ``sandbox`` (README, "a Lambda never bundles the
agent").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cloud.storage import tables as cloud_tables
from license_server import tables as license_tables

__all__ = ["APPS", "ROOT", "AppSpec", "InfraError", "SecretSpec", "StageOptions", "stage_options"]

ROOT: Final = Path(__file__).resolve().parents[1]
STAGES_FILE: Final = ROOT / "infra" / "stages.json"


class InfraError(Exception):
    """A deployment problem the operator can fix; the message says what to change."""


@dataclass(frozen=True)
class SecretSpec:
    """A secret the app reads at run time from Secrets Manager: ``variable`` is filled from ``<variable>_ARN``."""

    variable: str
    logical_id: str
    name: str  # the secret's name after ``pbxlink/<stage>/``
    description: str


@dataclass(frozen=True)
class AppSpec:
    key: str  # "cloud" / "license"
    app_name: str  # Chalice's app_name: function names are <app_name>-<stage>[-<function>]
    source: Path  # the Chalice project directory in the repository (its .chalice/config.json)
    module: str  # the module defining ``app`` and the handlers
    packages: tuple[str, ...]
    requirements: tuple[str, ...]  # distribution names, versions taken from pyproject.toml
    prefix_variable: str
    tables: Mapping[str, Mapping[str, Any]]
    ttl_attributes: Mapping[str, str]
    secrets: tuple[SecretSpec, ...]
    websocket: bool = False
    recordings: bool = False
    #: Variables the app reads that a deployed function deliberately does not get: local endpoints (cloud-local,
    #: moto), values with good defaults, and what the Lambda runtime itself sets.
    not_deployed: tuple[str, ...] = field(default=())

    def stage_config(self, stage: str) -> dict[str, Any]:
        """The stage's section of the app's ``.chalice/config.json``; :class:`InfraError` if there is none."""
        config = json.loads((self.source / ".chalice" / "config.json").read_text(encoding="utf-8"))
        stages = config.get("stages", {})
        if stage not in stages:
            raise InfraError(
                f"{self.source.name}/.chalice/config.json has no stage {stage!r} (stages: {', '.join(sorted(stages))})"
            )
        return dict(stages[stage])

    def environment(self, stage: str) -> dict[str, str]:
        return dict(self.stage_config(stage).get("environment_variables", {}))

    def table_prefix(self, stage: str) -> str:
        prefix = self.environment(stage).get(self.prefix_variable)
        if not prefix or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}-", prefix):
            raise InfraError(
                f"stage {stage!r} of {self.app_name}: {self.prefix_variable} must be lowercase letters, digits and "
                f"'-', ending in '-' (it also names the S3 bucket and the log groups), got {prefix!r}"
            )
        return prefix


CLOUD: Final = AppSpec(
    key="cloud",
    app_name="pbxlink-cloud",
    source=ROOT / "cloud",
    module="cloud.app",
    packages=("cloud", "wire_protocol", "license_protocol", "aws_support"),
    requirements=("pydantic", "httpx", "cryptography"),
    prefix_variable="PBXLINK_TABLE_PREFIX",
    tables=cloud_tables.TABLES,
    ttl_attributes=cloud_tables.TTL_ATTRIBUTES,
    secrets=(
        SecretSpec("B24_CLIENT_SECRET", "B24ClientSecret", "b24-client-secret", "The Bitrix24 app's client secret"),
        SecretSpec("LICENSE_API_KEY", "LicenseApiKey", "license-api-key", "The license server's backend API key"),
    ),
    websocket=True,
    recordings=True,
    not_deployed=(
        "AWS_REGION",  # set by Lambda
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_DYNAMODB",  # cloud-local and the admin CLI against moto
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "WS_MGMT_ENDPOINT",  # cloud-local's gateway; in AWS built from the request or WS_API_ID
        "B24_OAUTH_URL",  # Bitrix24's own OAuth server by default; the emulator in tests
    ),
)

LICENSE: Final = AppSpec(
    key="license",
    app_name="pbxlink-license",
    source=ROOT / "license_server",
    module="license_server.app",
    packages=("license_server", "license_protocol", "aws_support"),
    requirements=("pydantic", "cryptography"),
    prefix_variable="LICENSE_TABLE_PREFIX",
    tables=license_tables.TABLES,
    ttl_attributes=license_tables.TTL_ATTRIBUTES,
    secrets=(
        SecretSpec(
            "LICENSE_SIGNING_KEY", "LicenseSigningKey", "license-signing-key", "The Ed25519 key leases are signed with"
        ),
    ),
    not_deployed=(
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_DYNAMODB",
        # defaults documented in docs/licensing.md; a stage may set them in its config.json
        "LICENSE_LEASE_TTL_S",
        "LICENSE_GRACE_S",
        "LICENSE_TRIAL_DAYS",
        "LICENSE_REPLAY_WINDOW_S",
    ),
)

APPS: Final[dict[str, AppSpec]] = {CLOUD.key: CLOUD, LICENSE.key: LICENSE}


@dataclass(frozen=True)
class StageOptions:
    """What a stage decides beyond the apps' environment (``infra/stages.json``)."""

    recordings_expire_days: int = 365
    recordings_infrequent_access_days: int = 30
    point_in_time_recovery: bool = True
    log_retention_days: int = 30


def stage_options(stage: str, path: Path = STAGES_FILE) -> StageOptions:
    data = json.loads(path.read_text(encoding="utf-8"))
    if stage not in data:
        raise InfraError(f"{path.name} has no stage {stage!r} (stages: {', '.join(sorted(data))})")
    try:
        return StageOptions(**data[stage])
    except TypeError as exc:
        raise InfraError(f"{path.name}, stage {stage!r}: {exc}") from None
