"""``make demo ARGS=--once``: the whole product on this machine, checked end to end (the simulator PBX)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]


def test_the_demo_brings_every_call_to_the_crm_as_expected() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sandbox.demo", "--once"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "Every call reached the CRM as expected." in out
    assert "new lead #1 created for the unknown number +79261234567" in out
    assert "card closed early for Anna (101)" in out  # Boris answered the queue call
    assert "  NO" not in out  # no row of the outcome table differs
    assert "/portal/acme.bitrix24.com" in out and "/b24/app" in out
