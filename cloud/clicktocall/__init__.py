"""Click-to-call and CRM-form callbacks: Bitrix24 events become ``originate`` commands to the right agent,
guarded against toll fraud, and every call that cannot be placed is finished in Bitrix24 with the reason.
See ``docs/click-to-call.md``."""

from __future__ import annotations

from cloud.bitrix24.events import B24Event, register_event_handler
from cloud.runtime import Runtime
from cloud.tenants.store import Tenant

from . import failures
from .agent_settings import push_settings, settings_for_agent
from .context import ClickToCallServices
from .failures import on_command_failed
from .handlers import handle_callback, handle_click, retry_callback

__all__ = ["on_command_failed", "push_settings", "register_handlers", "settings_for_agent", "sweep"]

EVENTS = ("ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART")


def _on_click(rt: Runtime, tenant: Tenant, event: B24Event) -> None:
    handle_click(rt, tenant, event)


def _on_callback(rt: Runtime, tenant: Tenant, event: B24Event) -> None:
    handle_callback(rt, tenant, event)


def sweep(rt: Runtime, services: ClickToCallServices | None = None, limit: int = 100) -> int:
    """Finish or complete what handlers left half done (:func:`cloud.clicktocall.failures.sweep`), placing the
    callbacks Bitrix24 could not register when they came."""
    return failures.sweep(rt, services, limit, retry=retry_callback)


def register_handlers() -> None:
    """Route the two telephony events here (``cloud.app`` does it at import; tests may do it again)."""
    register_event_handler("ONEXTERNALCALLSTART", _on_click)
    register_event_handler("ONEXTERNALCALLBACKSTART", _on_callback)
