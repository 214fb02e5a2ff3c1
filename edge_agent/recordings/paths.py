"""The PBX's recording file name → the path the agent opens. Pure.

Two sources name a recording. The AMI (MixMonitor's own file name, usually absolute) is followed as it is, through
the operator's mapping. The CDR (FreePBX's ``recordingfile`` column, or a ``userfield`` the dialplan filled) is
data anyone who can place a call may influence, so :func:`cdr_candidates` only ever resolves it *inside* the
recordings directory (``relative_dir``): a bare name is looked for where FreePBX files it
(``<dir>/YYYY/MM/DD/<name>``, the call's date in the CDR's zone) and then directly in ``<dir>``; an absolute path
must lie under ``<dir>``; ``..`` and control characters are refused with the reason.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from edge_agent.recordings.settings import RecordingsSettings

__all__ = ["CdrRecording", "cdr_candidates", "local_path"]

#: A CDR value longer than this is no file name Asterisk wrote.
MAX_CDR_VALUE = 1024
#: Date folders looked at for a bare name: the start's day up to the end's, at most this many.
MAX_DAYS = 3


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


@dataclass(frozen=True, slots=True)
class CdrRecording:
    """Where a CDR's recording value may be, as PBX paths to try in order; or why it is not followed."""

    candidates: tuple[str, ...] = ()
    refused: str | None = None


def cdr_candidates(
    value: str, started: datetime, ended: datetime, zone: tzinfo, settings: RecordingsSettings
) -> CdrRecording:
    """The PBX paths a CDR ``recordingfile``/``userfield`` value may name, all inside ``relative_dir``."""
    directory = posixpath.normpath(settings.relative_dir)
    text = value.strip()
    if not text:
        return CdrRecording()
    if len(text) > MAX_CDR_VALUE:
        return CdrRecording(refused=f"the name is {len(text)} characters long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return CdrRecording(refused="the name contains control characters")
    if ".." in text.split("/"):
        return CdrRecording(refused=f"the name climbs out of the recordings directory {directory} with '..'")
    if text.startswith("/"):
        normal = posixpath.normpath(text)
        if not normal.startswith(directory.rstrip("/") + "/"):
            return CdrRecording(refused=f"the path is outside the recordings directory {directory}")
        return CdrRecording((normal,))
    relative = posixpath.normpath(text)
    if "/" in relative:  # a path under the directory, as written (e.g. 2026/11/26/name.wav)
        return CdrRecording((f"{directory}/{relative}",))
    days: list[str] = []
    day, last = started.astimezone(zone).date(), max(started, ended).astimezone(zone).date()
    while day <= last and len(days) < MAX_DAYS:  # a recording that began after midnight is in the next day's folder
        days.append(f"{directory}/{day:%Y/%m/%d}/{relative}")
        day += timedelta(days=1)
    return CdrRecording((*days, f"{directory}/{relative}"))
