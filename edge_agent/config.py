"""The agent's settings: a TOML file (``--config``), then environment variables (``EDGE_*``), then flags.

::

    [ami]
    host = "127.0.0.1"
    port = 5038
    username = "pbxlink"
    secret = "…"              # or EDGE_AMI_SECRET, which is better kept out of files

    data_dir = "/var/lib/pbxlink"   # or EDGE_DATA_DIR: the durable outbox lives here (edge-agent run)
    outbox_max_events = 1000000     # or EDGE_OUTBOX_MAX_EVENTS: warn at 80 %, never drop

    [cloud]                   # edge-agent run / doctor
    url = "wss://…"           # or EDGE_CLOUD_URL
    token = "…"               # or EDGE_TOKEN, which is better kept out of files

    [cdr]                     # backfill from the PBX's CDR database (docs/cdr-backfill.md); optional
    dsn = "sqlite:///var/log/asterisk/master.db"   # or EDGE_CDR_DSN (postgresql://…, mysql://…)
    timezone = "local"        # or EDGE_CDR_TIMEZONE: the zone CDR times are written in
    late_seconds = 120        # or EDGE_CDR_LATE_SECONDS: a gap is read again this long after it closed
    cel_table = "cel"         # or EDGE_CDR_CEL_TABLE: CEL in the same database adds transfers (optional)
    reconcile_minutes = 60    # or EDGE_CDR_RECONCILE_MINUTES: how often the CDR is checked against the cloud (0: never)
    reconcile_hours = 24      # or EDGE_CDR_RECONCILE_HOURS: how far back each check looks

    [calls]                   # how to tell extensions from trunks; the defaults fit plain Asterisk and FreePBX
    extension_pattern = '^\\d{2,6}$'
    extensions = ["reception"]   # endpoints that are extensions whatever their name
    trunks = ["1000"]            # endpoints that are trunks whatever their name

    [recordings]              # MixMonitor files uploaded to the CRM (docs/recordings.md)
    path_prefix_map = { "/var/spool/asterisk/monitor" = "/mnt/monitor" }   # PBX path -> the agent's
    root = "/srv/asterisk-chroot"   # or EDGE_RECORDINGS_ROOT: prepended to paths no map entry matched

Every problem is reported as a :class:`ConfigError` that names the setting and where it came from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from edge_agent.ami.connector import AmiSettings
from edge_agent.calls.channels import ChannelRules
from edge_agent.calls.interpreter import AMI_EVENT_CLASSES, AMI_EVENT_FILTERS
from edge_agent.cdr.settings import CdrSettings
from edge_agent.errors import ConfigError
from edge_agent.outbox import DEFAULT_MAX_EVENTS
from edge_agent.recordings.settings import RECORDINGS_ENVIRONMENT, RecordingsSettings

__all__ = [
    "AGENT_ENVIRONMENT",
    "AMI_ENVIRONMENT",
    "CALLS_ENVIRONMENT",
    "CDR_ENVIRONMENT",
    "CLOUD_ENVIRONMENT",
    "AgentConfig",
    "CloudSettings",
    "load_config",
]

Model = TypeVar("Model", bound=BaseModel)

#: Environment variable -> [ami] setting.
AMI_ENVIRONMENT = {
    "EDGE_AMI_HOST": "host",
    "EDGE_AMI_PORT": "port",
    "EDGE_AMI_USER": "username",
    "EDGE_AMI_SECRET": "secret",
}
#: Environment variable -> [calls] setting (lists are comma-separated).
CALLS_ENVIRONMENT = {
    "EDGE_EXTENSION_PATTERN": "extension_pattern",
    "EDGE_EXTENSIONS": "extensions",
    "EDGE_TRUNKS": "trunks",
}
#: Environment variable -> [cdr] setting.
CDR_ENVIRONMENT = {
    "EDGE_CDR_DSN": "dsn",
    "EDGE_CDR_TIMEZONE": "timezone",
    "EDGE_CDR_LATE_SECONDS": "late_seconds",
    "EDGE_CDR_CEL_TABLE": "cel_table",
    "EDGE_CDR_RECONCILE_MINUTES": "reconcile_minutes",
    "EDGE_CDR_RECONCILE_HOURS": "reconcile_hours",
}
#: Environment variable -> [cloud] setting.
CLOUD_ENVIRONMENT = {
    "EDGE_CLOUD_URL": "url",
    "EDGE_TOKEN": "token",
}
#: Environment variable -> top-level setting.
AGENT_ENVIRONMENT = {
    "EDGE_DATA_DIR": "data_dir",
    "EDGE_OUTBOX_MAX_EVENTS": "outbox_max_events",
}
_ENVIRONMENTS = {
    "ami": AMI_ENVIRONMENT,
    "calls": CALLS_ENVIRONMENT,
    "cloud": CLOUD_ENVIRONMENT,
    "cdr": CDR_ENVIRONMENT,
    "recordings": RECORDINGS_ENVIRONMENT,
}


class CloudSettings(BaseModel):
    """Where the cloud is and the agent's token (per agent, revocable; sent only in the upgrade header)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    token: SecretStr = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"expected a wss:// (or ws:// for a local cloud) URL, got {value!r}")
        return value


