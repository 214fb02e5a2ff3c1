from pathlib import Path

import pytest

from edge_agent.calls.interpreter import AMI_EVENT_FILTERS
from edge_agent.config import load_config
from edge_agent.errors import ConfigError

ENV = {"EDGE_AMI_USER": "pbxlink", "EDGE_AMI_SECRET": "s3cret"}


def test_environment_alone_is_enough() -> None:
    config = load_config(ENV)
    assert (config.ami.host, config.ami.port, config.ami.username) == ("127.0.0.1", 5038, "pbxlink")
    assert config.ami.secret.get_secret_value() == "s3cret"
    assert config.ami.event_filters == AMI_EVENT_FILTERS
    assert "s3cret" not in repr(config)  # secrets never end up in logs


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[ami]\nhost = "10.0.0.5"\nport = 5039\nusername = "fromfile"\n'
        "[calls]\nextension_pattern = '^\\d{3}$'\ntrunks = [\"100\"]\n"
    )
    config = load_config({**ENV, "EDGE_AMI_PORT": "6000"}, path=path, ami_overrides={"host": "pbx.local"})
    assert (config.ami.host, config.ami.port, config.ami.username) == ("pbx.local", 6000, "pbxlink")
    assert config.calls.is_extension_number("101") and not config.calls.is_extension_number("1011")
    assert not config.calls.is_extension_number("100")


def test_extension_and_trunk_lists_from_the_environment() -> None:
    config = load_config({**ENV, "EDGE_EXTENSIONS": "reception, desk", "EDGE_TRUNKS": "5000"})
    assert config.calls.is_extension_number("reception") and not config.calls.is_extension_number("5000")


def test_unfiltered_has_no_filters() -> None:
    assert load_config(ENV, filtered=False).ami.event_filters == ()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EDGE_AMI_SECRET": "x"}, r"\[ami\] username / EDGE_AMI_USER: Field required"),
        ({**ENV, "EDGE_AMI_PORT": "99999"}, r"\[ami\] port / EDGE_AMI_PORT"),
        ({**ENV, "EDGE_AMI_PORT": "five"}, r"EDGE_AMI_PORT: Input should be a valid integer"),
        ({**ENV, "EDGE_EXTENSION_PATTERN": "(["}, r"EDGE_EXTENSION_PATTERN: Value error, extension_pattern is not"),
    ],
)
def test_errors_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ)


def test_bad_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(ENV, path=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[ami\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(ENV, path=broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[amy]\nhost = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['amy'\]"):
        load_config(ENV, path=unknown)
    typo = tmp_path / "typo.toml"
    typo.write_text("[ami]\nhots = 'x'\n")
    with pytest.raises(ConfigError, match=r"\[ami\] hots: Extra inputs are not permitted"):
        load_config(ENV, path=typo)
