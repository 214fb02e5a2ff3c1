"""``chalice package`` run for real on both apps (Chalice downloads the Linux wheels: network, or its cache):
the templates pass cfn-lint, the zips hold exactly the app's packages, and the handlers import from the zip alone."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from infra.apps import APPS, AppSpec
from infra.build import Build, assemble, package
from infra.resources import apply_stateful_resources

pytestmark = pytest.mark.integration

#: Top-level entries each zip must have (beyond third-party wheels), and what must never be in it.
EXPECTED = {"cloud": {"app.py", "chalice", "cloud", "wire_protocol", "license_protocol"}}
EXPECTED["license"] = {"app.py", "chalice", "license_server", "license_protocol"}
NEVER = {"edge_agent", "sandbox", "tests", "bench", "infra", "panoramisk", "websockets", "boto3", "botocore", "moto"}
#: What the Lambda Python runtime provides besides the standard library.
RUNTIME_PROVIDED = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Build]]:
    root = tmp_path_factory.mktemp("build")
    yield {key: package(assemble(app, "prod", build_dir=root)) for key, app in APPS.items()}


def top_level(zip_file: Path) -> set[str]:
    with zipfile.ZipFile(zip_file) as archive:
        return {name.split("/")[0] for name in archive.namelist()}


def test_the_templates_pass_cfn_lint(builds: dict[str, Build]) -> None:
    templates = [str(build.sam_template) for build in builds.values()]
    cfn_lint = str(Path(sys.executable).with_name("cfn-lint"))
    result = subprocess.run([cfn_lint, *templates], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("key", sorted(APPS))
def test_the_zip_holds_the_app_packages_and_never_the_agent(builds: dict[str, Build], key: str) -> None:
    entries = top_level(builds[key].zip_file)
    assert EXPECTED[key] <= entries
    assert not entries & NEVER
    ours = {"cloud", "wire_protocol", "license_protocol", "license_server"}
    assert entries & ours == EXPECTED[key] & ours
    assert {"pydantic", "pydantic_core", "cryptography"} <= entries
    assert ("httpx" in entries) is (key == "cloud")


@pytest.mark.parametrize("key", sorted(APPS))
def test_the_zip_fits_lambda_size_limits(builds: dict[str, Build], key: str) -> None:
    """Lambda: 50 MB zipped for a direct upload, 250 MB unzipped."""
    with zipfile.ZipFile(builds[key].zip_file) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    zipped = builds[key].zip_file.stat().st_size
    print(f"{APPS[key].app_name}: {zipped / 1e6:.1f} MB zipped, {unzipped / 1e6:.1f} MB unzipped")
    assert zipped < 50e6 and unzipped < 250e6


def lambda_runtime_packages(into: Path) -> Path:
    """A directory with only what the Lambda Python runtime ships (boto3 and its dependencies), from this venv."""
    into.mkdir()
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (into / source.name).symlink_to(source)
    return into


@pytest.mark.parametrize("key", sorted(APPS))
def test_every_function_handler_imports_from_the_zip_alone(builds: dict[str, Build], key: str, tmp_path: Path) -> None:
    """The extracted zip, the standard library and the Lambda runtime's boto3 only: a dependency the zip forgot
    fails the import, as it would in AWS (optional imports, like httpx's CLI, fail quietly as they would there)."""
    build = builds[key]
    code = tmp_path / "task"
    with zipfile.ZipFile(build.zip_file) as archive:
        archive.extractall(code)
    runtime = lambda_runtime_packages(tmp_path / "runtime")
    template = json.loads(build.sam_template.read_text())
    handlers = sorted(
        resource["Properties"]["Handler"].split(".", 1)[1]
        for resource in template["Resources"].values()
        if resource.get("Type") == "AWS::Serverless::Function"
    )
    assert handlers
    probe = (
        "import sys\n"
        f"sys.path = [{str(code)!r}] + [p for p in sys.path if 'site-packages' not in p] + [{str(runtime)!r}]\n"
        "import app\n"
        f"print([name for name in {handlers!r} if not callable(getattr(app, name, None))])\n"
    )
    command = [sys.executable, "-S", "-B", "-c", probe]  # -B: nothing written, /var/task is read-only
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("key", sorted(APPS))
def test_every_module_in_the_zip_ships_its_bytecode(builds: dict[str, Build], key: str) -> None:
    """Lambda's /var/task is read-only: a module shipped as source is compiled again on every cold start."""
    tag = sys.implementation.cache_tag
    with zipfile.ZipFile(builds[key].zip_file) as archive:
        names = set(archive.namelist())
    ours = [n for n in names if n.endswith(".py") and n.split("/")[0] in EXPECTED[key] | {"pydantic", "httpx"}]
    assert ours
    missing = [n for n in ours if importlib.util.cache_from_source(n) not in names]
    assert missing == [], f"no {tag} bytecode for {missing[:5]}"


def test_the_packaged_policy_is_the_generated_one_on_every_role(builds: dict[str, Build]) -> None:
    template = json.loads(builds["cloud"].sam_template.read_text())
    roles = [r for r in template["Resources"].values() if r.get("Type") == "AWS::IAM::Role"]
    functions = [r for r in template["Resources"].values() if r.get("Type") == "AWS::Serverless::Function"]
    policies = [r["Properties"]["Policies"] for r in roles if "lambda.amazonaws.com" in json.dumps(r)]
    generated = json.loads((builds["cloud"].project_dir / ".chalice" / "policy-prod.json").read_text())
    assert len(policies) == len(functions) >= 6  # REST, three websocket routes, two schedules
    assert all([p["PolicyDocument"] for p in role_policies] == [generated] for role_policies in policies)


@pytest.mark.parametrize("key", sorted(APPS))
def test_the_packaged_stateful_resources_create_in_moto(
    builds: dict[str, Build], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    app: AppSpec = APPS[key]
    template = json.loads(builds[key].sam_template.read_text())
    with mock_aws():
        applied = apply_stateful_resources(template, boto3.client, region="eu-west-1")
        tables = boto3.client("dynamodb", region_name="eu-west-1").list_tables()["TableNames"]
    assert sorted(tables) == sorted(app.table_prefix("prod") + name for name in app.tables)
    assert {name for name in applied.names if name.endswith("Bucket")} == (
        {"RecordingsBucket"} if app.recordings else set()
    )
