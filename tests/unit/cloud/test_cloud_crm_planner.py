"""The CRM call logic's decision tables: every real lab call (the interpreter issue's scenarios), replayed
through the interpreter and the cloud's fold, with the Bitrix24 requests it must cause.

Users: 101 → Anna (11), 102 → Boris (12); the portal owner (1) has no phone and is the default user. Events
arrive one message each (the worst case); ``test_bursts_*`` check what batching saves.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from crm_simulation import DIRECTORY, MiniPortal, only, run

from cloud.crm.directory import Directory, DirectoryUser
from cloud.crm.settings import CrmSettings
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from wire_protocol.call_events import CallEvent

TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
CLIENT = "+79261234567"

DECISIONS: dict[str, list[list[str]]] = {
    "attended_transfer": [
        ["register 0 user=11 type=2 phone=+79261234567 crm_create", "show 0 [11]"],
        ["show 0 [12]"],
        ["hide 0 [12]"],
        ["finish 0 user=11 200 5s", "register 1 user=12 type=3 phone=+79261234567", "show 1 [12]"],
        ["finish 1 user=12 200 3s"],
    ],
    "blind_transfer": [
        ["register 0 user=11 type=2 phone=+79261234567 crm_create", "show 0 [11]"],
        ["finish 0 user=11 200 1s", "register 1 user=12 type=3 phone=+79261234567", "show 1 [12]"],
        ["finish 1 user=12 200 4s"],
    ],
    "inbound_anonymous_answered": [
        ["register 0 user=11 type=2 phone=0", "show 0 [11]"],
        ["finish 0 user=11 200 3s"],
    ],
    "inbound_busy": [
        ["find +79261234567"],
        ["register 0 user=1 type=2 phone=+79261234567 crm_create", "finish 0 user=1 304 0s"],
    ],
    "inbound_caller_hangs_up_ringing": [
        ["register 0 user=11 type=2 phone=+79261234567 crm_create", "show 0 [11]"],
        ["hide 0 [11]"],
        ["finish 0 user=11 304 0s"],
    ],
    "inbound_direct_answered": [
        ["register 0 user=11 type=2 phone=+79261234567 crm_create", "show 0 [11]"],
        ["finish 0 user=11 200 3s"],
    ],
    "inbound_direct_missed": [
        ["register 0 user=11 type=2 phone=+79261234567 crm_create", "show 0 [11]"],
        ["hide 0 [11]"],
        ["finish 0 user=11 304 0s"],
    ],
    "inbound_directed_pickup": [
        ["register 0 user=11 type=2 phone=+79261234567 crm_create", "show 0 [11]"],
        ["show 0 [12]"],
        ["hide 0 [11]"],
        ["finish 0 user=12 200 4s"],
    ],
    "inbound_pickup": [
        ["register 0 user=11 type=2 phone=+79261234567 crm_create", "show 0 [11]"],
        ["show 0 [12]"],
        ["hide 0 [11]"],
        ["finish 0 user=12 200 4s"],
    ],
    "inbound_queue_abandoned": [
        ["register 0 user=11 type=2 phone=+79261234567 crm_create", "show 0 [11]"],
        ["show 0 [12]"],
        ["hide 0 [11]"],
        ["hide 0 [12]"],
        ["finish 0 user=12 304 0s"],
    ],
    "inbound_queue_answered": [
        ["register 0 user=12 type=2 phone=+79261234567 crm_create", "show 0 [12]"],
        ["show 0 [11]"],
        ["hide 0 [11]"],
        ["finish 0 user=12 200 3s"],
    ],
    "inbound_queue_local_members": [
        ["register 0 user=1 type=2 phone=+79261234567 crm_create"],
        ["finish 0 user=1 200 3s"],
    ],
    "inbound_ring_group": [
        ["register 0 user=12 type=2 phone=+79261234567 crm_create", "show 0 [12]"],
        ["show 0 [11]"],
        ["hide 0 [12]"],
        ["finish 0 user=11 200 3s"],
    ],
    "internal_answered": [],
    "internal_unanswered": [],
    "outbound_answered": [
        ["register 0 user=11 type=1 phone=+79031112233", "show 0 [11]"],
        ["finish 0 user=11 200 3s"],
    ],
    "outbound_busy": [
        ["register 0 user=11 type=1 phone=+79031112233", "show 0 [11]"],
        ["finish 0 user=11 486 0s"],
    ],
    "outbound_failed": [
        ["register 0 user=11 type=1 phone=+79031112233", "show 0 [11]"],
        ["finish 0 user=11 503 0s"],
    ],
    "outbound_no_answer": [
        ["register 0 user=11 type=1 phone=+79031112233", "show 0 [11]"],
        ["finish 0 user=11 603-S 0s"],
    ],
}


def events_of(name: str) -> list[CallEvent]:
    return CallInterpreter().feed_many(read_trace(TRACES / f"{name}.jsonl"))


def test_every_lab_scenario_has_a_decision_table() -> None:
    assert set(DECISIONS) == {p.name.removesuffix(".jsonl") for p in TRACES.glob("*.jsonl")}


@pytest.mark.parametrize("name", sorted(DECISIONS))
def test_lab_call_causes_exactly_these_bitrix24_requests(name: str) -> None:
    outcome = only(run(events_of(name)))
    assert outcome.requests == DECISIONS[name]
    assert outcome.last_plan.done
    assert all(not leg.visible_to for leg in outcome.progress.legs.values()), "a card was left open"


@pytest.mark.parametrize("name", ["inbound_queue_answered", "inbound_ring_group"])
def test_bursts_two_users_ringing_then_one_answering_costs_three_requests(name: str) -> None:
    outcome = only(run(events_of(name), burst=timedelta(milliseconds=20)))
    assert len(outcome.requests) == 3
    assert outcome.requests[0][1] == "show 0 [11, 12]"


@pytest.mark.parametrize("name", sorted(DECISIONS))
def test_an_ended_call_seen_only_at_its_end_lands_in_one_go(name: str) -> None:
    """Bitrix24 was unreachable for the whole call: when it returns, the call is registered and finished
    without opening a card for a call long over."""
    outcome = only(run(events_of(name), burst=timedelta(hours=1)))
    assert not any(op.startswith(("show", "hide")) for op in outcome.flat)
    finishes = [op for op in outcome.flat if op.startswith("finish")]
    assert finishes == [op for op in (op for request in DECISIONS[name] for op in request) if op.startswith("finish")]


def test_unmapped_extensions_land_on_the_default_user_and_are_reported() -> None:
    outcome = only(run(events_of("inbound_queue_local_members")))
    assert outcome.flat[-1] == "finish 0 user=1 200 3s"
    assert outcome.progress.unmapped_extensions == ("103", "104")


def test_card_mode_answer_opens_only_the_answerers_card() -> None:
    settings = CrmSettings(card_mode="answer")
    outcome = only(run(events_of("inbound_queue_answered"), settings=settings))
    assert outcome.requests == [
        ["register 0 user=12 type=2 phone=+79261234567 crm_create", "show 0 [12]"],
        ["finish 0 user=12 200 3s"],
    ]


def test_card_mode_per_user_never() -> None:
    settings = CrmSettings(card_mode_by_user={12: "never"})
    outcome = only(run(events_of("inbound_queue_answered"), settings=settings))
    assert not any("12]" in op or "[12" in op for op in outcome.flat if op.startswith("show"))


def test_licensed_card_users_only() -> None:
    outcome = only(run(events_of("inbound_queue_answered"), context={"card_users": frozenset({11})}))
    shows = [op for op in outcome.flat if op.startswith("show")]
    assert shows == ["show 0 [11]"]
    assert outcome.flat[-1] == "finish 0 user=12 200 3s"  # the call still lands with who talked


def test_missed_call_goes_to_the_clients_responsible_manager() -> None:
    portal = MiniPortal(clients={CLIENT: ("CONTACT", 7, 12)})  # Boris manages this client; 101 rang
    outcome = only(run(events_of("inbound_direct_missed"), portal=portal))
    assert outcome.requests[-2:] == [["find +79261234567"], ["finish 0 user=12 304 0s"]]


def test_missed_call_responsible_who_left_the_company_falls_back_to_last_rang() -> None:
    portal = MiniPortal(clients={CLIENT: ("CONTACT", 7, 99)})  # user 99 is not an active employee
    outcome = only(run(events_of("inbound_direct_missed"), portal=portal))
    assert outcome.flat[-1] == "finish 0 user=11 304 0s"


def test_missed_owner_policy_default_first() -> None:
    settings = CrmSettings(missed_owner=["default"], default_user_id=12)
    outcome = only(run(events_of("inbound_direct_missed"), settings=settings))
    assert outcome.flat[-1] == "finish 0 user=12 304 0s"


def test_on_missed_creates_a_lead_for_a_missed_unknown_number_only() -> None:
    settings = CrmSettings(create_client="on_missed")
    missed = only(run(events_of("inbound_direct_missed"), settings=settings))
    assert "register 0 user=11 type=2 phone=+79261234567" in missed.flat
    assert missed.requests[-1] == ["create lead assigned=11", "finish 0 user=11 304 0s"]
    answered = only(run(events_of("inbound_direct_answered"), settings=settings))
    assert not any(op.startswith("create") for op in answered.flat)


def test_contact_mode_creates_a_contact_once() -> None:
    settings = CrmSettings(create_client="always", client_kind="contact")
    outcome = only(run(events_of("inbound_direct_answered"), settings=settings))
    assert outcome.requests[-1] == ["create contact assigned=11", "finish 0 user=11 200 3s"]
    known = only(
        run(events_of("inbound_direct_answered"), settings=settings, portal=MiniPortal({CLIENT: ("CONTACT", 5, 11)}))
    )
    assert not any(op.startswith("create") for op in known.flat)


def test_never_create_clients() -> None:
    outcome = only(run(events_of("inbound_direct_missed"), settings=CrmSettings(create_client="never")))
    assert not any("crm_create" in op or op.startswith("create") for op in outcome.flat)


def test_anonymous_caller_never_becomes_a_lead() -> None:
    outcome = only(run(events_of("inbound_anonymous_answered")))
    assert outcome.flat[0] == "register 0 user=11 type=2 phone=0"


def test_internal_calls_registered_when_asked() -> None:
    outcome = only(run(events_of("internal_answered"), settings=CrmSettings(register_internal=True)))
    assert outcome.requests == [
        ["register 0 user=11 type=1 phone=102", "show 0 [11]"],
        ["finish 0 user=11 200 3s"],
    ]


def test_outbound_calls_can_be_left_out() -> None:
    outcome = only(run(events_of("outbound_answered"), settings=CrmSettings(register_outbound=False)))
    assert outcome.requests == [] and outcome.last_plan.skipped


def test_click_to_call_finishes_the_given_call_id_and_never_registers() -> None:
    outcome = only(run(events_of("outbound_answered"), context={"click_to_call_id": "externalCall.c2c"}))
    assert not any(op.startswith("register") for op in outcome.flat)
    assert outcome.flat == ["show 0 [11]", "finish 0 user=11 200 3s"]
    assert outcome.progress.legs[0].finished


def test_license_without_calls_blocks_and_keeps_everything_for_later() -> None:
    outcome = only(run(events_of("inbound_direct_answered"), context={"calls_to_crm": False}))
    assert outcome.requests == [] and outcome.last_plan.blocked and not outcome.last_plan.done


def test_a_call_nobody_can_own_is_blocked_not_dropped() -> None:
    import crm_simulation

    empty = Directory(users={})
    saved = crm_simulation.DIRECTORY
    crm_simulation.DIRECTORY = empty
    try:
        outcome = only(run(events_of("inbound_direct_answered")))
    finally:
        crm_simulation.DIRECTORY = saved
    assert outcome.requests == [] and "default user" in (outcome.last_plan.blocked or "")
    assert DIRECTORY.users[11] == DirectoryUser(id=11, name="Anna", extension="101")


def test_a_lines_default_owner_takes_calls_nobody_else_can_own() -> None:
    settings = CrmSettings.parse(
        {"lines": {"74951234501": {"name": "Sales", "default_owner": 12, "lead_source": "WEB"}}}
    )
    outcome = only(run(events_of("inbound_queue_local_members"), settings=settings))
    assert outcome.flat[0] == "register 0 user=12 type=2 phone=+79261234567 crm_create"
    assert outcome.flat[-1] == "finish 0 user=12 200 3s"


def test_a_missed_call_task_for_the_owner_linked_to_the_client_once() -> None:
    settings = CrmSettings(missed_call_task=True, missed_task_title="Перезвонить {number}")
    outcome = only(run(events_of("inbound_direct_missed"), settings=settings))
    assert outcome.requests[-1] == ["finish 0 user=11 304 0s", "task for=11 about=L_101"]
    assert outcome.progress.task_id == 102
    answered = only(run(events_of("inbound_direct_answered"), settings=settings))
    assert not any(op.startswith("task") for op in answered.flat)
