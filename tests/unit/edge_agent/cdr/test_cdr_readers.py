"""The SQLite reader on a master.db laid out as the lab's Asterisk writes it (and as Asterisk's own schema),
and the clear errors of every reader."""

from __future__ import annotations

import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cdr_builders import lab_master_db, lab_rows

from edge_agent.cdr.readers import open_reader
from edge_agent.cdr.settings import CdrSettings
from edge_agent.errors import CdrError


def settings(dsn: str, timezone: str = "UTC") -> CdrSettings:
    return CdrSettings.model_validate({"dsn": dsn, "timezone": timezone})


def test_reads_the_rows_of_a_period_from_a_lab_master_db(tmp_path: Path) -> None:
    all_rows = [row for rows in lab_rows().values() for row in rows]
    db = lab_master_db(tmp_path / "master.db", all_rows)
    reader = open_reader(settings(f"sqlite://{db}"))
    since, until = datetime(2026, 11, 26, 9, 52, 17, tzinfo=UTC), datetime(2026, 11, 26, 9, 52, 24, tzinfo=UTC)
    rows = reader.rows(since, until)
    reader.close()
    assert rows and all(since <= r.start < until for r in rows)
    assert len(rows) == sum(1 for r in all_rows if "2026-11-26 09:52:17" <= r["calldate"] < "2026-11-26 09:52:24")
    assert {r.call_id for r in rows} >= {"pbx-1795686737.108", "pbx-1795686743.117"}


def test_a_close_during_a_read_in_another_thread_waits_for_the_read_to_end(tmp_path: Path) -> None:
    """The agent's backfill and check tasks close their reader when cancelled, while the worker thread may still
    be inside the query: closing SQLite under a running statement crashed the test process once (CI, segfault)."""
    all_rows = [row for rows in lab_rows().values() for row in rows]
    reader = open_reader(settings(f"sqlite://{lab_master_db(tmp_path / 'master.db', all_rows)}"))
    reader.rows(datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 2, tzinfo=UTC))  # connected, columns known
    connection = reader._connection()  # type: ignore[attr-defined]
    inside, release = threading.Event(), threading.Event()

    def hold_the_query() -> int:
        if not inside.is_set():
            inside.set()
            release.wait(10)
        return 0  # go on

    connection.set_progress_handler(hold_the_query, 1)
    read: list[object] = []
    worker = threading.Thread(
        target=lambda: read.append(reader.rows(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)))
    )
    worker.start()
    assert inside.wait(10)
    reader.close()  # returns at once, the query still running
    release.set()
    worker.join(10)
    assert read and len(read[0]) == len(all_rows)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")  # closed by the reading thread when the read ended
    assert len(reader.rows(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))) == len(all_rows)
    reader.close()


def test_the_period_is_compared_in_the_pbx_zone(tmp_path: Path) -> None:
    db = lab_master_db(tmp_path / "master.db", lab_rows()["outbound_answered"])  # 09:53:06 on the PBX's clock
    reader = open_reader(settings(f"sqlite://{db}", "Europe/Moscow"))  # = 06:53:06 UTC
    assert reader.rows(datetime(2026, 11, 26, 6, 53, tzinfo=UTC), datetime(2026, 11, 26, 6, 54, tzinfo=UTC))
    assert not reader.rows(datetime(2026, 11, 26, 9, 53, tzinfo=UTC), datetime(2026, 11, 26, 9, 54, tzinfo=UTC))
    reader.close()


def test_asterisks_own_schema_with_start_answer_end(tmp_path: Path) -> None:
    path = tmp_path / "asterisk.db"
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "CREATE TABLE cdr (accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start, "
            'answer, "end", duration INTEGER, billsec INTEGER, disposition, amaflags, userfield, uniqueid, linkedid, '
            "peeraccount, sequence INTEGER)"
        )
        db.execute(
            "INSERT INTO cdr VALUES ('', '101', '79031112233', 'from-internal', '', 'PJSIP/101-00000001', "
            "'PJSIP/carrier-00000002', 'Dial', 'PJSIP/79031112233@carrier', '2026-11-26 10:00:00', "
            "'2026-11-26 10:00:05', '2026-11-26 10:00:25', 25, 20, 'ANSWERED', 'DOCUMENTATION', '', 'a.1', 'a.1', "
            "'', 1)"
        )
    db.close()
    reader = open_reader(settings(f"sqlite://{path}"))
    [row] = reader.rows(datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    reader.close()
    assert row.answer == datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC) and row.billsec == 20


def test_a_missing_file_a_wrong_table_and_a_non_cdr_table_are_cdr_errors(tmp_path: Path) -> None:
    period = (datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    with pytest.raises(CdrError, match="cannot open the CDR database"):
        open_reader(settings(f"sqlite://{tmp_path}/nope/master.db")).rows(*period)
    db = lab_master_db(tmp_path / "master.db", [])
    with pytest.raises(CdrError, match="cannot read table cel"):
        open_reader(settings(f"sqlite://{db}?table=cel")).rows(*period)
    sqlite3.connect(db).execute("CREATE TABLE other (id, calldate)").connection.commit()
    with pytest.raises(CdrError, match="is not an Asterisk CDR table"):
        open_reader(settings(f"sqlite://{db}?table=other")).rows(*period)


@pytest.mark.parametrize(
    ("dsn", "module", "extra"),
    [
        ("postgresql://u:p@127.0.0.1/asterisk", "psycopg", "cdr-postgres"),
        ("mysql://u:p@127.0.0.1/x", "pymysql", "cdr-mysql"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(
    dsn: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail, installed or not
    with pytest.raises(CdrError, match=rf"pip install 'pbxlink\[{extra}\]'"):
        open_reader(settings(dsn))


def test_an_unreachable_server_is_a_cdr_error_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    class Driver:
        @staticmethod
        def connect(**kwargs: object) -> object:
            raise OSError(f"connection refused by {kwargs['host']}")

    monkeypatch.setitem(sys.modules, "pymysql", Driver)
    reader = open_reader(settings("mysql://freepbx:hunter2hunter2@127.0.0.1/asteriskcdrdb"))
    with pytest.raises(CdrError) as caught:
        reader.rows(datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    assert "connection refused" in str(caught.value) and "hunter2" not in str(caught.value)


def test_local_zone_is_named_from_tz_when_it_can_be(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Moscow")
    assert settings("sqlite:///x.db", "local").zone == ZoneInfo("Europe/Moscow")
    monkeypatch.setenv("TZ", "Not/AZone")
    zone = settings("sqlite:///x.db", "local").zone  # falls back to /etc/localtime or the current offset
    assert datetime(2026, 1, 1, tzinfo=zone).utcoffset() is not None


def test_local_zone_is_this_hosts() -> None:
    zone = settings("sqlite:///x.db", "local").zone
    assert datetime(2026, 1, 1, tzinfo=zone).utcoffset() == datetime(2026, 1, 1).astimezone().utcoffset()
    assert settings("sqlite:///x.db", "Europe/Moscow").zone == ZoneInfo("Europe/Moscow")
