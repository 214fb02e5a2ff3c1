"""Thin readers of a CDR table: rows whose start falls in a period, as :class:`CdrRow`.

The columns are found at run time (FreePBX tables of different ages differ; old ones lack ``linkedid``), and
only the known ones are selected. The time filter compares the start column with naive local times in the
PBX's zone, as Asterisk writes them. Readers are synchronous (a few hundred rows per gap): the agent calls
them in a worker thread. PostgreSQL and MySQL drivers are optional extras, imported only when used.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from types import ModuleType
from typing import Any, Protocol

from edge_agent.errors import CdrError

from .rows import CdrRow, CelEvent, UnusableRow, cel_from_db, row_from_db
from .settings import CdrDsn, CdrSettings

__all__ = ["KNOWN_COLUMNS", "CdrReader", "DbApiCdrReader", "SqliteCdrReader", "open_reader"]

log = logging.getLogger(__name__)

KNOWN_COLUMNS = (
    "calldate", "start", "answer", "end", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
    "lastdata", "duration", "billsec", "disposition", "uniqueid", "linkedid", "sequence", "did", "recordingfile",
    "userfield",
)  # fmt: skip
_REQUIRED = ("channel", "uniqueid", "duration", "billsec", "disposition")


class CdrReader(Protocol):
    def rows(self, since: datetime, until: datetime) -> list[CdrRow]:
        """Rows whose leg started in ``[since, until)`` (aware datetimes)."""
        ...

    def cel_events(self, since: datetime, until: datetime) -> list[CelEvent]:
        """Transfer and end-of-call CEL events in ``[since, until)``; empty without a CEL table."""
        ...

    def close(self) -> None: ...


class _SqlReader:
    """What every SQL database shares: column discovery, the query, row conversion."""

    placeholder = "?"
    quote = '"'

    def __init__(self, dsn: CdrDsn, zone: tzinfo, cel_table: str | None = None) -> None:
        self.dsn = dsn
        self.zone = zone
        self.cel_table = cel_table
        self._columns: list[str] | None = None
        # The agent reads in a worker thread and closes from the event loop, also when a task is cancelled while
        # the worker is still inside a query: closing a connection under a running statement crashes the
        # process (SQLite), so a close during a read is done by the reading thread when the read ends.
        self._state = threading.Lock()
        self._reading = 0
        self._close_when_read = False

    @contextlib.contextmanager
    def _read(self) -> Iterator[None]:
        with self._state:
            self._reading += 1
        try:
            yield
        finally:
            with self._state:
                self._reading -= 1
                if self._reading == 0 and self._close_when_read:
                    self._close_when_read = False
                    self._disconnect()

    def close(self) -> None:
        """Close the connection now, or, while a read is running in another thread, as soon as it ends."""
        with self._state:
            if self._reading:
                self._close_when_read = True
            else:
                self._disconnect()

    def _connection(self) -> Any:
        raise NotImplementedError

    def _column_names(self) -> list[str]:
        with self._read():
            cursor = self._connection().cursor()
            try:
                cursor.execute(f"SELECT * FROM {self._table()} WHERE 1 = 0")
                return [str(d[0]).lower() for d in cursor.description or ()]
            finally:
                cursor.close()

    def _table(self, name: str | None = None) -> str:
        return ".".join(f"{self.quote}{part}{self.quote}" for part in (name or self.dsn.table).split("."))

    def columns(self) -> list[str]:
        if self._columns is None:
            present = self._column_names()
            missing = [c for c in _REQUIRED if c not in present]
            if missing or not ({"calldate", "start"} & set(present)):
                raise CdrError(
                    f"{self.dsn.redacted} is not an Asterisk CDR table: it lacks {missing or ['calldate or start']} "
                    "(set ?table=NAME in EDGE_CDR_DSN)"
                )
            if "linkedid" not in present:
                log.warning("cdr: %s has no linkedid column; each leg counts as its own call", self.dsn.redacted)
            self._columns = [c for c in KNOWN_COLUMNS if c in present]
        return self._columns

    def rows(self, since: datetime, until: datetime) -> list[CdrRow]:
        columns = self.columns()
        start = "start" if "start" in columns else "calldate"
        q = self.quote
        p = self.placeholder
        sql = (
            f"SELECT {', '.join(q + c + q for c in columns)} FROM {self._table()} "
            f"WHERE {q}{start}{q} >= {p} AND {q}{start}{q} < {p}"
        )
        try:
            fetched = self._fetch(sql, since, until)
        except CdrError:
            raise
        except Exception as exc:  # every driver has its own exception tree
            self._reset()
            raise CdrError(f"cannot read CDR rows from {self.dsn.redacted}: {_describe(exc)}") from None
        rows = []
        for values in fetched:
            try:
                rows.append(row_from_db(dict(zip(columns, values, strict=True)), self.zone))
            except UnusableRow as exc:
                log.warning("cdr: skipping a row: %s", exc)
        return rows

    def cel_events(self, since: datetime, until: datetime) -> list[CelEvent]:
        if self.cel_table is None:
            return []
        q, p = self.quote, self.placeholder
        columns = ("eventtype", "eventtime", "channame", "uniqueid", "linkedid", "extra")
        sql = (
            f"SELECT {', '.join(q + c + q for c in columns)} FROM {self._table(self.cel_table)} "
            f"WHERE {q}eventtime{q} >= {p} AND {q}eventtime{q} < {p} "
            f"AND {q}eventtype{q} IN ('BLINDTRANSFER', 'ATTENDEDTRANSFER', 'LINKEDID_END')"
        )
        try:
            fetched = self._fetch(sql, since, until)
        except CdrError:
            raise
        except Exception as exc:
            self._reset()
            raise CdrError(
                f"cannot read CEL table {self.cel_table} from {self.dsn.redacted}: {_describe(exc)} (it needs "
                f"the columns {', '.join(columns)}; or unset EDGE_CDR_CEL_TABLE)"
            ) from None
        events = []
        for values in fetched:
            try:
                events.append(cel_from_db(dict(zip(columns, values, strict=True)), self.zone))
            except UnusableRow as exc:
                log.warning("cdr: skipping a CEL row: %s", exc)
        return events

    def _fetch(self, sql: str, since: datetime, until: datetime) -> Sequence[Sequence[object]]:
        with self._read():
            cursor = self._connection().cursor()
            try:
                cursor.execute(sql, (self._local(since), self._local(until)))
                fetched: Sequence[Sequence[object]] = cursor.fetchall()
                return fetched
            finally:
                cursor.close()

    def _local(self, moment: datetime) -> Any:
        return moment.astimezone(self.zone).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S")

    def _reset(self) -> None:
        """Drop a connection a driver error may have left broken; the next read connects again."""
        self.close()

    def _disconnect(self) -> None:
        pass


class SqliteCdrReader(_SqlReader):
    """``cdr_sqlite3_custom``'s ``master.db``, opened read-only (Asterisk is the writer)."""

    def __init__(self, dsn: CdrDsn, zone: tzinfo, cel_table: str | None = None) -> None:
        super().__init__(dsn, zone, cel_table)
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            assert self.dsn.path is not None
            try:
                self._db = sqlite3.connect(  # used by one thread at a time (a worker), closed by another
                    f"file:{self.dsn.path}?mode=ro", uri=True, timeout=5.0, check_same_thread=False
                )
                self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                self._db = None
                raise CdrError(
                    f"cannot open the CDR database {self.dsn.path}: {exc} (does the file exist, and may this user "
                    "read it? Asterisk's cdr_sqlite3_custom writes master.db in its log directory)"
                ) from None
        return self._db

    def _column_names(self) -> list[str]:
        try:
            return super()._column_names()
        except sqlite3.Error as exc:
            raise CdrError(f"cannot read table {self.dsn.table} in {self.dsn.path}: {exc}") from None

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class DbApiCdrReader(_SqlReader):
    """PostgreSQL (psycopg 3) or MySQL/MariaDB (PyMySQL), through their DB-API connections."""

    placeholder = "%s"

    def __init__(self, dsn: CdrDsn, zone: tzinfo, connect: Callable[[], Any], cel_table: str | None = None) -> None:
        super().__init__(dsn, zone, cel_table)
        self.quote = "`" if dsn.engine == "mysql" else '"'
        self._connect = connect
        self._db: Any = None

    def _local(self, moment: datetime) -> Any:
        return moment.astimezone(self.zone).replace(tzinfo=None, microsecond=0)  # the drivers adapt datetimes

    def _connection(self) -> Any:
        if self._db is None:
            try:
                self._db = self._connect()
            except Exception as exc:
                raise CdrError(f"cannot connect to the CDR database {self.dsn.redacted}: {_describe(exc)}") from None
            if self.dsn.engine == "postgresql":
                self._db.autocommit = True  # no transaction left open on the PBX's database
        return self._db

    def _column_names(self) -> list[str]:
        try:
            return super()._column_names()
        except Exception as exc:
            self._reset()
            raise CdrError(f"cannot read table {self.dsn.table} from {self.dsn.redacted}: {_describe(exc)}") from None

    def _disconnect(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):  # a connection that is already broken
                self._db.close()
            self._db = None


