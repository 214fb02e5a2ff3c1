"""A Bitrix24 cloud portal and its OAuth server, emulated from the official REST docs (``bitrix24/b24restdocs``).

``Portal``/``Emulator`` hold the rules with no I/O; ``EmulatorServer`` serves them over HTTP. See
``docs/bitrix24-emulator.md`` and ``python -m sandbox.bitrix24 --help``.
"""

from sandbox.bitrix24.clock import Clock, LeakyBucket, ManualClock, SystemClock
from sandbox.bitrix24.emulator import App, Emulator, Faults
from sandbox.bitrix24.errors import OAuthError, RestError
from sandbox.bitrix24.forms import build_php_query, flatten_php, parse_php_pairs, parse_php_query
from sandbox.bitrix24.portal import Call, Context, CrmEntity, OutgoingEvent, Portal, Result, User
from sandbox.bitrix24.server import EmulatorServer

__all__ = [
    "App",
    "Call",
    "Clock",
    "Context",
    "CrmEntity",
    "Emulator",
    "EmulatorServer",
    "Faults",
    "LeakyBucket",
    "ManualClock",
    "OAuthError",
    "OutgoingEvent",
    "Portal",
    "RestError",
    "Result",
    "SystemClock",
    "User",
    "build_php_query",
    "flatten_php",
    "parse_php_pairs",
    "parse_php_query",
]
