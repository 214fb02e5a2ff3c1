"""The PostgreSQL and MySQL/MariaDB CDR readers against real servers (Debian's packages), started for the test in
a temporary directory on a free loopback port: Asterisk's own schema in PostgreSQL, FreePBX's ``asteriskcdrdb.cdr``
in MariaDB, each read by a user holding only the ``SELECT`` grant docs/cdr-backfill.md asks for. The rows are
the lab's real CDR rows; their summaries must be the ones the SQLite reader gives.

Skipped with the reason when a server is not installed (``postgresql``, ``mariadb-server``) or the test does not
run as root (the servers run as their own system users).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cdr.readers import open_reader
from edge_agent.cdr.settings import CdrSettings
from edge_agent.cdr.summaries import summarize_rows
from edge_agent.errors import CdrError
from sandbox.unavailable import unavailable
from wire_protocol.call_events import CallSummary
from wire_protocol.channel_rules import ChannelRules

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
LAB_ROWS = ROOT / "tests" / "fixtures" / "cdr" / "lab_master_db_rows.json"
PASSWORD = "Cdr-reader-pw-5521"
PERIOD = (datetime(2026, 11, 26, 9, 0, tzinfo=UTC), datetime(2026, 11, 26, 11, 0, tzinfo=UTC))
WORDS: tuple[str, ...] = ("clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata")
WORDS += ("disposition", "amaflags", "accountcode", "uniqueid", "userfield", "linkedid", "peeraccount")


def lab_rows() -> list[dict[str, Any]]:
    return [row for rows in json.loads(LAB_ROWS.read_text()).values() for row in rows]


def reference(*, freepbx: bool) -> list[CallSummary]:
    """The summaries of the lab rows as the SQLite reader gives them from the same columns (with FreePBX's
    ``did`` and ``recordingfile``, or without them as in Asterisk's own schema)."""
    import sqlite3

    names = ["calldate", "duration", "billsec", "sequence", *WORDS] + (["did", "recordingfile"] if freepbx else [])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "master.db"
        db = sqlite3.connect(path)
        db.execute(f"CREATE TABLE cdr ({', '.join(names)})")
        for row in lab_rows():
            db.execute(f"INSERT INTO cdr VALUES ({', '.join('?' * len(names))})", [row[n] for n in names])
        db.commit()
        db.close()
        reader = open_reader(CdrSettings.model_validate({"dsn": f"sqlite://{path}", "timezone": "UTC"}))
        summaries = summarize_rows(reader.rows(*PERIOD), ChannelRules())
        reader.close()
    return summaries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_user(user: str, *command: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", user, "--", *command], check=True, capture_output=True, text=True, timeout=120, **kwargs
    )


def owned_directory(user: str, prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))  # under /tmp: pytest's own tmp tree is closed to other users
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def need_root_and(user: str, binary: Path | None, package: str) -> Path:
    if os.geteuid() != 0:
        unavailable("the database servers are started as their own system users: needs root")
    try:
        pwd.getpwnam(user)
    except KeyError:
        unavailable(f"no {user!r} user: install the Debian package {package}")
    if binary is None or not binary.exists():
        unavailable(f"{package} is not installed (Debian package {package})")
    return binary


def asterisk_rows() -> list[dict[str, Any]]:
    """The lab rows in Asterisk's own schema: start/answer/end instead of calldate."""
    out = []
    for row in lab_rows():
        start = datetime.fromisoformat(row["calldate"])
        end = start + timedelta(seconds=int(row["duration"]))
        answered = row["disposition"] == "ANSWERED"
        out.append(
            {
                **{w: row[w] for w in WORDS},
                "start": start,
                "answer": end - timedelta(seconds=int(row["billsec"])) if answered else None,
                "end": end,
                "duration": int(row["duration"]),
                "billsec": int(row["billsec"]),
                "sequence": int(row["sequence"]),
            }
        )
    return out


