"""CEL adds what a CDR cannot say: the transfers, and when a call is over. Rows and expectations are the lab's,
with CEL logged to SQLite (sandbox/pbx_lab/config/pbx/cel*.conf)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cdr_builders import lab_cel_calls, lab_master_db_with_cel

from edge_agent.calls.channels import ChannelRules
from edge_agent.cdr.backfill import Backfiller
from edge_agent.cdr.readers import open_reader
from edge_agent.cdr.rows import cel_from_db
from edge_agent.cdr.settings import CdrSettings
from edge_agent.config import load_config
from edge_agent.errors import CdrError, ConfigError
from edge_agent.outbox import Outbox
from sandbox.call_expectations import AnyOrder, mismatches

SINCE = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)


def database(tmp_path: Path, drop_end_of: str | None = None) -> Path:
    calls = lab_cel_calls()
    cdr = [row for call in calls.values() for row in call["cdr"]]
    cel = [
        row
        for call in calls.values()
        for row in call["cel"]
        if not (row["eventtype"] == "LINKEDID_END" and row["linkedid"] == drop_end_of)
    ]
    return lab_master_db_with_cel(tmp_path / "master.db", cdr, cel)


def backfiller(db: Path, tmp_path: Path, cel_table: str | None = "cel") -> Backfiller:
    settings = CdrSettings.model_validate({"dsn": f"sqlite://{db}", "timezone": "UTC", "cel_table": cel_table})
    return Backfiller(open_reader(settings), Outbox(tmp_path / "outbox.db"), ChannelRules)


def expected() -> list[dict[str, Any]]:
    want = []
    for name, call in lab_cel_calls().items():
        for summary in call["expected"]:
            summary = {k: v for k, v in summary.items() if k not in ("recording", "command_id")}
            if name == "inbound_queue_answered":
                summary["rang"] = AnyOrder(summary["rang"])
            want.append(summary)
    return want


def test_with_cel_the_transfers_are_known(tmp_path: Path) -> None:
    _, summaries = backfiller(database(tmp_path), tmp_path).read(SINCE, UNTIL)
    assert len(summaries) == 5
    assert mismatches(expected(), [s.to_json_dict() for s in summaries]) == []
    kinds = sorted(t.kind for s in summaries for t in s.transfers)
    assert kinds == ["attended", "blind"]  # Asterisk wrote transfer_target_channel_name "N/A" for the attended one


def test_without_cel_only_the_transfers_are_missing(tmp_path: Path) -> None:
    _, summaries = backfiller(database(tmp_path), tmp_path, cel_table=None).read(SINCE, UNTIL)
    assert all(s.transfers == [] for s in summaries)
    want = [{k: v for k, v in call.items() if k != "transfers"} for call in expected()]
    assert mismatches(want, [s.to_json_dict() for s in summaries]) == []


def test_a_call_without_its_linkedid_end_waits_for_the_late_read(tmp_path: Path) -> None:
    blind = lab_cel_calls()["blind_transfer"]["expected"][0]["call_id"]
    filler = backfiller(database(tmp_path, drop_end_of=blind), tmp_path)
    _, first = filler.read(SINCE, UNTIL, complete_only=True)
    _, late = filler.read(SINCE, UNTIL)
    assert blind not in {s.call_id for s in first} and len(first) == 4
    assert blind in {s.call_id for s in late} and len(late) == 5


def test_a_cel_table_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CdrError, match="EDGE_CDR_CEL_TABLE"):
        backfiller(database(tmp_path), tmp_path, cel_table="nope").read(SINCE, UNTIL)


def test_cel_settings_and_rows() -> None:
    env = {"EDGE_AMI_USER": "u", "EDGE_AMI_SECRET": "s", "EDGE_CDR_DSN": "sqlite:///x.db"}
    config = load_config({**env, "EDGE_CDR_CEL_TABLE": "cel"})
    assert config.cdr is not None and config.cdr.cel_table == "cel"
    with pytest.raises(ConfigError, match="CEL table name"):
        load_config({**env, "EDGE_CDR_CEL_TABLE": "cel; drop table cdr"})
    event = cel_from_db(
        {"eventtype": "blindtransfer", "eventtime": "2026-11-26 12:00:00", "channame": "PJSIP/101-1", "uniqueid": "a",
         "linkedid": "a", "extra": "{not json"},
        ZoneInfo("UTC"),
    )  # fmt: skip
    assert event.eventtype == "BLINDTRANSFER" and event.extra == {}
