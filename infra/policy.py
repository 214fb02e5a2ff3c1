"""The Lambdas' IAM policy, per app and stage, written out explicitly (``autogen_policy: false``).

Chalice's generated policy only sees ``boto3`` calls written in ``app.py`` (platform.md §1.8), so it would grant
nothing our packages use. This one names exactly the stage's tables and their indexes, the stage's websocket API
(``execute-api:ManageConnections``), the recordings bucket and the stage's secrets. ARNs are ``Fn::Sub``/``Ref``
expressions: Chalice copies the document into the template, where CloudFormation resolves them.
"""

from __future__ import annotations

from typing import Any, Final

from infra.apps import AppSpec

__all__ = ["DYNAMODB_ACTIONS", "OPERATION_ACTIONS", "S3_OPERATION_ACTIONS", "policy_document", "table_logical_id"]

#: The DynamoDB operations the apps' code calls, and the action each needs. ``TransactWriteItems`` is
#: authorised per item by the actions of its parts (Put/Update/Delete/ConditionCheckItem).
OPERATION_ACTIONS: Final[dict[str, str]] = {
    "get_item": "dynamodb:GetItem",
    "batch_get_item": "dynamodb:BatchGetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "transact_write_items": "dynamodb:ConditionCheckItem",
}
DYNAMODB_ACTIONS: Final = tuple(sorted(set(OPERATION_ACTIONS.values())))
#: The S3 object operations the recordings code may call on the bucket, and the action each needs.
S3_OPERATION_ACTIONS: Final[dict[str, str]] = {
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "download_fileobj": "s3:GetObject",
    "put_object": "s3:PutObject",
    "upload_fileobj": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "list_objects_v2": "s3:ListBucket",
    "head_bucket": "s3:ListBucket",  # cloud-local's bucket check; in AWS the stack creates the bucket
}
_API_STAGE: Final = "api"  # api_gateway_stage in both .chalice/config.json


def table_logical_id(key: str) -> str:
    """``call_events`` -> ``CallEventsTable``."""
    return "".join(part.capitalize() for part in key.split("_")) + "Table"


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def table_arns(app: AppSpec, stage: str) -> list[dict[str, str]]:
    prefix = app.table_prefix(stage)
    arns = []
    for key, properties in app.tables.items():
        table = f"arn:${{AWS::Partition}}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/{prefix}{key}"
        arns.append(_sub(table))
        for index in properties.get("GlobalSecondaryIndexes", []):
            arns.append(_sub(f"{table}/index/{index['IndexName']}"))
    return arns


def policy_document(app: AppSpec, stage: str) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "OwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": _sub(
                "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/"
                f"{app.app_name}-{stage}*"
            ),
        },
        {"Sid": "StageTables", "Effect": "Allow", "Action": list(DYNAMODB_ACTIONS), "Resource": table_arns(app, stage)},
        {
            "Sid": "StageSecrets",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [{"Ref": secret.logical_id} for secret in app.secrets],
        },
    ]
    if app.websocket:
        statements.append(
            {
                "Sid": "PushToAgents",
                "Effect": "Allow",
                "Action": ["execute-api:ManageConnections"],
                "Resource": _sub(
                    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebsocketAPI}/"
                    f"{_API_STAGE}/*/@connections/*"
                ),
            }
        )
    if app.recordings:
        statements += [
            {
                "Sid": "RecordingObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": _sub("${RecordingsBucket.Arn}/*"),
            },
            {
                # without it a missing object is a 403 rather than a 404
                "Sid": "RecordingsList",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": {"Fn::GetAtt": ["RecordingsBucket", "Arn"]},
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}
