"""Every word of the page exists in English and Russian, every settings field and option has a label, and
every key the page's script asks for is in the catalog."""

from __future__ import annotations

import re
from importlib import resources
from typing import get_args

import pytest

from cloud.calls.state import CallStatus
from cloud.webapp import form
from cloud.webapp.i18n import CATALOG, LANGUAGES, language_of, strings, text
from wire_protocol.call_events import CallResult, Direction

SCRIPT = resources.files("cloud.webapp").joinpath("static", "app.js").read_text(encoding="utf-8")
CYRILLIC = re.compile("[\u0400-\u04ff]")


def test_every_key_has_both_languages_and_russian_is_russian() -> None:
    for key, (english, russian) in CATALOG.items():
        assert english.strip() and russian.strip(), key
        if CYRILLIC.search(english):
            pytest.fail(f"{key}: English text in Cyrillic")
        if english == russian and re.search(r"[a-z]{4}", english):
            pytest.fail(f"{key}: not translated: {english!r}")


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("ru", "ru"),
        ("RU", "ru"),
        ("by", "ru"),
        ("kz", "ru"),
        ("en", "en"),
        ("de", "en"),
        ("", "en"),
        (None, "en"),
        ("ua", "en"),
    ],
)
def test_bitrix24_lang_picks_the_language(lang: str | None, expected: str) -> None:
    assert language_of(lang) == expected


def test_strings_are_one_language_each() -> None:
    english, russian = strings("en"), strings("ru")
    assert set(english) == set(russian) == set(CATALOG)
    assert english["tab.settings"] == "Settings" and russian["tab.settings"] == "Настройки"
    assert text("ru", "no.such.key") == "no.such.key"
    assert LANGUAGES == ("en", "ru")


def test_every_settings_field_and_option_has_a_label() -> None:
    missing = [path for path in form.paths() if f"f.{path}" not in CATALOG]
    assert missing == []
    assert sorted(o for o in form.option_values() if f"o.{o}" not in CATALOG) == []


def test_every_key_the_script_asks_for_exists() -> None:
    literal = set(re.findall(r"\bt\(\"([a-z_.]+)\"\)", SCRIPT))
    assert literal, 'the script\'s t("...") calls were not found'
    assert sorted(literal - set(CATALOG)) == []


@pytest.mark.parametrize(
    ("prefix", "values"),
    [
        ("tab.", ["status", "agents", "extensions", "settings", "calls"]),
        ("state.", ["online", "offline", "revoked"]),
        ("dir.", list(get_args(Direction))),
        ("result.", list(get_args(CallResult))),
        ("crm.", ["done", "waiting", "sending", "deferred", "blocked", "skipped", "failed", "missing"]),
        ("license.state.", ["unknown", "trial", "active", "grace", "restricted"]),
        ("ext.source.", ["bitrix24", "override", "none"]),
        ("warn.", ["users_unavailable"]),
    ],
)
def test_keys_the_script_builds_exist(prefix: str, values: list[str]) -> None:
    assert prefix in SCRIPT or prefix.rstrip(".") in SCRIPT
    assert [v for v in values if prefix + v not in CATALOG] == []


def test_call_states_are_known() -> None:
    assert set(get_args(CallStatus)) == {"started", "ringing", "answered", "ended"}
