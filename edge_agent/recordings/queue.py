"""Pending recording uploads, in table ``recordings`` of the outbox's SQLite file (WAL, ``synchronous=FULL``).

A row is added in the same process step that stores the call's ``call_ended`` (so a restart finds it) and
leaves only when the cloud confirmed the result (``recording_ack``) or declined the recording. States:

``waiting``    the call ended; the file may still grow (MixMonitor flushes after hangup)
``ready``      the file is complete; the agent prepares it (MP3 if wanted) and hashes it (``prepared``), then
               asks the cloud for an upload URL announcing that SHA-256
``uploading``  a ``PUT`` is running; a restart finds it here and starts again from ``ready`` (a URL expires,
               and a single ``PUT`` cannot resume: the whole file goes again)
``reported``   the result is stored and sent until the cloud acknowledges it
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from edge_agent.errors import OutboxError
from wire_protocol.messages import RecordingFormat, RecordingResult

__all__ = ["PreparedUpload", "RecordingQueue", "RecordingRow", "State"]

State = Literal["waiting", "ready", "uploading", "reported"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    call_id TEXT PRIMARY KEY,
    pbx_path TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    ended_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'ready', 'uploading', 'reported')),
    size INTEGER,
    mtime REAL,
    stable_since REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    result TEXT,
    updated_at REAL NOT NULL,
    prepared TEXT
);
"""
#: Columns added after the first release, for queue files created before them.
_ADDED = {"prepared": "TEXT"}


class PreparedUpload(BaseModel):
    """The file that will be uploaded (the WAV itself, or our MP3 of it) with its SHA-256, computed before the
    agent asks for a URL: the cloud signs the ``PUT`` with it. ``wanted``: the format asked for when preparing
    (a different answer from the cloud means preparing again)."""

    model_config = ConfigDict(frozen=True)

    path: str
    format: RecordingFormat
    wanted: RecordingFormat
    size: int
    sha256: str
    temporary: bool  # our conversion, deleted once the recording is done
    note: str = ""


@dataclass(frozen=True, slots=True)
class RecordingRow:
    call_id: str
    pbx_path: str
    event_seq: int  # the outbox seq of the call's ``call_ended``: the cloud must hold the call before we ask
    ended_at: float
    state: State
    size: int | None = None
    mtime: float | None = None
    stable_since: float | None = None  # since when size and mtime have not changed
    attempts: int = 0
    next_at: float = 0.0  # not before (backoff)
    result: str | None = None  # the RecordingResult JSON, once there is one
    updated_at: float = 0.0
    prepared: str | None = None  # the PreparedUpload JSON, once hashed

    @property
    def stored_result(self) -> RecordingResult | None:
        return RecordingResult.model_validate_json(self.result) if self.result else None

    @property
    def prepared_upload(self) -> PreparedUpload | None:
        return PreparedUpload.model_validate_json(self.prepared) if self.prepared else None


_COLUMNS = [f.name for f in fields(RecordingRow)]


class RecordingQueue:
    """One connection of its own on the outbox file (the event loop's thread only)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            present = {row[1] for row in self._db.execute("PRAGMA table_info(recordings)")}
            for column, kind in _ADDED.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE recordings ADD COLUMN {column} {kind}")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the recordings queue in {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def add(self, call_id: str, pbx_path: str, event_seq: int, ended_at: float) -> bool:
        """Queue a call's recording (once: a call ends once, a second ``add`` changes nothing)."""
        try:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO recordings (call_id, pbx_path, event_seq, ended_at, state, updated_at) "
                "VALUES (?, ?, ?, ?, 'waiting', ?)",
                (call_id, pbx_path, event_seq, ended_at, ended_at),
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot queue the recording of {call_id} in {self.path}: {exc}") from exc
        return bool(cursor.rowcount)

    def rows(self) -> list[RecordingRow]:
        cursor = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM recordings ORDER BY ended_at")
        return [RecordingRow(*row) for row in cursor.fetchall()]

    def get(self, call_id: str) -> RecordingRow | None:
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM recordings WHERE call_id = ?", (call_id,)).fetchone()
        return RecordingRow(*row) if row else None

    def update(self, call_id: str, now: float, **changes: Any) -> None:
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown recording columns {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in changes)
        self._db.execute(
            f"UPDATE recordings SET {assignments}, updated_at = ? WHERE call_id = ?",
            (*changes.values(), now, call_id),
        )

    def report(self, call_id: str, result: RecordingResult, now: float) -> None:
        """Store the result (durably, before it is sent): it goes out until the cloud acknowledges it."""
        self.update(call_id, now, state="reported", result=result.model_dump_json())

    def delete(self, call_id: str) -> bool:
        return bool(self._db.execute("DELETE FROM recordings WHERE call_id = ?", (call_id,)).rowcount)

    def recover(self, now: float) -> int:
        """After a restart: uploads that were running start again (with a fresh URL)."""
        cursor = self._db.execute(
            "UPDATE recordings SET state = 'ready', updated_at = ? WHERE state = 'uploading'", (now,)
        )
        return int(cursor.rowcount)

    def event_pending(self, seq: int) -> bool:
        """Is the outbox event ``seq`` still waiting for the cloud's ack?"""
        try:
            return self._db.execute("SELECT 1 FROM events WHERE seq = ?", (seq,)).fetchone() is not None
        except sqlite3.OperationalError:  # no events table: a queue file without an outbox (tests)
            return False
