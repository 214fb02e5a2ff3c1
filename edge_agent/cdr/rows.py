"""One CDR row, whatever database and column layout it came from.

Asterisk's own schema has ``start``/``answer``/``end``; FreePBX's ``asteriskcdrdb.cdr`` (and the lab's
``cdr_sqlite3_custom`` table) has only ``calldate`` (the start) with ``duration`` and ``billsec``, from which the
answer and end times follow to the second. Values arrive as the driver gives them: SQLite's custom backend
stores every value as text, MySQL and PostgreSQL return ``datetime`` and ``int``. CDR times are the PBX's local
time (unless ``usegmtime``), so naive times are read in the configured zone and turned into UTC.

CEL rows (``cel`` table, when configured) add what a CDR cannot say: transfers (``BLINDTRANSFER``,
``ATTENDEDTRANSFER``, whose ``extra`` column is JSON) and the moment a call is over (``LINKEDID_END``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo

from pydantic import BaseModel, ConfigDict

__all__ = ["CdrRow", "CelEvent", "UnusableRow", "cel_from_db", "row_from_db"]


class UnusableRow(ValueError):
    """A row without what every CDR row has (a start time, a channel, an id)."""


class CdrRow(BaseModel):
    """One leg of a call as the CDR recorded it; times in UTC."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    answer: datetime | None
    end: datetime
    duration: int
    billsec: int
    disposition: str  # ANSWERED, NO ANSWER, BUSY, FAILED, CONGESTION
    src: str
    dst: str
    dcontext: str
    channel: str
    dstchannel: str
    lastapp: str
    lastdata: str
    uniqueid: str
    linkedid: str  # "" on tables without the column
    sequence: int | None
    did: str | None = None
    recordingfile: str | None = None
    userfield: str | None = None  # Asterisk's schema has it; a dialplan may put MIXMONITOR_FILENAME there

    @property
    def call_id(self) -> str:
        """The call this leg belongs to: its Linkedid, or the leg's own Uniqueid on old tables."""
        return self.linkedid or self.uniqueid

    @property
    def order(self) -> tuple[datetime, int]:
        return (self.start, self.sequence if self.sequence is not None else 0)


def row_from_db(values: Mapping[str, object], zone: tzinfo) -> CdrRow:
    """Normalize a row (column name → value, names in any case); raises :class:`UnusableRow`."""
    row = {str(key).lower(): value for key, value in values.items()}
    start = _time(row.get("start", row.get("calldate")), zone)
    if start is None:
        raise UnusableRow(f"CDR row without a start time (calldate/start): uniqueid {row.get('uniqueid')!r}")
    channel, uniqueid = _text(row.get("channel")), _text(row.get("uniqueid"))
    if not channel or not uniqueid:
        raise UnusableRow(f"CDR row without channel or uniqueid (start {start.isoformat()})")
    duration, billsec = _int(row.get("duration")) or 0, _int(row.get("billsec")) or 0
    disposition = _text(row.get("disposition")).upper()
    end = _time(row.get("end"), zone) if "end" in row else None
    if end is None:
        end = start + timedelta(seconds=duration)
    if "answer" in row:
        answer = _time(row.get("answer"), zone)
    else:
        answer = end - timedelta(seconds=billsec) if disposition == "ANSWERED" else None
    return CdrRow(
        start=start,
        answer=answer,
        end=end,
        duration=duration,
        billsec=billsec,
        disposition=disposition,
        src=_text(row.get("src")),
        dst=_text(row.get("dst")),
        dcontext=_text(row.get("dcontext")),
        channel=channel,
        dstchannel=_text(row.get("dstchannel")),
        lastapp=_text(row.get("lastapp")),
        lastdata=_text(row.get("lastdata")),
        uniqueid=uniqueid,
        linkedid=_text(row.get("linkedid")),
        sequence=_int(row.get("sequence")),
        did=_text(row.get("did")) or None,
        recordingfile=_text(row.get("recordingfile")) or None,
        userfield=_text(row.get("userfield")) or None,
    )


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return str(value).strip()


def _int(value: object) -> int | None:
    text = _text(value)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


def _time(value: object, zone: tzinfo) -> datetime | None:
    """A CDR time: a ``datetime`` (naive = the PBX's zone) or text; empty and MySQL's zero date are None."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = _text(value)
        if not text or text.startswith("0000-00-00"):
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


class CelEvent(BaseModel):
    """One Channel Event Logging row (only the kinds the backfill reads); ``extra`` is its JSON detail."""

    model_config = ConfigDict(frozen=True)

    eventtype: str  # BLINDTRANSFER, ATTENDEDTRANSFER, LINKEDID_END
    eventtime: datetime
    channame: str
    uniqueid: str
    linkedid: str
    extra: dict[str, object]


def cel_from_db(values: Mapping[str, object], zone: tzinfo) -> CelEvent:
    """Normalize a CEL row; raises :class:`UnusableRow`."""
    row = {str(key).lower(): value for key, value in values.items()}
    when = _time(row.get("eventtime"), zone)
    linkedid = _text(row.get("linkedid"))
    if when is None or not linkedid:
        raise UnusableRow(f"CEL row without eventtime or linkedid: {_text(row.get('eventtype'))[:40]!r}")
    extra: dict[str, object] = {}
    text = _text(row.get("extra"))
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            extra = parsed
    return CelEvent(
        eventtype=_text(row.get("eventtype")).upper(),
        eventtime=when,
        channame=_text(row.get("channame")),
        uniqueid=_text(row.get("uniqueid")),
        linkedid=linkedid,
        extra=extra,
    )
