"""``[cdr]`` / ``EDGE_CDR_DSN``: where the PBX's CDR table is.

::

    sqlite:///var/log/asterisk/master.db                 cdr_sqlite3_custom (the path is absolute)
    postgresql://pbxlink:secret@127.0.0.1:5432/asterisk  cdr_pgsql / ODBC  (pip install 'pbxlink[cdr-postgres]')
    mysql://pbxlink:secret@127.0.0.1:3306/asteriskcdrdb  FreePBX           (pip install 'pbxlink[cdr-mysql]')

``?table=NAME`` picks another table than ``cdr``. The password is kept as a secret and never logged; the
``redacted`` form replaces it with ``***``.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["CdrDsn", "CdrSettings", "Engine", "parse_dsn"]

Engine = Literal["sqlite", "postgresql", "mysql"]
_SCHEMES: dict[str, Engine] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$")


@dataclass(frozen=True)
class CdrDsn:
    engine: Engine
    table: str
    path: str | None = None  # sqlite
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = None

    @property
    def redacted(self) -> str:
        if self.engine == "sqlite":
            return f"sqlite://{self.path} (table {self.table})"
        who = f"{self.user}:***@" if self.user and self.password else (f"{self.user}@" if self.user else "")
        return f"{self.engine}://{who}{self.host}:{self.port}/{self.database} (table {self.table})"


def parse_dsn(dsn: str) -> CdrDsn:
    """Parse a CDR DSN; ``ValueError`` says what is wrong with it (without repeating the password)."""
    parts = urlsplit(dsn.strip())
    engine = _SCHEMES.get(parts.scheme.lower())
    if engine is None:
        raise ValueError(
            f"unsupported CDR database {parts.scheme or dsn[:12]!r}: expected sqlite:///path, "
            "postgresql://user:password@host/db or mysql://user:password@host/db"
        )
    query = parse_qs(parts.query)
    unknown = set(query) - {"table"}
    if unknown:
        raise ValueError(f"unknown CDR DSN option(s) {sorted(unknown)}; only ?table=NAME is supported")
    table = query.get("table", ["cdr"])[-1]
    if not _TABLE.match(table):
        raise ValueError(f"CDR table name {table[:40]!r} is not a plain SQL name (letters, digits, _, one dot)")
    if engine == "sqlite":
        path = "/" + unquote(parts.path).lstrip("/") if parts.path.strip("/") else ""
        if parts.netloc or not path:
            raise ValueError("a SQLite CDR DSN is sqlite:///absolute/path/to/master.db (three slashes, then the path)")
        return CdrDsn(engine, table, path=path)
    try:
        port = parts.port or _DEFAULT_PORTS[engine]
    except ValueError:
        raise ValueError(f"the port in the {engine} CDR DSN is not a number") from None
    database = unquote(parts.path).strip("/")
    if not parts.hostname or not database:
        raise ValueError(f"a {engine} CDR DSN names a host and a database: {engine}://user:password@host:port/db")
    return CdrDsn(
        engine,
        table,
        host=parts.hostname,
        port=port,
        database=database,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class CdrSettings(BaseModel):
    """``[cdr]`` of the agent's config. Without a DSN there is no backfill (AMI only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dsn: SecretStr
    #: The zone CDR times are written in (Asterisk writes local time unless ``usegmtime``); "local" = this host's
    #: (named from ``TZ`` or ``/etc/localtime`` when possible, so summer time is right).
    timezone: str = "local"
    #: CDR rows are written when a call ends, sometimes late (``batch=yes`` buffers up to minutes): a gap is read
    #: again this many seconds after it closed.
    late_seconds: float = Field(default=120.0, ge=0, le=3600)
    #: The CEL table in the same database (``cel``), when Asterisk logs CEL there: adds transfers, and tells when a
    #: call is over. None: CDR only.
    cel_table: str | None = None
    #: The periodic check of the CDR against what the cloud holds (``edge_agent.cdr.reconcile``): how often
    #: (0: never) and how far back each looks. Within the 7 days the agent remembers calls it sent.
    reconcile_minutes: float = Field(default=60.0, ge=0, le=24 * 60)
    reconcile_hours: float = Field(default=24.0, gt=0, le=24 * 6)

    @field_validator("cel_table")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not _TABLE.match(value):
            raise ValueError(f"CEL table name {value[:40]!r} is not a plain SQL name (letters, digits, _, one dot)")
        return value

    @field_validator("dsn")
    @classmethod
    def _parses(cls, value: SecretStr) -> SecretStr:
        parse_dsn(value.get_secret_value())
        return value

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        if value != "local":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value[:40]!r}; use an IANA name like 'Europe/Moscow'") from None
        return value

    @property
    def parsed(self) -> CdrDsn:
        return parse_dsn(self.dsn.get_secret_value())

    @property
    def zone(self) -> tzinfo:
        return local_zone() if self.timezone == "local" else ZoneInfo(self.timezone)


def local_zone() -> tzinfo:
    """This host's zone with its summer-time rules when it can be named (``TZ``, or what ``/etc/localtime`` links
    to), else its current UTC offset."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1])
    for key in candidates:
        if key:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
                return ZoneInfo(key)
    offset = datetime.now().astimezone().tzinfo
    assert offset is not None
    return offset
