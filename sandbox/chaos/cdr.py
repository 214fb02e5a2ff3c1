"""The PBX's CDR database for a chaos run: a SQLite ``cdr`` table laid out as the lab's ``cdr_sqlite3_custom``
writes it (sandbox/pbx_lab/config/pbx/cdr_sqlite3_custom.conf, with ``linkedid``), rows written when a call ends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["CdrDatabase"]

LAB_TABLE = (
    "CREATE TABLE IF NOT EXISTS cdr (AcctId INTEGER PRIMARY KEY, calldate,clid,src,dst,dcontext,channel,dstchannel,"
    "lastapp,lastdata,duration,billsec,disposition,amaflags,accountcode,uniqueid,userfield,did,recordingfile,linkedid,"
    "peeraccount,sequence)"
)


class CdrDatabase:
    """Asterisk's side of ``master.db``: it only appends. WAL, so the agent's read-only reads never wait on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.execute(LAB_TABLE)
        self.rows = 0

    @property
    def dsn(self) -> str:
        return f"sqlite://{self.path.resolve()}"

    def write(self, rows: Iterable[Mapping[str, str]]) -> None:
        with self._db:
            for row in rows:
                columns = ", ".join(row)
                self._db.execute(
                    f"INSERT INTO cdr ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values())
                )
                self.rows += 1

    def close(self) -> None:
        self._db.close()
