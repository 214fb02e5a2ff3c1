"""The durable outbox: every call event is on disk before it is sent, and leaves only when the cloud acks it.

One SQLite file (``outbox.db`` in ``EDGE_DATA_DIR``) in WAL mode with ``synchronous=FULL``:

- WAL, because appends (the interpreter) and reads/deletes (the link) interleave all day, and WAL commits
  write one sequential log instead of rewriting pages in place.
- ``synchronous=FULL``, because WAL's default ``NORMAL`` survives a ``kill -9`` but may lose the last
  commits on power loss (the WAL is fsynced only at checkpoints). With ``FULL`` every commit fsyncs the WAL
  before it returns, so an event the agent stored is on the platter even if the PBX host loses power. It
  costs one fsync per AMI message that produced call events (a few per call), which a PBX's call rate never
  notices; appends of one AMI message share one transaction.

Each event gets ``seq`` = ``INTEGER PRIMARY KEY AUTOINCREMENT``: strictly increasing and never reused, even
after every row was deleted, so the cloud's cumulative ack ("stored up to seq N") stays meaningful across
restarts.

Bound: ``max_events`` (default 1,000,000, about 0.5 GB). At 80 % a warning is logged, repeated as it grows;
at the bound an error is logged, repeated, and events are **still accepted**: refusing them would lose calls
for sure (AMI does not buffer), accepting them costs only disk. Nothing is ever dropped silently; if the disk
itself is full the append raises :class:`OutboxError` and the caller logs it as critical.

The ``calls`` table keeps, per call still in progress, the last per-call event seq stored. A restarted agent's
interpreter adopts calls in progress from the PBX's snapshot and numbers their events from 1 again; the
outbox continues each such call's numbering after what was stored before the restart, so ``event_id``
(``call_id:seq``) never names two different events and the cloud's idempotent store keeps both.

The ``ended_calls`` table remembers which calls' ``call_ended`` was stored (kept 7 days): a backfill from the PBX's
CDR database sends only calls the agent never ended itself. The ``meta`` table holds ``ami_covered_until`` (until
when the agent's AMI view is complete) and the gaps still to backfill (see ``edge_agent/cdr/backfill.py``).

The ``commands`` table is the at-most-once record of click-to-call commands: a command id is inserted
(``running``) before it reaches the PBX, so a second delivery of the same id never runs it again, and its
result is kept (``done``) until the cloud has surely seen it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import TypeAdapter

from edge_agent.errors import OutboxError
from wire_protocol.call_events import CallEvent
from wire_protocol.messages import CommandResult, SequencedEvent

__all__ = ["DEFAULT_MAX_EVENTS", "CommandRecord", "Outbox", "OutboxStats", "outbox_path"]

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS: Final = 1_000_000
WARN_RATIO: Final = 0.8
#: While over the warning level, repeat the warning every this many appended events.
WARN_EVERY: Final = 10_000

_EVENT: TypeAdapter[CallEvent] = TypeAdapter(CallEvent)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    stored_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    stored_at REAL NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ended_calls (
    call_id TEXT PRIMARY KEY,
    ended_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done')),
    result TEXT,
    finished_at REAL,
    delivered INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class CommandRecord:
    command_id: str
    state: Literal["running", "done"]
    result: CommandResult | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    max_events: int
    last_seq: int
    oldest_stored_at: float | None
    size_bytes: int
    rejected: int
    undelivered_results: int


class Outbox:
    """The outbox file; one instance per process, used from one thread (the event loop)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_events < 1:
            raise OutboxError(f"outbox_max_events must be at least 1, got {max_events}")
        self.path = Path(path)
        self.max_events = max_events
        self._clock = clock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox {self.path}: the file system refused WAL mode ({mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA journal_size_limit=67108864")  # truncate the WAL to 64 MB after checkpoints
            self._db.executescript(_SCHEMA)
            self._depth = int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        self._since_warning = 0
        #: The highest seq this instance has counted (its own appends, or a recount after another process's).
        self._seen_seq = self.last_seq
        #: call id -> what to add to the interpreter's per-call seq (non-zero for calls adopted after a restart)
        self._offsets: dict[str, int] = {}
        self._level = self._level_of(self._depth)
        if self._level != "ok":
            self._warn()

    def close(self) -> None:
        self._db.close()

    # -- events ---------------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Events stored and not yet acknowledged."""
        return self._depth

    def append(self, events: Sequence[CallEvent]) -> list[SequencedEvent]:
        """Store events in one transaction (one fsync); returns them with their ``seq`` (and their per-call
        seq continued after a restart, see the module docstring)."""
        if not events:
            return []
        now = self._clock()
        stored: list[SequencedEvent] = []
        try:
            with self._transaction():
                for original in events:
                    event = self._continue_numbering(original, now)
                    cursor = self._db.execute(
                        "INSERT INTO events (event_id, stored_at, body) VALUES (?, ?, ?)",
                        (event.event_id, now, event.model_dump_json(by_alias=True)),
                    )
                    stored.append(SequencedEvent(seq=int(cursor.lastrowid or 0), event=event))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot store {len(events)} call event(s) in {self.path}: {exc}") from exc
        self._depth += len(stored)
        self._seen_seq = max(self._seen_seq, stored[-1].seq)
        self._check_bound(len(stored))
        for item in stored:
            if item.event.type == "call_ended":
                self._offsets.pop(item.event.call_id, None)
        return stored

    def _continue_numbering(self, event: CallEvent, now: float) -> CallEvent:
        call_id = event.call_id
        offset = self._offsets.get(call_id)
        if offset is None:  # first event of this call in this process: was it numbered before a restart?
            row = self._db.execute("SELECT last_seq FROM calls WHERE call_id = ?", (call_id,)).fetchone()
            offset = self._offsets[call_id] = int(row[0]) if row else 0
            if offset:
                log.info(
                    "outbox: call %s continues after a restart; its events are numbered from %d", call_id, offset + 1
                )
        if offset:
            event = event.model_copy(update={"seq": event.seq + offset})
        if event.type == "call_ended":
            self._db.execute("DELETE FROM calls WHERE call_id = ?", (call_id,))
            self._db.execute("INSERT OR REPLACE INTO ended_calls (call_id, ended_at) VALUES (?, ?)", (call_id, now))
        else:
            self._db.execute(
                "INSERT INTO calls (call_id, last_seq, updated_at) VALUES (?, ?, ?) ON CONFLICT (call_id) "
                "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq), updated_at = excluded.updated_at",
                (call_id, event.seq, now),
            )
        return event

    def prune_calls(self, older_than: float) -> int:
        """Forget calls not heard of since ``older_than`` (they ended while the agent was away)."""
        with self._transaction():
            return int(self._db.execute("DELETE FROM calls WHERE updated_at < ?", (older_than,)).rowcount)

    def ended_call_ids(self, call_ids: Sequence[str]) -> set[str]:
        """Which of ``call_ids`` this outbox already stored a ``call_ended`` for (within the memory kept)."""
        found: set[str] = set()
        ids = list(call_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT call_id FROM ended_calls WHERE call_id IN ({marks})", chunk).fetchall()
            found.update(call_id for (call_id,) in rows)
        return found

    def started_call_ids(self, call_ids: Sequence[str]) -> set[str]:
        """Which of ``call_ids`` have events stored but no ``call_ended`` (they started while the agent watched)."""
        found: set[str] = set()
        ids = list(call_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT call_id FROM calls WHERE call_id IN ({marks})", chunk).fetchall()
            found.update(call_id for (call_id,) in rows)
        return found

    def prune_ended_calls(self, older_than: float) -> int:
        """Forget ended calls stored before ``older_than``."""
        with self._transaction():
            return int(self._db.execute("DELETE FROM ended_calls WHERE ended_at < ?", (older_than,)).rowcount)

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or, with ``None``, delete) a ``meta`` value, durably."""
        try:
            with self._transaction():
                if value is None:
                    self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write {key} to the outbox {self.path}: {exc}") from exc

    def appended_elsewhere(self) -> bool:
        """Did another process (``edge-agent backfill``) append events since we last looked? Then the depth is
        recounted. Cheap enough to ask every second: one lookup in ``sqlite_sequence``."""
        top = self.last_seq
        if top <= self._seen_seq:
            return False
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        self._seen_seq = top
        return True

    def pending(self, after_seq: int = 0, limit: int = 1000) -> list[SequencedEvent]:
        """Unacknowledged events with ``seq > after_seq``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [SequencedEvent(seq=seq, event=_EVENT.validate_json(body)) for seq, body in rows]

    def ack(self, up_to_seq: int) -> int:
        """The cloud stored everything up to ``up_to_seq``: forget it. Returns how many events went."""
        try:
            with self._transaction():
                deleted = self._db.execute("DELETE FROM events WHERE seq <= ?", (up_to_seq,)).rowcount
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot delete acknowledged events from {self.path}: {exc}") from exc
        self._depth -= deleted
        if deleted and self._level != "ok" and self._level_of(self._depth) == "ok":
            log.info("outbox %s: back to %d events, under the warning level", self.path, self._depth)
            self._level = "ok"
        return deleted

    @property
    def last_seq(self) -> int:
        """The highest seq ever assigned (0 for a new outbox)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    @property
    def welcomed(self) -> bool:
        """Has a cloud ever welcomed this outbox file? (If not, the cloud's acks are about another file.)"""
        return self._db.execute("SELECT 1 FROM meta WHERE key = 'welcomed'").fetchone() is not None

    def mark_welcomed(self) -> None:
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('welcomed', '1')")

    def renumber_after(self, floor: int, *, force: bool = False) -> int:
        """Move the sequence above ``floor``: the cloud's acks up to ``floor`` are about seqs another outbox
        assigned (the data directory was reset). Pending events are renumbered in order so none hides under the
        cloud's ack. Without ``force`` only when this outbox never reached ``floor`` itself."""
        if floor <= self.last_seq and not force:
            return 0
        try:
            with self._transaction():
                rows = self._db.execute("SELECT seq FROM events ORDER BY seq").fetchall()
                # two passes through negative numbers so no new seq collides with an old one
                for index, (seq,) in enumerate(rows, start=1):
                    self._db.execute("UPDATE events SET seq = ? WHERE seq = ?", (-index, seq))
                self._db.execute("UPDATE events SET seq = ? - seq WHERE seq < 0", (floor,))
                top = floor + len(rows)
                if self._db.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'events'").fetchone():
                    self._db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (top,))
                else:
                    self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (top,))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot renumber the outbox {self.path}: {exc}") from exc
        self._seen_seq = max(self._seen_seq, top)
        return len(rows)

    def reject(self, seq: int, reason: str) -> None:
        """Set aside an event the cloud can never accept (kept in table ``rejected`` for support)."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO rejected SELECT seq, event_id, stored_at, body, ? FROM events WHERE seq = ?",
                (reason, seq),
            )
            deleted = self._db.execute("DELETE FROM events WHERE seq = ?", (seq,)).rowcount
        self._depth -= deleted
        log.error("outbox %s: event seq %d set aside in table 'rejected': %s", self.path, seq, reason)

    # -- commands -------------------------------------------------------------------------------------

    def begin_command(self, command_id: str) -> CommandRecord | None:
        """Claim ``command_id`` for execution. ``None``: claimed now, run it. A record: it was seen before."""
        with self._transaction():
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO commands (command_id, received_at, state) VALUES (?, ?, 'running')",
                (command_id, self._clock()),
            ).rowcount
        if inserted:
            return None
        return self.command(command_id)

    def command(self, command_id: str) -> CommandRecord | None:
        row = self._db.execute("SELECT state, result FROM commands WHERE command_id = ?", (command_id,)).fetchone()
        if row is None:
            return None
        state, result = row
        return CommandRecord(command_id, state, CommandResult.model_validate_json(result) if result else None)

    def finish_command(self, result: CommandResult) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE commands SET state = 'done', result = ?, finished_at = ?, delivered = 0 WHERE command_id = ?",
                (result.model_dump_json(), self._clock(), result.command_id),
            )

    def recover_interrupted(self) -> list[CommandResult]:
        """Commands left ``running`` by a crash: the PBX may or may not have rung. Never run them again;
        record an ``unknown`` result for the cloud instead."""
        rows = self._db.execute("SELECT command_id FROM commands WHERE state = 'running'").fetchall()
        results = [
            CommandResult(
                command_id=command_id,
                ok=False,
                code="unknown",
                message="the agent stopped while running this command; the call may or may not have been placed",
            )
            for (command_id,) in rows
        ]
        for result in results:
            self.finish_command(result)
        return results

    def undelivered_results(self, finished_after: float = 0.0) -> list[CommandResult]:
        rows = self._db.execute(
            "SELECT result FROM commands WHERE state = 'done' AND delivered = 0 AND finished_at >= ? "
            "ORDER BY finished_at",
            (finished_after,),
        ).fetchall()
        return [CommandResult.model_validate_json(result) for (result,) in rows]

    def mark_delivered(self, command_ids: Sequence[str]) -> None:
        if command_ids:
            with self._transaction():
                self._db.executemany(
                    "UPDATE commands SET delivered = 1 WHERE command_id = ?", [(c,) for c in command_ids]
                )

    def prune_commands(self, older_than: float) -> int:
        """Forget finished commands received before ``older_than`` (the cloud never resends that late)."""
        with self._transaction():
            return int(
                self._db.execute(
                    "DELETE FROM commands WHERE state = 'done' AND received_at < ?", (older_than,)
                ).rowcount
            )

    # -- state ----------------------------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        oldest = self._db.execute("SELECT MIN(stored_at) FROM events").fetchone()[0]
        rejected = int(self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0])
        undelivered = int(
            self._db.execute("SELECT COUNT(*) FROM commands WHERE state = 'done' AND delivered = 0").fetchone()[0]
        )
        size = sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")) if p.exists()
        )
        return OutboxStats(self._depth, self.max_events, self.last_seq, oldest, size, rejected, undelivered)

    # -- internals ------------------------------------------------------------------------------------

    def _transaction(self) -> _Commit:
        self._db.execute("BEGIN IMMEDIATE")
        return _Commit(self._db)

    def _level_of(self, depth: int) -> Literal["ok", "warn", "full"]:
        if depth >= self.max_events:
            return "full"
        return "warn" if depth >= self.max_events * WARN_RATIO else "ok"

    def _check_bound(self, added: int) -> None:
        level = self._level_of(self._depth)
        self._since_warning += added
        if level != "ok" and (level != self._level or self._since_warning >= WARN_EVERY):
            self._level = level
            self._warn()
        self._level = level

    def _warn(self) -> None:
        self._since_warning = 0
        if self._level == "full":
            log.error(
                "OUTBOX FULL: %s holds %d unacknowledged call events (bound %d). Still storing new ones (nothing "
                "is dropped) but the cloud has not acknowledged anything for a long time: check the link "
                "(edge-agent doctor) and free disk space.",
                self.path,
                self._depth,
                self.max_events,
            )
        else:
            log.warning(
                "outbox %s is %d%% full (%d of %d unacknowledged call events): is the cloud reachable? "
                "(edge-agent doctor)",
                self.path,
                100 * self._depth // self.max_events,
                self._depth,
                self.max_events,
            )


class _Commit:
    """``with outbox._transaction():`` commits on success, rolls back on error (BEGIN already issued)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        return self._db

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def outbox_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "outbox.db"
