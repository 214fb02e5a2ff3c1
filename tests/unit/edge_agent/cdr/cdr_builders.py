"""Real CDR rows from the lab and a master.db like the lab's, for the CDR tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sandbox.cdr_fixtures import LAB_CDR_TABLE, add_table, lab_cdr_rows, write_master_db

ROOT = Path(__file__).resolve().parents[4]
TRACES = ROOT / "tests" / "fixtures" / "traces"
#: The table cdr_sqlite3_custom created on the lab.
LAB_TABLE = LAB_CDR_TABLE


def lab_rows() -> dict[str, list[dict[str, Any]]]:
    """Scenario name -> the CDR rows the lab's Asterisk wrote for the calls of tests/fixtures/traces/<name>."""
    return lab_cdr_rows()


def expected(name: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = json.loads((TRACES / f"{name}.expected.json").read_text())
    return calls


def lab_master_db(path: Path, rows: list[dict[str, Any]]) -> Path:
    return write_master_db(path, rows)


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
    return add_table(lab_master_db(path, cdr), LAB_CEL_TABLE, "cel", cel)
