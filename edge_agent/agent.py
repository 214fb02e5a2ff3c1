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
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from edge_agent import __version__
from edge_agent.ami.connector import AmiConnector
from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.commands import CommandExecutor
from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigError, OutboxError
from edge_agent.link.client import LinkClient, LinkOptions
from edge_agent.link.protocol import LinkProtocol, LinkTimings
from edge_agent.logs import log_context, mask_number
from edge_agent.outbox import Outbox, outbox_path
from wire_protocol.call_events import CallEnded, CallEvent, CallStarted
from wire_protocol.messages import AgentSettings, CommandResult, Hello

__all__ = ["Agent", "OutboxSink"]

log = logging.getLogger(__name__)

#: Finished commands older than this are forgotten (the cloud never redelivers a command that late).
COMMAND_MEMORY_SECONDS = 7 * 24 * 3600.0
#: A call with no event for this long is over (its end was reported as ``lost`` or it never existed).
CALL_MEMORY_SECONDS = 2 * 24 * 3600.0


class OutboxSink:
    """The AMI sink of ``run``: interpret, store durably, then tell the link."""

    def __init__(self, interpreter: CallInterpreter, outbox: Outbox, stored: Callable[[], None]) -> None:
        self.interpreter = interpreter
        self.outbox = outbox
        self._stored = stored

    def on_snapshot(self, live_channels: list[AmiMessage], at: float) -> None:
        self._store(self.interpreter.reconcile(live_channels, at))

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
            self.outbox.append(batch)
        except OutboxError as exc:
            # disk full or the file is gone: these events cannot be kept; say so as loudly as we can
            log.critical("LOST %d call event(s) (%s): %s", len(batch), ", ".join(e.event_id for e in batch), exc)
            return
        self._stored()


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

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        config = self.config
        assert config.cloud is not None and config.data_dir is not None
        with _exclusive(Path(config.data_dir)):
            outbox = Outbox(outbox_path(config.data_dir), max_events=config.outbox_max_events, clock=self._clock)
            try:
                await self._run(outbox)
            finally:
                outbox.close()

    async def _run(self, outbox: Outbox) -> None:
        config = self.config
        assert config.cloud is not None
        for result in outbox.recover_interrupted():
            log.warning("commands: %s was interrupted by a restart; answering %s", result.command_id, result.code)
        outbox.prune_commands(self._clock() - COMMAND_MEMORY_SECONDS)
        outbox.prune_calls(self._clock() - CALL_MEMORY_SECONDS)
        stats = outbox.stats()
        log.info("outbox %s: %d event(s) waiting, last seq %d", outbox.path, stats.depth, stats.last_seq)

        protocol = LinkProtocol(
            outbox, Hello(agent_version=__version__, capabilities=["originate"]), timings=self._timings
        )
        # link, connector and executor refer to each other; the closures resolve when first called
        interpreter = CallInterpreter(config.calls)
        sink = OutboxSink(interpreter, outbox, lambda: link.events_stored())
        connector = AmiConnector(config.ami, sink)

        def report(result: CommandResult) -> None:
            link.apply(protocol.command_finished(result, self._clock()))

        executor = CommandExecutor(outbox, connector.originate, report)

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
            options=self._options,
            clock=self._clock,
        )
        self.connector, self.link, self.interpreter = connector, link, interpreter
        tasks = {
            asyncio.create_task(connector.run(), name="ami"),
            asyncio.create_task(link.run(), name="link"),
            asyncio.create_task(self._watch_ami(connector, protocol, link), name="ami-state"),
            asyncio.create_task(self._stop.wait(), name="stop"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            log.info("stopping: closing the AMI session and the link (unacknowledged events stay in the outbox)")
            await connector.stop()
            link.stop()
            for task in tasks:
                if task.get_name() in ("ami-state", "stop"):
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    async def _watch_ami(self, connector: AmiConnector, protocol: LinkProtocol, link: LinkClient) -> None:
        """Tell the cloud (heartbeat) when the PBX link goes down or comes back; fill in hello's versions."""
        while True:
            up = connector.connected.is_set()
            if up and connector.banner and protocol.hello.ami_version is None:
                version = connector.banner.rpartition("/")[2].strip() or None
                protocol.hello = protocol.hello.model_copy(update={"ami_version": version})
            if up and connector.asterisk_version and protocol.hello.pbx_version is None:
                protocol.hello = protocol.hello.model_copy(update={"pbx_version": connector.asterisk_version})
            link.apply(protocol.set_ami_connected(up, self._clock()))
            await asyncio.sleep(1.0)


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
