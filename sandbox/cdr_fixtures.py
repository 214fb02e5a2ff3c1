"""The lab's CDR as a SQLite ``master.db``: the rows Asterisk 22 wrote for the recorded scenarios
(``tests/fixtures/cdr/``), in the table ``cdr_sqlite3_custom`` creates on the lab
(``sandbox/pbx_lab/config/pbx/cdr_sqlite3_custom.conf``). For tests and the fault suite."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

__all__ = ["LAB_CDR_ROWS", "LAB_CDR_TABLE", "add_table", "lab_cdr_rows", "write_master_db"]

LAB_CDR_ROWS: Final = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "cdr" / "lab_master_db_rows.json"
LAB_CDR_TABLE: Final = (
    "CREATE TABLE cdr (AcctId INTEGER PRIMARY KEY, calldate,clid,src,dst,dcontext,channel,dstchannel,lastapp,"
    "lastdata,duration,billsec,disposition,amaflags,accountcode,uniqueid,userfield,did,recordingfile,linkedid,"
    "peeraccount,sequence)"
)


def lab_cdr_rows() -> dict[str, list[dict[str, Any]]]:
    """Scenario name -> the CDR rows the lab's Asterisk wrote for the calls of tests/fixtures/traces/<name>."""
    rows: dict[str, list[dict[str, Any]]] = json.loads(LAB_CDR_ROWS.read_text())
    return rows


def add_table(path: Path, create: str, table: str, rows: Iterable[dict[str, Any]]) -> Path:
    """Create a table in the SQLite file at ``path`` (``create``: its statement) and insert ``rows`` into it."""
    db = sqlite3.connect(path)
    with db:
        db.execute(create)
        for row in rows:
            db.execute(
                f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
    db.close()
    return path


def write_master_db(path: Path, rows: Iterable[dict[str, Any]] | None = None) -> Path:
    """A ``master.db`` with ``rows`` (default: every scenario's)."""
    if rows is None:
        rows = [row for scenario in lab_cdr_rows().values() for row in scenario]
    return add_table(path, LAB_CDR_TABLE, "cdr", rows)
