"""The cloud's Chalice app: websocket routes for edge agents, REST routes for Bitrix24 (install, events) and the
settings pages. Handlers are one line each; the logic is in :mod:`cloud.link` (``$connect``/``$disconnect`` in
:mod:`cloud.link.session`, ``$default`` in :mod:`cloud.link.dispatch`), ``/b24/install`` and ``/b24/events`` in
:mod:`cloud.bitrix24.routes`, ``/b24/app`` and ``/b24/api/*`` in :mod:`cloud.webapp.routes`.

Chalice names the Python functions ``connect``/``message``/``disconnect`` in ``app.handler_map`` (what
``chalice.test.Client.lambda_.invoke`` takes); the deployed Lambdas are ``websocket_connect`` etc.
"""

from __future__ import annotations

import gc

# Importing the app builds a few hundred pydantic models and classes, tens of thousands of objects and none of
# them garbage, which the cyclic collector would walk again and again: about 15 % of a cold start
# (docs/performance.md). So it is off while the app's modules load; then what they built moves to the permanent
# generation (gc.freeze), so collections in a warm container do not walk it either.
_collecting = gc.isenabled()
gc.disable()

import logging
import threading
from collections import OrderedDict

from chalice.app import Chalice, CloudWatchEvent, Rate, Response, WebsocketEvent

from cloud import clicktocall, clock, licensing
from cloud.bitrix24 import routes as b24
from cloud.bitrix24.install import on_installed
from cloud.crm import pipeline
from cloud.link import dispatch, session
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.tenants.store import Tenant
from cloud.webapp import routes as web

gc.freeze()
if _collecting:
    gc.enable()

app = Chalice(app_name="pbxlink-cloud")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.log.setLevel(logging.INFO)
clicktocall.register_handlers()  # ONEXTERNALCALLSTART / ONEXTERNALCALLBACKSTART → cloud.clicktocall

_override: Runtime | None = None


def use_runtime(runtime: Runtime | None) -> None:
    """Make every handler use ``runtime`` (tests, cloud-local); ``None`` goes back to the environment."""
    global _override
    _override = runtime


_RUNTIMES: OrderedDict[Settings, Runtime] = OrderedDict()
_MAX_RUNTIMES = 4
_runtimes_lock = threading.Lock()


def _runtime_for(settings: Settings) -> Runtime:
    """One per warm Lambda container and settings: boto3 clients are slow to build. A runtime pushed out by newer
    settings (tests and cloud-local run stack after stack in one process) gets its HTTP client closed, not left
    for the garbage collector with a connection open."""
    with _runtimes_lock:
        runtime = _RUNTIMES.get(settings)
        if runtime is not None:
            _RUNTIMES.move_to_end(settings)
            return runtime
        runtime = _RUNTIMES[settings] = Runtime(settings)
        while len(_RUNTIMES) > _MAX_RUNTIMES:
            _, evicted = _RUNTIMES.popitem(last=False)
            evicted.close()
        return runtime


def close_runtimes() -> None:
    """Close the cached runtimes' clients: cloud-local and tests start and stop stacks in one process."""
    with _runtimes_lock:
        while _RUNTIMES:
            _RUNTIMES.popitem()[1].close()


def runtime() -> Runtime:
    return _override if _override is not None else _runtime_for(Settings.from_env())


@on_installed
def start_license(rt: Runtime, tenant: Tenant) -> None:
    """A new portal's first license check starts its trial (``docs/licensing.md``)."""
    licensing.on_install(rt, tenant.tenant, clock.now())


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, int]:
    return session.on_connect(runtime(), event.to_dict())


@app.on_ws_message()
def message(event: WebsocketEvent) -> None:
    dispatch.on_message(runtime(), event.to_dict())


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> None:
    session.on_disconnect(runtime(), event.to_dict())


@app.route("/b24/install", methods=["POST"], content_types=b24.CONTENT_TYPES)
def b24_install() -> Response:
    return b24.install_route(runtime(), app.current_request)


@app.route("/b24/events", methods=["POST"], content_types=b24.CONTENT_TYPES)
def b24_events() -> Response:
    return b24.events_route(runtime(), app.current_request)


@app.route("/b24/app", methods=["GET", "POST"], content_types=web.PAGE_CONTENT_TYPES)
def b24_app() -> Response:
    return web.page_route(runtime(), app.current_request)


@app.route("/b24/static/{name}", methods=["GET"])
def b24_static(name: str) -> Response:
    return web.static_route(name)


@app.route("/b24/api/{section}", methods=["GET", "POST", "PATCH"], content_types=web.API_CONTENT_TYPES)
def b24_api(section: str) -> Response:
    return web.api_route(runtime(), app.current_request, section)


@app.route("/b24/api/{section}/{item}", methods=["DELETE"], content_types=web.API_CONTENT_TYPES)
def b24_api_item(section: str, item: str) -> Response:
    return web.api_route(runtime(), app.current_request, section, item)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="crm_sweep")
def crm_sweep(event: CloudWatchEvent) -> None:
    """Calls whose Bitrix24 side is due again (deferred by a rate limit or an outage, or left by a worker that
    died), swept for most of the minute until the next invocation."""
    pipeline.sweep_for(runtime(), seconds=50)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="click_to_call_sweep")
def click_to_call_sweep(event: CloudWatchEvent) -> None:
    """Click-to-calls a handler left half done (a failure finish Bitrix24 could not take, a handler that died):
    finished so no card stays open."""
    clicktocall.sweep(runtime())


@app.schedule(Rate(1, unit=Rate.HOURS), name="expire_recordings")
def expire_recordings(event: CloudWatchEvent) -> None:
    """Delete the recordings whose tenant's retention ended (see :mod:`cloud.recordings.retention`)."""
    from cloud.recordings.retention import expire_recordings as expire

    rt = runtime()
    while expire(rt, clock.now()):  # 200 per round, until none is due
        pass


@app.schedule(Rate(5, unit=Rate.MINUTES), name="repair_bindings")
def repair_bindings(event: CloudWatchEvent) -> None:
    """Bind the events of portals whose install could not (Bitrix24 never re-sends ONAPPINSTALL; without the
    bindings click-to-call and uninstall events never arrive)."""
    from cloud.bitrix24.install import repair_bindings as repair

    repair(runtime())


@app.schedule(Rate(15, unit=Rate.MINUTES))
def refresh_licenses(event: CloudWatchEvent) -> None:
    """Renew the leases that are half used, retry failed checks (see :mod:`cloud.licensing`)."""
    licensing.refresh_due(runtime(), clock.now())
