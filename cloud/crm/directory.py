"""Who is behind an extension: the portal's users by ``UF_PHONE_INNER``, cached per tenant, plus the admin's
overrides from the settings.

Bitrix24 users set their inner number themselves, so the map drifts; the cache is refreshed every
:data:`MAX_AGE` and early (at most every :data:`MIN_REFRESH_INTERVAL`) when a call meets an extension it does
not know. An extension with no user never blocks a call: the call lands on the default user and the gap is
shown on the settings page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, to_item

from .settings import CrmSettings

__all__ = [
    "MAX_AGE",
    "MIN_REFRESH_INTERVAL",
    "Directory",
    "DirectoryUser",
    "UserSource",
    "load_directory",
    "needs_refresh",
    "refresh_directory",
    "save_directory",
]

MAX_AGE = timedelta(minutes=15)
MIN_REFRESH_INTERVAL = timedelta(minutes=1)
PAGE_SIZE = 50  # Bitrix24's fixed page size for list methods
MAX_PAGES = 200  # 10,000 users


class DirectoryUser(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    name: str = ""
    extension: str | None = None


class Directory(BaseModel):
    model_config = ConfigDict(frozen=True)

    users: dict[int, DirectoryUser] = Field(default_factory=dict)  # active employees
    fetched_at: datetime | None = None
    #: Extensions calls met that map to no user, with when they were last met (for the settings page).
    unmapped: dict[str, datetime] = Field(default_factory=dict)

    def by_extension(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for user in sorted(self.users.values(), key=lambda u: u.id):
            if user.extension:
                found.setdefault(user.extension, user.id)  # two users with one number: the older account wins
        return found

    def user_of(self, extension: str | None, settings: CrmSettings) -> int | None:
        if extension is None:
            return None
        if extension in settings.extension_overrides:
            return settings.extension_overrides[extension]
        return self.by_extension().get(extension)

    def default_user(self, settings: CrmSettings, line: str | None = None) -> int | None:
        """The line's default owner, else the settings' default user, else the portal's oldest active account
        (normally its owner)."""
        for candidate in (settings.line(line).default_owner, settings.default_user_id):
            if candidate is not None:
                return candidate
        return min(self.users) if self.users else None

    def is_active(self, user_id: int) -> bool:
        return user_id in self.users


def needs_refresh(directory: Directory, now: datetime, unknown_extension: bool = False) -> bool:
    if directory.fetched_at is None:
        return True
    age = now - directory.fetched_at
    return age >= MAX_AGE or (unknown_extension and age >= MIN_REFRESH_INTERVAL)


class UserSource(Protocol):
    """The part of the Bitrix24 client the directory needs."""

    def call(self, method: str, params: Any = None) -> Any: ...


def _users_from(pages: Iterable[list[dict[str, Any]]]) -> dict[int, DirectoryUser]:
    users: dict[int, DirectoryUser] = {}
    for page in pages:
        for raw in page:
            try:
                ident = int(raw["ID"])
            except (KeyError, TypeError, ValueError):
                continue
            active = raw.get("ACTIVE")
            if active in (False, "N", "false", 0):
                continue
            name = " ".join(str(raw.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
            extension = str(raw.get("UF_PHONE_INNER") or "").strip() or None
            users[ident] = DirectoryUser(id=ident, name=name, extension=extension)
    return users


def refresh_directory(client: UserSource, previous: Directory, now: datetime) -> Directory:
    """Read every active employee (``user.get``, 50 per page) into a fresh directory."""
    pages: list[list[dict[str, Any]]] = []
    for page_number in range(MAX_PAGES):
        items = client.call(
            "user.get", {"FILTER": {"ACTIVE": True, "USER_TYPE": "employee"}, "start": 50 * page_number}
        )
        pages.append([item for item in items or [] if isinstance(item, dict)] if isinstance(items, list) else [])
        if not isinstance(items, list) or len(items) < PAGE_SIZE:
            break
    return previous.model_copy(update={"users": _users_from(pages), "fetched_at": now})


def load_directory(rt: Runtime, tenant: str) -> Directory:
    item = rt.dynamodb.get_item(TableName=rt.tables.directories, Key=to_item({"tenant": tenant})).get("Item")
    if item is None:
        return Directory()
    return Directory.model_validate_json(from_item(item)["directory"])


def save_directory(rt: Runtime, tenant: str, directory: Directory) -> None:
    rt.dynamodb.put_item(
        TableName=rt.tables.directories,
        Item=to_item({"tenant": tenant, "directory": json.dumps(directory.model_dump(mode="json"))}),
    )
