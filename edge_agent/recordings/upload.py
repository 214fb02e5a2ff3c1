"""The upload itself: one streaming HTTP ``PUT`` of a file to a pre-signed S3 URL.

Why a single ``PUT`` and not a multipart upload: S3 takes up to 5 GB in one ``PUT``, and the longest call's
recording is far below that (an hour of 8 kHz mono WAV is 58 MB; even 48 kHz stereo is 690 MB). A multipart
upload would let an interrupted upload resume, at the price of a create/parts/complete dance, per-part URLs
and an orphan-part cleanup; restarting an interrupted ``PUT`` costs at most one file's bytes again. The body
is read from disk in 1 MiB chunks with ``Content-Length`` set (S3 refuses chunked transfer encoding).

Integrity: the cloud signs the URL with the file's SHA-256 (``x-amz-checksum-sha256``, handed over in the
``headers``), so S3 refuses a body that does not hash to it (``BadDigest``, a failed attempt like any other).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx

from edge_agent.errors import EdgeAgentError
from edge_agent.recordings.files import CHUNK

__all__ = ["UploadError", "put_file"]

CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


class UploadError(EdgeAgentError):
    """The upload did not complete; the message says how (never the URL: it is a credential)."""


def _read_hashed(stream: BinaryIO, digest: Any) -> bytes:
    chunk = stream.read(CHUNK)
    digest.update(chunk)  # in the same thread as the read: the event loop never hashes (hashlib drops the GIL)
    return chunk


async def _chunks(path: Path, digest: Any) -> AsyncIterator[bytes]:
    with open(path, "rb") as stream:  # noqa: ASYNC230 - each read goes to a thread below
        while chunk := await asyncio.to_thread(_read_hashed, stream, digest):
            yield chunk


async def put_file(
    http: httpx.AsyncClient, url: str, headers: Mapping[str, str], path: Path, size: int, file_format: str
) -> str:
    """``PUT`` ``path`` (``size`` bytes) to ``url``; raises :class:`UploadError` unless S3 answered 2xx. Returns the
    SHA-256 of the bytes sent, hashed as they went (no second read): the caller compares it with the one it
    announced, which catches a file changed since it was hashed even where S3 does not check the checksum."""
    host = urlsplit(url).hostname or "?"
    sent = {"Content-Type": CONTENT_TYPES.get(file_format, "application/octet-stream"), **headers}
    sent["Content-Length"] = str(size)
    digest = hashlib.sha256()
    try:
        response = await http.put(url, content=_chunks(path, digest), headers=sent)
    except httpx.HTTPError as exc:
        raise UploadError(f"upload to {host} failed: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        code = _s3_code(response.text)
        raise UploadError(f"upload to {host} answered HTTP {response.status_code}" + (f" ({code})" if code else ""))
    return digest.hexdigest()


def _s3_code(body: str) -> str:
    start, end = body.find("<Code>"), body.find("</Code>")
    return body[start + 6 : end][:64] if 0 <= start < end else ""
