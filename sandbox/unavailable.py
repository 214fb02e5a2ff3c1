"""What a test does when something it needs from the machine is missing: skip on a developer's machine, fail in CI.

``make install`` installs every Debian package the tiers need (as root, as CI is), and ``.ci/run`` starts the
Asterisk lab, so under ``CI`` a missing one is a broken set-up, not a reason to run less.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["unavailable"]


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs what the tests need: see 'make install')", pytrace=False)
    pytest.skip(reason)
