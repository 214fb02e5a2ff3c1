"""Time, in one place: UTC, ISO-8601 with milliseconds in items, epoch seconds for TTL attributes."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["now", "now_iso"]


def now() -> datetime:
    return datetime.now(UTC)


def now_iso() -> str:
    return now().isoformat(timespec="milliseconds")
