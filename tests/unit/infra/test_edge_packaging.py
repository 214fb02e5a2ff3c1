"""The agent's systemd unit, Dockerfile and environment file example: the hardening and layout they promise."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_agent.config import AGENT_ENVIRONMENT, AMI_ENVIRONMENT, CALLS_ENVIRONMENT, CLOUD_ENVIRONMENT
from infra.apps import ROOT

EDGE = ROOT / "infra" / "edge"
UNIT = EDGE / "edge-agent.service"


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's syntax as far as this unit uses it: sections, ``Key=value``, repeated keys accumulate."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not a directive: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_unit_runs_the_agent_hardened() -> None:
    service = unit_directives(UNIT.read_text())["Service"]

    def one(key: str) -> str:
        assert len(service.get(key, [])) == 1, key
        return service[key][0]

    assert one("ExecStart").endswith("/edge-agent run")
    assert one("EnvironmentFile") == "/etc/pbxlink/edge-agent.env"
    assert one("User") not in ("root", "0") or one("DynamicUser") == "yes"
    assert (one("Restart"), one("RestartPreventExitStatus")) == ("always", "3")
    data_dir = dict(v.split("=", 1) for v in service["Environment"])["EDGE_DATA_DIR"]
    assert one("ReadWritePaths") == data_dir == "/var/lib/pbxlink"
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "ProtectHome": "yes",
        "UMask": "0077",
    }.items():
        assert one(key) == value, key
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert service["SystemCallFilter"][0] == "@system-service"
    assert unit_directives(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (Debian: systemd)")
def test_systemd_accepts_every_directive(tmp_path: Path) -> None:
    """``systemd-analyze verify`` warns (and exits 0) on unknown keys or bad values: any output is a failure.
    ExecStart points at an executable that exists here; the rest is the unit as shipped."""
    unit = tmp_path / "edge-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/pbxlink/bin/edge-agent", "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def test_the_image_is_slim_non_root_with_a_data_volume_and_a_healthcheck() -> None:
    stages = dockerfile_stages((EDGE / "Dockerfile").read_text())
    final = stages[-1]
    by_kind: dict[str, list[str]] = {}
    for kind, rest in final:
        by_kind.setdefault(kind, []).append(rest)
    assert all(re.fullmatch(r"python:3\.1[1-9]-slim( AS \w+)?", stage[0][1]) for stage in stages)
    (user,) = by_kind["USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert final.index(("USER", user)) > max(i for i, (kind, _) in enumerate(final) if kind == "RUN")
    assert by_kind["VOLUME"] == ['["/var/lib/pbxlink"]']
    assert "EDGE_DATA_DIR=/var/lib/pbxlink" in by_kind["ENV"][0]
    (health,) = by_kind["HEALTHCHECK"]
    assert '"edge-agent", "doctor", "--skip-cloud"' in health
    assert by_kind["ENTRYPOINT"] == ['["edge-agent"]'] and by_kind["CMD"] == ['["run"]']
    copied = {rest.split()[0] for stage in stages for kind, rest in stage if kind == "COPY" and "--from" not in rest}
    assert copied == {"pyproject.toml", "edge_agent", "wire_protocol"}  # never cloud/, license_server/, sandbox/
    assert not any(re.search(r"EDGE_(TOKEN|AMI_SECRET)", rest) for kind, rest in final if kind in ("ENV", "ARG"))


def test_the_environment_example_names_only_settings_the_agent_reads() -> None:
    known = {*AMI_ENVIRONMENT, *CALLS_ENVIRONMENT, *CLOUD_ENVIRONMENT, *AGENT_ENVIRONMENT, "EDGE_LOG_FORMAT"}
    names = re.findall(r"^#?\s*(EDGE_[A-Z_]+)=", (EDGE / "edge-agent.env.example").read_text(), flags=re.MULTILINE)
    assert set(names) <= known and {"EDGE_AMI_SECRET", "EDGE_TOKEN", "EDGE_CLOUD_URL"} <= set(names)
