"""What a customer gets from ``pip install``: a wheel built from this tree, installed into a fresh virtual
environment with pip (dependencies from the package index): ``edge-agent`` works, and none of the cloud's
dependencies came along."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
#: The cloud's and the tests' dependencies: the agent's install must not pull any of them.
#: httpx is the agent's too (it uploads recordings to the pre-signed URL the cloud hands out).
CLOUD_ONLY = {"boto3", "botocore", "chalice", "cryptography", "moto", "cfn-lint"}


def run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, check=False)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("agent-install")
    # built from a copy: setuptools writes build/ and *.egg-info next to the sources and reuses them
    source = work / "src"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache")
    )
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", source)
    (wheel,) = (work / "dist").glob("pbxlink-*.whl")
    run(sys.executable, "-m", "venv", work / "venv")
    run(work / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    return work / "venv"


def test_the_install_brings_only_what_the_agent_needs(venv: Path) -> None:
    listed = json.loads(run(venv / "bin" / "python", "-m", "pip", "list", "--format", "json"))
    names = {package["name"].lower() for package in listed}
    assert {"pbxlink", "panoramisk", "pydantic", "websockets"} <= names
    assert not names & CLOUD_ONLY


def test_edge_agent_and_its_commands_answer_help(venv: Path) -> None:
    agent = venv / "bin" / "edge-agent"
    assert "doctor" in run(agent, "--help")
    assert "--skip-cloud" in run(agent, "doctor", "--help")
    assert "--mask" in run(agent, "record", "--help")
    assert run(agent, "--version").startswith("edge-agent ")


def test_the_installed_agent_interprets_a_trace_and_imports_its_service_modules(venv: Path) -> None:
    trace = ROOT / "tests" / "fixtures" / "traces" / "blind_transfer.jsonl"
    summaries = run(venv / "bin" / "edge-agent", "replay", "--summary", trace).splitlines()
    assert summaries and all(json.loads(line)["call_id"] for line in summaries)
    # what `run` and `doctor` load lazily, imported outside the source tree
    run(venv / "bin" / "python", "-c", "import edge_agent.agent, edge_agent.doctor, edge_agent.logs", cwd=venv)
