"""Commands from the cloud, run at most once per command id, each answered with a ``command_result``.

At most once: the id is claimed in the outbox's ``commands`` table (a committed, fsynced row) *before* the
PBX is asked anything, so a command delivered twice, or again after a restart, never rings a phone twice.
A second delivery of a finished command is answered with the stored result (the cloud may have missed the
first answer); a second delivery of a running one is ignored (its result follows). A command the agent was
running when it died is answered ``unknown``: it may or may not have rung, and guessing could ring twice.

Results are durable like events: stored before they are sent, resent after a reconnect until a later ack
on the same connection shows the cloud processed them (see :mod:`edge_agent.link.protocol`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from edge_agent.ami.originate import OriginateRequest, OriginateResult
from edge_agent.errors import AmiActionLostError, AmiConnectionError, EdgeAgentError
from edge_agent.logs import log_context, mask_number
from edge_agent.outbox import Outbox
from wire_protocol.messages import AgentSettings, Command, CommandResult, OriginateCommand, OriginateSettings

__all__ = ["CommandExecutor"]

log = logging.getLogger(__name__)

Originate = Callable[[OriginateRequest], Awaitable[OriginateResult]]


class CommandExecutor:
    """Runs :class:`Command` values; ``report`` gets every result once it is stored."""

    def __init__(
        self,
        outbox: Outbox,
        originate: Originate,
        report: Callable[[CommandResult], None],
        *,
        settings: OriginateSettings | None = None,
    ) -> None:
        self._outbox = outbox
        self._originate = originate
        self._report = report
        self.settings = settings or OriginateSettings()
        self.executed = 0

    def apply_settings(self, settings: AgentSettings) -> None:
        """The cloud's settings arrived (after welcome, and whenever an admin changes them)."""
        if settings.originate != self.settings:
            log.info("commands: originate settings from the cloud: %s", settings.originate)
        self.settings = settings.originate

    async def execute(self, command: Command) -> None:
        with log_context(command_id=command.command_id):
            await self._execute(command)

    async def _execute(self, command: Command) -> None:
        record = self._outbox.begin_command(command.command_id)
        if record is not None:
            if record.result is not None:
                log.info("commands: %s delivered again; answering its stored result", command.command_id)
                self._report(record.result)
            else:
                log.info("commands: %s delivered again while running; ignored", command.command_id)
            return
        self.executed += 1
        try:
            result = await self._run(command)
        except Exception as exc:  # a failed command must still be answered, and never re-run
            log.exception("commands: %s failed", command.command_id)
            result = CommandResult(command_id=command.command_id, ok=False, code="failed", message=str(exc)[:500])
        self._outbox.finish_command(result)
        self._report(result)

    async def _run(self, command: Command) -> CommandResult:
        body = command.command
        if isinstance(body, OriginateCommand):
            return await self._run_originate(command.command_id, body)
        return CommandResult(
            command_id=command.command_id,
            ok=False,
            code="unsupported",
            message=f"this agent does not run {body.kind!r} commands yet",
        )

    async def _run_originate(self, command_id: str, body: OriginateCommand) -> CommandResult:
        settings = self.settings
        request = OriginateRequest(
            command_id=command_id,
            extension=body.extension,
            number=settings.prefix + body.number,
            context=settings.context,
            channel_template=settings.channel_template,
            ring_seconds=settings.ring_seconds,
            caller_id=body.caller_id,
        )
        log.info("commands: %s: originate from %s to %s", command_id, body.extension, mask_number(request.number))
        try:
            result = await self._originate(request)
        except AmiActionLostError as exc:  # sent, then the link died: it may be ringing; never say "try again"
            return CommandResult(command_id=command_id, ok=False, code="unknown", message=str(exc))
        except AmiConnectionError as exc:
            return CommandResult(command_id=command_id, ok=False, code="pbx_unavailable", message=str(exc))
        except TimeoutError:
            return CommandResult(
                command_id=command_id,
                ok=False,
                code="timeout",
                message=f"no answer from the PBX within {settings.ring_seconds + 15} s",
            )
        except EdgeAgentError as exc:
            return CommandResult(command_id=command_id, ok=False, code="failed", message=str(exc))
        call_id = result.uniqueid if result.uniqueid and not result.uniqueid.startswith("<") else None
        return CommandResult(
            command_id=command_id,
            ok=result.success,
            code=result.reason,
            message=result.message,
            call_id=call_id,
        )
