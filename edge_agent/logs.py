"""The agent's log lines: one structured line per record, the call (or command) it is about in a context field,
phone numbers masked at INFO and above, secrets never.

``key=value`` lines by default (``EDGE_LOG_FORMAT=json`` for JSON Lines), both easy to grep in the journal::

    ts=2026-11-26T09:00:01.123Z level=info logger=edge_agent.agent call_id=1710140185.3 command_id= msg=…

The call id comes from :func:`log_context` (a ``contextvars`` variable, so it follows asyncio tasks), set where
the agent handles a call's AMI messages and events, and where it runs a command.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Final

__all__ = ["LogFormatter", "log_context", "mask_number", "mask_numbers", "setup_logging"]

#: The context fields every line carries (empty when not about a call or a command).
FIELDS: Final = ("call_id", "command_id")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("edge_agent_log_context", default={})  # noqa: B039

# 7+ digits, optionally after "+", not part of a longer run of digits or an Asterisk id (1710140185.100)
_PHONE: Final = re.compile(r"(?<![\d.])\+?\d{7,}(?!\d|\.\d)")
_SAFE_VALUE: Final = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")


def mask_number(number: str) -> str:
    """``+79261234567`` -> ``+79*******67``: enough to tell two callers apart in a log, not to call anyone."""
    plus = "+" if number.startswith("+") else ""
    digits = number.removeprefix("+")
    if len(digits) < 7:
        return number
    return plus + digits[:2] + "*" * (len(digits) - 4) + digits[-2:]


def mask_numbers(text: str) -> str:
    return _PHONE.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    number = match.group(0)
    if len(number) == 8 and match.start() > 0 and match.string[match.start() - 1] == "-":
        return number  # a channel's sequence number (PJSIP/carrier-00000010), not a phone number
    return mask_number(number)


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Every line logged inside (in this task and the tasks it starts) carries ``fields``."""
    token = _context.set({**_context.get(), **{key: value for key, value in fields.items() if value}})
    try:
        yield
    finally:
        _context.reset(token)


class LogFormatter(logging.Formatter):
    """``logfmt`` (default) or ``json`` lines; masks phone numbers at INFO and above, removes ``secrets``."""

    def __init__(self, fmt: str = "logfmt", secrets: Iterable[str] = ()) -> None:
        super().__init__()
        if fmt not in ("logfmt", "json"):
            raise ValueError(f"log format {fmt!r}: expected 'logfmt' or 'json'")
        self.fmt = fmt
        self.secrets = [secret for secret in secrets if len(secret) >= 4]

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.secrets.extend(secret for secret in secrets if len(secret) >= 4 and secret not in self.secrets)

    def _clean(self, text: str, level: int) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return mask_numbers(text) if level >= logging.INFO else text

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        message = self._clean(message, record.levelno)
        context = _context.get()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        fields: dict[str, str] = {"ts": stamp, "level": record.levelname.lower(), "logger": record.name}
        fields.update({key: context.get(key, "") for key in FIELDS})
        fields["msg"] = message
        if self.fmt == "json":
            return json.dumps(fields, ensure_ascii=False)
        return " ".join(f"{key}={_logfmt(value)}" for key, value in fields.items())


def _logfmt(value: str) -> str:
    if not value:
        return ""
    return value if _SAFE_VALUE.match(value) else json.dumps(value, ensure_ascii=False)


def setup_logging(
    *, verbose: bool = False, fmt: str = "logfmt", stream: IO[str] | None = None, secrets: Iterable[str] = ()
) -> LogFormatter:
    """Replace the root logger's handlers with one structured handler on ``stream`` (standard error)."""
    formatter = LogFormatter(fmt, secrets)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("websockets").setLevel(logging.INFO)  # its DEBUG log prints request headers (the token)
    return formatter
