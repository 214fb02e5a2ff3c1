"""The deployment package gets bytecode: Lambda's /var/task is read-only, so modules shipped as sources were
compiled again on every cold start (``import cloud.app`` ~580 ms instead of ~290 ms, docs/performance.md)."""

from __future__ import annotations

import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra.apps import InfraError
from infra.build import precompile_zip

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
TAG = sys.implementation.cache_tag  # e.g. cpython-311


def chalice_like_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("app.py", "from pkg.mod import answer\n")
        z.writestr("pkg/__init__.py", "")
        z.writestr("pkg/mod.py", "def answer() -> int:\n    return 42\n")
        z.writestr("pkg/py2_only.py", "print 'not Python 3'\n")
        tool = zipfile.ZipInfo("pkg/_native.so")
        tool.external_attr = (stat.S_IFREG | 0o755) << 16
        z.writestr(tool, b"\x7fELF")
    return path


def test_every_module_gets_unchecked_bytecode_that_is_used_as_unpacked(tmp_path: Path) -> None:
    package = chalice_like_zip(tmp_path / "deployment.zip")
    assert precompile_zip(package, {RUNTIME}) == 3  # app, pkg/__init__, pkg/mod; the Python 2 file stays source
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        assert {f"__pycache__/app.{TAG}.pyc", f"pkg/__pycache__/mod.{TAG}.pyc"} <= names
        assert "pkg/py2_only.py" in names and f"pkg/__pycache__/py2_only.{TAG}.pyc" not in names
        assert z.getinfo("pkg/_native.so").external_attr >> 16 & 0o777 == 0o755  # modes kept
        flags = int.from_bytes(z.read(f"pkg/__pycache__/mod.{TAG}.pyc")[4:8], "little")
        assert flags == 0b01  # hash-based, unchecked: valid whatever the file times after unzipping
        z.extractall(tmp_path / "task")
    # Lambda unpacks with new file times and cannot write bytecode: the shipped bytecode is what runs
    (tmp_path / "task" / "pkg" / "mod.py").write_text("def answer() -> int:\n    return 0\n")
    probe = "import sys; sys.path.insert(0, '.'); from app import answer; print(answer())"
    command = [sys.executable, "-S", "-E", "-B", "-c", probe]
    done = subprocess.run(command, cwd=tmp_path / "task", capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == "42"


def test_twice_is_the_same_as_once(tmp_path: Path) -> None:
    package = chalice_like_zip(tmp_path / "deployment.zip")
    precompile_zip(package, {RUNTIME})
    with zipfile.ZipFile(package) as z:
        first = sorted(z.namelist())
    precompile_zip(package, {RUNTIME})
    with zipfile.ZipFile(package) as z:
        assert sorted(z.namelist()) == first


def test_bytecode_for_another_runtime_is_refused(tmp_path: Path) -> None:
    package = chalice_like_zip(tmp_path / "deployment.zip")
    with pytest.raises(InfraError, match="package with the runtime's Python version"):
        precompile_zip(package, {"python3.99"})
    with zipfile.ZipFile(package) as z:
        assert not any(name.endswith(".pyc") for name in z.namelist())  # left as it was
