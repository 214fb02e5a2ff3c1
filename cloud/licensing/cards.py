"""Who keeps call cards when a plan's ``users_with_cards`` is exceeded (pure; storage is in ``store``).

The first N Bitrix24 users ever seen ringing keep their cards: the order is remembered per tenant, so cards
never jump from one person to another as calls come and go. A user removed with
:func:`cloud.licensing.forget_card_user` frees a place for the next one in line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["MAX_REMEMBERED", "keep_cards", "remember"]

#: Enough for any portal's users; bounds the stored item (DynamoDB items are at most 400 KB).
MAX_REMEMBERED: Final = 10_000


def remember(seen: Sequence[str], user_ids: Iterable[str]) -> list[str]:
    """``seen`` with the users not in it yet appended, in the order given (duplicates once)."""
    result = list(seen)
    known = set(result)
    for user_id in user_ids:
        if user_id not in known and len(result) < MAX_REMEMBERED:
            result.append(user_id)
            known.add(user_id)
    return result


def keep_cards(seen: Sequence[str], ringing: Sequence[str], limit: int | None) -> list[str]:
    """Those of ``ringing`` (in their order) who may see a card: all without a limit, else those among the
    first ``limit`` users of ``seen``. Users missing from ``seen`` get none while the limit is exceeded."""
    if limit is None:
        return list(dict.fromkeys(ringing))
    holders = set(seen[:limit])
    return [user_id for user_id in dict.fromkeys(ringing) if user_id in holders]
