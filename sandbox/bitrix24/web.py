"""The portal as a person would see it: plain server-rendered HTML, no scripts, no external assets.

Shows each user's open call cards, the call log (status, duration, owner, recording), leads, contacts,
external lines and delivered events, with a "click to call" control per user that does what clicking a phone
number in Bitrix24 does (ONEXTERNALCALLSTART).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from sandbox.bitrix24.emulator import Emulator
from sandbox.bitrix24.portal import Call, Portal

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f3f5f7}.card{display:inline-block;border:1px solid #2fc6f6;border-radius:6px;padding:.3em .6em;
margin:.15em;background:#eefaff}.hidden{border-color:#bbb;background:#f6f6f6;color:#888}
.ok{color:#187a2f}.bad{color:#b3261e}form{display:inline}small{color:#666}
.ids{display:block;word-break:break-all;width:13em}.nowrap{white-space:nowrap}
"""
STATUS_TEXT = {
    "200": "answered",
    "304": "missed",
    "603": "declined",
    "603-S": "cancelled",
    "486": "busy",
    "480": "unavailable",
    "484": "direction unavailable",
    "503": "direction unavailable",
    "404": "invalid number",
    "403": "forbidden",
    "402": "insufficient funds",
    "423": "blocked",
}
TYPE_TEXT = {1: "outgoing", 2: "incoming", 3: "incoming (redirected)", 4: "callback", 5: "informational"}


def _t(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f"<p><small>{escape(empty)}</small></p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def not_found() -> str:
    return _page("Not found", "<h1>404 Not found</h1><p><a href='/'>Portals</a></p>")


def index(em: Emulator) -> str:
    items = "".join(
        f"<li><a href='/portal/{escape(d)}'>{escape(d)}</a> <small>member_id {escape(p.member_id)} · "
        f"REST {escape(p.client_endpoint)}</small></li>"
        for d, p in sorted(em.portals.items())
    )
    faults = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in em.faults.as_dict().items())
    outage = " <b class='bad'>OUTAGE NOW</b>" if em.in_outage() else ""
    body = (
        f"<h1>Bitrix24 emulator</h1><p>OAuth: <code>{escape(em.base_url)}/oauth/token/</code>{outage}</p>"
        f"<h2>Portals</h2><ul>{items or '<li>none</li>'}</ul>"
        f"<h2>Fault knobs</h2><table>{faults}</table>"
        "<p><small>Set them with <code>POST /_emulator/faults</code> (JSON or form).</small></p>"
    )
    return _page("Bitrix24 emulator", body)


def _card(call: Call, visible: bool) -> str:
    cls = "card" if visible else "card hidden"
    who = f"{TYPE_TEXT.get(call.type, call.type)} · {escape(call.phone_number)}"
    state = "shown" if visible else "hidden"
    return f"<span class='{cls}' title='{escape(call.call_id)}'>{who} <small>({state})</small></span>"


def portal_page(em: Emulator, portal: Portal) -> str:
    with portal.lock:
        return _portal_page(em, portal)


