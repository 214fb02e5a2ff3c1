"""What runs after an admin saved the settings on the page: :func:`on_settings_saved` hooks.

The click-to-call side (branch ``clicktocall``) registers its ``push_settings(rt, tenant)`` here, so agents get
their new ``settings`` message at once: ``on_settings_saved(push_settings)``. A hook that raises is logged;
the settings stay saved (the agent gets them at its next ``hello`` anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cloud.runtime import Runtime

__all__ = ["SettingsHook", "on_settings_saved", "remove_settings_hook", "settings_saved"]

log = logging.getLogger("cloud.webapp.hooks")

SettingsHook = Callable[[Runtime, str], None]
_HOOKS: list[SettingsHook] = []


def on_settings_saved(hook: SettingsHook) -> SettingsHook:
    """Register ``hook(rt, tenant)``; usable as a decorator; registering twice is once."""
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    return hook


def remove_settings_hook(hook: SettingsHook) -> None:
    if hook in _HOOKS:
        _HOOKS.remove(hook)


def settings_saved(rt: Runtime, tenant: str) -> list[str]:
    """Run every hook; returns the names of those that failed."""
    failed = []
    for hook in list(_HOOKS):
        try:
            hook(rt, tenant)
        except Exception:
            name = getattr(hook, "__name__", repr(hook))
            log.exception("tenant %s: settings hook %s failed", tenant, name)
            failed.append(name)
    return failed
