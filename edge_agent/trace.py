"""Trace files: a recorded AMI stream, the way support and our tests replay real PBX behaviour.

The format is a contract: JSON Lines, one AMI message per line, a JSON object whose keys and values are the
message's fields exactly as Asterisk sent them (strings), plus an optional ``_ts`` (float, seconds since the
epoch, when the agent received it). A field Asterisk sent twice has its values joined with ``"\\n"``.

Masking (``edge-agent record --mask``) replaces every phone number (7 or more digits) by a stand-in that keeps
its first digits and length; the same number always gets the same stand-in within one trace, so the masked
trace interprets exactly like the original. Identifiers (Uniqueid, Linkedid, timestamps) are left alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

from edge_agent.ami.framing import AmiMessage
from edge_agent.errors import TraceError

__all__ = ["NumberMasker", "TraceReader", "TraceWriter", "read_trace"]

TIMESTAMP_KEY: Final = "_ts"

# 7+ digits (optionally after "+") that are not part of an Asterisk id like 1710140185.100 or pbx-1710140185.3
_PHONE = re.compile(r"(?<![\d.])\+?\d{7,}(?!\d|\.\d)")
_UNMASKED_KEYS = re.compile(r"(?i)(uniqueid|linkedid|timestamp|actionid|^_ts$|time$|^uptime|^lastreload)")
_KEEP_DIGITS: Final = 4


def text_at(text: str, index: int) -> str:
    return text[index] if 0 <= index < len(text) else ""


class NumberMasker:
    """Replaces phone numbers consistently within one trace, irreversibly (keyed by a random salt)."""

    def __init__(self, salt: bytes | None = None) -> None:
        self._salt = salt if salt is not None else os.urandom(16)
        self._cache: dict[str, str] = {}

    def mask_number(self, number: str) -> str:
        masked = self._cache.get(number)
        if masked is None:
            plus = "+" if number.startswith("+") else ""
            digits = number.removeprefix("+")
            keep = digits[:_KEEP_DIGITS]
            digest = hmac.new(self._salt, digits.encode(), hashlib.sha256).digest()
            filler = "".join(str(byte % 10) for byte in digest)
            while len(filler) < len(digits):
                filler += filler
            masked = plus + keep + filler[: len(digits) - len(keep)]
            self._cache[number] = masked
        return masked

    def mask_text(self, text: str) -> str:
        return _PHONE.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        number, start, end = match.group(0), match.start(), match.end()
        if len(number) == 8 and text_at(match.string, start - 1) == "-" and text_at(match.string, end) in ";,":
            return number  # a channel's sequence number (PJSIP/carrier-00000010), not a phone number
        return self.mask_number(number)

    def mask_message(self, message: AmiMessage) -> AmiMessage:
        return {key: value if _UNMASKED_KEYS.search(key) else self.mask_text(value) for key, value in message.items()}


class TraceWriter:
    """Appends AMI messages to a trace file, one JSON object per line, flushed line by line."""

    def __init__(self, stream: IO[str], *, masker: NumberMasker | None = None) -> None:
        self._stream = stream
        self._masker = masker
        self.count = 0

    def write(self, message: AmiMessage, received_at: float | None = None) -> None:
        record: dict[str, str | float] = dict(self._masker.mask_message(message) if self._masker else message)
        if received_at is not None:
            record[TIMESTAMP_KEY] = round(received_at, 6)
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._stream.flush()
        self.count += 1


class TraceReader:
    """Iterates a trace's messages; bad lines are reported in :attr:`errors` and skipped, never fatal."""

    def __init__(self, lines: Iterator[str] | IO[str], *, source: str = "<trace>") -> None:
        self._lines = lines
        self._source = source
        self.errors: list[str] = []

    def __iter__(self) -> Iterator[AmiMessage]:
        for number, line in enumerate(self._lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                self.errors.append(f"{self._source}:{number}: not JSON ({exc.msg})")
                continue
            if not isinstance(record, dict):
                self.errors.append(f"{self._source}:{number}: not a JSON object")
                continue
            message: AmiMessage = {}
            for key, value in record.items():
                if isinstance(value, str):
                    message[key] = value
                elif key == TIMESTAMP_KEY and isinstance(value, int | float):
                    message[key] = repr(float(value))
                else:
                    message[key] = str(value)
            yield message


def read_trace(path: str | Path) -> list[AmiMessage]:
    """Read a whole trace file; raise :class:`TraceError` if it cannot be opened."""
    try:
        with open(path, encoding="utf-8") as stream:
            return list(TraceReader(stream, source=str(path)))
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror}") from exc
