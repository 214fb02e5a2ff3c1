"""The merge template and IAM policy generated from the tables as data: exact, per stage, least privilege."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

import botocore.session  # type: ignore[import-untyped]
import pytest

from cloud.storage.tables import TABLES, TTL_ATTRIBUTES
from infra.apps import APPS, CLOUD, LICENSE, ROOT, AppSpec, InfraError, stage_options
from infra.build import requirements
from infra.policy import DYNAMODB_ACTIONS, OPERATION_ACTIONS, S3_OPERATION_ACTIONS, policy_document, table_logical_id
from infra.template import SECRET_PLACEHOLDER, merge_template
from license_server.tables import TABLES as LICENSE_TABLES

STAGES = ("dev", "prod")


def statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {statement["Sid"]: statement for statement in document["Statement"]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("stage", STAGES)
def test_every_cloud_table_is_in_the_template_with_its_properties_one_to_one(stage: str) -> None:
    resources = merge_template(CLOUD, stage)["Resources"]
    prefix = CLOUD.table_prefix(stage)
    tables = {k: v for k, v in resources.items() if v.get("Type") == "AWS::DynamoDB::Table"}
    assert set(tables) == {table_logical_id(key) for key in TABLES}
    for key, kwargs in TABLES.items():
        table = tables[table_logical_id(key)]
        props = table["Properties"]
        assert props["TableName"] == prefix + key
        assert {name: props[name] for name in kwargs} == kwargs
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
        ttl = props.get("TimeToLiveSpecification")
        assert ttl == ({"AttributeName": TTL_ATTRIBUTES[key], "Enabled": True} if key in TTL_ATTRIBUTES else None)
        pitr = props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        assert pitr is stage_options(stage).point_in_time_recovery


def test_the_license_server_gets_its_own_tables_and_nothing_of_the_cloud() -> None:
    resources = merge_template(LICENSE, "prod")["Resources"]
    names = sorted(r["Properties"]["TableName"] for r in resources.values() if r.get("Type") == "AWS::DynamoDB::Table")
    assert names == sorted(f"pbxlink-license-prod-{key}" for key in LICENSE_TABLES)
    assert "RecordingsBucket" not in resources
    nonces = resources["NoncesTable"]["Properties"]["TimeToLiveSpecification"]
    assert nonces == {"AttributeName": "expires_at", "Enabled": True}


@pytest.mark.parametrize("app", [CLOUD, LICENSE], ids=lambda app: app.key)
def test_secrets_are_created_with_a_placeholder_and_reach_the_functions_by_arn(app: AppSpec) -> None:
    template = merge_template(app, "prod")
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for secret in app.secrets:
        resource = template["Resources"][secret.logical_id]
        assert resource["Type"] == "AWS::SecretsManager::Secret"
        assert resource["Properties"]["SecretString"] == SECRET_PLACEHOLDER
        assert resource["Properties"]["Name"] == f"pbxlink/prod/{secret.name}"
        assert variables[f"{secret.variable}_ARN"] == {"Ref": secret.logical_id}
        assert secret.variable not in variables  # the value itself never goes into the template


@pytest.mark.parametrize("stage", STAGES)
def test_the_recordings_bucket_is_private_tls_only_and_expires_recordings(stage: str) -> None:
    resources = merge_template(CLOUD, stage)["Resources"]
    bucket = resources["RecordingsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-recordings"]["ExpirationInDays"] == stage_options(stage).recordings_expire_days
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert ("recordings-to-infrequent-access" in rules) is (stage == "prod")
    deny = resources["RecordingsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    variables = merge_template(CLOUD, stage)["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["PBXLINK_RECORDINGS_BUCKET"] == {"Ref": "RecordingsBucket"}


def test_values_the_stage_config_leaves_out_become_stack_parameters() -> None:
    template = merge_template(CLOUD, "dev")
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(template["Parameters"]) == {"B24ClientId", "PublicBaseUrl", "LicenseServerUrl", "LicensePublicKeys"}
    assert variables["B24_CLIENT_ID"] == {"Ref": "B24ClientId"}
    assert variables["WS_API_ID"] == {"Ref": "WebsocketAPI"}


@pytest.mark.parametrize("app", [CLOUD, LICENSE], ids=lambda app: app.key)
@pytest.mark.parametrize("stage", STAGES)
def test_the_policy_names_only_the_stage_tables_and_indexes(app: AppSpec, stage: str) -> None:
    prefix = app.table_prefix(stage)
    tables = statements(policy_document(app, stage))["StageTables"]
    arns = [resource["Fn::Sub"] for resource in tables["Resource"]]
    expected = set()
    for key, kwargs in app.tables.items():
        expected.add(f"table/{prefix}{key}")
        expected.update(
            f"table/{prefix}{key}/index/{index['IndexName']}" for index in kwargs.get("GlobalSecondaryIndexes", [])
        )
    base = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:"
    assert all(arn.startswith(base) for arn in arns)
    assert {arn.removeprefix(base) for arn in arns} == expected
    assert sorted(tables["Action"]) == sorted(DYNAMODB_ACTIONS)
    assert not any(action.endswith("*") for action in tables["Action"])


@pytest.mark.parametrize("app", [CLOUD, LICENSE], ids=lambda app: app.key)
def test_no_policy_statement_reaches_beyond_the_stage(app: AppSpec) -> None:
    """Every resource is a reference to this stack's resources or an ARN naming this stage; no bare wildcard."""
    document = policy_document(app, "prod")
    text = json.dumps(document)
    assert "dev" not in text
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            assert resource != "*"
            if "Fn::Sub" in resource:
                arn = resource["Fn::Sub"]
                assert "prod" in arn or "${WebsocketAPI}" in arn or "${RecordingsBucket.Arn}" in arn, arn
            else:
                assert set(resource) <= {"Ref", "Fn::GetAtt"}
    ids = statements(document)
    assert ids["StageSecrets"]["Resource"] == [{"Ref": secret.logical_id} for secret in app.secrets]
    if app.websocket:
        push = ids["PushToAgents"]
        assert push["Action"] == ["execute-api:ManageConnections"]
        assert push["Resource"]["Fn::Sub"].endswith(":${WebsocketAPI}/api/*/@connections/*")
    else:
        assert "PushToAgents" not in ids and "RecordingObjects" not in ids


def _dynamodb_operations() -> set[str]:
    model = botocore.session.get_session().get_service_model("dynamodb")
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in model.operation_names}


#: Operations only ``create_tables`` uses (cloud-local and tests create their tables; in AWS the stack does).
_NOT_IN_LAMBDAS = {"create_table", "list_tables", "update_time_to_live"}


def _called_methods(app: AppSpec) -> set[str]:
    """Every ``x.name(...)`` in the bundled packages, and the operation of every ``get_paginator("op")``."""
    called: set[str] = set()
    for package in app.packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    called.add(node.func.attr)
                    if node.func.attr == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                        called.add(str(node.args[0].value))
    return called


#: Bucket administration: the stack owns the bucket; cloud-local creates and configures its own.
_S3_NOT_IN_LAMBDAS = {"create_bucket", "put_bucket_lifecycle_configuration", "put_public_access_block"}


@pytest.mark.parametrize("app", [CLOUD, LICENSE], ids=lambda app: app.key)
def test_the_policy_allows_every_s3_object_operation_the_bundled_code_calls(app: AppSpec) -> None:
    model = botocore.session.get_session().get_service_model("s3")
    operations = {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in model.operation_names}
    operations |= {"upload_fileobj", "download_fileobj"}
    used = (_called_methods(app) & operations) - _S3_NOT_IN_LAMBDAS - _dynamodb_operations()
    assert used <= set(S3_OPERATION_ACTIONS), f"add {sorted(used - set(S3_OPERATION_ACTIONS))} to infra.policy"
    granted = {a for s in policy_document(app, "prod")["Statement"] for a in s["Action"] if a.startswith("s3:")}
    assert {S3_OPERATION_ACTIONS[op] for op in used} <= granted


@pytest.mark.parametrize("app", [CLOUD, LICENSE], ids=lambda app: app.key)
def test_the_policy_allows_every_dynamodb_operation_the_bundled_code_calls(app: AppSpec) -> None:
    operations = _dynamodb_operations()
    used = (_called_methods(app) & operations) - _NOT_IN_LAMBDAS
    assert used, "no DynamoDB call found: the scan is broken"
    assert used <= set(OPERATION_ACTIONS), f"add {sorted(used - set(OPERATION_ACTIONS))} to infra.policy"


@pytest.mark.parametrize("app", [CLOUD, LICENSE], ids=lambda app: app.key)
def test_requirements_cover_every_third_party_import_of_the_bundled_packages(app: AppSpec) -> None:
    lines = requirements(app)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert all(line in pyproject for line in lines)  # the same version ranges
    provided = {"boto3", "botocore", "chalice"}  # the Lambda runtime; Chalice adds its own runtime module
    imported: set[str] = set()
    for package in app.packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - set(app.packages) - provided
    assert third_party == set(app.requirements)


def test_stage_mistakes_are_clear_errors() -> None:
    with pytest.raises(InfraError, match="no stage 'qa'"):
        merge_template(CLOUD, "qa")
    with pytest.raises(InfraError, match="no stage 'qa'"):
        stage_options("qa")


def test_both_apps_are_configured_for_every_stage_without_autogenerated_policies() -> None:
    for app in APPS.values():
        for stage in STAGES:
            config = app.stage_config(stage)
            assert config["autogen_policy"] is False
            assert config["iam_policy_file"] == f"policy-{stage}.json"
            assert not any("SECRET" in name or "KEY" in name for name in config.get("environment_variables", {}))
    assert Path(ROOT / "infra" / "stages.json").exists()


def _variables_read(path: Path) -> set[str]:
    """Every ``env.get("X")`` / ``env["X"]`` with a constant name in a settings module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            args = node.args
        elif isinstance(node, ast.Subscript):
            args = [node.slice]
        else:
            continue
        value = args[0].value if args and isinstance(args[0], ast.Constant) else None
        if isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", value):
            names.add(value)
    return names


@pytest.mark.parametrize("app", [CLOUD, LICENSE], ids=lambda app: app.key)
def test_a_deployed_function_gets_every_variable_its_settings_read(app: AppSpec) -> None:
    """A new setting (from any branch) must be wired here: by the stage config, the template, a secret, or
    declared not deployed (``AppSpec.not_deployed``)."""
    read = _variables_read(app.source / "settings.py")
    assert {app.prefix_variable, "AWS_REGION"} <= read  # the scan sees the settings module
    for stage in STAGES:
        given = set(app.environment(stage)) | set(
            merge_template(app, stage)["Globals"]["Function"]["Environment"]["Variables"]
        )
        given |= {secret.variable for secret in app.secrets if f"{secret.variable}_ARN" in given}
        missing = read - given - set(app.not_deployed)
        assert missing == set(), f"{app.app_name} ({stage}) reads {sorted(missing)} but no deployed function gets them"