def _driver(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CdrError(
            f"reading the CDR from this database needs the {module} package: pip install 'pbxlink[{extra}]'"
        ) from None


def open_reader(settings: CdrSettings) -> CdrReader:
    """A reader for the configured database; the driver is imported here, and a missing one is a CdrError."""
    dsn = settings.parsed
    zone = settings.zone
    cel = settings.cel_table
    if dsn.engine == "sqlite":
        return SqliteCdrReader(dsn, zone, cel)
    if dsn.engine == "postgresql":
        psycopg = _driver("psycopg", "cdr-postgres")

        def connect_pg() -> Any:
            return psycopg.connect(
                host=dsn.host, port=dsn.port, dbname=dsn.database, user=dsn.user, password=dsn.password,
                connect_timeout=10,
            )  # fmt: skip

        return DbApiCdrReader(dsn, zone, connect_pg, cel)
    pymysql = _driver("pymysql", "cdr-mysql")

    def connect_mysql() -> Any:
        return pymysql.connect(
            host=dsn.host, port=dsn.port, database=dsn.database, user=dsn.user, password=dsn.password or "",
            connect_timeout=10, read_timeout=60, charset="utf8mb4",
        )  # fmt: skip

    return DbApiCdrReader(dsn, zone, connect_mysql, cel)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def utc_now() -> datetime:
    return datetime.now(UTC)
