"""The agent's settings, from environment variables (``EDGE_*``) and command-line overrides."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from edge_agent.ami.connector import AmiSettings
from edge_agent.calls.interpreter import AMI_EVENT_CLASSES, AMI_EVENT_FILTERS
from edge_agent.errors import ConfigError

__all__ = ["AMI_ENVIRONMENT", "ami_settings"]

#: Environment variable -> AmiSettings field.
AMI_ENVIRONMENT = {
    "EDGE_AMI_HOST": "host",
    "EDGE_AMI_PORT": "port",
    "EDGE_AMI_USER": "username",
    "EDGE_AMI_SECRET": "secret",
}


def ami_settings(
    environ: Mapping[str, str], overrides: Mapping[str, object | None] | None = None, *, filtered: bool = True
) -> AmiSettings:
    """Build AMI settings; a missing or invalid value raises :class:`ConfigError` naming the variable."""
    values: dict[str, object] = {field: environ[name] for name, field in AMI_ENVIRONMENT.items() if environ.get(name)}
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    values.setdefault("event_classes", AMI_EVENT_CLASSES)
    if filtered:
        values.setdefault("event_filters", AMI_EVENT_FILTERS)
    try:
        return AmiSettings.model_validate(values)
    except ValidationError as exc:
        variables = {field: name for name, field in AMI_ENVIRONMENT.items()}
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            where = variables.get(field, field)
            problems.append(f"{where} ({field}): {error['msg']}")
        raise ConfigError("invalid AMI settings: " + "; ".join(problems)) from None
