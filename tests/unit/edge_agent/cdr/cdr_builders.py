"""Real CDR rows from the lab and a master.db like the lab's, for the CDR tests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[4]
LAB_ROWS = ROOT / "tests" / "fixtures" / "cdr" / "lab_master_db_rows.json"
TRACES = ROOT / "tests" / "fixtures" / "traces"

#: The table cdr_sqlite3_custom created on the lab (sandbox/pbx_lab/config/pbx/cdr_sqlite3_custom.conf).
LAB_TABLE = (
    "CREATE TABLE cdr (AcctId INTEGER PRIMARY KEY, calldate,clid,src,dst,dcontext,channel,dstchannel,lastapp,"
    "lastdata,duration,billsec,disposition,amaflags,accountcode,uniqueid,userfield,did,recordingfile,linkedid,"
    "peeraccount,sequence)"
)


def lab_rows() -> dict[str, list[dict[str, Any]]]:
    """Scenario name -> the CDR rows the lab's Asterisk wrote for the calls of tests/fixtures/traces/<name>."""
    rows: dict[str, list[dict[str, Any]]] = json.loads(LAB_ROWS.read_text())
    return rows


def expected(name: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = json.loads((TRACES / f"{name}.expected.json").read_text())
    return calls


def lab_master_db(path: Path, rows: list[dict[str, Any]]) -> Path:
    db = sqlite3.connect(path)
    with db:
        db.execute(LAB_TABLE)
        for row in rows:
            columns = ", ".join(row)
            db.execute(f"INSERT INTO cdr ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    db.close()
    return path


LAB_CEL = ROOT / "tests" / "fixtures" / "cdr" / "lab_cel_calls.json"
#: The table cel_sqlite3_custom created on the lab (sandbox/pbx_lab/config/pbx/cel_sqlite3_custom.conf).
LAB_CEL_TABLE = (
    "CREATE TABLE cel (AcctId INTEGER PRIMARY KEY, eventtype,eventtime,cid_name,cid_num,context,exten,channame,"
    "appname,appdata,uniqueid,linkedid,peer,extra)"
)


def lab_cel_calls() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Scenario -> {"expected": its summaries, "cdr": the rows, "cel": the CEL rows} from the lab with CEL on."""
    calls: dict[str, dict[str, list[dict[str, Any]]]] = json.loads(LAB_CEL.read_text())
    return calls


def lab_master_db_with_cel(path: Path, cdr: list[dict[str, Any]], cel: list[dict[str, Any]]) -> Path:
    lab_master_db(path, cdr)
    db = sqlite3.connect(path)
    with db:
        db.execute(LAB_CEL_TABLE)
        for row in cel:
            db.execute(f"INSERT INTO cel ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    db.close()
    return path
