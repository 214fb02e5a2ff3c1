import pytest

from cloud.crm.settings import CrmSettings, InvalidSettings, load_settings, save_settings
from cloud.runtime import Runtime

pytest_plugins = ["cloud_testkit"]


def test_defaults_work_on_install() -> None:
    settings = CrmSettings()
    assert settings.card_mode == "ring" and settings.missed_owner == ["responsible", "last_rang", "default"]
    assert settings.card_mode_of(5) == "ring" and settings.lead_source(None) == "CALL"


def test_every_problem_is_named() -> None:
    with pytest.raises(InvalidSettings) as caught:
        CrmSettings.parse({"card_mode": "sometimes", "default_country": "XX", "colour": "red", "missed_owner": []})
    text = str(caught.value)
    for field in ("card_mode", "default_country", "colour", "missed_owner"):
        assert field in text
    assert "unsupported country 'XX'" in text


def test_saved_settings_round_trip_per_tenant(rt: Runtime) -> None:
    mine = CrmSettings(card_mode="answer", card_mode_by_user={12: "never"}, extension_overrides={"103": 7})
    save_settings(rt, "portal-a", mine, by_user=1)
    assert load_settings(rt, "portal-a") == mine
    assert load_settings(rt, "portal-b") == CrmSettings()
