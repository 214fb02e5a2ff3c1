"""Headless Chromium for browser tests: Debian's ``chromium`` package driven by Playwright, never a browser
Playwright downloads (``playwright install`` cannot reach its download host; shared/reference/browser-tests.md).

``make install`` installs the package when it can (root) and ``.ci/run`` always runs as root, so a missing
browser is a broken set-up: :func:`chromium_path` raises :class:`BrowserMissing` with what to run, and the
browser tests fail with it instead of skipping silently.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

__all__ = ["CHROMIUM_ARGS", "BrowserMissing", "chromium_path", "launch_chromium"]

#: Without the background-networking flags Chromium keeps trying to reach outside hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


class BrowserMissing(RuntimeError):
    """No Chromium on this machine."""


def chromium_path() -> str:
    """``PBXLINK_CHROMIUM`` if set, else Debian's ``chromium`` on ``PATH``."""
    configured = os.environ.get("PBXLINK_CHROMIUM")
    found = configured if configured and os.access(configured, os.X_OK) else shutil.which("chromium")
    if not found:
        raise BrowserMissing(
            "Chromium is not installed: the browser tests need Debian's chromium package. Run `make install` as root "
            "(it runs `apt-get install -y chromium`), or install it yourself, or point PBXLINK_CHROMIUM at a Chromium."
        )
    return found


async def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser from an ``async_playwright()`` context."""
    return await playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
