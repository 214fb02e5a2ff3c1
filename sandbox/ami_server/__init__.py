"""A fake Asterisk 22 AMI over real TCP, for integration tests and demos (see ``server.FakeAmiServer``)."""

from sandbox.ami_server.endpoints import Endpoint
from sandbox.ami_server.originate import (
    REASON_ANSWERED,
    REASON_BUSY,
    REASON_CONGESTION,
    REASON_FAILED,
    REASON_HUNGUP,
    REASON_NO_ANSWER,
    OriginateOutcome,
)
from sandbox.ami_server.server import FakeAmiServer, LoginAttempt, OriginateHook, UserSpec

__all__ = [
    "REASON_ANSWERED",
    "REASON_BUSY",
    "REASON_CONGESTION",
    "REASON_FAILED",
    "REASON_HUNGUP",
    "REASON_NO_ANSWER",
    "Endpoint",
    "FakeAmiServer",
    "LoginAttempt",
    "OriginateHook",
    "OriginateOutcome",
    "UserSpec",
]
