"""``python -m infra.deploy``: the order, the commands, and where the cloud's parameters come from."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from infra.apps import AppSpec, InfraError
from infra.build import Build
from infra.deploy import Deployer, main


def fake_build(app: AppSpec, stage: str) -> Build:
    return Build(app, stage, Path("/b") / stage / app.key)


class FakeAws:
    """Answers ``describe-stacks`` from ``outputs`` (a missing stack fails, as the CLI does); records everything."""

    def __init__(self, outputs: dict[str, dict[str, str]]) -> None:
        self.outputs = outputs
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> str:
        self.commands.append(list(command))
        if command[1:3] == ["cloudformation", "describe-stacks"]:
            stack = command[command.index("--stack-name") + 1]
            if stack not in self.outputs:
                raise InfraError(f"Stack with id {stack} does not exist")
            key = command[command.index("--query") + 1].split("'")[1]
            return self.outputs[stack].get(key, "None") + "\n"
        return ""


def deploys(aws: FakeAws) -> list[list[str]]:
    return [c for c in aws.commands if c[1:3] == ["cloudformation", "deploy"]]


def test_the_license_server_goes_first_and_its_url_reaches_the_cloud() -> None:
    aws = FakeAws({"pbxlink-license-prod": {"EndpointURL": "https://lic.example/api/"}})
    out = io.StringIO()
    Deployer(
        "prod", "artifacts", region="eu-central-1", dry_run=False, runner=aws, out=out, builder=fake_build
    ).deploy()
    license_deploy, cloud_deploy = deploys(aws)
    assert license_deploy[license_deploy.index("--stack-name") + 1] == "pbxlink-license-prod"
    assert cloud_deploy[cloud_deploy.index("--stack-name") + 1] == "pbxlink-cloud-prod"
    assert "LicenseServerUrl=https://lic.example/api" in cloud_deploy
    assert not any(arg.startswith("PublicBaseUrl=") for arg in cloud_deploy)  # first deploy: no stack yet
    assert all(c[c.index("--region") + 1] == "eu-central-1" for c in aws.commands)
    packages = [c for c in aws.commands if c[1:3] == ["cloudformation", "package"]]
    assert [c[c.index("--template-file") + 1] for c in packages] == [
        "/b/prod/license/out/sam.json",
        "/b/prod/cloud/out/sam.json",
    ]
    assert "aws secretsmanager put-secret-value --secret-id pbxlink/prod/b24-client-secret" in out.getvalue()


def test_an_update_keeps_the_cloud_url_and_given_parameters_win() -> None:
    aws = FakeAws(
        {
            "pbxlink-license-dev": {"EndpointURL": "https://lic.example/api/"},
            "pbxlink-cloud-dev": {"EndpointURL": "https://abc.execute-api.example/api/"},
        }
    )
    params = {"B24ClientId": "app.1", "LicenseServerUrl": "https://license.pbxlink.example"}
    Deployer("dev", "a", parameters=params, dry_run=False, runner=aws, out=io.StringIO(), builder=fake_build).deploy(
        ["cloud"]
    )
    (cloud_deploy,) = deploys(aws)
    overrides = cloud_deploy[cloud_deploy.index("--parameter-overrides") + 1 :]
    assert overrides == [
        "B24ClientId=app.1",
        "LicenseServerUrl=https://license.pbxlink.example",
        "PublicBaseUrl=https://abc.execute-api.example/api",
    ]


def test_a_dry_run_runs_nothing_and_shows_where_values_will_come_from() -> None:
    def refuse(command: Sequence[str]) -> str:
        raise AssertionError(f"a dry run ran {command}")

    out = io.StringIO()
    Deployer("dev", "a", dry_run=True, runner=refuse, out=out, builder=fake_build).deploy()
    text = out.getvalue()
    assert "# would run: aws cloudformation deploy" in text
    assert "'LicenseServerUrl=<EndpointURL of pbxlink-license-dev>'" in text


def test_unknown_parameters_are_refused() -> None:
    deployer = Deployer("dev", "a", parameters={"B24ClientSecret": "x"}, out=io.StringIO(), builder=fake_build)
    with pytest.raises(InfraError, match="unknown --param"):
        deployer.deploy(["cloud"])


def test_the_command_line_wants_a_bucket_unless_it_only_prints(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--stage", "dev"])
    assert "--artifacts-bucket is required" in capsys.readouterr().err
    assert main(["--stage", "qa", "--dry-run"]) == 1
    assert "no stage 'qa'" in capsys.readouterr().err
