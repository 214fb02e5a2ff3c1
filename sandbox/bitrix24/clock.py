"""Time, injected so that token expiry, the 30-minute register dedupe and the leaky bucket can be tested."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_773_130_778.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class LeakyBucket:
    """The per-portal request counter of DOC limits.md: +1 per request, drains ``rate`` per second.

    A request that would take the counter above ``capacity`` is refused (and not counted), which is the
    ``503 QUERY_LIMIT_EXCEEDED`` of the docs. Defaults are the non-Enterprise plan: X=50, Y=2.
    """

    def __init__(self, clock: Clock, capacity: float = 50, rate: float = 2.0) -> None:
        self.clock = clock
        self.capacity = capacity
        self.rate = rate
        self.level = 0.0
        self._last = clock.now()
        self._lock = threading.Lock()

    def _drain(self) -> None:
        now = self.clock.now()
        self.level = max(0.0, self.level - (now - self._last) * self.rate)
        self._last = now

    def take(self) -> bool:
        """Count one request; False when the bucket is full."""
        with self._lock:
            self._drain()
            if self.level + 1 > self.capacity:
                return False
            self.level += 1
            return True
