"""The cloud's settings, read from the environment (Chalice stage variables in AWS, flags in cloud-local).

Read per invocation rather than at import, so one Python process (tests, cloud-local) can run stages side by
side and the Chalice test client's per-stage environment applies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cloud.errors import ConfigError
from cloud.secrets import with_secrets

__all__ = ["DEFAULT_B24_OAUTH_URL", "DEFAULT_TABLE_PREFIX", "Settings"]

DEFAULT_TABLE_PREFIX = "pbxlink-dev-"
#: Bitrix24's OAuth token URL (protocols.md §A3); ``B24_OAUTH_URL`` overrides it (another host, the emulator).
DEFAULT_B24_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{0,200}$")


@dataclass(frozen=True)
class Settings:
    table_prefix: str = DEFAULT_TABLE_PREFIX
    region: str = "us-east-1"
    #: The API Gateway management endpoint; unset in AWS (built from the request), set by cloud-local.
    ws_mgmt_endpoint: str | None = None
    #: The websocket API's id and stage, for pushes made outside a websocket request (REST handlers).
    ws_api_id: str | None = None
    ws_stage: str = "api"
    #: ``AWS_ENDPOINT_URL_DYNAMODB`` (moto server in cloud-local); part of the settings so a runtime cached
    #: for one endpoint is never reused for another in the same process.
    dynamodb_endpoint: str | None = None
    #: The Bitrix24 app's credentials (``B24_CLIENT_ID``/``B24_CLIENT_SECRET``); the secret only ever goes to
    #: the OAuth server and is kept out of ``repr``.
    b24_client_id: str = ""
    b24_client_secret: str = field(default="", repr=False)
    b24_oauth_url: str = DEFAULT_B24_OAUTH_URL
    #: Our REST API's base URL (``PUBLIC_BASE_URL``), where Bitrix24 posts events: ``<base>/b24/events``.
    public_base_url: str = ""
    #: The websocket URL agents connect to (``AGENT_WS_URL``, the agents' ``EDGE_CLOUD_URL``), shown with a new
    #: agent token on the settings page; unset: built from ``WS_API_ID``, region and stage.
    agent_ws_url: str = ""
    #: Licensing (see ``docs/licensing.md``): the license server, this deployment's backend API key, and the
    #: public keys leases are verified with (``kid1:base64,kid2:base64``).
    license_server_url: str | None = None
    license_api_key: str | None = field(default=None, repr=False)
    license_public_keys: str = ""
    #: Call recordings (``docs/recordings.md``): the bucket (``PBXLINK_RECORDINGS_BUCKET``, default
    #: ``<table prefix>recordings``) and ``AWS_ENDPOINT_URL_S3`` (moto server in cloud-local).
    recordings_bucket: str = ""
    s3_endpoint: str | None = None

    @property
    def bucket(self) -> str:
        return self.recordings_bucket or f"{self.table_prefix}recordings".lower().replace("_", "-").strip(".-")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = with_secrets(os.environ if environ is None else environ)
        prefix = env.get("PBXLINK_TABLE_PREFIX", DEFAULT_TABLE_PREFIX)
        if not _PREFIX_RE.match(prefix):
            raise ConfigError(f"PBXLINK_TABLE_PREFIX={prefix!r}: letters, digits, '_', '-', '.' only")
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(
            table_prefix=prefix,
            region=region,
            ws_mgmt_endpoint=env.get("WS_MGMT_ENDPOINT") or None,
            ws_api_id=env.get("WS_API_ID") or None,
            ws_stage=env.get("WS_STAGE") or "api",
            dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB") or None,
            b24_client_id=env.get("B24_CLIENT_ID", ""),
            b24_client_secret=env.get("B24_CLIENT_SECRET", ""),
            b24_oauth_url=env.get("B24_OAUTH_URL") or DEFAULT_B24_OAUTH_URL,
            public_base_url=(env.get("PUBLIC_BASE_URL") or "").rstrip("/"),
            agent_ws_url=env.get("AGENT_WS_URL") or "",
            license_server_url=env.get("LICENSE_SERVER_URL") or None,
            license_api_key=env.get("LICENSE_API_KEY") or None,
            license_public_keys=env.get("LICENSE_PUBLIC_KEYS", ""),
            recordings_bucket=env.get("PBXLINK_RECORDINGS_BUCKET", ""),
            s3_endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
        )

    def agent_cloud_url(self) -> str:
        """What an agent puts in ``EDGE_CLOUD_URL``; empty when neither ``AGENT_WS_URL`` nor ``WS_API_ID`` is set."""
        if self.agent_ws_url:
            return self.agent_ws_url
        if self.ws_api_id:
            return f"wss://{self.ws_api_id}.execute-api.{self.region}.amazonaws.com/{self.ws_stage}"
        return ""
