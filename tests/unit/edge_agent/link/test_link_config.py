"""The settings ``edge-agent run`` needs: [cloud], data_dir, the outbox bound; errors name setting and variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.errors import ConfigError

AMI = {"EDGE_AMI_USER": "pbxlink", "EDGE_AMI_SECRET": "s3cret"}
CLOUD = {**AMI, "EDGE_CLOUD_URL": "wss://cloud.example/agent", "EDGE_TOKEN": "t0ken", "EDGE_DATA_DIR": "/var/lib/x"}


def test_environment_alone_is_enough_and_the_token_stays_secret() -> None:
    config = load_config(CLOUD, need_cloud=True)
    assert config.cloud is not None and config.cloud.url == "wss://cloud.example/agent"
    assert config.cloud.token.get_secret_value() == "t0ken" and "t0ken" not in repr(config)
    assert config.data_dir == Path("/var/lib/x") and config.outbox_max_events == 1_000_000


def test_the_file_has_a_cloud_section_and_top_level_agent_settings(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        'data_dir = "/srv/pbxlink"\noutbox_max_events = 5000\n'
        '[cloud]\nurl = "ws://127.0.0.1:8000/"\ntoken = "from-file"\n[ami]\nusername = "u"\nsecret = "s"\n'
    )
    config = load_config({"EDGE_TOKEN": "from-env"}, path=path, need_cloud=True)
    assert config.cloud is not None and config.cloud.token.get_secret_value() == "from-env"
    assert (config.data_dir, config.outbox_max_events) == (Path("/srv/pbxlink"), 5000)


def test_commands_without_the_cloud_do_not_need_it() -> None:
    assert load_config(AMI).cloud is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (AMI, r"\[cloud\] url / EDGE_CLOUD_URL: Field required"),
        ({**CLOUD, "EDGE_TOKEN": ""}, r"\[cloud\] token / EDGE_TOKEN: Field required"),
        ({**CLOUD, "EDGE_CLOUD_URL": "https://x"}, r"\[cloud\] url / EDGE_CLOUD_URL: Value error, expected a wss://"),
        ({**CLOUD, "EDGE_DATA_DIR": ""}, r"data_dir / EDGE_DATA_DIR: Field required"),
        ({**CLOUD, "EDGE_OUTBOX_MAX_EVENTS": "0"}, r"outbox_max_events / EDGE_OUTBOX_MAX_EVENTS: Input should be"),
    ],
)
def test_errors_name_the_setting_and_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ, need_cloud=True)
