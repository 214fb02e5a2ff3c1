"""Reconnect delays: exponential with jitter, so a thousand agents that lost their PBX or the cloud at the
same moment do not come back in lockstep. Pure: the random source is passed in."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    rng: Callable[[], float] = field(default=random.random, repr=False)
    attempts: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt: ``min(max, initial * factor**n)``, jittered to 50-100%."""
        ceiling = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return ceiling * (0.5 + 0.5 * self.rng())

    def reset(self) -> None:
        self.attempts = 0
