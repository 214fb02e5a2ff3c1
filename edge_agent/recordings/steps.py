"""The uploader's decisions, pure (times passed in): is the file complete, when to try again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edge_agent.recordings.queue import RecordingRow
from edge_agent.recordings.settings import RecordingsSettings

__all__ = ["FileSeen", "Watch", "backoff", "watch"]

#: How long a failed attempt waits before the next, by attempts so far: 5 s doubling to one hour.
BACKOFF_FIRST, BACKOFF_MAX = 5.0, 3600.0


@dataclass(frozen=True, slots=True)
class FileSeen:
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class Watch:
    outcome: Literal["waiting", "ready", "missing", "unreadable"]
    changes: dict[str, Any]


def watch(row: RecordingRow, seen: FileSeen | OSError | None, now: float, settings: RecordingsSettings) -> Watch:
    """One look at a ``waiting`` recording. Complete = the call ended and the file kept its size and mtime for
    ``stable_seconds`` (MixMonitor writes its last buffer after the hangup)."""
    if isinstance(seen, OSError):
        return Watch("unreadable", {})
    if seen is None:
        gone_for = now - row.ended_at
        return Watch("missing" if gone_for >= settings.missing_after_seconds else "waiting", {})
    if (seen.size, seen.mtime) != (row.size, row.mtime) or row.stable_since is None:
        return Watch("waiting", {"size": seen.size, "mtime": seen.mtime, "stable_since": now})
    if now - row.stable_since >= settings.stable_seconds and now - row.ended_at >= settings.stable_seconds:
        return Watch("ready", {})
    return Watch("waiting", {})


def backoff(attempts: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** min(max(attempts - 1, 0), 20)))
