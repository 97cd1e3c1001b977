"""`storebox` commands: clear refusals of bad arguments, and the box's life cycle as a process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.box_process import BoxProcess, storebox_command


def run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREBOX_")}
    env.update(env_extra or {})
    return subprocess.run(storebox_command(*args), capture_output=True, text=True, timeout=120, env=env)


def test_help_lists_every_command() -> None:
    out = run("--help").stdout
    for command in ("serve", "simulate", "ledger", "user", "device", "migrate", "config"):
        assert command in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--http-port", "abc"], "--http-port"),
        (["serve", "--http-port", "70000"], "http_port"),
        (["serve", "--store-id", "Not An Id"], "store_id"),
        (["ledger", "verify", "--data-dir", "/nonexistent/storebox"], "no database"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_arguments_are_refused_with_exit_code_2(args: list[str], expected: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert expected in result.stderr + result.stdout


def test_bad_environment_stops_serve_with_one_line(tmp_path: Path) -> None:
    result = run("serve", env_extra={"STOREBOX_DATA_DIR": str(tmp_path), "STOREBOX_MQTT_PORT": "-1"})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "mqtt_port" in lines[0]


def test_user_and_device_add_refuse_bad_values_and_keep_nothing(tmp_path: Path) -> None:
    env = {"STOREBOX_DATA_DIR": str(tmp_path)}
    assert run("user", "add", "wizard", "--role", "sorcerer", env_extra=env).returncode == 2
    assert run("device", "add", "Bad Id", "--kind", "pos", env_extra=env).returncode == 2
    ok = run("device", "add", "pos-9", "--kind", "pos", env_extra=env)
    assert ok.returncode == 0, ok.stderr
    creds = json.loads(ok.stdout)
    assert creds["username"] == "pos-9" and len(creds["password"]) >= 8
    db = sqlite3.connect(tmp_path / "storebox.db")
    assert db.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
    assert [r[0] for r in db.execute("SELECT id FROM devices")] == ["pos-9"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12),
        max_size=4,
    )
)
def test_garbage_arguments_never_traceback(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "ledger", "verify", "--data-dir", "/nonexistent/x", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode in (0, 1, 2)
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_serve_demo_restart_keeps_data_and_sigterm_exits_zero(tmp_path: Path) -> None:
    box = BoxProcess(tmp_path / "box")
    try:
        box.start()
        first = box.demo_json()
        db_path = box.data_dir / "storebox.db"
        counts = _counts(db_path)
        assert counts["items"] >= 200 and counts["documents"] > 0
        assert box.terminate() == 0
        box.start()
        assert box.demo_json()["users"] == first["users"]
        assert _counts(db_path) == counts
        assert box.terminate() == 0
        verify = box.cli("ledger", "verify")
        assert "ledger OK" in verify.stdout
    finally:
        box.stop()


def _counts(db_path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("items", "documents", "users")}
    finally:
        db.close()


@pytest.mark.slow
def test_ctrl_c_to_the_whole_process_group_stops_box_and_writer_cleanly(tmp_path: Path) -> None:
    import os
    import signal

    box = BoxProcess(tmp_path / "box")
    try:
        box.start()
        assert box.proc is not None
        os.killpg(os.getpgid(box.proc.pid), signal.SIGINT)
        assert box.proc.wait(timeout=30) == 0
        log = box.read_log()
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        box.stop()
