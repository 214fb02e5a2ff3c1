"""What the uploader does to a file: look at it, convert it to MP3 with Debian's ``lame`` or ``ffmpeg``, hash it.

Everything streams from disk in 1 MiB chunks: an hour-long WAV is hundreds of MB and never sits in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_agent.recordings.settings import RecordingsSettings
from edge_agent.recordings.steps import FileSeen
from wire_protocol.messages import RecordingFormat

__all__ = ["CHUNK", "Prepared", "find_converter", "look", "prepare", "remove", "size_and_sha256"]

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
#: A conversion taking longer than this is abandoned (the WAV is uploaded instead).
CONVERT_TIMEOUT = 1800.0


def look(path: Path) -> FileSeen | OSError | None:
    """Size and mtime; ``None`` if absent; the error if it exists but cannot be read."""
    try:
        stat = path.stat()
        with open(path, "rb") as stream:
            stream.read(1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc
    return FileSeen(stat.st_size, stat.st_mtime)


def find_converter(settings: RecordingsSettings) -> tuple[str, str] | None:
    """``(tool, executable)`` for MP3 conversion, or ``None`` (then WAV is uploaded and the call says why)."""
    if settings.converter == "none":
        return None
    for tool in ("lame", "ffmpeg") if settings.converter == "auto" else (settings.converter,):
        executable = shutil.which(tool)
        if executable:
            return tool, executable
    return None


def _command(tool: str, executable: str, source: Path, target: Path) -> list[str]:
    if tool == "lame":
        return [executable, "--quiet", "-b", "32", str(source), str(target)]
    return [executable, "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-codec:a", "libmp3lame",
            "-b:a", "32k", str(target)]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Prepared:
    path: Path
    format: RecordingFormat
    temporary: bool  # a conversion of ours, deleted after the upload
    note: str = ""


async def prepare(source: Path, wanted: str, settings: RecordingsSettings, work_dir: Path, name: str) -> Prepared:
    """The file to upload in the format the tenant wants when possible. MP3 from a WAV needs a converter;
    without one (or if it fails) the WAV goes, with a note: a recording in the wrong format beats none.
    Raises ``OSError`` when the source itself cannot be read."""
    suffix = source.suffix.lower()
    if suffix == ".mp3":
        return Prepared(source, "mp3", False)
    if suffix == ".wav" and wanted == "wav":
        return Prepared(source, "wav", False)
    if suffix != ".wav":
        raise OSError(f"{source.name}: Bitrix24 takes only .wav and .mp3 recordings")
    converter = find_converter(settings)
    if converter is None:
        return Prepared(source, "wav", False, "MP3 wanted but no lame or ffmpeg on the agent's PATH: uploaded WAV")
    tool, executable = converter
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    target = work_dir / f"{name}.mp3"
    process = await asyncio.create_subprocess_exec(
        *_command(tool, executable, source, target),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, errors = await asyncio.wait_for(process.communicate(), CONVERT_TIMEOUT)
        code = process.returncode
    except TimeoutError:
        process.kill()
        await process.wait()
        errors, code = b"timed out", -1
    except asyncio.CancelledError:  # the agent is stopping: no converter left writing behind it
        process.kill()
        await asyncio.shield(process.wait())
        remove(target)
        raise
    if code != 0 or not await asyncio.to_thread(_nonempty, target):
        detail = errors.decode("utf-8", "replace").strip()[:200] or f"exit code {code}"
        log.warning("recordings: %s could not convert %s (%s); uploading the WAV", tool, source.name, detail)
        remove(target)
        if not await asyncio.to_thread(source.exists):
            raise FileNotFoundError(source)
        return Prepared(source, "wav", False, f"MP3 conversion with {tool} failed ({detail}): uploaded WAV")
    return Prepared(target, "mp3", True)


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def size_and_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
