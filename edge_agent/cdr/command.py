"""``edge-agent backfill --since … [--until …] [--dry-run]``: reprocess a period from the CDR on demand.

It reads the period's CDR rows, and stores in the outbox, as backfilled ``call_ended`` events, the calls that
ended in it and that the outbox has no ``call_ended`` for. There is no ``--force``: a call already sent is
already in the cloud, whose store is idempotent on event ids and whose call state keeps an AMI-made end over a
backfilled one, so sending it again could not change anything there.

The recordings those calls name go into the agent's recordings queue in the same file (resolved inside the
recordings directory, ``edge_agent.recordings.backfilled``), not with ``--dry-run``: the running agent, or the
next one to start, uploads them.

Safe while ``edge-agent run`` is running (SQLite serializes the two writers; the agent notices the new events
within seconds and sends them). Then calls the agent saw start but has not ended are left to it (they are in
progress); with the agent stopped they are ended from the CDR too, and sent at its next start.
"""

from __future__ import annotations

import fcntl
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigError
from edge_agent.outbox import Outbox, outbox_path
from edge_agent.recordings.backfilled import queue_backfilled
from edge_agent.recordings.queue import RecordingQueue
from wire_protocol.call_events import CallEnded

from .backfill import Backfiller, BackfillReport
from .readers import open_reader

__all__ = ["MAX_AGE", "parse_moment", "run_backfill"]

#: The outbox remembers the calls it ended for 7 days; an older period could resend them.
MAX_AGE = timedelta(days=7)
#: CDR rows of calls that just ended may not be written yet: ``--until`` defaults to now minus this.
DEFAULT_MARGIN = timedelta(minutes=1)


def parse_moment(text: str, now: datetime) -> datetime:
    """ISO 8601 (``2026-11-26T09:00``, ``…Z``, ``…+03:00``; without a zone: this host's local time), or
    ``-2h`` / ``-30m`` / ``-1d`` relative to now."""
    value = text.strip()
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value.startswith("-") and value[-1:] in units:
        try:
            return now - timedelta(**{units[value[-1]]: float(value[1:-1])})
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"cannot read the time {text[:40]!r}: use ISO 8601 (2026-11-26T09:00, with Z or +03:00 for a zone; "
            "local time without) or -30m / -2h / -1d"
        ) from None
    return moment.astimezone(UTC)  # a naive time is taken as this host's local time


def run_backfill(
    config: AgentConfig, since: datetime, until: datetime, *, dry_run: bool, out: IO[str], now: datetime
) -> int:
    """Returns the number of calls stored (or that would be, with ``dry_run``)."""
    if config.cdr is None:
        raise ConfigError("edge-agent backfill needs the CDR database: set EDGE_CDR_DSN (or [cdr] dsn)")
    if config.data_dir is None:
        raise ConfigError("edge-agent backfill needs data_dir / EDGE_DATA_DIR (the agent's outbox)")
    if until <= since:
        raise ConfigError(f"--until ({until.isoformat()}) must be after --since ({since.isoformat()})")
    if since < now - MAX_AGE:
        raise ConfigError(
            f"--since is more than {MAX_AGE.days} days ago: the agent remembers the calls it sent for {MAX_AGE.days} "
            "days only, so an older period could send calls twice"
        )
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "agent.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            agent_running = False
        except BlockingIOError:
            agent_running = True
        outbox = Outbox(outbox_path(data_dir), max_events=config.outbox_max_events)
        recordings = RecordingQueue(outbox_path(data_dir)) if config.recordings.enabled and not dry_run else None
        reader = open_reader(config.cdr)
        try:
            zone = config.cdr.zone

            def queue_recording(event: CallEnded, seq: int) -> None:
                assert recordings is not None  # the running agent (or the next start) uploads it
                queue_backfilled(recordings, config.recordings, event, seq, zone, time.time())

            backfiller = Backfiller(reader, outbox, lambda: config.calls, queue_recording if recordings else None)
            report = BackfillReport(since, until)
            report.rows, summaries = backfiller.read(since, until)
            in_progress = outbox.started_call_ids([s.call_id for s in summaries]) if agent_running else set()
            backfiller.store(report, summaries, in_progress=in_progress, dry_run=dry_run)
        finally:
            reader.close()
            if recordings is not None:
                recordings.close()
            outbox.close()
    for summary in report.sent:
        out.write(json.dumps({"backfilled": summary.to_json_dict()}, ensure_ascii=False) + "\n")
    verb = "would send" if dry_run else "stored"
    where = (
        ""
        if dry_run
        else (
            "; the running agent sends them within seconds"
            if agent_running
            else "; they are sent when edge-agent run starts"
        )
    )
    out.write(
        f"backfill {since.isoformat(timespec='seconds')} to {until.isoformat(timespec='seconds')} "
        f"from {config.cdr.parsed.redacted}: {report.rows} CDR row(s) read, {verb} {len(report.sent)} call(s)"
        f"{where}; {len(report.already_sent)} already sent, {len(report.in_progress)} left to the running agent\n"
    )
    out.flush()
    return len(report.sent)