class _AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path | None = None
    outbox_max_events: int = Field(default=DEFAULT_MAX_EVENTS, ge=1)


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ami: AmiSettings
    calls: ChannelRules
    cloud: CloudSettings | None = None  # required by ``edge-agent run`` (``need_cloud``)
    cdr: CdrSettings | None = None  # backfill from the PBX's CDR database; None = AMI only
    data_dir: Path | None = None
    outbox_max_events: int = DEFAULT_MAX_EVENTS
    recordings: RecordingsSettings = RecordingsSettings()


def load_config(
    environ: Mapping[str, str],
    *,
    path: str | Path | None = None,
    ami_overrides: Mapping[str, object | None] | None = None,
    filtered: bool = True,
    need_cloud: bool = False,
) -> AgentConfig:
    """Merge file, environment and flags (later wins); raise :class:`ConfigError` on any problem.

    ``need_cloud``: the command talks to the cloud, so ``[cloud]`` and ``data_dir`` are required."""
    sections: dict[str, dict[str, Any]] = {"ami": {}, "calls": {}, "cloud": {}, "cdr": {}, "recordings": {}}
    top: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as stream:
                document = tomllib.load(stream)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        for key in _AgentSettings.model_fields:
            if key in document:
                top[key] = document.pop(key)
        unknown = set(document) - set(sections)
        if unknown:
            raise ConfigError(
                f"config file {path}: unknown section(s) {sorted(unknown)}; expected [ami], [calls], [cloud], [cdr] "
                "and [recordings] "
                "(and data_dir, outbox_max_events at the top)"
            )
        for name in sections:
            if not isinstance(document.get(name, {}), dict):
                raise ConfigError(f"config file {path}: [{name}] must be a table")
            sections[name].update(document.get(name, {}))
    sections["ami"].update({field: environ[var] for var, field in AMI_ENVIRONMENT.items() if environ.get(var)})
    for var, field in CALLS_ENVIRONMENT.items():
        if environ.get(var):
            value = environ[var]
            sections["calls"][field] = value if field == "extension_pattern" else _split(value)
    sections["cloud"].update({field: environ[var] for var, field in CLOUD_ENVIRONMENT.items() if environ.get(var)})
    sections["cdr"].update({field: environ[var] for var, field in CDR_ENVIRONMENT.items() if environ.get(var)})
    sections["recordings"].update(
        {field: environ[var] for var, field in RECORDINGS_ENVIRONMENT.items() if environ.get(var)}
    )
    top.update({field: environ[var] for var, field in AGENT_ENVIRONMENT.items() if environ.get(var)})
    sections["ami"].update({key: value for key, value in (ami_overrides or {}).items() if value is not None})
    sections["ami"].setdefault("event_classes", AMI_EVENT_CLASSES)
    if filtered:
        sections["ami"].setdefault("event_filters", AMI_EVENT_FILTERS)
    else:
        sections["ami"]["event_filters"] = ()
    agent = _validate(_AgentSettings, top, "")
    cloud = None
    if need_cloud or sections["cloud"]:
        cloud = _validate(CloudSettings, sections["cloud"], "cloud")
    if need_cloud and agent.data_dir is None:
        raise ConfigError("invalid settings: data_dir / EDGE_DATA_DIR: Field required (where the outbox is kept)")
    cdr = None
    if sections["cdr"]:
        if "dsn" not in sections["cdr"]:
            raise ConfigError(
                "invalid settings: [cdr] dsn / EDGE_CDR_DSN: Field required (the other [cdr] settings need it)"
            )
        cdr = _validate(CdrSettings, sections["cdr"], "cdr")
    return AgentConfig(
        ami=_validate(AmiSettings, sections["ami"], "ami"),
        calls=_validate(ChannelRules, sections["calls"], "calls"),
        cloud=cloud,
        cdr=cdr,
        data_dir=agent.data_dir,
        outbox_max_events=agent.outbox_max_events,
        recordings=_validate(RecordingsSettings, sections["recordings"], "recordings"),
    )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _validate(model: type[Model], values: dict[str, Any], section: str) -> Model:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        environment = _ENVIRONMENTS.get(section, AGENT_ENVIRONMENT)
        names = {field: variable for variable, field in environment.items()}
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            setting = f"[{section}] {field}" if section else field
            where = setting + (f" / {names[field]}" if field in names else "")
            problems.append(f"{where}: {error['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
