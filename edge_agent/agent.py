"""``edge-agent run``: AMI connector → interpreter → durable outbox → websocket link, and commands back.

Every call event is written to the outbox (one transaction per AMI message) before the link is told there
is something to send, so what the cloud receives is always something already on disk. Stopping (SIGTERM,
SIGINT) closes the AMI session and the websocket and leaves unacknowledged events in the outbox for the
next start; nothing is flushed or lost on the way out because nothing lives only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent import __version__
from edge_agent.ami.connector import AmiConnector
from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.cdr.backfill import Backfiller, BackfillReport, GapBook, gap_period
from edge_agent.cdr.readers import CdrReader, open_reader
from edge_agent.cdr.reconcile import CheckBook, failed_report, new_check_id
from edge_agent.commands import CommandExecutor
from edge_agent.config import AgentConfig
from edge_agent.errors import CdrError, ConfigError, OutboxError
from edge_agent.link.client import LinkClient, LinkOptions
from edge_agent.link.protocol import LinkProtocol, LinkTimings
from edge_agent.logs import log_context, mask_number
from edge_agent.outbox import Outbox, outbox_path
from edge_agent.recordings.queue import RecordingQueue
from edge_agent.recordings.uploader import RecordingUploader
from wire_protocol.call_events import CallEnded, CallEvent, CallStarted
from wire_protocol.messages import (
    AgentSettings,
    CommandResult,
    Hello,
    ReconcileResend,
    RecordingReady,
    RecordingResult,
)

__all__ = ["Agent", "OutboxSink"]

log = logging.getLogger(__name__)

#: Finished commands older than this are forgotten (the cloud never redelivers a command that late).
COMMAND_MEMORY_SECONDS = 7 * 24 * 3600.0
#: A call with no event for this long is over (its end was reported as ``lost`` or it never existed). Kept as
#: long as ended calls are, so a backfilled end continues the numbering of what the agent sent before.
CALL_MEMORY_SECONDS = 7 * 24 * 3600.0
#: Calls whose ``call_ended`` was stored are remembered this long, so a backfill never sends them again.
ENDED_CALL_MEMORY_SECONDS = 7 * 24 * 3600.0
#: While AMI is connected, ``ami_covered_until`` is moved forward this often.
COVER_EVERY_SECONDS = 5.0
#: A gap is first read this long after AMI came back (CDR rows of calls that just ended are being written).
SETTLE_SECONDS = 10.0
#: How often the backfill task looks for gaps due.
BACKFILL_POLL_SECONDS = 5.0
#: After a failed CDR read, wait this long before trying again.
CDR_RETRY_SECONDS = 60.0
#: The first CDR check runs this long after start (or after one interval, if shorter).
RECONCILE_FIRST_SECONDS = 300.0
#: A check that cannot start (no link, events still on their way, a gap being backfilled) is tried again after this.
RECONCILE_RETRY_SECONDS = 30.0
#: Outbox meta: when this agent first checked; no check reaches before it (calls from before the agent was
#: installed are not pushed into the CRM).
RECONCILE_FLOOR_KEY = "reconcile_floor"


class OutboxSink:
    """The AMI sink of ``run``: interpret, store durably, then tell the link (and the recording uploader)."""

    def __init__(
        self,
        interpreter: CallInterpreter,
        outbox: Outbox,
        stored: Callable[[], None],
        gaps: GapBook | None = None,
        ended: Callable[[CallEnded, int], None] = lambda event, seq: None,
    ) -> None:
        self.interpreter = interpreter
        self.outbox = outbox
        self._stored = stored
        self._gaps = gaps
        self._ended = ended

    def on_snapshot(self, live_channels: list[AmiMessage], at: float) -> None:
        self._store(self.interpreter.reconcile(live_channels, at))
        if self._gaps is not None:  # the AMI view is whole again from here: what came before needs the CDR
            try:
                gap = self._gaps.connected(at)
            except OutboxError as exc:
                log.error("cdr: could not record the gap in the AMI view: %s", exc)
            else:
                if gap is not None:
                    log.info("cdr: AMI view had a gap of %.0f s; backfilling it from the CDR", gap.end - gap.start)

    def on_event(self, message: AmiMessage) -> None:
        with log_context(call_id=message.get("Linkedid") or message.get("Uniqueid")):
            self._store(self.interpreter.feed(message))

    def _store(self, events: Iterable[CallEvent]) -> None:
        batch = list(events)
        if not batch:
            return
        for event in batch:
            _log_call(event)
        try:
            stored = self.outbox.append(batch)
        except OutboxError as exc:
            # disk full or the file is gone: these events cannot be kept; say so as loudly as we can
            log.critical("LOST %d call event(s) (%s): %s", len(batch), ", ".join(e.event_id for e in batch), exc)
            return
        self._stored()
        for item in stored:
            if isinstance(item.event, CallEnded):
                try:
                    self._ended(item.event, item.seq)
                except OutboxError as exc:
                    log.error("recordings: the recording of %s was not queued: %s", item.event.call_id, exc)


def _log_call(event: CallEvent) -> None:
    """One line when a call starts and one when it ends, under its call id (numbers masked: ``edge_agent.logs``)."""
    with log_context(call_id=event.call_id, command_id=getattr(event, "command_id", None)):
        if isinstance(event, CallStarted):
            number = mask_number(event.external_number) if event.external_number else "-"
            log.info("call started: %s, external %s, line %s", event.direction, number, event.line or "-")
        elif isinstance(event, CallEnded):
            summary = event.summary
            log.info(
                "call ended: %s, answered by %s, talk %d s (%s)",
                summary.result,
                summary.answered_by or "-",
                summary.talk_seconds,
                event.reason,
            )


class Agent:
    """One running agent. :meth:`run` returns on :meth:`stop`; AMI login/permission errors propagate."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        timings: LinkTimings | None = None,
        options: LinkOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if config.cloud is None or config.data_dir is None:
            raise ConfigError("edge-agent run needs [cloud] url and token, and data_dir (EDGE_CLOUD_URL, ...)")
        self.config = config
        self._timings = timings
        self._options = options
        self._clock = clock
        self._stop = asyncio.Event()
        self.connector: AmiConnector | None = None  # while running
        self.interpreter: CallInterpreter | None = None
        self.link: LinkClient | None = None
        self.uploader: RecordingUploader | None = None

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        config = self.config
        assert config.cloud is not None and config.data_dir is not None
        with _exclusive(Path(config.data_dir)):
            outbox = Outbox(outbox_path(config.data_dir), max_events=config.outbox_max_events, clock=self._clock)
            recordings = RecordingQueue(outbox_path(config.data_dir))
            try:
                await self._run(outbox, recordings)
            finally:
                recordings.close()
                outbox.close()

    async def _run(self, outbox: Outbox, recordings: RecordingQueue) -> None:
        config = self.config
        assert config.cloud is not None and config.data_dir is not None
        for result in outbox.recover_interrupted():
            log.warning("commands: %s was interrupted by a restart; answering %s", result.command_id, result.code)
        outbox.prune_commands(self._clock() - COMMAND_MEMORY_SECONDS)
        outbox.prune_calls(self._clock() - CALL_MEMORY_SECONDS)
        outbox.prune_ended_calls(self._clock() - ENDED_CALL_MEMORY_SECONDS)
        stats = outbox.stats()
        log.info("outbox %s: %d event(s) waiting, last seq %d", outbox.path, stats.depth, stats.last_seq)

        capabilities = ["originate", "recordings"] if config.recordings.enabled else ["originate"]
        protocol = LinkProtocol(
            outbox, Hello(agent_version=__version__, capabilities=capabilities), timings=self._timings
        )

        def send_recording_message(message: RecordingReady | RecordingResult) -> bool:
            return link.send_recording_message(message)

        uploader = RecordingUploader(
            recordings,
            config.recordings,
            config.recordings.work_dir or Path(config.data_dir) / "recordings",
            send_recording_message,
            allow_http=config.cloud.url.startswith("ws://"),  # a local cloud's moto S3 is plain HTTP
            clock=self._clock,
        )
        # link, connector and executor refer to each other; the closures resolve when first called
        interpreter = CallInterpreter(config.calls)
        gaps = GapBook(outbox) if config.cdr is not None else None
        reader = open_reader(config.cdr) if config.cdr is not None else None  # a missing driver stops us here
        sink = OutboxSink(interpreter, outbox, lambda: link.events_stored(), gaps, uploader.call_ended)
        connector = AmiConnector(config.ami, sink)

        def report(result: CommandResult) -> None:
            link.apply(protocol.command_finished(result, self._clock()))

        executor = CommandExecutor(outbox, connector.originate, report)

        checks = CheckBook()

        def resend(answer: ReconcileResend) -> None:
            events = checks.resend(answer, interpreter.open_call_ids())
            if events:
                try:
                    outbox.append(events)
                except OutboxError as exc:
                    log.error("cdr: could not store the calls the cloud asked for (the next check asks again): %s", exc)
                    return
                link.events_stored()

        def apply_settings(settings: AgentSettings) -> None:
            """The tenant's settings: originate options, and number rules that override the local [calls]."""
            executor.apply_settings(settings)
            rules = settings.calls or config.calls
            if rules != interpreter.rules:
                source = "the cloud's settings" if settings.calls is not None else "the local config"
                log.info("calls: extension rules now from %s: %s", source, rules)
                interpreter.set_rules(rules)

        link = LinkClient(
            config.cloud.url,
            config.cloud.token.get_secret_value(),
            protocol,
            on_command=executor.execute,
            on_settings=apply_settings,
            on_recording=uploader.on_message,
            on_reconcile=resend,
            options=self._options,
            clock=self._clock,
        )
        self.connector, self.link, self.interpreter, self.uploader = connector, link, interpreter, uploader
        tasks = {
            asyncio.create_task(connector.run(), name="ami"),
            asyncio.create_task(link.run(), name="link"),
            asyncio.create_task(uploader.run(), name="recordings"),
            asyncio.create_task(self._watch_ami(connector, protocol, link, outbox), name="ami-state"),
            asyncio.create_task(self._stop.wait(), name="stop"),
        }
        if gaps is not None and reader is not None:
            tasks.add(asyncio.create_task(self._backfill(gaps, reader, interpreter, link), name="backfill"))
            if config.cdr is not None and config.cdr.reconcile_minutes > 0:
                check = self._reconcile(gaps, open_reader(config.cdr), interpreter, link, checks)
                tasks.add(asyncio.create_task(check, name="reconcile"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            log.info("stopping: closing the AMI session and the link (unacknowledged events stay in the outbox)")
            await connector.stop()
            link.stop()
            for task in tasks:
                if task.get_name() in ("ami-state", "stop", "backfill", "reconcile", "recordings"):
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    async def _backfill(self, gaps: GapBook, reader: CdrReader, interpreter: CallInterpreter, link: LinkClient) -> None:
        """Read each gap in the AMI view from the CDR (twice: rows can be written late) and send what was missed."""
        config = self.config
        assert config.cdr is not None
        uploader = self.uploader
        zone = config.cdr.zone
        recordings = (
            None if uploader is None else functools.partial(uploader.call_backfilled, zone=zone)
        )  # a backfilled call's recording goes into the same queue as the AMI's
        backfiller = Backfiller(reader, gaps.outbox, lambda: interpreter.rules, recordings)
        late = config.cdr.late_seconds
        cel = f", CEL table {config.cdr.cel_table}" if config.cdr.cel_table else ""
        log.info("cdr: backfill from %s%s", config.cdr.parsed.redacted, cel)
        try:
            while True:
                delay = BACKFILL_POLL_SECONDS
                now = self._clock()
                for gap in gaps.gaps():
                    if now < gap.end + (SETTLE_SECONDS if gap.reads == 0 else max(late, SETTLE_SECONDS)):
                        continue
                    if gap.end < now - ENDED_CALL_MEMORY_SECONDS:
                        log.error("cdr: dropping a gap older than the agent's memory of sent calls: %s", gap)
                        gaps.done_reading(gap, last=True)
                        continue
                    since, until = gap_period(gap)
                    report = BackfillReport(since, until)
                    try:
                        first = gap.reads == 0 and late > 0  # the late read sends what was still incomplete
                        report.rows, summaries = await asyncio.to_thread(
                            functools.partial(backfiller.read, since, until, complete_only=first)
                        )
                        backfiller.store(report, summaries, in_progress=interpreter.open_call_ids())
                    except (CdrError, OutboxError) as exc:
                        log.error("cdr: backfill of %s to %s failed, will retry: %s", since, until, exc)
                        delay = CDR_RETRY_SECONDS
                        break
                    except Exception:  # a bug on odd data must not stop the agent; the gap is kept and retried
                        log.exception("cdr: backfill of %s to %s failed unexpectedly, will retry", since, until)
                        delay = CDR_RETRY_SECONDS
                        break
                    last = gap.reads >= 1 or late <= 0
                    gaps.done_reading(gap, last=last)
                    _log_report(report, "last read" if last else "first read")
                    if report.sent:
                        link.events_stored()
                reader.close()  # a connection per pass: none left idle on the PBX's database for hours
                await asyncio.sleep(delay)
        finally:
            reader.close()

    async def _reconcile(
        self, gaps: GapBook, reader: CdrReader, interpreter: CallInterpreter, link: LinkClient, checks: CheckBook
    ) -> None:
        """Every ``reconcile_minutes``: report the CDR's calls of the last ``reconcile_hours`` to the cloud, which
        answers with what it lacks (:mod:`edge_agent.cdr.reconcile`)."""
        config = self.config.cdr
        assert config is not None
        outbox = gaps.outbox
        interval = config.reconcile_minutes * 60
        backfiller = Backfiller(reader, outbox, lambda: interpreter.rules)
        floor = outbox.meta(RECONCILE_FLOOR_KEY)
        if floor is None:
            floor = repr(self._clock())
            outbox.set_meta(RECONCILE_FLOOR_KEY, floor)
        delay = min(RECONCILE_FIRST_SECONDS, interval)
        try:
            while True:
                await asyncio.sleep(delay)
                if not link.protocol.established or outbox.depth > 0 or gaps.gaps():
                    delay = min(RECONCILE_RETRY_SECONDS, interval)
                    continue
                delay = interval
                now = self._clock()
                until = datetime.fromtimestamp(now - max(config.late_seconds, SETTLE_SECONDS), UTC)
                # never before the agent was set up: its token's issue (a reinstall keeps it) or its first start
                start = datetime.fromtimestamp(float(floor), UTC)
                if link.protocol.agent_since is not None:
                    start = min(start, link.protocol.agent_since)
                since = max(until - timedelta(hours=config.reconcile_hours), start)
                if since >= until:
                    continue
                check_id = new_check_id(datetime.fromtimestamp(now, UTC))
                try:
                    _, summaries = await asyncio.to_thread(
                        functools.partial(backfiller.read, since, until, complete_only=True)
                    )
                except CdrError as exc:
                    log.error("cdr: check %s could not read the CDR: %s", check_id, exc)
                    link.send_reconcile_report(failed_report(check_id, since, until, str(exc)))
                    delay = min(CDR_RETRY_SECONDS, interval)
                    continue
                except Exception as exc:  # a bug on odd data must not stop the agent
                    log.exception("cdr: check %s failed unexpectedly", check_id)
                    link.send_reconcile_report(failed_report(check_id, since, until, f"agent error: {exc}"))
                    continue
                finally:
                    reader.close()
                check = checks.start(check_id, since, until, summaries, interpreter.open_call_ids())
                reports = check.reports()
                sent = sum(1 for report in reports if link.send_reconcile_report(report))
                log.info(
                    "cdr: check %s of %s to %s: %d call(s) reported in %d/%d part(s)",
                    check_id,
                    since.isoformat(timespec="seconds"),
                    until.isoformat(timespec="seconds"),
                    len(check.summaries),
                    sent,
                    len(reports),
                )
        finally:
            reader.close()

    async def _watch_ami(
        self, connector: AmiConnector, protocol: LinkProtocol, link: LinkClient, outbox: Outbox
    ) -> None:
        """Tell the cloud (heartbeat) when the PBX link goes down or comes back; fill in hello's versions; keep
        ``ami_covered_until`` current; send what ``edge-agent backfill`` stored from another process."""
        gaps = GapBook(outbox) if self.config.cdr is not None else None
        covered_at = 0.0
        while True:
            up = connector.connected.is_set()
            now = self._clock()
            if up and gaps is not None and now - covered_at >= COVER_EVERY_SECONDS:
                covered_at = now
                try:
                    gaps.cover(now)
                except OutboxError as exc:
                    log.error("cdr: %s", exc)
            if outbox.appended_elsewhere():
                link.events_stored()
            if up and connector.banner and protocol.hello.ami_version is None:
                version = connector.banner.rpartition("/")[2].strip() or None
                protocol.hello = protocol.hello.model_copy(update={"ami_version": version})
            if up and connector.asterisk_version and protocol.hello.pbx_version is None:
                protocol.hello = protocol.hello.model_copy(update={"pbx_version": connector.asterisk_version})
            link.apply(protocol.set_ami_connected(up, self._clock()))
            await asyncio.sleep(1.0)


def _log_report(report: BackfillReport, what: str) -> None:
    log.info(
        "cdr: backfill %s of %s to %s: %d row(s), %d call(s) sent (%s), %d already sent, %d in progress",
        what,
        report.since.isoformat(timespec="seconds"),
        report.until.isoformat(timespec="seconds"),
        report.rows,
        len(report.sent),
        ", ".join(s.call_id for s in report.sent) or "none",
        len(report.already_sent),
        len(report.in_progress),
    )


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[None]:
    """One agent per data directory: two would send the same events and could run a command twice. The
    lock is the kernel's (``flock``), so a killed agent never leaves it behind."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        stream = open(data_dir / "agent.lock", "a")  # noqa: SIM115
    except OSError as exc:
        raise OutboxError(f"cannot use the data directory {data_dir}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another edge-agent is already running with data_dir {data_dir} (EDGE_DATA_DIR); stop it first"
            ) from None
        yield
    finally:
        stream.close()
