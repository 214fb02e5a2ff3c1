"""``/b24/app`` as Bitrix24 opens it (a POST into its iframe), and the page's static files."""

from __future__ import annotations

import json
import re

import pytest
from chalice.test import Client
from webapp_builders import ANNA, OLGA, Portals

from cloud.webapp.page import _json_for_script

pytest_plugins = ["cloud_testkit", "webapp_testkit"]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CONFIG = re.compile(r'<script type="application/json" id="pbxlink-config">(.*?)</script>', re.S)


def config_of(html: str) -> dict[str, object]:
    match = CONFIG.search(html)
    assert match, html[:400]
    return dict(json.loads(match.group(1)))


def test_bitrix24_opens_the_page_for_an_admin_in_russian(b24: Portals, web: Client) -> None:
    token = b24.token("acme", OLGA)
    response = web.http.post(
        "/b24/app?DOMAIN=acme.bitrix24.com&PROTOCOL=1&LANG=ru&APP_SID=abc",
        headers=FORM,
        body=b24.page_form("acme", OLGA, token=token),
    )
    assert response.status_code == 200
    html = response.body.decode()
    assert '<html lang="ru">' in html and "Загрузка" in html
    config = config_of(html)
    assert config["member_id"] == b24.member("acme") and config["auth"] == token and config["lang"] == "ru"
    assert config["viewer"] == {"tenant": b24.member("acme"), "user_id": OLGA, "name": "Olga Owner", "admin": True}
    assert dict(config["strings"])["tab.settings"] == "Настройки"  # type: ignore[call-overload]
    assert 'src="static/app.js"' in html and 'href="static/app.css"' in html  # relative: any stage prefix
    assert "REFRESH_ID" not in html and "not-used-by-the-page" not in html
    headers = response.headers
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self' https://api.bitrix24.com" in headers["Content-Security-Policy"]


def test_a_user_gets_the_page_in_english_for_other_languages(b24: Portals, web: Client) -> None:
    response = web.http.post("/b24/app?LANG=de", headers=FORM, body=b24.page_form("acme", ANNA))
    config = config_of(response.body.decode())
    assert config["lang"] == "en" and dict(config["viewer"])["admin"] is False  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("form", "status", "state"),
    [
        ("", 400, "not_from_bitrix24"),
        ("member_id=x", 400, "not_from_bitrix24"),
        ("AUTH_ID=0123456789abcdef0123456789abcdef&member_id={acme}", 401, "unauthenticated"),
        ("AUTH_ID={beta_token}&member_id={acme}", 401, "unauthenticated"),
        ("%%%", 400, "not_from_bitrix24"),
    ],
)
def test_the_page_is_shown_only_to_a_verified_user(
    b24: Portals, web: Client, form: str, status: int, state: str
) -> None:
    body = form.format(acme=b24.member("acme"), beta_token=b24.token("beta", OLGA))
    response = web.http.post("/b24/app?LANG=en", headers=FORM, body=body)
    assert response.status_code == status
    html = response.body.decode()
    assert f'data-state="{state}"' in html and "pbxlink-config" not in html
    assert "Open pbxlink from your Bitrix24 portal" in html


def test_opening_the_url_by_hand_explains_where_to_open_it(b24: Portals, web: Client) -> None:
    response = web.http.get("/b24/app?LANG=ru")
    assert response.status_code == 400 and "Откройте pbxlink" in response.body.decode()


def test_a_portal_that_does_not_answer_gets_a_retry_page(b24: Portals, web: Client) -> None:
    form = b24.page_form("acme", OLGA)
    b24.emulator.faults.outage_until = b24.emulator.clock.now() + 60
    response = web.http.post("/b24/app", headers=FORM, body=form)
    assert response.status_code == 503 and 'data-state="unavailable"' in response.body.decode()


def test_config_json_cannot_close_its_script_element() -> None:
    text = _json_for_script({"name": "</script><script>alert(1)</script><!--", "amp": "a&b"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script><!--", "amp": "a&b"}


@pytest.mark.parametrize(("name", "kind"), [("app.js", "text/javascript"), ("app.css", "text/css")])
def test_static_files_are_served(web: Client, name: str, kind: str) -> None:
    response = web.http.get(f"/b24/static/{name}")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith(kind)
    assert len(response.body) > 1000


@pytest.mark.parametrize("name", ["x.js", "..%2Fapp.py", "app.py", "%2E%2E"])
def test_nothing_else_is_served_as_static(web: Client, name: str) -> None:
    assert web.http.get(f"/b24/static/{name}").status_code == 404
