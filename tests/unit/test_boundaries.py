"""The architecture's import rules, checked on the source (see README, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "edge_agent": {"cloud", "license_server", "aws_support", "sandbox", "bench", "tests"},
    "cloud": {"edge_agent", "license_server", "sandbox", "bench", "tests"},
    "license_server": {"edge_agent", "cloud", "sandbox", "bench", "tests"},
    "wire_protocol": {"edge_agent", "cloud", "license_server", "sandbox", "bench", "tests"},
    "license_protocol": {"edge_agent", "cloud", "license_server", "wire_protocol", "sandbox", "bench", "tests"},
    "aws_support": {
        "edge_agent",
        "cloud",
        "license_server",
        "wire_protocol",
        "license_protocol",
        "sandbox",
        "bench",
        "tests",
    },
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_its_import_boundary(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}


def test_wire_protocol_depends_on_pydantic_and_the_standard_library_only() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"pydantic", "wire_protocol", "__future__"}
    for path in (ROOT / "wire_protocol").rglob("*.py"):
        assert imported_top_levels(path) <= allowed, path


def test_license_protocol_depends_on_pydantic_cryptography_and_the_standard_library_only() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"pydantic", "cryptography", "license_protocol", "__future__"}
    for path in (ROOT / "license_protocol").rglob("*.py"):
        assert imported_top_levels(path) <= allowed, path
