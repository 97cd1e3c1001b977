"""Settings: defaults, TOML file, STOREBOX_* environment (which wins), and one clear line on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STOREBOX_"):
            monkeypatch.delenv(name)


def test_defaults_work_on_a_laptop() -> None:
    s = load_settings()
    assert (s.http_host, s.http_port, s.mqtt_host, s.mqtt_port) == ("127.0.0.1", 8080, "127.0.0.1", 1883)
    assert s.data_dir == Path("./var")
    assert s.sqlite_synchronous == "FULL"


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "box.toml"
    config.write_text('[storebox]\nhttp_port = 9000\nstore_id = "sh-01"\n')
    monkeypatch.setenv("STOREBOX_HTTP_PORT", "9100")
    s = load_settings(config)
    assert s.http_port == 9100
    assert s.store_id == "sh-01"


def test_config_file_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "box.toml"
    config.write_text("mqtt_port = 2883\n")
    monkeypatch.setenv("STOREBOX_CONFIG", str(config))
    assert load_settings().mqtt_port == 2883


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STOREBOX_HTTP_PORT", "abc", "http_port"),
        ("STOREBOX_HTTP_PORT", "70000", "http_port"),
        ("STOREBOX_MQTT_PORT", "0", "mqtt_port"),
        ("STOREBOX_STORE_ID", "Bad Store", "store_id"),
        ("STOREBOX_TIMEZONE", "Mars/Olympus", "timezone"),
        ("STOREBOX_SQLITE_SYNCHRONOUS", "OFF", "sqlite_synchronous"),
        ("STOREBOX_HTTP_PROT", "8080", "STOREBOX_HTTP_PROT"),
    ],
)
def test_bad_value_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "\n" not in message
    assert expected in message


def test_bad_toml_and_unknown_key_are_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("http_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'red'\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings(unknown)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_config_file_never_crashes_with_anything_but_config_error(data: bytes) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".toml", delete=False) as fh:
        fh.write(data)
    try:
        load_settings(fh.name)
    except ConfigError as err:
        assert "\n" not in str(err)