def _portal_page(em: Emulator, portal: Portal) -> str:
    d = escape(portal.domain)
    users = []
    for user in sorted(portal.users.values(), key=lambda u: u.id):
        cards = [_card(c, c.cards[user.id]) for c in portal.calls.values() if not c.finished and user.id in c.cards]
        click = (
            f"<form method='post' action='/_emulator/portals/{d}/click'>"
            f"<input type='hidden' name='user_id' value='{user.id}'>"
            f"<input name='phone' placeholder='+79261234567' size='14'> <button>Call</button></form>"
        )
        users.append(
            [
                str(user.id),
                escape(user.full_name) + ("" if user.active else " <small>(inactive)</small>"),
                escape(user.phone_inner or "—"),
                " ".join(cards) or "<small>no open cards</small>",
                click,
            ]
        )
    log_rows = []
    for call in sorted(portal.calls.values(), key=lambda c: c.registered_at, reverse=True):
        owner = portal.users.get(call.finish_user_id or call.user_id)
        if call.finished:
            text = STATUS_TEXT.get(call.status_code, call.status_code)
            cls = "ok" if call.status_code == "200" else "bad"
            status = f"<span class='{cls}'>{escape(call.status_code)} {escape(text)}</span>"
        else:
            status = "in progress"
        record = ""
        if call.record is not None:
            record = f"<a href='/_emulator/files/{d}/{call.record.id}'>{escape(call.record.name)}</a>"
        entity = portal.entity(call.crm_entity_type, call.crm_entity_id)
        crm = f"{escape(call.crm_entity_type or '')} {escape(entity.title) if entity else ''}".strip()
        log_rows.append(
            [
                f"<span class='nowrap' title='{_t(call.start)}'>{_t(call.start)[11:]}</span>",
                escape(TYPE_TEXT.get(call.type, str(call.type)))
                + (" <small>(click)</small>" if call.click_to_call else ""),
                escape(call.phone_number)
                + (f"<br><small>line {escape(call.line_number)}</small>" if call.line_number else ""),
                status,
                f"{call.duration} s" if call.finished else "",
                escape(owner.full_name if owner else "?"),
                crm,
                record,
                f"<small class='ids'>{escape(call.call_id)}<br>{escape(call.external_call_id or '')}"
                + (f"<br>registered x{call.registrations}" if call.registrations > 1 else "")
                + "</small>",
            ]
        )

    options = "".join(
        f"<option value='{u.id}'>{escape(u.full_name)}</option>"
        for u in sorted(portal.users.values(), key=lambda u: u.id)
    )

    def phone_click(e: Any, phone: str) -> str:
        """A phone number in a CRM card: clicking it as the chosen user starts a click-to-call for that entity."""
        return (
            f"<form method='post' action='/_emulator/portals/{d}/click'>"
            f"<input type='hidden' name='phone' value='{escape(phone)}'>"
            f"<input type='hidden' name='crm_entity_type' value='{escape(e.type)}'>"
            f"<input type='hidden' name='crm_entity_id' value='{e.id}'>"
            f"{escape(phone)} <select name='user_id'>{options}</select> <button>Call</button></form>"
        )

    def crm_rows(table: dict[int, Any]) -> list[list[str]]:
        rows = []
        for e in table.values():
            owner = portal.users.get(e.assigned)
            rows.append(
                [
                    str(e.id),
                    escape(e.title),
                    "<br>".join(phone_click(e, phone) for phone in e.phones),
                    escape(str(e.fields.get("SOURCE_ID", ""))),
                    escape(owner.full_name if owner else str(e.assigned)),
                    _t(e.created_at),
                ]
            )
        return rows

    lines = [
        [escape(inst.app_name), escape(n), escape(str(line.get("NAME", ""))), escape(str(line.get("CRM_AUTO_CREATE")))]
        for inst in portal.installations.values()
        for n, line in inst.lines.items()
    ]
    apps = [
        [
            escape(inst.client_id),
            "yes" if inst.installed else "waiting for installFinish",
            escape(", ".join(sorted({b.event for b in portal.bindings if b.client_id == inst.client_id}))),
        ]
        for inst in portal.installations.values()
    ]
    events = [
        [_t(ev.created_at), escape(ev.event), escape(ev.url), escape(", ".join(ev.attempts) or "queued")]
        for ev in reversed(portal.events[-50:])
    ]
    acts = [
        [str(a.id), escape(a.subject), f"{escape(a.owner_type)} {a.owner_id}", "yes" if a.completed else "no"]
        for a in portal.activities.values()
    ]
    audit = portal.audit()
    problems = [[escape(name.replace("_", " ")), escape(json.dumps(value))] for name, value in audit.items() if value]
    body = (
        f"<p><a href='/'>All portals</a></p><h1>{d}</h1>"
        f"<p><small>member_id {escape(portal.member_id)} · REST {escape(portal.client_endpoint)} · "
        "reload the page to see new calls</small></p>"
        "<h2>Employees and their call cards</h2>"
        + _table(["ID", "Name", "Extension", "Call cards", "Click to call"], users, "No users")
        + "<h2>Call log</h2>"
        + _table(
            ["Started (UTC)", "Type", "Number", "Status", "Duration", "Owner", "CRM", "Recording", "IDs"],
            log_rows,
            "No calls yet",
        )
        + "<h2>Leads</h2>"
        + _table(["ID", "Title", "Phone", "Source", "Responsible", "Created"], crm_rows(portal.leads), "No leads")
        + "<h2>Contacts</h2>"
        + _table(["ID", "Name", "Phone", "Source", "Responsible", "Created"], crm_rows(portal.contacts), "No contacts")
        + (
            "<h2>Companies</h2>"
            + _table(["ID", "Title", "Phone", "Source", "Responsible", "Created"], crm_rows(portal.companies), "")
            if portal.companies
            else ""
        )
        + "<h2>Call activities</h2>"
        + _table(["ID", "Subject", "Owner", "Completed"], acts, "No activities")
        + "<h2>External lines</h2>"
        + _table(["App", "Number", "Name", "CRM auto-create"], lines, "No external lines")
        + "<h2>Applications</h2>"
        + _table(["Client ID", "Installed", "Bound events"], apps, "No applications installed")
        + "<h2>Loose ends (audit)</h2>"
        + _table(["Finding", "Details"], problems, "Nothing to report: every call finished, no card left open")
        + "<h2>Events sent</h2>"
        + _table(["When", "Event", "Handler", "HTTP"], events, "No events sent")
    )
    return _page(portal.domain, body)


def state(em: Emulator) -> dict[str, Any]:
    """A JSON snapshot for tests and scripts (``GET /_emulator/state``)."""
    out: dict[str, Any] = {"faults": em.faults.as_dict(), "portals": {}}
    for domain, portal in em.portals.items():
        with portal.lock:
            out["portals"][domain] = {
                "member_id": portal.member_id,
                "client_endpoint": portal.client_endpoint,
                "calls": [
                    {
                        "CALL_ID": c.call_id,
                        "EXTERNAL_CALL_ID": c.external_call_id,
                        "USER_ID": c.user_id,
                        "PHONE_NUMBER": c.phone_number,
                        "TYPE": c.type,
                        "registrations": c.registrations,
                        "cards": {str(k): v for k, v in c.cards.items()},
                        "finished": c.finished,
                        "STATUS_CODE": c.status_code,
                        "DURATION": c.duration,
                        "FINISH_USER_ID": c.finish_user_id,
                        "CRM_ENTITY_TYPE": c.crm_entity_type,
                        "CRM_ENTITY_ID": c.crm_entity_id,
                        "RECORD": c.record.name if c.record else None,
                        "CRM_ACTIVITY_ID": c.activity_id,
                        "card_log": [[t, action, uid] for t, action, uid in c.card_log],
                    }
                    for c in portal.calls.values()
                ],
                "audit": portal.audit(),
                "leads": {str(k): v.fields for k, v in portal.leads.items()},
                "contacts": {str(k): v.fields for k, v in portal.contacts.items()},
                "tasks": {str(k): fields for k, fields in portal.tasks.items()},
                "companies": {str(k): v.fields for k, v in portal.companies.items()},
                "events": [{"event": e.event, "url": e.url, "attempts": e.attempts} for e in portal.events],
            }
    return out
