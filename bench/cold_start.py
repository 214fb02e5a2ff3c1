"""The websocket Lambda's cold start: ``import cloud.app`` in a fresh interpreter that sees only what the Lambda
has, median of several runs.

What the Lambda has (:mod:`infra.apps`, :mod:`infra.build`): the app's packages (``cloud``, ``wire_protocol``,
``license_protocol``), its requirements (pydantic, httpx, cryptography) with everything they depend on, boto3
from the Lambda runtime, and Chalice's runtime. They are linked into a temporary directory from this venv and the
interpreter starts with ``-S -E`` (no ``site``, no ``.pth`` hooks, no editable-install finder, no user
environment), so nothing else installed here (the agent, the sandbox, dev tools such as click, which httpx imports
when it finds it) is importable or costs time. Also printed: the same import in the project's venv, as a
developer sees it.

Run: ``python -m bench.cold_start [--runs 7]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from bench.machine import load_average
from infra.apps import CLOUD, ROOT
from infra.build import precompile, requirements

#: Distributions the Lambda runtime provides (boto3) or Chalice adds (its ``app`` module).
RUNTIME = ("boto3", "chalice")
PROBE = (
    "import sys, time; t = time.perf_counter(); import cloud.app; took = time.perf_counter() - t; "
    "leaked = sorted({m.split('.')[0] for m in sys.modules} & {'edge_agent', 'sandbox', 'click'}); "
    "assert not leaked, leaked; print(took)"
)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]


def closure(names: list[str], *, follow: bool = True) -> set[str]:
    """The distributions ``names`` need at run time (markers evaluated here, no extras)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        if not follow and key in RUNTIME:
            continue
        for line in metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def top_level(distribution: str) -> set[str]:
    """What a distribution installs at the top of site-packages (its packages, modules and extensions)."""
    names = set()
    for file in metadata.distribution(distribution).files or []:
        first = file.parts[0]
        if not first.endswith((".dist-info", ".data", ".pth")) and first not in ("__pycache__", "..", "bin"):
            names.add(first)
    return names


def bundle(directory: Path, *, compiled: bool) -> None:
    """Lay out the Lambda's code in ``directory``: copies of what the deployment package holds (compiled by
    :func:`infra.build.precompile` when ``compiled``), links to the runtime's boto3."""
    site = Path(str(metadata.distribution("pydantic").locate_file("")))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shipped = closure([_name(line) for line in requirements(CLOUD)])
    for distribution in sorted(shipped):
        for name in top_level(distribution):
            source = site / name
            if source.is_dir():
                shutil.copytree(source, directory / name, ignore=ignore, dirs_exist_ok=True)
            elif source.exists() and not name.endswith(".pyc"):
                shutil.copy2(source, directory / name)
    (directory / "chalice").mkdir()
    for name in ("__init__.py", "app.py"):  # what Chalice puts in the package of its own
        shutil.copy2(site / "chalice" / name, directory / "chalice" / name)
    for package in CLOUD.packages:
        shutil.copytree(ROOT / package, directory / package, ignore=ignore)
    if compiled:
        precompile(directory)
    for distribution in sorted(closure(["boto3"]) - shipped):
        for name in top_level(distribution):
            source = site / name
            if source.exists() and not (directory / name).exists():
                (directory / name).symlink_to(source)


def import_times(runs: int, *, where: str) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as lambda_root:
        if where == "project_venv":
            command = [sys.executable, "-c", PROBE.replace(", 'click'", "")]
        else:
            bundle(Path(lambda_root), compiled=where == "lambda_package")
            probe = f"import sys; sys.path.insert(0, {lambda_root!r}); {PROBE}"
            command = [sys.executable, "-S", "-E", "-B", "-c", probe]
        for _ in range(runs):
            done = subprocess.run(command, capture_output=True, text=True, cwd=lambda_root)
            if done.returncode != 0:
                raise RuntimeError(f"import cloud.app failed:\n{done.stderr[-3000:]}")
            times.append(float(done.stdout.strip()) * 1000)
    return times


def figures(runs: int) -> dict[str, Any]:
    result: dict[str, Any] = {"runs": runs}
    for label in ("lambda_package", "lambda_package_sources_only", "project_venv"):
        load = load_average()
        times = import_times(runs, where=label)
        result[label] = {
            "import_ms_median": round(statistics.median(times), 1),
            "import_ms_min": round(min(times), 1),
            "import_ms_max": round(max(times), 1),
            "load_average": load,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    result = figures(args.runs)
    print(json.dumps(result, indent=2))
    median = result["lambda_package"]["import_ms_median"]
    print(
        f"import cloud.app from the deployment package: median {median} ms of {args.runs} "
        f"(target <= 300 ms: {'met' if median <= 300 else 'MISSED'}); "
        f"without its bytecode {result['lambda_package_sources_only']['import_ms_median']} ms; "
        f"in the project venv {result['project_venv']['import_ms_median']} ms; "
        f"load {result['lambda_package']['load_average']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