# -- PostgreSQL ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster with Asterisk's ``cdr`` table; yields the reader's DSN."""
    import psycopg

    initdb = need_root_and(
        "postgres", next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None), "postgresql"
    )
    bin_dir = initdb.parent
    base = owned_directory("postgres", "pbxlink-pg-")
    port = free_port()
    try:
        as_user(
            "postgres",
            str(initdb),
            "-D",
            f"{base}/data",
            "-U",
            "admin",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        as_user(
            "postgres", str(bin_dir / "pg_ctl"), "-D", f"{base}/data", "-o", options, "-l", f"{base}/log", "-w", "start"
        )
        with psycopg.connect(host=str(base), port=port, user="admin", dbname="postgres", autocommit=True) as admin:
            admin.execute("CREATE DATABASE asterisk")
            admin.execute(f"CREATE ROLE pbxlink LOGIN PASSWORD '{PASSWORD}'")
        with psycopg.connect(host=str(base), port=port, user="admin", dbname="asterisk", autocommit=True) as db:
            db.execute(
                "CREATE TABLE cdr (accountcode varchar(80), src varchar(80), dst varchar(80), dcontext varchar(80), "
                "clid varchar(80), channel varchar(80), dstchannel varchar(80), lastapp varchar(80), "
                'lastdata varchar(80), start timestamp, answer timestamp, "end" timestamp, duration integer, '
                "billsec integer, disposition varchar(45), amaflags varchar(45), userfield varchar(256), "
                "uniqueid varchar(150), linkedid varchar(150), peeraccount varchar(80), sequence integer)"
            )
            db.execute("CREATE TABLE secrets (calldate timestamp, channel text)")
            for row in asterisk_rows():
                columns = ", ".join(f'"{c}"' for c in row)
                db.execute(f"INSERT INTO cdr ({columns}) VALUES ({', '.join(['%s'] * len(row))})", list(row.values()))
            # the grants docs/cdr-backfill.md asks for, and nothing more
            db.execute("GRANT CONNECT ON DATABASE asterisk TO pbxlink")
            db.execute("GRANT USAGE ON SCHEMA public TO pbxlink")
            db.execute("GRANT SELECT ON public.cdr TO pbxlink")
        yield f"postgresql://pbxlink:{PASSWORD}@127.0.0.1:{port}/asterisk"
    finally:
        with contextlib.suppress(Exception):
            as_user("postgres", str(bin_dir / "pg_ctl"), "-D", f"{base}/data", "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def read(dsn: str) -> list[CallSummary]:
    reader = open_reader(CdrSettings.model_validate({"dsn": dsn, "timezone": "UTC"}))
    try:
        return summarize_rows(reader.rows(*PERIOD), ChannelRules())
    finally:
        reader.close()


def test_postgresql_asterisk_schema_gives_the_same_calls(postgres: str) -> None:
    got = read(postgres)
    assert len(got) == 19
    assert [s.to_json_dict() for s in got] == [s.to_json_dict() for s in reference(freepbx=False)]
    assert all(s.recording is None for s in got)  # Asterisk's own schema has no recordingfile


def test_postgresql_refusals_are_cdr_errors_without_the_password(postgres: str) -> None:
    with pytest.raises(CdrError) as caught:
        read(postgres.replace(PASSWORD, "wrong-password-123"))
    assert "cannot connect" in str(caught.value) and "wrong-password-123" not in str(caught.value)
    with pytest.raises(CdrError, match="cannot read table secrets"):  # no grant on it
        read(postgres + "?table=secrets")


# -- MySQL / MariaDB (FreePBX) ---------------------------------------------------------------------------------

FREEPBX_TABLE = """CREATE TABLE cdr (
  calldate datetime NOT NULL DEFAULT '0000-00-00 00:00:00', clid varchar(80) NOT NULL DEFAULT '',
  src varchar(80) NOT NULL DEFAULT '', dst varchar(80) NOT NULL DEFAULT '', dcontext varchar(80) NOT NULL DEFAULT '',
  channel varchar(80) NOT NULL DEFAULT '', dstchannel varchar(80) NOT NULL DEFAULT '',
  lastapp varchar(80) NOT NULL DEFAULT '', lastdata varchar(80) NOT NULL DEFAULT '',
  duration int(11) NOT NULL DEFAULT 0, billsec int(11) NOT NULL DEFAULT 0, disposition varchar(45) NOT NULL DEFAULT '',
  amaflags int(11) NOT NULL DEFAULT 0, accountcode varchar(20) NOT NULL DEFAULT '',
  uniqueid varchar(32) NOT NULL DEFAULT '', userfield varchar(255) NOT NULL DEFAULT '',
  did varchar(50) NOT NULL DEFAULT '', recordingfile varchar(255) NOT NULL DEFAULT '',
  cnum varchar(40) NOT NULL DEFAULT '', cnam varchar(40) NOT NULL DEFAULT '',
  outbound_cnum varchar(40) NOT NULL DEFAULT '', outbound_cnam varchar(40) NOT NULL DEFAULT '',
  dst_cnam varchar(40) NOT NULL DEFAULT '', linkedid varchar(32) NOT NULL DEFAULT '',
  peeraccount varchar(80) NOT NULL DEFAULT '', sequence int(11) NOT NULL DEFAULT 0,
  KEY calldate (calldate), KEY dst (dst), KEY accountcode (accountcode), KEY uniqueid (uniqueid), KEY did (did)
)"""
FREEPBX_COLUMNS = ("calldate", *WORDS, "duration", "billsec", "sequence", "did", "recordingfile")


@pytest.fixture(scope="module")
def mariadb() -> Iterator[str]:
    """A MariaDB server with FreePBX's ``asteriskcdrdb.cdr``; yields the reader's DSN."""
    import pymysql

    found = shutil.which("mariadbd", path="/usr/sbin:/usr/bin")
    server = need_root_and("mysql", Path(found) if found else None, "mariadb-server")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if install is None:
        unavailable("mariadb-install-db is missing (Debian package mariadb-server)")
    base = owned_directory("mysql", "pbxlink-mariadb-")
    port = free_port()
    sock = f"{base}/mysqld.sock"
    process: subprocess.Popen[str] | None = None
    try:
        as_user("mysql", install, f"--datadir={base}/data", "--auth-root-authentication-method=socket",
                "--skip-test-db")  # fmt: skip
        process = subprocess.Popen(
            ["runuser", "-u", "mysql", "--", str(server), "--no-defaults", f"--datadir={base}/data",
             f"--socket={sock}", f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={base}/mysqld.pid",
             "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0", f"--log-error={base}/error.log"],
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not Path(sock).exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mariadbd did not start: {Path(base, 'error.log').read_text()[-2000:]}")
            time.sleep(0.2)
        admin = pymysql.connect(unix_socket=sock, user="root", autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE asteriskcdrdb")
            cursor.execute("USE asteriskcdrdb")
            cursor.execute("SET SESSION sql_mode = ''")  # FreePBX's zero-date default
            cursor.execute(FREEPBX_TABLE)
            cursor.execute("CREATE TABLE cel (eventtime datetime, channame varchar(80))")
            rows = lab_rows()
            marks = ", ".join(["%s"] * len(FREEPBX_COLUMNS))
            cursor.executemany(
                f"INSERT INTO cdr ({', '.join(FREEPBX_COLUMNS)}) VALUES ({marks})",
                [[3 if c == "amaflags" else row[c] for c in FREEPBX_COLUMNS] for row in rows],
            )
            # what docs/cdr-backfill.md asks for, and nothing more
            cursor.execute(f"CREATE USER 'pbxlink'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
            cursor.execute("GRANT SELECT ON asteriskcdrdb.cdr TO 'pbxlink'@'127.0.0.1'")
        admin.close()
        yield f"mysql://pbxlink:{PASSWORD}@127.0.0.1:{port}/asteriskcdrdb"
    finally:
        if process is not None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
            if process.poll() is None:
                process.kill()
        shutil.rmtree(base, ignore_errors=True)


def test_mariadb_freepbx_layout_gives_the_same_calls(mariadb: str) -> None:
    got = read(mariadb)
    assert len(got) == 19
    assert [s.to_json_dict() for s in got] == [s.to_json_dict() for s in reference(freepbx=True)]


def test_mariadb_refusals_are_cdr_errors_without_the_password(mariadb: str) -> None:
    with pytest.raises(CdrError) as caught:
        read(mariadb.replace(PASSWORD, "wrong-password-123"))
    assert "cannot connect" in str(caught.value) and "wrong-password-123" not in str(caught.value)
    with pytest.raises(CdrError, match="cannot read table cel"):  # no grant on it
        read(mariadb + "?table=cel")
