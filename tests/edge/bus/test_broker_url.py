"""`mqtt_url`: the external broker's address, parsed before anything connects, and never printed with its password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bus.broker_url import BrokerUrl, parse_broker_url
from edge.config import ConfigError, Settings, load_settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://box:secret@10.0.0.5:1884", BrokerUrl(False, "10.0.0.5", 1884, "box", "secret")),
        ("mqtt://broker.local", BrokerUrl(False, "broker.local", 1883, None, None)),
        ("mqtts://box:p%40ss%3Aword@emqx.example.com", BrokerUrl(True, "emqx.example.com", 8883, "box", "p@ss:word")),
        ("MQTTS://storebox_box:x@[::1]:8884/", BrokerUrl(True, "::1", 8884, "storebox_box", "x")),
        ("  mqtt://u@h  ", BrokerUrl(False, "h", 1883, "u", None)),
    ],
)
def test_broker_urls_name_scheme_host_port_and_login(url: str, expected: BrokerUrl) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://box:secret@host", "scheme must be mqtt or mqtts"),
        ("host:1883", "scheme must be mqtt or mqtts"),
        ("mqtt://", "host is missing"),
        ("mqtt://:secret@host", "a password needs a user name"),
        ("mqtt://host:99999", "not a valid broker URL"),
        ("mqtt://host:0", "1..65535"),
        ("mqtt://host/storebox", "no path"),
        ("mqtt://host?x=1", "no path"),
    ],
)
def test_a_bad_broker_url_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_broker_url(url)


def test_the_password_never_shows_in_the_redacted_url() -> None:
    assert parse_broker_url("mqtts://box:top%2Fsecret@[::1]:8884").redacted() == "mqtts://box:***@[::1]:8884"
    assert parse_broker_url("mqtt://h").redacted() == "mqtt://h:1883"


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_with_a_value_error(text: str) -> None:
    try:
        url = parse_broker_url(text)
    except ValueError:
        return
    assert url.host and 1 <= url.port <= 65535
    assert url.password is None or url.password not in url.redacted().split("@")[0].split(":", 2)[-1]


def test_settings_take_the_url_from_the_environment_and_print_it_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOREBOX_MQTT_URL", "mqtt://storebox_box:s3cret@127.0.0.1:1884")
    settings = load_settings(data_dir=tmp_path)
    assert settings.mqtt_url == "mqtt://storebox_box:s3cret@127.0.0.1:1884"
    printed = json.dumps(settings.model_dump(mode="json"))
    assert "s3cret" not in printed and "mqtt://storebox_box:***@127.0.0.1:1884" in printed
    assert settings.model_dump()["mqtt_url"] == settings.mqtt_url  # only the JSON form is redacted

    monkeypatch.setenv("STOREBOX_MQTT_URL", "")  # empty: the embedded broker
    assert load_settings(data_dir=tmp_path).mqtt_url is None

    monkeypatch.setenv("STOREBOX_MQTT_URL", "tcp://host")
    with pytest.raises(ConfigError, match=r"mqtt_url .*scheme must be mqtt or mqtts"):
        load_settings(data_dir=tmp_path)


def test_the_default_is_the_embedded_broker() -> None:
    settings = Settings()
    assert (settings.mqtt_url, settings.mqtt_ca_file, settings.mqtt_client_id) == (None, None, None)
