"""AMI permission classes: user read/write sets, event masks and the class an event belongs to.

Mirrors ``main/manager.c`` (Asterisk 22): a session receives an event only if *all* of the event's classes
are in its ``send_events`` set (``readperm & mask``); an action runs if the user's write set shares *any*
class with the action's authority. Classes are kept as sets of labels instead of bit masks, except where a
client sends a numeric mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from edge_agent.ami.framing import AmiMessage

__all__ = [
    "ALL_CLASSES",
    "event_classes",
    "normalize_classes",
    "parse_event_mask",
    "privilege_for",
    "with_privilege",
]

#: The ``perms[]`` table of manager.c, in bit order (index = bit number, ``None`` = unused bit).
_BITS: Final[tuple[str | None, ...]] = (
    "system",
    "call",
    "log",
    "verbose",
    "command",
    "agent",
    "user",
    "config",
    "dtmf",
    "reporting",
    "cdr",
    "dialplan",
    "originate",
    "agi",
    None,  # EVENT_FLAG_HOOKRESPONSE has no label
    "cc",
    "aoc",
    "test",
    "security",
    *([None] * 11),
    "message",  # 1 << 30
)
ALL_CLASSES: Final = frozenset(label for label in _BITS if label)

_TRUE: Final = frozenset({"yes", "true", "y", "t", "1", "on"})  # ast_true()
_FALSE: Final = frozenset({"no", "false", "n", "f", "0", "off"})  # ast_false()


def normalize_classes(classes: Iterable[str] | str) -> frozenset[str]:
    """Accept ``{"call", "agent"}`` or ``"call,agent"`` (manager.conf style); ``all`` means every class."""
    labels = classes.split(",") if isinstance(classes, str) else classes
    cleaned = {label.strip().lower() for label in labels if label.strip()}
    if "all" in cleaned:
        return ALL_CLASSES
    return frozenset(cleaned & ALL_CLASSES)


def parse_event_mask(mask: str) -> frozenset[str] | None:
    """``strings_to_mask()``: ``None`` for an empty (invalid) mask, else the requested classes.

    Digits are a bit mask (so ``"1"`` means *system only*, as in Asterisk), then ``off``/``on`` words,
    then a comma list of class names.
    """
    mask = mask.strip()
    if not mask:
        return None
    if mask.isdigit():
        bits = int(mask)
        return frozenset(label for bit, label in enumerate(_BITS) if label and bits >> bit & 1)
    if mask.lower() in _FALSE:
        return frozenset()
    if mask.lower() in _TRUE:
        return ALL_CLASSES
    return normalize_classes(mask)


# Event name -> class, for events handed to the server without a Privilege header (hand-written scenarios).
_EXACT: Final = {
    "Newexten": "dialplan",
    "VarSet": "dialplan",
    "Cdr": "cdr",
    "FullyBooted": "system",
    "Shutdown": "system",
    "Reload": "system",
    "ContactStatus": "system",
    "PeerStatus": "system",
    "Registry": "system",
    "UserEvent": "user",
    "RTCPSent": "reporting",
    "RTCPReceived": "reporting",
}
_PREFIXES: Final = (("Queue", "agent"), ("Agent", "agent"), ("DTMF", "dtmf"))


def privilege_for(event_name: str) -> str:
    """The class Asterisk files an event under; channel/dial/bridge/transfer/anything else is ``call``."""
    if event_name in _EXACT:
        return _EXACT[event_name]
    for prefix, label in _PREFIXES:
        if event_name.startswith(prefix):
            return label
    return "call"


def with_privilege(event: AmiMessage) -> AmiMessage:
    """Return ``event`` with a ``Privilege: <class>,all`` header right after ``Event`` if it had none."""
    if "Privilege" in event or "Event" not in event:
        return event
    result: AmiMessage = {}
    for key, value in event.items():
        result[key] = value
        if key == "Event":
            result["Privilege"] = f"{privilege_for(value)},all"
    return result


def event_classes(event: AmiMessage) -> frozenset[str]:
    """The classes named in an event's ``Privilege`` header (``all`` is decoration, not a class)."""
    privilege = event.get("Privilege", "")
    return frozenset(label.strip() for label in privilege.split(",") if label.strip() in ALL_CLASSES)
