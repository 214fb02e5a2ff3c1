"""The whole cloud on this machine: ``python -m sandbox.cloud_local`` (``make cloud-local``) or, in tests and the
demo, ``async with CloudLocal(CloudLocalConfig(...)) as cloud``. See ``docs/cloud-local.md``."""

from sandbox.cloud_local.crm_sweeper import CrmSweeper
from sandbox.cloud_local.rest import LocalRestServer
from sandbox.cloud_local.stack import (
    DEFAULT_APP,
    DEFAULT_TABLES,
    AwsMode,
    CloudLocal,
    CloudLocalConfig,
    LocalService,
    chalice_stage_env,
    load_app,
    load_table_creator,
)

__all__ = [
    "DEFAULT_APP",
    "DEFAULT_TABLES",
    "AwsMode",
    "CloudLocal",
    "CloudLocalConfig",
    "CrmSweeper",
    "LocalRestServer",
    "LocalService",
    "chalice_stage_env",
    "load_app",
    "load_table_creator",
]
