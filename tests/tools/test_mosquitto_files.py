"""`python -m tools.mosquitto`: Mosquitto's config, ACL and password file from the box's settings and registry.

That Mosquitto runs with these files (logins, ACL, reload) is tested in tests/edge/bus/test_external_broker.py.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from edge.bus.broker import packet_limit
from edge.bus.broker_credentials import set_broker_credential, verify_mosquitto_hash
from edge.db import connect, migrate
from edge.security.devices import create_device, set_device_enabled
from tools.mosquitto.__main__ import cli
from tools.mosquitto.files import FIXED_HEADER, ListenerTls, MosquittoFiles, render_acl, render_config

URL = "mqtt://storebox_box:box-password@127.0.0.1:1884"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    conn = connect(tmp_path / "storebox.db")
    try:
        migrate(conn)
        with conn:
            create_device(conn, "pos-1", "pos", "pos-1-password")
            set_broker_credential(conn, "pos-1", "pos-1-password")
            create_device(conn, "legacy-1", "pos", "legacy-1-password")
            create_device(conn, "sup-acme", "supplier", "sup-acme-password")  # a supplier's EDI gateway
            set_broker_credential(conn, "sup-acme", "sup-acme-password")
            create_device(conn, "old-1", "handheld", "old-1-password")
            set_broker_credential(conn, "old-1", "old-1-password")
            set_device_enabled(conn, "old-1", False)
    finally:
        conn.close()
    return tmp_path


def rules(acl: str) -> list[str]:
    return [line for line in acl.splitlines() if line and not line.startswith("#")]


def test_the_acl_keeps_each_device_in_its_own_tree_and_gives_the_box_its_store() -> None:
    assert rules(render_acl("sh-01", "storebox_box", ["pda-1", "pos-1"])) == [
        "pattern write storebox/sh-01/dev/%u/#",
        "pattern read storebox/sh-01/dev/%u/#",
        "user storebox_box",
        "topic readwrite storebox/sh-01/#",
        "user pda-1",
        "topic read storebox/sh-01/stock/#",
        "topic read storebox/sh-01/alert/#",
        "user pos-1",
        "topic read storebox/sh-01/stock/#",
        "topic read storebox/sh-01/alert/#",
    ]


def test_every_acl_pattern_names_the_user_so_that_it_cannot_apply_to_everyone() -> None:
    # A pattern applies to every user, even after a `user` line; Mosquitto warns about one without %u or %c.
    patterns = [line for line in rules(render_acl("sh-01", "storebox_box", ["pos-1"])) if line.startswith("pattern")]
    assert patterns and all("%u" in line for line in patterns)


def test_the_written_acl_gives_stock_and_alerts_to_the_stores_enabled_devices_only(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOREBOX_MQTT_URL", URL)
    monkeypatch.setenv("STOREBOX_STORE_ID", "sh-01")
    out = tmp_path / "etc"
    assert cli(["write", "--dir", str(out), "--data-dir", str(data_dir), "--run-as", "root"]) == 0
    acl = (out / "storebox.acl").read_text()
    assert [line for line in rules(acl) if line.startswith("user")] == [
        "user storebox_box",
        "user legacy-1",  # no broker password yet, but a store device: it reads stock once rotated
        "user pos-1",
    ]
    assert "sup-acme" not in acl and "old-1" not in acl
    assert "sup-acme:" in (out / "storebox.passwd").read_text()  # it logs in, for its own tree only

    # A device added later reads stock and alerts once `passwd` has written the files again.
    conn = connect(data_dir / "storebox.db")
    try:
        with conn:
            create_device(conn, "pda-2", "handheld", "pda-2-password")
            set_broker_credential(conn, "pda-2", "pda-2-password")
    finally:
        conn.close()
    assert cli(["passwd", "--dir", str(out), "--data-dir", str(data_dir)]) == 0
    assert "user pda-2" in rules((out / "storebox.acl").read_text())
    assert "pda-2:" in (out / "storebox.passwd").read_text()


def test_passwd_keeps_the_owner_group_and_mode_that_mosquitto_reads_the_files_with(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOREBOX_MQTT_URL", URL)
    out = tmp_path / "etc"
    root = os.geteuid() == 0
    run_as = "nobody" if root else "root"  # as root, `write` gives the files to the broker's user
    assert cli(["write", "--dir", str(out), "--data-dir", str(data_dir), "--run-as", run_as]) == 0
    passwd, acl = out / "storebox.passwd", out / "storebox.acl"
    if root:
        assert passwd.stat().st_uid == 65534
        os.chown(acl, 65534, 65534)  # an operator's choice, kept too
    os.chmod(acl, 0o640)
    before = {path: path.stat() for path in (passwd, acl)}

    assert cli(["passwd", "--dir", str(out), "--data-dir", str(data_dir)]) == 0
    for path, old in before.items():
        new = path.stat()
        assert (new.st_uid, new.st_gid, stat.S_IMODE(new.st_mode)) == (
            old.st_uid,
            old.st_gid,
            stat.S_IMODE(old.st_mode),
        ), path
        assert new.st_ino != old.st_ino, path  # a new file renamed over the old one: never half written
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_passwd_needs_the_files_written_first(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STOREBOX_MQTT_URL", URL)
    assert cli(["passwd", "--dir", str(tmp_path / "none"), "--data-dir", str(data_dir)]) == 2
    assert "run `python -m tools.mosquitto write` first" in capsys.readouterr().err


def test_the_config_refuses_anonymous_and_fills_every_placeholder(tmp_path: Path) -> None:
    files = MosquittoFiles(tmp_path)
    conf = render_config(files, port=1884, bind="0.0.0.0", run_as="mosquitto", max_payload_bytes=16384)
    assert "$" not in conf
    lines = set(conf.splitlines())
    assert {
        "allow_anonymous false",
        f"password_file {files.passwd}",
        f"acl_file {files.acl}",
        "listener 1884 0.0.0.0",
        "user mosquitto",
        "persistence true",
        f"persistence_location {files.persistence}/",
        f"max_packet_size {packet_limit(16384) + FIXED_HEADER}",
    } <= lines
    assert not any(line.startswith("certfile") for line in lines)
    tls = render_config(
        files,
        port=8883,
        bind="0.0.0.0",
        run_as="mosquitto",
        max_payload_bytes=16384,
        tls=ListenerTls(Path("/etc/ssl/box.pem"), Path("/etc/ssl/box.key")),
    )
    assert re.search(r"listener 8883 0\.0\.0\.0\ncertfile /etc/ssl/box\.pem\nkeyfile /etc/ssl/box\.key\n", tls)


def test_write_puts_config_acl_and_password_file_in_place(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STOREBOX_MQTT_URL", URL)
    monkeypatch.setenv("STOREBOX_STORE_ID", "sh-01")
    out = tmp_path / "etc"
    assert cli(["write", "--dir", str(out), "--data-dir", str(data_dir), "--run-as", "root"]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "legacy-1" in captured.err  # registered before: rotate it

    assert "listener 1884 0.0.0.0" in (out / "storebox.conf").read_text()
    assert "topic readwrite storebox/sh-01/#" in (out / "storebox.acl").read_text()
    users = dict(line.split(":", 1) for line in (out / "storebox.passwd").read_text().splitlines())
    assert set(users) == {"storebox_box", "pos-1", "sup-acme"}
    assert verify_mosquitto_hash(users["storebox_box"], "box-password")
    assert stat.S_IMODE((out / "storebox.passwd").stat().st_mode) == 0o600
    assert (out / "data").is_dir()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left

    # After a device add or rotate, `passwd` writes the password file again.
    conn = connect(data_dir / "storebox.db")
    try:
        with conn:
            set_broker_credential(conn, "legacy-1", "legacy-1-password")
    finally:
        conn.close()
    assert cli(["passwd", "--dir", str(out), "--data-dir", str(data_dir)]) == 0
    assert "legacy-1:" in (out / "storebox.passwd").read_text()
    assert "no broker password" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (None, "set mqtt_url"),
        ("mqtt://127.0.0.1:1884", "must name the box's user and password"),
        ("mqtt://pos-1:x@127.0.0.1:1884", "also a registered device id"),
    ],
)
def test_write_refuses_without_the_boxs_own_login(
    url: str | None,
    reason: str,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("STOREBOX_MQTT_URL", raising=False)
    if url is not None:
        monkeypatch.setenv("STOREBOX_MQTT_URL", url)
    out = tmp_path / "etc"
    assert cli(["write", "--dir", str(out), "--data-dir", str(data_dir), "--run-as", "root"]) == 2
    assert reason in capsys.readouterr().err
    assert not (out / "storebox.passwd").exists()


def test_passwd_needs_the_boxs_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREBOX_MQTT_URL", URL)
    assert cli(["passwd", "--dir", str(tmp_path), "--data-dir", str(tmp_path / "none")]) == 2
