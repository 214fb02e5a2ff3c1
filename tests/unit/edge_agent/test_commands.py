"""Commands run at most once, with the cloud's originate settings, and every outcome is answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.ami.originate import OriginateRequest, OriginateResult
from edge_agent.commands import CommandExecutor
from edge_agent.errors import AmiActionLostError, AmiConnectionError
from edge_agent.outbox import Outbox
from wire_protocol.messages import (
    AgentSettings,
    Command,
    CommandResult,
    OriginateCommand,
    OriginateSettings,
    ReloadCommand,
)


class FakePbx:
    def __init__(self, outcome: OriginateResult | Exception | None = None) -> None:
        self.requests: list[OriginateRequest] = []
        self.outcome = outcome

    async def originate(self, request: OriginateRequest) -> OriginateResult:
        self.requests.append(request)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome or OriginateResult(
            request.command_id, True, "answered", "OriginateResponse Success", "PJSIP/101-1", "1700000000.7"
        )


def originate(command_id: str = "c1") -> Command:
    return Command(command_id=command_id, command=OriginateCommand(extension="101", number="79001234567"))


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.db")


async def test_originate_uses_the_cloud_settings_and_reports_the_result(outbox: Outbox) -> None:
    pbx, results = FakePbx(), list[CommandResult]()
    executor = CommandExecutor(outbox, pbx.originate, results.append)
    executor.apply_settings(
        AgentSettings(
            originate=OriginateSettings(
                context="from-crm", channel_template="Local/{extension}@x", prefix="9", ring_seconds=20
            )
        )
    )
    await executor.execute(originate())
    [request] = pbx.requests
    assert (request.context, request.channel_template, request.number, request.ring_seconds) == (
        "from-crm",
        "Local/{extension}@x",
        "979001234567",
        20,
    )
    assert results == [
        CommandResult(
            command_id="c1", ok=True, code="answered", message="OriginateResponse Success", call_id="1700000000.7"
        )
    ]
    assert outbox.undelivered_results() == results


async def test_a_command_delivered_twice_rings_once_and_is_answered_twice(tmp_path: Path, outbox: Outbox) -> None:
    pbx, results = FakePbx(), list[CommandResult]()
    executor = CommandExecutor(outbox, pbx.originate, results.append)
    await executor.execute(originate())
    await executor.execute(originate())
    outbox.close()
    restarted = CommandExecutor(Outbox(tmp_path / "outbox.db"), pbx.originate, results.append)
    await restarted.execute(originate())  # even after a restart
    assert len(pbx.requests) == 1
    assert len(results) == 3 and len({r.model_dump_json() for r in results}) == 1


@pytest.mark.parametrize(
    ("outcome", "code", "ok"),
    [
        (OriginateResult("c1", False, "busy", "OriginateResponse Failure"), "busy", False),
        (AmiConnectionError("not connected to AMI"), "pbx_unavailable", False),
        (AmiActionLostError("connection lost while waiting for the answer to Originate"), "unknown", False),
        (TimeoutError(), "timeout", False),
        (RuntimeError("boom"), "failed", False),
    ],
)
async def test_every_failure_is_answered(
    outbox: Outbox, outcome: OriginateResult | Exception, code: str, ok: bool
) -> None:
    results: list[CommandResult] = []
    await CommandExecutor(outbox, FakePbx(outcome).originate, results.append).execute(originate())
    assert [(r.ok, r.code) for r in results] == [(ok, code)]
    record = outbox.command("c1")
    assert record is not None and record.state == "done"


async def test_unsupported_commands_are_answered_not_ignored(outbox: Outbox) -> None:
    results: list[CommandResult] = []
    pbx = FakePbx()
    await CommandExecutor(outbox, pbx.originate, results.append).execute(
        Command(command_id="r1", command=ReloadCommand())
    )
    assert [(r.ok, r.code) for r in results] == [(False, "unsupported")] and pbx.requests == []
