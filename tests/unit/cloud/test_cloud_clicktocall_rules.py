"""Click-to-call decisions as tables: the toll-fraud patterns, which numbers are dialed and how, whose extension
rings, which agent places the call, and what the user is told when it does not happen."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from crm_simulation import only, run

from cloud.clicktocall.rules import (
    AgentView,
    CallbackEvent,
    ClickEvent,
    agent_settings,
    callback_command_id,
    check_number,
    choose_agent,
    click_command_id,
    dial_string,
    extension_of,
    pattern_matches,
    refusal,
    refusal_for_result,
)
from cloud.crm.directory import Directory, DirectoryUser
from cloud.crm.numbers import PhoneNumber
from cloud.crm.settings import ClickToCallSettings, CrmSettings, LineSettings
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from wire_protocol.channel_rules import ChannelRules
from wire_protocol.messages import OriginateSettings


@pytest.mark.parametrize(
    ("pattern", "number", "matches"),
    [
        ("+7XXXXXXXXXX", "+79261234567", True),
        ("+7XXXXXXXXXX", "+792612345678", False),  # one digit too many
        ("+7XXXXXXXXXX", "+49301234567", False),
        ("7495XXXXXXX", "+74951234567", True),  # "+" optional
        ("+7 495 XXX XX XX", "+74951234567", True),  # spaces ignored
        ("+7495XXXXXXX", "+79261234567", False),
        ("+49.", "+4930123456789", True),  # a final "." is any rest
        ("+49.", "+44201234567", False),
        ("+7.*", "+79261234567", False),  # anything else matches nothing: a typo must not open every number
        ("", "+79261234567", False),
        (".", "+79261234567", False),
    ],
)
def test_allowed_patterns(pattern: str, number: str, matches: bool) -> None:
    assert pattern_matches(pattern, number) is matches


def settings(**click_to_call: object) -> CrmSettings:
    return CrmSettings(click_to_call=ClickToCallSettings.model_validate(click_to_call))


@pytest.mark.parametrize(
    ("raw", "patterns", "expected"),
    [
        ("+7 (926) 123-45-67", [], "+79261234567"),  # no patterns: any number of the default country
        ("89261234567", [], "+79261234567"),
        ("+49301234567", [], "not_allowed"),  # abroad needs a pattern
        ("+49301234567", ["+49."], "+49301234567"),
        ("+79261234567", ["+49."], "not_allowed"),
        ("+7926123456", [], "not_allowed"),  # +7 with nine national digits: not a Russian number
        ("112", [], "invalid_number"),  # short numbers are never dialed from a click
        ("anonymous", [], "invalid_number"),
        ("12345678901234567", [], "invalid_number"),
    ],
)
def test_check_number(raw: str, patterns: list[str], expected: str) -> None:
    result = check_number(raw, settings(allowed_patterns=patterns))
    assert (result.value if isinstance(result, PhoneNumber) else result) == expected


def test_the_agent_dials_e164_digits() -> None:
    assert dial_string(PhoneNumber("+79261234567", "e164")) == "79261234567"


DIRECTORY = Directory(
    users={
        11: DirectoryUser(id=11, name="Anna", extension="101"),
        12: DirectoryUser(id=12, name="Boris", extension="102"),
        13: DirectoryUser(id=13, name="Carol"),
    },
    fetched_at=datetime(2026, 11, 26, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("overrides", "user", "expected"),
    [
        ({}, 11, "101"),
        ({}, 13, None),  # no UF_PHONE_INNER
        ({}, 99, None),  # not in the directory
        ({"105": 13}, 13, "105"),  # the admin's override
        ({"101": 12}, 11, None),  # Anna's number was given to Boris
        ({"101": None}, 11, None),  # ... or to nobody
        ({"101": 12}, 12, "101"),
    ],
)
def test_extension_of(overrides: dict[str, int | None], user: int, expected: str | None) -> None:
    assert extension_of(user, DIRECTORY, CrmSettings(extension_overrides=overrides)) == expected


A, B, C = AgentView("ag_a", False, True), AgentView("ag_b", False, False), AgentView("ag_c", True, True)


@pytest.mark.parametrize(
    ("crm", "line", "agents", "expected"),
    [
        (CrmSettings(), None, [A], ("ag_a", None)),  # the only agent
        (CrmSettings(), None, [B], ("ag_b", "agent_offline")),
        (CrmSettings(), None, [], (None, "no_agent")),
        (CrmSettings(), None, [C], (None, "no_agent")),  # revoked agents do not count
        (CrmSettings(), None, [A, B], ("ag_a", None)),  # several: the connected one
        (CrmSettings(), None, [B, AgentView("ag_d", False, False)], ("ag_b", "agent_offline")),
        (settings(default_agent_id="ag_b"), None, [A, B], ("ag_b", "agent_offline")),  # configured wins
        (settings(default_agent_id="ag_x"), None, [A, B], (None, "no_agent")),
        (
            CrmSettings(
                lines={"7495": LineSettings(agent_id="ag_a")},
                click_to_call=ClickToCallSettings(default_agent_id="ag_b"),
            ),
            "7495",
            [A, B],
            ("ag_a", None),
        ),  # the line's own agent first
        (CrmSettings(lines={"7495": LineSettings(agent_id="ag_a")}), "7499", [A, B], ("ag_a", None)),
    ],
)
def test_choose_agent(
    crm: CrmSettings, line: str | None, agents: list[AgentView], expected: tuple[str | None, str | None]
) -> None:
    choice = choose_agent(crm, line, agents)
    assert (choice.agent_id, choice.failure) == expected


def test_refusals_have_a_status_and_a_reason_in_the_portals_language() -> None:
    assert refusal("not_allowed", "en").status_code == "403"
    assert refusal("no_extension", "ru").reason.startswith("В вашем профиле нет внутреннего номера")  # noqa: RUF001
    assert refusal("no_extension", "ua").reason == refusal("no_extension", "ru").reason
    assert refusal("agent_offline", "de").reason == refusal("agent_offline", "en").reason  # English otherwise
    assert refusal("pbx_refused", "en", "Permission\r\ndenied").reason.endswith("(Permission  denied)")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("busy", "486"),
        ("no_answer", "480"),
        ("hung_up", "603"),
        ("rejected", "503"),
        ("pbx_unavailable", "503"),
        ("failed", "503"),
        ("something_new", "503"),
    ],
)
def test_pbx_results_map_to_statuses(code: str, status: str) -> None:
    why = refusal_for_result(code, "OriginateResponse Failure", "en")
    assert why is not None and why.status_code == status


def test_a_duplicate_result_finishes_nothing() -> None:
    assert refusal_for_result("duplicate", "", "en") is None


def test_command_ids_derive_from_the_event() -> None:
    call_id = "externalCall.89350264e026dace3f2b14d1f438257c.1773236989"
    assert click_command_id(call_id) == f"c2c:{call_id}"
    odd = click_command_id("call id with spaces")
    assert odd.startswith("c2c:h") and odd == click_command_id("call id with spaces")
    callback = CallbackEvent(PHONE_NUMBER="+79261234567", LINE_NUMBER="7")
    first = callback_command_id("t1", "1053", "1773234727", callback)
    assert first == callback_command_id("t1", "1053", "1773234727", callback)
    assert first != callback_command_id("t1", "1053", "1773234728", callback)
    assert first != callback_command_id("t2", "1053", "1773234727", callback)


def test_events_parse_or_are_refused() -> None:
    click = ClickEvent.parse({"CALL_ID": "externalCall.x.1", "USER_ID": "11", "PHONE_NUMBER": "89261234567"})
    assert click is not None and click.USER_ID == 11 and click.number == "89261234567"
    assert ClickEvent.parse({"CALL_ID": "externalCall.x.1", "USER_ID": "nobody"}) is None
    assert ClickEvent.parse({"USER_ID": "11"}) is None
    callback = CallbackEvent.parse({"PHONE_NUMBER": "+7926", "CRM_ENTITY_TYPE": "contact", "CRM_ENTITY_ID": "5"})
    assert callback is not None and callback.crm_entity() == ("CONTACT", 5)
    assert CallbackEvent.parse({"TEXT": "no phone"}) is None


def test_agents_get_the_tenants_originate_and_channel_rules() -> None:
    rules = ChannelRules(extensions=frozenset({"reception"}))
    crm = CrmSettings(
        click_to_call=ClickToCallSettings(originate=OriginateSettings(context="pbx-out", prefix="9")),
        channel_rules=rules,
    )
    sent = agent_settings(crm)
    assert sent.originate.context == "pbx-out" and sent.originate.prefix == "9" and sent.calls == rules


TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("outbound_no_answer", []),  # the failed attempt is already in the CRM: nothing more
        ("outbound_busy", []),
        # a conversation after all: registered as a call of its own, never under the finished CALL_ID
        (
            "outbound_answered",
            ["register 0 user=11 type=1 phone=+79031112233", "show 0 [11]", "finish 0 user=11 200 3s"],
        ),
    ],
)
def test_the_planner_skips_a_click_the_failure_path_finished_unless_it_was_answered(
    name: str, expected: list[str]
) -> None:
    events = CallInterpreter().feed_many(read_trace(TRACES / f"{name}.jsonl"))
    outcome = only(run(events, context={"click_to_call_finished": True}))
    assert outcome.flat == expected
    assert bool(outcome.last_plan.skipped) is (expected == [])
