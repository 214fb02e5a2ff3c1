"""How the agent tells a PBX's extensions from its trunks: one definition, for the agent's own config file and
for the tenant's settings the cloud sends it (``AgentSettings.calls``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ChannelRules"]


class ChannelRules(BaseModel):
    """How to tell extensions from trunks; the defaults fit plain Asterisk and FreePBX."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extension_pattern: str = Field(default=r"^\d{2,6}$", description="an endpoint whose name matches is an extension")
    extensions: frozenset[str] = Field(
        default=frozenset(), description="endpoints that are extensions whatever their name"
    )
    trunks: frozenset[str] = Field(default=frozenset(), description="endpoints that are trunks whatever their name")

    @field_validator("extension_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"extension_pattern is not a valid regular expression: {exc}") from exc
        return value

    def is_extension_number(self, name: str) -> bool:
        if name in self.trunks:
            return False
        return name in self.extensions or _compiled(self.extension_pattern).match(name) is not None


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled
