"""``make deploy STAGE=…``: package both apps and deploy them with CloudFormation (``docs/deploy.md``).

::

    python -m infra.deploy --stage dev --artifacts-bucket my-artifacts --dry-run     # build, print the commands
    python -m infra.deploy --stage prod --artifacts-bucket my-artifacts --param B24ClientId=app.123 …

The license server goes first: the cloud's ``LicenseServerUrl`` defaults to its stack's ``EndpointURL`` and the
cloud's ``PublicBaseUrl`` to the cloud stack's own (after the first deploy). Each app is one stack,
``<app_name>-<stage>`` (the IAM policy's log-group ARNs rely on that name). The AWS CLI does the work; this
script builds (``infra.build``) and sequences. ``--dry-run`` builds and prints, and calls nothing in AWS.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from infra.apps import APPS, AppSpec, InfraError
from infra.build import Build, assemble, package
from infra.template import CLOUD_PARAMETERS, secret_name

__all__ = ["Deployer", "main", "stack_name"]

#: Runs an AWS CLI command and returns its standard output (raises on failure).
Runner = Callable[[Sequence[str]], str]
ORDER = ("license", "cloud")


def stack_name(app: AppSpec, stage: str) -> str:
    return f"{app.app_name}-{stage}"


def run_aws(command: Sequence[str]) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InfraError(f"{shlex.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@dataclass
class Deployer:
    stage: str
    artifacts_bucket: str
    region: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    dry_run: bool = True
    package_only: bool = False
    runner: Runner = run_aws
    out: IO[str] = sys.stdout
    builder: Callable[[AppSpec, str], Build] = lambda app, stage: package(assemble(app, stage))

    def _aws(self, *args: str) -> list[str]:
        return ["aws", *args, *(["--region", self.region] if self.region else [])]

    def _run(self, command: list[str], *, reads: bool = False) -> str | None:
        """Print the command; run it unless this is a dry run (a dry run's lookups return ``None``)."""
        self.out.write(("# would run: " if self.dry_run else "+ ") + shlex.join(command) + "\n")
        if self.dry_run:
            return None
        output = self.runner(command)
        return output.strip() if reads else None

    def stack_output(self, app: AppSpec, key: str) -> str | None:
        """An output of the app's stack, or ``None`` when the stack does not exist yet (or in a dry run)."""
        command = self._aws(
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            stack_name(app, self.stage),
            "--query",
            f"Stacks[0].Outputs[?OutputKey=='{key}'].OutputValue",
            "--output",
            "text",
        )
        try:
            value = self._run(command, reads=True)
        except InfraError:
            return None  # no such stack yet
        if self.dry_run:
            return f"<{key} of {stack_name(app, self.stage)}>"
        return value if value and value != "None" else None

    def deploy_app(self, app: AppSpec, parameters: dict[str, str]) -> None:
        build = self.builder(app, self.stage)
        self.out.write(f"== {app.app_name} ({self.stage}): built {build.sam_template} and {build.zip_file}\n")
        if self.package_only:
            return
        packaged = build.out_dir / "packaged.json"
        self._run(
            self._aws(
                "cloudformation",
                "package",
                "--template-file",
                str(build.sam_template),
                "--s3-bucket",
                self.artifacts_bucket,
                "--s3-prefix",
                f"pbxlink/{self.stage}/{app.key}",
                "--output-template-file",
                str(packaged),
                "--use-json",
            )
        )
        command = self._aws(
            "cloudformation",
            "deploy",
            "--template-file",
            str(packaged),
            "--stack-name",
            stack_name(app, self.stage),
            "--capabilities",
            "CAPABILITY_IAM",
            "CAPABILITY_AUTO_EXPAND",
            "--no-fail-on-empty-changeset",
        )
        if parameters:
            command += ["--parameter-overrides", *(f"{key}={value}" for key, value in sorted(parameters.items()))]
        self._run(command)

    def cloud_parameters(self) -> dict[str, str]:
        known = set(CLOUD_PARAMETERS)
        unknown = set(self.parameters) - known
        if unknown:
            raise InfraError(f"unknown --param {sorted(unknown)}; the cloud's parameters are {sorted(known)}")
        parameters = dict(self.parameters)
        if "LicenseServerUrl" not in parameters:
            url = self.stack_output(APPS["license"], "EndpointURL")
            if url:
                parameters["LicenseServerUrl"] = url.rstrip("/")
        if "PublicBaseUrl" not in parameters:
            url = self.stack_output(APPS["cloud"], "EndpointURL")
            if url:
                parameters["PublicBaseUrl"] = url.rstrip("/")
        return parameters

    def deploy(self, only: Sequence[str] = ORDER) -> None:
        for key in ORDER:
            if key not in only:
                continue
            app = APPS[key]
            self.deploy_app(app, self.cloud_parameters() if key == "cloud" and not self.package_only else {})
        if self.package_only:
            return
        self.out.write("\nSecrets are created with a placeholder; set each once (and after a rotation):\n")
        for key in ORDER:
            if key in only:
                for secret in APPS[key].secrets:
                    name = secret_name(self.stage, secret.name)
                    value = f"'<{secret.variable}>'"
                    self.out.write(
                        f"  aws secretsmanager put-secret-value --secret-id {name} --secret-string {value}\n"
                    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, help="a stage of both apps' .chalice/config.json and stages.json")
    parser.add_argument("--artifacts-bucket", default="<artifacts-bucket>", help="S3 bucket for the Lambda zips")
    parser.add_argument("--region", help="AWS region (default: the AWS CLI's)")
    parser.add_argument("--only", choices=ORDER, action="append", help="deploy one app (repeatable)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a cloud stack parameter")
    parser.add_argument("--dry-run", action="store_true", help="build and print the AWS commands; change nothing")
    parser.add_argument("--package-only", action="store_true", help="build build/STAGE/*/out/ and stop")
    args = parser.parse_args(argv)
    try:
        parameters = dict(item.split("=", 1) for item in args.param)
    except ValueError:
        parser.error("--param takes KEY=VALUE")
    if not (args.dry_run or args.package_only) and args.artifacts_bucket.startswith("<"):
        parser.error("--artifacts-bucket is required (unless --dry-run)")
    deployer = Deployer(
        stage=args.stage,
        artifacts_bucket=args.artifacts_bucket,
        region=args.region,
        parameters=parameters,
        dry_run=args.dry_run,
        package_only=args.package_only,
    )
    try:
        deployer.deploy(args.only or ORDER)
    except InfraError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
