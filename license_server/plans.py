"""The plans the vendor sells: the features and limits a license gets when issued on (or moved to) a plan.

A license keeps its own copy, so the vendor can grant one portal more than its plan without a new plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from license_protocol import ALL_FEATURES, Feature, Limits

__all__ = ["PLANS", "TRIAL_PLAN", "Plan"]


@dataclass(frozen=True)
class Plan:
    name: str
    features: frozenset[Feature]
    limits: Limits


TRIAL_PLAN: Final = "trial"

PLANS: Final[dict[str, Plan]] = {
    plan.name: plan
    for plan in (
        Plan(TRIAL_PLAN, ALL_FEATURES, Limits()),
        Plan(
            "start",
            frozenset({"calls_to_crm", "click_to_call", "recordings", "lead_creation"}),
            Limits(users_with_cards=10, agents=1),
        ),
        Plan("business", ALL_FEATURES - {"multiple_pbx"}, Limits(users_with_cards=50, agents=1)),
        Plan("enterprise", ALL_FEATURES, Limits()),
    )
}
