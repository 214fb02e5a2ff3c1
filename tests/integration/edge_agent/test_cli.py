"""The ``edge-agent`` command as a customer runs it: real processes, a real AMI socket (the fake server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TRACES = ROOT / "tests" / "fixtures" / "traces"
EDGE_AGENT = [sys.executable, "-m", "edge_agent.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def a_trace() -> Path:
    traces = sorted(TRACES.glob("*.jsonl"))
    if not traces:
        pytest.fail(f"no recorded traces in {TRACES}")
    return next((t for t in traces if "queue_answered" in t.name), traces[0])


@pytest.fixture
def ami_server() -> Iterator[tuple[int, Path]]:
    port, trace = free_port(), a_trace()
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox.ami_server", "--port", str(port), "--trace", str(trace)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield port, trace
    finally:
        server.terminate()
        server.wait(5)


def agent(*args: str, port: int, secret: str = "edge-secret", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGE_AMI_PORT": str(port), "EDGE_AMI_USER": "edge", "EDGE_AMI_SECRET": secret}
    return subprocess.run([*EDGE_AGENT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


TIMES = ("started_at", "answered_at", "ended_at", "talk_seconds")


def replay_summaries(trace: Path) -> list[dict[str, object]]:
    done = subprocess.run([*EDGE_AGENT, "replay", "--summary", str(trace)], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def timeless(summaries: list[dict[str, object]]) -> list[dict[str, object]]:
    """The fake server plays a trace as fast as it can, so live times differ from the recorded ones."""
    return [{k: v for k, v in s.items() if k not in TIMES} for s in summaries]


def test_watch_prints_the_same_calls_as_an_offline_replay(ami_server: tuple[int, Path]) -> None:
    port, trace = ami_server
    done = agent("watch", "--summary", "--seconds", "4", port=port)
    assert done.returncode == 0, done.stderr
    assert timeless([json.loads(line) for line in done.stdout.splitlines()]) == timeless(replay_summaries(trace))
    assert "logged in as 'edge'" in done.stderr


def test_record_with_mask_writes_a_trace_that_interprets_the_same(ami_server: tuple[int, Path], tmp_path: Path) -> None:
    port, trace = ami_server
    out = tmp_path / "masked.jsonl"
    done = agent("record", "--out", str(out), "--seconds", "4", "--mask", "--all-events", port=port)
    assert done.returncode == 0, done.stderr
    original = replay_summaries(trace)
    masked = replay_summaries(out)
    assert len(masked) == len(original) > 0
    for before, after in zip(original, masked, strict=True):
        assert after["external_number"] != before["external_number"] or before["external_number"] is None
        same = {k: v for k, v in before.items() if k not in ("external_number", "line", "recording", *TIMES)}
        assert {k: after[k] for k in same} == same
    assert "79261234567" not in out.read_text()


def test_wrong_secret_exits_3_and_says_what_to_check(ami_server: tuple[int, Path]) -> None:
    port, _ = ami_server
    done = agent("watch", "--seconds", "10", port=port, secret="wrong")
    assert done.returncode == 3
    assert "refused the AMI login for user 'edge'" in done.stderr and "manager.conf" in done.stderr


def test_missing_setting_is_a_clear_error() -> None:
    done = subprocess.run(
        [*EDGE_AGENT, "watch"], cwd=ROOT, env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "EDGE_AMI_USER" in done.stderr and "EDGE_AMI_SECRET" in done.stderr


def test_replay_reports_bad_lines_and_keeps_going(tmp_path: Path) -> None:
    trace = a_trace()
    broken = tmp_path / "broken.jsonl"
    lines = trace.read_text().splitlines()
    broken.write_text("\n".join([lines[0], "garbage {", *lines[1:]]) + "\n")
    done = subprocess.run([*EDGE_AGENT, "replay", "--summary", str(broken)], capture_output=True, text=True)
    assert done.returncode == 0
    assert "broken.jsonl:2: not JSON" in done.stderr
    assert [json.loads(x) for x in done.stdout.splitlines()] == replay_summaries(trace)
