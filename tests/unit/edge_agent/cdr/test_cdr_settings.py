"""EDGE_CDR_DSN / [cdr]: every supported form, and a clear error (without the password) for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cdr.settings import parse_dsn
from edge_agent.config import load_config
from edge_agent.errors import ConfigError

AMI = {"EDGE_AMI_USER": "edge", "EDGE_AMI_SECRET": "edge-secret"}


def test_the_three_databases() -> None:
    sqlite = parse_dsn("sqlite:///var/log/asterisk/master.db")
    assert (sqlite.engine, sqlite.path, sqlite.table) == ("sqlite", "/var/log/asterisk/master.db", "cdr")
    assert parse_dsn("sqlite:////var/log/asterisk/master.db").path == "/var/log/asterisk/master.db"
    pg = parse_dsn("postgresql://pbx:s%40cret@db.local/asterisk?table=public.cdr")
    assert (pg.engine, pg.host, pg.port, pg.database, pg.user, pg.password, pg.table) == (
        "postgresql", "db.local", 5432, "asterisk", "pbx", "s@cret", "public.cdr"
    )  # fmt: skip
    freepbx = parse_dsn("mysql://freepbxuser:pw@127.0.0.1:3307/asteriskcdrdb")
    assert (freepbx.engine, freepbx.port, freepbx.database, freepbx.table) == ("mysql", 3307, "asteriskcdrdb", "cdr")
    assert parse_dsn("mariadb://u:p@h/asteriskcdrdb").engine == "mysql"
    assert parse_dsn("postgres://u@h/db").password is None


def test_the_redacted_form_hides_the_password() -> None:
    dsn = parse_dsn("mysql://freepbxuser:hunter2hunter2@127.0.0.1/asteriskcdrdb")
    assert "hunter2" not in dsn.redacted and "freepbxuser:***@" in dsn.redacted


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("odbc://asteriskcdrdb", "unsupported CDR database"),
        ("sqlite://master.db", "sqlite:///absolute/path"),
        ("sqlite:///", "sqlite:///absolute/path"),
        ("mysql://u:pw@/asteriskcdrdb", "names a host and a database"),
        ("mysql://u:pw@h", "names a host and a database"),
        ("postgresql://u:topsecretpw@h:port/db", "port"),
        ("mysql://u:topsecretpw@h/db?table=cdr;drop table cdr", "not a plain SQL name"),
        ("mysql://u:topsecretpw@h/db?tabel=cdr", "only ?table=NAME"),
    ],
)
def test_bad_dsns_say_what_is_wrong_without_the_password(dsn: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**AMI, "EDGE_CDR_DSN": dsn})
    assert says in str(caught.value) and "EDGE_CDR_DSN" in str(caught.value)
    assert "topsecretpw" not in str(caught.value)


def test_toml_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[cdr]\ndsn = "sqlite:///var/log/asterisk/master.db"\ntimezone = "Europe/Moscow"\n')
    config = load_config(AMI, path=path)
    assert config.cdr is not None and config.cdr.timezone == "Europe/Moscow" and config.cdr.late_seconds == 120
    config = load_config({**AMI, "EDGE_CDR_DSN": "sqlite:///tmp/other.db", "EDGE_CDR_LATE_SECONDS": "30"}, path=path)
    assert config.cdr is not None and config.cdr.parsed.path == "/tmp/other.db" and config.cdr.late_seconds == 30


def test_no_dsn_means_no_backfill_and_settings_without_one_are_an_error(tmp_path: Path) -> None:
    assert load_config(AMI).cdr is None
    with pytest.raises(ConfigError, match=r"\[cdr\] dsn / EDGE_CDR_DSN: Field required"):
        load_config({**AMI, "EDGE_CDR_TIMEZONE": "UTC"})
    with pytest.raises(ConfigError, match="unknown time zone"):
        load_config({**AMI, "EDGE_CDR_DSN": "sqlite:///x.db", "EDGE_CDR_TIMEZONE": "Mars/Olympus"})
    path = tmp_path / "agent.toml"
    path.write_text('[cdr]\ndsn = "sqlite:///x.db"\nuser = "x"\n')
    with pytest.raises(ConfigError, match=r"\[cdr\] user"):
        load_config(AMI, path=path)
