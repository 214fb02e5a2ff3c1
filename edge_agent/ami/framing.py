"""AMI framing, sans-I/O: bytes in, messages out.

AMI is a line protocol: ``Key: Value`` lines, a blank line ends a message, and the server sends one banner
line (``Asterisk Call Manager/9.0.0``) with no blank line after it. A message is a plain ``dict[str, str]``
whose keys and values are exactly what Asterisk sent; a key sent twice (``ChanVariable``, ``Variable``)
keeps all its values joined with ``"\\n"`` (AMI values never contain a newline, so nothing is lost).

The parser never raises on bad input: lines that are not ``Key: Value`` are counted in
:attr:`AmiFramer.malformed_lines` and skipped, and a message that never ends is cut at
:data:`MAX_MESSAGE_BYTES` so memory stays bounded.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BANNER_PREFIX", "MAX_MESSAGE_BYTES", "AmiFramer", "AmiMessage", "format_action"]

AmiMessage = dict[str, str]

BANNER_PREFIX: Final = "Asterisk Call Manager/"
#: A single AMI message larger than this is garbage (real ones are a few KB); it is dropped.
MAX_MESSAGE_BYTES: Final = 1 << 20


class AmiFramer:
    """Incremental AMI parser; feed it whatever the socket returned, in any chunking."""

    __slots__ = ("_buffer", "banner", "dropped_bytes", "malformed_lines")

    def __init__(self, *, expect_banner: bool = True) -> None:
        # Appended to in place and searched only where new bytes arrived: a message dripping in byte by byte
        # costs linear time, not a copy of everything buffered per read (that was quadratic: 83 s for 200 KB).
        self._buffer = bytearray()
        #: The banner line (``Asterisk Call Manager/x.y.z``) once seen; ``""`` when none is expected.
        self.banner: str | None = None if expect_banner else ""
        self.malformed_lines = 0
        self.dropped_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held for a message not complete yet (never more than :data:`MAX_MESSAGE_BYTES`)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[AmiMessage]:
        """Consume ``data``; return the messages it completed, in order."""
        buffer = self._buffer
        scan_from = max(len(buffer) - 1, 0)  # what was buffered holds no blank line, except across the seam
        buffer += data.replace(b"\r", b"")
        if self.banner is None:
            newline = buffer.find(b"\n")
            if newline < 0:
                self._bound()
                return []
            first = bytes(buffer[:newline]).decode("utf-8", "replace")
            if first.startswith(BANNER_PREFIX):
                self.banner = first
                del buffer[: newline + 1]
            else:
                self.banner = ""  # not an Asterisk banner: treat the bytes as messages
            scan_from = 0
        messages: list[AmiMessage] = []
        start = 0
        while (end := buffer.find(b"\n\n", max(start, scan_from))) >= 0:
            if end > start:
                message = self._parse_block(bytes(buffer[start:end]))
                if message:
                    messages.append(message)
            start = end + 2
        del buffer[:start]
        self._bound()
        return messages

    def _bound(self) -> None:
        if len(self._buffer) > MAX_MESSAGE_BYTES:
            self.dropped_bytes += len(self._buffer)
            self.malformed_lines += 1
            self._buffer.clear()

    def _parse_block(self, block: bytes) -> AmiMessage:
        message: AmiMessage = {}
        for line in block.decode("utf-8", "replace").split("\n"):
            key, sep, value = line.partition(": ")
            if not sep:
                if not line:
                    continue
                if line.endswith(":") and " " not in line:  # "Key:" with the trailing space stripped
                    key, value = line[:-1], ""
                else:
                    self.malformed_lines += 1
                    continue
            if key in message:
                message[key] += "\n" + value
            else:
                message[key] = value
        return message


def format_action(fields: dict[str, str]) -> bytes:
    """Serialize an action (or, for test servers, a response/event) to AMI wire bytes."""
    lines: list[str] = []
    for key, value in fields.items():
        lines.extend(f"{key}: {part}" for part in value.split("\n"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
