"""The agent's settings: a TOML file (``--config``), then environment variables (``EDGE_*``), then flags.

::

    [ami]
    host = "127.0.0.1"
    port = 5038
    username = "pbxlink"
    secret = "…"              # or EDGE_AMI_SECRET, which is better kept out of files

    [calls]                   # how to tell extensions from trunks; the defaults fit plain Asterisk and FreePBX
    extension_pattern = '^\\d{2,6}$'
    extensions = ["reception"]   # endpoints that are extensions whatever their name
    trunks = ["1000"]            # endpoints that are trunks whatever their name

Every problem is reported as a :class:`ConfigError` that names the setting and where it came from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from edge_agent.ami.connector import AmiSettings
from edge_agent.calls.channels import ChannelRules
from edge_agent.calls.interpreter import AMI_EVENT_CLASSES, AMI_EVENT_FILTERS
from edge_agent.errors import ConfigError

__all__ = ["AMI_ENVIRONMENT", "CALLS_ENVIRONMENT", "AgentConfig", "load_config"]

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


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ami: AmiSettings
    calls: ChannelRules


def load_config(
    environ: Mapping[str, str],
    *,
    path: str | Path | None = None,
    ami_overrides: Mapping[str, object | None] | None = None,
    filtered: bool = True,
) -> AgentConfig:
    """Merge file, environment and flags (later wins); raise :class:`ConfigError` on any problem."""
    sections: dict[str, dict[str, Any]] = {"ami": {}, "calls": {}}
    if path is not None:
        try:
            with open(path, "rb") as stream:
                document = tomllib.load(stream)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = set(document) - set(sections)
        if unknown:
            raise ConfigError(f"config file {path}: unknown section(s) {sorted(unknown)}; expected [ami] and [calls]")
        for name in sections:
            if not isinstance(document.get(name, {}), dict):
                raise ConfigError(f"config file {path}: [{name}] must be a table")
            sections[name].update(document.get(name, {}))
    sections["ami"].update({field: environ[var] for var, field in AMI_ENVIRONMENT.items() if environ.get(var)})
    for var, field in CALLS_ENVIRONMENT.items():
        if environ.get(var):
            value = environ[var]
            sections["calls"][field] = value if field == "extension_pattern" else _split(value)
    sections["ami"].update({key: value for key, value in (ami_overrides or {}).items() if value is not None})
    sections["ami"].setdefault("event_classes", AMI_EVENT_CLASSES)
    if filtered:
        sections["ami"].setdefault("event_filters", AMI_EVENT_FILTERS)
    else:
        sections["ami"]["event_filters"] = ()
    return AgentConfig(
        ami=_validate(AmiSettings, sections["ami"], "ami"), calls=_validate(ChannelRules, sections["calls"], "calls")
    )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _validate(model: type[Model], values: dict[str, Any], section: str) -> Model:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        environment = AMI_ENVIRONMENT if section == "ami" else CALLS_ENVIRONMENT
        names = {field: variable for variable, field in environment.items()}
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            where = f"[{section}] {field}" + (f" / {names[field]}" if field in names else "")
            problems.append(f"{where}: {error['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
