"""What a channel name says about the party behind it.

The extension of a leg comes from the channel name (``PJSIP/101-0000002a``, ``Local/101@from-queue-…;2``),
never from CallerIDNum: FreePBX-style dialplans rewrite the caller id to the company number before dialing
out. With no configuration, an endpoint whose name is a short number is an extension and every other
endpoint is a trunk, which is right for a typical plain Asterisk or FreePBX; each rule can be overridden.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from wire_protocol.channel_rules import ChannelRules

__all__ = ["PHONE_TECHNOLOGIES", "ChannelKind", "ChannelRules", "ParsedChannel", "parse_channel"]

#: Channel technologies whose endpoints are phones or trunks (anything else is plumbing or an application).
PHONE_TECHNOLOGIES = frozenset({"PJSIP", "SIP", "IAX2", "DAHDI", "IAX", "MGCP", "SCCP", "UNISTIM", "motif"})


class ChannelKind(Enum):
    EXTENSION = "extension"  # a user's phone
    TRUNK = "trunk"  # the carrier / outside world
    LOCAL = "local"  # Local/…: dialplan plumbing (queues, ring groups, follow-me, originate)
    OTHER = "other"  # anything we cannot place (Message/, ConfBridge/, …)


@dataclass(frozen=True, slots=True)
class ParsedChannel:
    kind: ChannelKind
    #: The endpoint (``101``, ``carrier``) or, for Local channels, the dialplan extension (``101``).
    endpoint: str
    #: The extension when the channel is an extension's, or a Local channel aimed at an extension.
    extension: str | None
    #: For Local channels: the name shared by the ``;1`` and ``;2`` halves.
    local_pair: str | None = None


def parse_channel(name: str, is_extension: Callable[[str], bool]) -> ParsedChannel:
    """Classify a channel by its name (``is_extension``: usually ``ChannelRules.is_extension_number``)."""
    tech, slash, rest = name.partition("/")
    if not slash:
        return ParsedChannel(ChannelKind.OTHER, name, None)
    if tech == "Local":
        target = rest.partition("@")[0]
        extension = target if is_extension(target) else None
        pair = name[:-2] if name[-2:] in (";1", ";2") else name
        return ParsedChannel(ChannelKind.LOCAL, target, extension, pair)
    if tech not in PHONE_TECHNOLOGIES:
        return ParsedChannel(ChannelKind.OTHER, rest, None)
    dash = rest.rfind("-")
    endpoint = rest[:dash] if dash > 0 else rest
    if is_extension(endpoint):
        return ParsedChannel(ChannelKind.EXTENSION, endpoint, endpoint)
    return ParsedChannel(ChannelKind.TRUNK, endpoint, None)


_DIALED_NUMBER = re.compile(r"^(?:[A-Za-z0-9]+/)?(?:sip:)?(\+?[0-9*#]+)(?:@|$)")


def number_from_dialstring(dialstring: str) -> str | None:
    """``79261234567@carrier`` or ``PJSIP/carrier/sip:79261234567@host`` -> ``79261234567``."""
    for part in reversed(dialstring.split("/")):
        match = _DIALED_NUMBER.match(part)
        if match:
            return match.group(1)
    return None
