"""What the click-to-call modules share: their injectable collaborators, the outcome of one event, timings."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from cloud import clock
from cloud.gateway import ConnectionGateway
from cloud.runtime import Runtime

from .rules import Refusal

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BACKOFF",
    "RESULT_TIMEOUT",
    "STUCK_AFTER",
    "ClickOutcome",
    "ClickToCallServices",
    "RestClient",
]

#: A record not settled by then was left half done by its handler: the sweeper takes it over.
STUCK_AFTER = timedelta(minutes=2)
#: An agent answers an originate once the user's phone answered or gave up (``ring_seconds``, at most 2 min);
#: a command with no result by then was lost with the agent (it crashed before storing it).
RESULT_TIMEOUT = timedelta(minutes=10)
MAX_BACKOFF = timedelta(minutes=15)
MAX_ATTEMPTS = 12  # about two hours of retries for a failure finish


class RestClient(Protocol):
    """What this module needs of :class:`cloud.bitrix24.client.Bitrix24Client`."""

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...


def _client_for(rt: Runtime, tenant: str) -> RestClient:
    from cloud.bitrix24.client import client_for

    return client_for(rt, tenant)


@dataclass
class ClickToCallServices:
    """Collaborators, injectable in tests: the Bitrix24 client, the clocks, the gateway to agents."""

    client_for: Callable[[Runtime, str], RestClient] = _client_for
    now: Callable[[], datetime] = clock.now
    wall_clock: Callable[[], float] = time.time
    gateway: ConnectionGateway | None = None


@dataclass(frozen=True)
class ClickOutcome:
    """What became of one event (for logs and tests)."""

    status: Literal["sent", "duplicate", "refused", "ignored", "postponed"]
    command_id: str | None = None
    refusal: Refusal | None = None
    detail: str = ""
