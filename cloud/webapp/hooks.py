"""What runs after an admin saved the settings on the page: :func:`on_settings_saved` hooks.

One is built in, :func:`push_to_agents`: ``cloud.clicktocall.push_settings(rt, tenant)`` sends every connected
agent its new ``settings`` message at once (an agent not connected gets them at its next ``hello``). Other parts
register their own with ``on_settings_saved(hook)``. A hook that raises is logged and reported; the settings stay saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cloud.clicktocall import push_settings
from cloud.runtime import Runtime

__all__ = ["SettingsHook", "on_settings_saved", "push_to_agents", "remove_settings_hook", "settings_saved"]

log = logging.getLogger("cloud.webapp.hooks")

SettingsHook = Callable[[Runtime, str], None]


def push_to_agents(rt: Runtime, tenant: str) -> None:
    """Send the connected agents their new settings (originate rules, channel rules)."""
    pushed = push_settings(rt, tenant)
    log.info("tenant %s: new settings pushed to %s", tenant, pushed)


_HOOKS: list[SettingsHook] = [push_to_agents]


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
