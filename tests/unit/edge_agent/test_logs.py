"""The agent's log lines (``edge_agent.logs``): structured, with the call in context, numbers masked, no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from edge_agent.cli import _Redact
from edge_agent.logs import log_context, mask_number, mask_numbers, setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_numbers_keep_two_digits_at_each_end() -> None:
    assert mask_number("+79261234567") == "+79*******67"
    assert mask_number("101") == "101"
    text = "from 79261234567 to 101 on PJSIP/carrier-00000010 id 1710140185.100"
    assert mask_numbers(text) == "from 79*******67 to 101 on PJSIP/carrier-00000010 id 1710140185.100"


@pytest.mark.usefixtures("restore_root")
def test_logfmt_lines_carry_the_context_and_mask_numbers_at_info_only() -> None:
    out = io.StringIO()
    setup_logging(stream=out, verbose=True)
    log = logging.getLogger("edge_agent.test")
    with log_context(call_id="pbx-1.1"):
        log.info("caller %s", "79261234567")
        with log_context(command_id="click 1"):
            log.debug("raw %s", "79261234567")
    log.warning("no call here")
    first, second, third = out.getvalue().splitlines()
    assert ' level=info logger=edge_agent.test call_id=pbx-1.1 command_id= msg="caller 79*******67"' in first
    assert 'command_id="click 1"' in second and "79261234567" in second  # debug is for the developer's eyes
    assert 'call_id= command_id= msg="no call here"' in third


@pytest.mark.usefixtures("restore_root")
def test_json_lines_and_secrets_removed_even_from_tracebacks() -> None:
    out = io.StringIO()
    formatter = setup_logging(stream=out, fmt="json", secrets=["tok-0123456789"])
    log = logging.getLogger("edge_agent.test")
    try:
        raise RuntimeError("token tok-0123456789 for 79261234567")
    except RuntimeError:
        log.exception("failed")
    formatter.add_secrets(["s3cret-ami"])
    log.error("login with s3cret-ami")
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert [line["level"] for line in lines] == ["error", "error"]
    text = out.getvalue()
    assert "tok-0123456789" not in text and "s3cret-ami" not in text and "79261234567" not in text


async def test_the_context_follows_tasks_and_does_not_leak_between_them(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging(stream=out)
    log = logging.getLogger("edge_agent.test")

    async def handle(call_id: str) -> None:
        with log_context(call_id=call_id):
            await asyncio.sleep(0)
            log.info("handled")

    await asyncio.gather(handle("a.1"), handle("b.2"))
    log.info("after")
    ids = [line.split(" call_id=")[1].split(" ")[0] for line in out.getvalue().splitlines()]
    assert sorted(ids[:2]) == ["a.1", "b.2"] and ids[2] == ""


@pytest.mark.usefixtures("restore_root")
def test_the_cli_redaction_filter_still_applies_on_the_structured_handler() -> None:
    out = io.StringIO()
    setup_logging(stream=out)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redact(["tok-abcdef"]))
    logging.getLogger("edge_agent.test").info("header Bearer tok-abcdef")
    assert "tok-abcdef" not in out.getvalue() and "Bearer ***" in out.getvalue()
