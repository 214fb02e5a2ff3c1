"""``[recordings]`` in the agent's config (and ``EDGE_RECORDINGS_*``).

::

    [recordings]
    enabled = true
    # the agent sees the PBX's files elsewhere: the PBX's prefix -> the agent's (longest prefix wins)
    path_prefix_map = { "/var/spool/asterisk/monitor" = "/mnt/pbx-monitor" }
    root = "/var/tmp/pbxlink-lab/rootfs"   # or EDGE_RECORDINGS_ROOT: prepended to any path no map entry matched
    converter = "auto"                     # auto | lame | ffmpeg | none (MP3 conversion, when the tenant wants MP3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["RECORDINGS_ENVIRONMENT", "RecordingsSettings"]

#: Environment variable -> [recordings] setting.
RECORDINGS_ENVIRONMENT = {
    "EDGE_RECORDINGS": "enabled",
    "EDGE_RECORDINGS_ROOT": "root",
    "EDGE_RECORDINGS_CONVERTER": "converter",
    "EDGE_RECORDINGS_STABLE_SECONDS": "stable_seconds",
    "EDGE_RECORDINGS_MISSING_AFTER": "missing_after_seconds",
}


class RecordingsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: PBX path prefix -> the agent's path prefix, for an agent in a container or next to a chrooted Asterisk.
    path_prefix_map: dict[str, str] = Field(default_factory=dict)
    #: Prepended to a PBX path no map entry matched (a chroot's root directory). ``None``: paths as they are.
    root: Path | None = None
    #: Where Asterisk puts a MixMonitor file named without a directory (its ``astspooldir``/monitor).
    relative_dir: str = Field(default="/var/spool/asterisk/monitor", pattern=r"^/")
    converter: Literal["auto", "lame", "ffmpeg", "none"] = "auto"
    #: The file must keep its size and mtime this long after the call ended (MixMonitor flushes after hangup).
    stable_seconds: float = Field(default=2.0, ge=0.0, le=600.0)
    #: A file still absent this long after the call ended is reported missing.
    missing_after_seconds: float = Field(default=60.0, ge=0.0, le=86_400.0)
    #: Upload attempts (each with a fresh URL) before the recording is reported as failed.
    max_attempts: int = Field(default=8, ge=1, le=100)
    #: Where a converted MP3 waits for its upload; ``None``: ``<data_dir>/recordings``.
    work_dir: Path | None = None

    @field_validator("path_prefix_map")
    @classmethod
    def _absolute(cls, value: dict[str, str]) -> dict[str, str]:
        for pbx, local in value.items():
            if not pbx.startswith("/") or not local.startswith("/"):
                raise ValueError(f"path_prefix_map entries map absolute paths; got {pbx!r} = {local!r}")
        return value
