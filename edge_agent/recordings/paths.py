"""The PBX's recording file name → the path the agent opens. Pure."""

from __future__ import annotations

import posixpath
from pathlib import Path

from edge_agent.recordings.settings import RecordingsSettings

__all__ = ["local_path"]


def local_path(pbx_path: str, settings: RecordingsSettings) -> Path | None:
    """Where the agent finds ``pbx_path``: the longest matching ``path_prefix_map`` entry, else under ``root``.
    ``None`` for a name the agent must not follow (empty, or climbing out with ``..``)."""
    if not pbx_path:
        return None
    if not pbx_path.startswith("/"):  # MixMonitor(name.wav): Asterisk writes it in its monitor directory
        pbx_path = settings.relative_dir.rstrip("/") + "/" + pbx_path
    if ".." in pbx_path.split("/"):
        return None
    normal = posixpath.normpath(pbx_path)
    best, target = "", ""
    for prefix, local in settings.path_prefix_map.items():
        stem = prefix.rstrip("/")
        if (normal == stem or normal.startswith(stem + "/")) and len(stem) >= len(best):
            best, target = stem, local
    if target:
        return Path(target.rstrip("/") + normal[len(best) :])
    if settings.root is not None:
        return Path(str(settings.root).rstrip("/") + normal)
    return Path(normal)
