"""`storebox-cloud`: migrate, register stores and print their key once, rotate, revoke, disable."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from cloud_sync.app import create_app
from cloud_sync.cli import app as cli
from cloud_sync.config import CloudSettings
from edge.sync.protocol import parse_store_key
from tests.cloud_sync.aggregator import StoreSession


@pytest.fixture
def run(cloud_db_url: str) -> Any:
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Any:
        result = runner.invoke(cli, list(args), env={"STOREBOX_CLOUD_DB_URL": cloud_db_url})
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return invoke


def lines(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_migrate_reports_the_schema_version(run: Any) -> None:
    assert lines(run("migrate"))[0]["schema_version"] >= 1
    assert lines(run("migrate"))[0]["schema_version"] >= 1


def test_a_registered_store_signs_with_the_printed_key(run: Any, cloud_db_url: str) -> None:
    added = lines(
        run("stores", "add", "s1", "--name", "一号店", "--company", "acme", "--lat", "31.2", "--lon", "121.5")
    )
    key = parse_store_key(added[0]["key"])
    assert added[0]["key_id"] == key.key_id
    app = create_app(CloudSettings(db_url=cloud_db_url))
    assert asyncio.run(StoreSession(app, "s1", key).get("/api/v1/sync/state")).status_code == 200
    listed = lines(run("stores", "list"))
    assert [(s["store"], s["company"], [k["key_id"] for k in s["keys"]]) for s in listed] == [
        ("s1", "acme", [key.key_id])
    ]
    assert added[0]["key"] not in run("stores", "list").stdout  # the secret is printed once only
    run("stores", "add", "s1", "--name", "again", "--company", "acme", code=1)


def test_bad_store_ids_and_coordinates_are_refused(run: Any) -> None:
    assert "must match" in run("stores", "add", "S 1", "--name", "x", "--company", "acme", code=2).stderr
    run("stores", "add", "s2", "--name", "x", "--company", "acme", "--lat", "31", code=2)


def test_rotate_revoke_and_disable(run: Any, cloud_db_url: str) -> None:
    first = parse_store_key(lines(run("stores", "add", "s1", "--name", "n", "--company", "acme"))[0]["key"])
    rotated = lines(run("stores", "rotate-key", "s1", "--grace-hours", "0"))[0]
    second = parse_store_key(rotated["key"])
    assert rotated["old_key_ids"] == [first.key_id]
    app = create_app(CloudSettings(db_url=cloud_db_url))

    def code(key: Any) -> Any:
        answer = asyncio.run(StoreSession(app, "s1", key).get("/api/v1/sync/state"))
        return answer.status_code if answer.status_code == 200 else answer.json()["code"]

    assert code(first) == "auth_key_expired"
    assert code(second) == 200
    run("stores", "rotate-key", "nope", code=1)
    third = parse_store_key(lines(run("stores", "rotate-key", "s1"))[0]["key"])
    assert code(second) == 200  # within the default 24 h grace
    run("stores", "revoke-key", second.key_id)
    run("stores", "revoke-key", second.key_id, code=1)
    assert code(second) == "auth_key_expired"
    assert code(third) == 200
    run("stores", "disable", "s1")
    run("stores", "disable", "s1", code=1)
    assert code(third) == "store_disabled"


def test_a_bad_setting_stops_with_one_line(cloud_db_url: str) -> None:
    result = CliRunner().invoke(
        cli, ["migrate"], env={"STOREBOX_CLOUD_DB_URL": cloud_db_url, "STOREBOX_CLOUD_PORT": "x"}
    )
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "STOREBOX_CLOUD_PORT" in result.stderr


def test_a_misspelt_setting_is_refused_rather_than_ignored(cloud_db_url: str) -> None:
    result = CliRunner().invoke(cli, ["migrate"], env={"STOREBOX_CLOUD_DB_ULR": cloud_db_url})
    assert result.exit_code == 2
    assert "STOREBOX_CLOUD_DB_ULR" in result.stderr and "unknown setting" in result.stderr


def test_a_disabled_store_can_be_enabled_again(run: Any) -> None:
    run("stores", "add", "s9", "--name", "九号店", "--company", "co-1")
    run("stores", "disable", "s9")
    run("stores", "disable", "s9", code=1)
    run("stores", "enable", "s9")
    run("stores", "enable", "s9", code=1)
    listed = {r["store"]: r for r in lines(run("stores", "list"))}
    assert listed["s9"]["disabled_at"] is None


def test_python_m_cloud_sync_is_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "cloud_sync", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "migrate", "stores", "hq", "packages"):
        assert command in done.stdout


@pytest.mark.slow
def test_serve_tells_systemd_when_it_is_ready_and_when_it_stops(tmp_path: Any) -> None:
    import socket
    import time

    import httpx

    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(60)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "STOREBOX_CLOUD_DB_URL": f"sqlite:///{tmp_path / 'cloud.db'}",
        "STOREBOX_CLOUD_PORT": str(port),
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "2000000",
    }
    server = subprocess.Popen([sys.executable, "-m", "cloud_sync", "serve"], env=env, cwd=tmp_path)
    try:
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):
            messages.append(listener.recv(4096).decode())
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["database"] is True
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(listener.recv(4096).decode())
        server.terminate()
        deadline = time.monotonic() + 60
        while not any("STOPPING=1" in m for m in messages) and time.monotonic() < deadline:
            messages.append(listener.recv(4096).decode())
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
        listener.close()


def test_a_database_newer_than_the_cli_stops_it_with_the_reason(run: Any, cloud_db_url: str) -> None:
    from cloud_sync.db import create_engine
    from cloud_sync.tables import schema_versions

    run("migrate")
    engine = create_engine(cloud_db_url)
    with engine.begin() as conn:
        conn.execute(schema_versions.insert().values(version=999, name="m0999_future", applied_at="2030"))
    engine.dispose()
    refused = run("stores", "list", code=2)
    assert "999" in refused.stderr and "upgrade" in refused.stderr
