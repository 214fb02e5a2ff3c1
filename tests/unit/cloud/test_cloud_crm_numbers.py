import pytest

from cloud.crm.numbers import normalize


@pytest.mark.parametrize(
    ("raw", "country", "value", "kind"),
    [
        ("89261234567", "RU", "+79261234567", "e164"),
        ("79261234567", "RU", "+79261234567", "e164"),
        ("9261234567", "RU", "+79261234567", "e164"),
        ("+7 (926) 123-45-67", "RU", "+79261234567", "e164"),
        ("8 926 123 45 67", "RU", "+79261234567", "e164"),
        ("0079261234567", "RU", "+79261234567", "e164"),
        ("81049301234567", "RU", "+49301234567", "e164"),
        ("+49301234567", "RU", "+49301234567", "e164"),
        ("030123456", "DE", "+4930123456", "e164"),
        ("80291234567", "BY", "+375291234567", "e164"),
        ("0501234567", "UA", "+380501234567", "e164"),
        ("2025550123", "US", "+12025550123", "e164"),
        ("12025550123", "US", "+12025550123", "e164"),
        ("01149301234567", "US", "+49301234567", "e164"),
        ("112", "RU", "112", "short"),
        ("0911", "RU", "0911", "short"),
        ("101", "RU", "101", "short"),
        ("", "RU", "", "anonymous"),
        (None, "RU", "", "anonymous"),
        ("anonymous", "RU", "", "anonymous"),
        ("Restricted", "RU", "", "anonymous"),
        ("123456789", "RU", "123456789", "unknown"),
        ("+0123", "RU", "0123", "unknown"),
    ],
)
def test_numbers_become_e164_where_certain(raw: str | None, country: str, value: str, kind: str) -> None:
    number = normalize(raw, country)
    assert (number.value, number.kind) == (value, kind)


def test_only_real_numbers_can_be_clients() -> None:
    assert normalize("89261234567").is_client_number
    assert not normalize("112").is_client_number
    assert not normalize("anonymous").is_client_number


def test_unknown_country_keeps_international_forms_only() -> None:
    assert normalize("0049301234567", "ZZ").value == "+49301234567"
    assert normalize("89261234567", "ZZ").kind == "unknown"
