"""Device passwords in Mosquitto's form, kept beside the argon2 hash, and the password file written from them."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus.broker_credentials import (
    PBKDF2_ITERATIONS,
    BrokerUserClash,
    InvalidBrokerUser,
    devices_without_broker_credential,
    mosquitto_hash,
    password_file,
    set_broker_credential,
    verify_mosquitto_hash,
)
from edge.db import connect, migrate
from edge.security.devices import create_device, set_device_enabled
from edge.security.errors import UnknownDevice

# Written by `mosquitto_passwd -c -b FILE alice secret` (mosquitto 2.0.11, Debian bookworm).
MOSQUITTO_PASSWD_LINE = (
    "alice:$7$101$dKz39CXEuEk4W3q2$"
    "dj82oAVey6rfR1ESYOG4KfhRjINp1yW2VM+IOjlPf2iDNo2lxvC12ubI+onqgGznrQzi/zgh2f6ASZrXzJO31A=="
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = connect(tmp_path / "box.db")
    migrate(db)
    yield db
    db.close()


def test_the_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    stored = MOSQUITTO_PASSWD_LINE.split(":", 1)[1]
    assert verify_mosquitto_hash(stored, "secret")
    assert not verify_mosquitto_hash(stored, "Secret")
    salt = base64.b64decode(stored.split("$")[3])
    assert mosquitto_hash("secret", salt=salt, iterations=101) == stored


def test_new_hashes_use_the_boxs_iteration_count_and_a_fresh_salt(conn: sqlite3.Connection) -> None:
    create_device(conn, "pos-1", "pos", "pos-1-password")
    set_broker_credential(conn, "pos-1", "pos-1-password")
    first = conn.execute("SELECT hash FROM broker_credentials WHERE device_id = 'pos-1'").fetchone()[0]
    set_broker_credential(conn, "pos-1", "pos-1-password")
    second = conn.execute("SELECT hash FROM broker_credentials WHERE device_id = 'pos-1'").fetchone()[0]
    assert first.startswith(f"$7${PBKDF2_ITERATIONS}$") and first != second
    assert verify_mosquitto_hash(first, "pos-1-password") and verify_mosquitto_hash(second, "pos-1-password")


@settings(max_examples=50)
@given(st.text(max_size=60))
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert verify_mosquitto_hash(stored, "secret") is False or stored.startswith("$7$")


def test_a_credential_needs_a_registered_device(conn: sqlite3.Connection) -> None:
    with pytest.raises(UnknownDevice):
        set_broker_credential(conn, "ghost", "pw")
    assert conn.execute("SELECT COUNT(*) FROM broker_credentials").fetchone()[0] == 0


def test_the_password_file_has_the_box_and_every_enabled_device_with_a_broker_hash(conn: sqlite3.Connection) -> None:
    for device in ("pos-2", "pos-1", "old-1", "off-1"):
        create_device(conn, device, "pos", f"{device}-pw")
    for device in ("pos-2", "pos-1", "off-1"):
        set_broker_credential(conn, device, f"{device}-pw")
    set_device_enabled(conn, "off-1", False)

    text = password_file(conn, "storebox_box", "box-pw")
    lines = [line.split(":", 1) for line in text.splitlines()]
    assert [user for user, _ in lines] == ["storebox_box", "pos-1", "pos-2"]
    assert verify_mosquitto_hash(lines[0][1], "box-pw") and verify_mosquitto_hash(lines[1][1], "pos-1-pw")
    assert text.endswith("\n")
    # Registered before broker hashes existed: listed so that the operator rotates them.
    assert devices_without_broker_credential(conn) == ["old-1"]


def test_the_boxs_user_cannot_be_a_device_or_break_the_file(conn: sqlite3.Connection) -> None:
    create_device(conn, "box", "other", "box-device-password")
    with pytest.raises(BrokerUserClash) as clash:
        password_file(conn, "box", "x")
    assert clash.value.code == "broker_user_clash" and "storebox_box" in clash.value.message_en
    for bad in ("", "a:b", "a\nb"):
        with pytest.raises(InvalidBrokerUser):
            password_file(conn, bad, "x")


def test_storebox_device_add_also_stores_the_broker_hash(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    result = CliRunner().invoke(
        app, ["device", "add", "pda-7", "--kind", "handheld", "--password", "pda-7-pw", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    db = connect(tmp_path / "storebox.db", readonly=True)
    try:
        stored = db.execute("SELECT hash FROM broker_credentials WHERE device_id = 'pda-7'").fetchone()[0]
    finally:
        db.close()
    assert verify_mosquitto_hash(stored, "pda-7-pw")
