"""Originate outcomes: what a scripted call attempt ends with, and the ``OriginateResponse`` it produces.

Asterisk's ``fast_originate()`` reports the result as a *broadcast* ``call``-class event (every session
with ``call`` read permission sees it, filters and masks apply) carrying the action's ``ActionID``. On
failure without a channel, ``Channel`` is the requested ``Tech/Data`` and ``Uniqueid`` is the requested
``ChannelId`` or ``<unknown>``.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from typing import Final

from edge_agent.ami.framing import AmiMessage
from sandbox.ami_server.messages import header

__all__ = [
    "REASON_ANSWERED",
    "REASON_BUSY",
    "REASON_CONGESTION",
    "REASON_FAILED",
    "REASON_HUNGUP",
    "REASON_NO_ANSWER",
    "OriginateOutcome",
    "originate_response",
    "parse_callerid",
]

# AST_CONTROL_* numbering, as Asterisk reports it in Reason.
REASON_FAILED: Final = 0
REASON_HUNGUP: Final = 1
REASON_NO_ANSWER: Final = 3
REASON_ANSWERED: Final = 4
REASON_BUSY: Final = 5
REASON_CONGESTION: Final = 8

_sequence = itertools.count(1)


@dataclass(frozen=True)
class OriginateOutcome:
    """How the scripted call ends. ``success`` defaults to ``reason == 4`` (answered).

    ``channel``/``uniqueid`` override the ones the fake invents (``PJSIP/101-0000002a``, the action's
    ``ChannelId`` or ``<epoch>.<n>``); ``delay`` is waited before the result is reported.
    """

    reason: int = REASON_ANSWERED
    success: bool | None = None
    channel: str | None = None
    uniqueid: str | None = None
    delay: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.reason == REASON_ANSWERED if self.success is None else self.success


def parse_callerid(callerid: str) -> tuple[str | None, str | None]:
    """``ast_callerid_parse()`` simplified: ``"Name" <num>`` / ``Name <num>`` / bare number / bare name."""
    callerid = callerid.strip()
    if not callerid:
        return None, None
    match = re.fullmatch(r'\s*"?([^"<]*?)"?\s*<([^>]*)>\s*', callerid)
    if match:
        name, number = match.group(1).strip(), re.sub(r"[\s()\-.]", "", match.group(2))
        return name or None, number or None
    if re.fullmatch(r"[+\d\s()\-.*#]+", callerid):
        return None, re.sub(r"[\s()\-.]", "", callerid) or None
    return callerid.strip('"') or None, None


def originate_response(action: AmiMessage, outcome: OriginateOutcome) -> AmiMessage:
    """The ``OriginateResponse`` event Asterisk would broadcast for ``action`` ending with ``outcome``."""
    requested = header(action, "Channel")
    channel_id = header(action, "ChannelId")
    if outcome.succeeded:
        channel = outcome.channel or _channel_name(requested)
        uniqueid = outcome.uniqueid or channel_id or f"{int(time.time())}.{next(_sequence)}"
    else:
        channel = outcome.channel or requested
        uniqueid = outcome.uniqueid or channel_id or "<unknown>"
    name, number = parse_callerid(header(action, "CallerID"))
    event: AmiMessage = {"Event": "OriginateResponse", "Privilege": "call,all"}
    if header(action, "ActionID"):
        event["ActionID"] = header(action, "ActionID")
    event["Response"] = "Success" if outcome.succeeded else "Failure"
    event["Channel"] = channel
    if header(action, "Application"):
        event["Application"] = header(action, "Application")
        event["Data"] = header(action, "Data")
    else:
        event["Context"] = header(action, "Context")
        event["Exten"] = header(action, "Exten")
    event["Reason"] = str(outcome.reason)
    event["Uniqueid"] = uniqueid
    event["CallerIDNum"] = number or "<unknown>"
    event["CallerIDName"] = name or "<unknown>"
    return event


def _channel_name(requested: str) -> str:
    """The name Asterisk gives the channel it creates for ``Tech/Data`` (``Local`` gets its ``;1`` half)."""
    tech, _, data = requested.partition("/")
    resource = data.split("/", 1)[0]
    seq = f"{next(_sequence):08x}"
    if tech.lower() == "local":
        return f"{tech}/{resource}-{seq};1"
    return f"{tech}/{resource}-{seq}"
