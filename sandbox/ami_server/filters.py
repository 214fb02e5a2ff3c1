"""Per-session event filters, as ``Action: Filter`` / ``eventfilter=`` implement them in manager.c.

Legacy form: ``Filter: <regex>``, a leading ``!`` makes it an exclude filter. Asterisk 21+/20.7+ also take
``MatchCriteria: action(include|exclude),name(<Event>),header(<Header>),method(regex|exact|starts_with|
ends_with|contains|none)``. Decision (``should_send_event``): no filters -> send; includes only -> must match
one; excludes only -> must match none; both -> must match an include and no exclude.

Regexes are POSIX extended, matched with ``regexec`` against the event's raw text (``Event: ...\\r\\n``
through the closing blank line) without ``REG_NEWLINE``, so ``.`` crosses lines; Python's ``re`` with
``DOTALL`` is close enough for the patterns clients use (POSIX bracket classes are translated).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from edge_agent.ami.framing import AmiMessage, format_action

__all__ = ["EventFilter", "FilterError", "MatchMethod", "parse_filter", "received_through", "should_send"]


class MatchMethod(Enum):
    REGEX = "regex"
    EXACT = "exact"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    CONTAINS = "contains"
    NONE = "none"


class FilterError(ValueError):
    """The filter is rejected; ``str(exc)`` is the exact ``Message:`` Asterisk answers with."""


FORMAT_ERROR: Final = "Filter was formatted incorrectly.  Check the syntax of the filter given."
COMPILE_ERROR: Final = "Filter did not compile.  Check the syntax of the filter given."

_POSIX_CLASSES: Final = {
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:alnum:]": "a-zA-Z0-9",
    "[:upper:]": "A-Z",
    "[:lower:]": "a-z",
    "[:space:]": r" \t\r\n\f\v",
    "[:xdigit:]": "0-9A-Fa-f",
    "[:punct:]": r"!-/:-@\[-`{-~",
}


@dataclass(frozen=True)
class EventFilter:
    exclude: bool
    method: MatchMethod
    pattern: str = ""
    event_name: str | None = None
    #: ``"Channel:"`` (always ends with a colon) to test one header's values instead of the whole text.
    header: str | None = None
    regex: re.Pattern[str] | None = None

    def matches(self, event_name: str, text: str) -> bool:
        if self.event_name is not None and self.event_name != event_name:
            return False
        if self.header is None:
            return self._match(text)
        for line in text.replace("\r\n", "\n").split("\n"):
            if line.startswith(self.header):
                value = line[len(self.header) :].lstrip(" \t")
                if value and self._match(value):
                    return True
        return False

    def _match(self, data: str) -> bool:
        match self.method:
            case MatchMethod.REGEX:
                return self.regex is not None and self.regex.search(data) is not None
            case MatchMethod.EXACT:
                return data == self.pattern
            case MatchMethod.STARTS_WITH:
                return data.startswith(self.pattern)
            case MatchMethod.ENDS_WITH:
                return data.endswith(self.pattern)
            case MatchMethod.CONTAINS:
                return self.pattern in data
            case MatchMethod.NONE:
                return True


def _compile(pattern: str) -> re.Pattern[str]:
    for posix, python in _POSIX_CLASSES.items():
        pattern = pattern.replace(posix, python)
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise FilterError(COMPILE_ERROR) from exc


def parse_filter(pattern: str, match_criteria: str = "") -> EventFilter:
    """Build a filter from the ``Filter`` and optional ``MatchCriteria`` headers, or raise ``FilterError``."""
    exclude = pattern.startswith("!")
    if exclude:
        pattern = pattern[1:]
    method = MatchMethod.REGEX
    event_name: str | None = None
    header: str | None = None
    criteria = match_criteria.strip()
    if not criteria:
        if not pattern:
            raise FilterError(FORMAT_ERROR)  # a legacy filter needs a pattern
    else:
        method = MatchMethod.NONE
        found: set[str] = set()
        for option in (part for part in re.split(r"[ ,)]+", criteria) if part):
            name, _, argument = option.partition("(")
            argument = argument.strip()
            if not argument or name not in {"action", "name", "header", "method"}:
                raise FilterError(FORMAT_ERROR)
            found.add(name)
            if name == "action":
                if argument not in {"include", "exclude"}:
                    raise FilterError(FORMAT_ERROR)
                exclude = argument == "exclude"
            elif name == "name":
                event_name = argument
            elif name == "header":
                header = argument if argument.endswith(":") else argument + ":"
            else:
                try:
                    method = MatchMethod(argument)
                except ValueError as exc:
                    raise FilterError(FORMAT_ERROR) from exc
        if not found:
            raise FilterError(FORMAT_ERROR)
        # method(none) is the advanced default, so a pattern needs an explicit method (manager_add_filter).
        if (not pattern and method is not MatchMethod.NONE) or (pattern and method is MatchMethod.NONE):
            raise FilterError(FORMAT_ERROR)
        if method is MatchMethod.NONE and event_name is None and header is None:
            raise FilterError(FORMAT_ERROR)
    regex = _compile(pattern) if pattern and method is MatchMethod.REGEX else None
    return EventFilter(exclude, method, pattern, event_name, header, regex)


def should_send(includes: list[EventFilter], excludes: list[EventFilter], event_name: str, text: str) -> bool:
    """``should_send_event()``: implied exclude-all when includes exist, then includes, then excludes."""
    if includes and not any(f.matches(event_name, text) for f in includes):
        return False
    return not any(f.matches(event_name, text) for f in excludes)


def received_through(patterns: Iterable[str], messages: Iterable[AmiMessage]) -> list[AmiMessage]:
    """The events a session that installed these ``Filter`` patterns would be sent, in order.

    For replaying recorded (unfiltered) traces as the agent receives them; ``_ts`` is ignored for matching.
    """
    filters = [parse_filter(pattern) for pattern in patterns]
    includes = [f for f in filters if not f.exclude]
    excludes = [f for f in filters if f.exclude]
    kept = []
    for message in messages:
        text = format_action({k: v for k, v in message.items() if k != "_ts"}).decode("utf-8")
        if should_send(includes, excludes, message.get("Event", ""), text):
            kept.append(message)
    return kept
