"""``python -m sandbox.bitrix24`` starts, prints its URLs, serves them and stops on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.bitrix24.testing import http

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_standalone_run_prints_working_urls() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.bitrix24", "--port", "0", "--portal", "a.bitrix24.com", "--install"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        page = re.search(r"page (\S+)", lines[2])
        token = re.search(r"access_token=(\w+)", lines[3])
        assert page and token, lines
        assert http(page.group(1)).status == 200
        rest = re.search(r"REST (\S+)", lines[2])
        assert rest is not None
        answer = http(f"{rest.group(1)}user.get?auth={token.group(1)}&FILTER[UF_PHONE_INNER]=101")
        assert answer.json()["result"][0]["NAME"] == "Anna"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        if proc.stdout is not None:
            proc.stdout.close()
