"""`storebox modules ...`: install a module directory and the shipped modules, list, show, disable, enable, roll back
and remove; refusals are one bilingual line and exit code 2, and leave nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edge.cli import app
from edge.db import connect
from tests.edge.modules.modkit import write_module

runner = CliRunner()


def cli(data_dir: Path, *args: str) -> tuple[int, str]:
    done = runner.invoke(app, ["modules", *args, "--data-dir", str(data_dir)])
    return done.exit_code, done.output


def test_install_list_show_switch_roll_back_and_remove(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = cli(data, "install-shipped")
    assert code == 0, out
    shipped = [json.loads(line) for line in out.splitlines()]
    assert {(s["name"], s["version"], s["changed"]) for s in shipped} == {
        ("near-expiry", 1, True),
        ("recipe-loss", 1, True),
        ("new-product-burst", 1, True),
    }
    code, out = cli(data, "install-shipped", "near-expiry")  # again: nothing changes
    assert code == 0 and json.loads(out)["changed"] is False
    (copy,) = (data / "modules" / "near-expiry").glob("1-*")
    assert (copy / "manifest.yaml").is_file()

    assert cli(data, "install", str(write_module(tmp_path / "src", "echo", 1)))[0] == 0
    code, out = cli(data, "install", str(write_module(tmp_path / "src", "echo", 2)))
    assert code == 0 and json.loads(out) == {"name": "echo", "version": 2, "previous": 1, "changed": True}
    code, out = cli(data, "list")
    rows = {json.loads(line)["name"]: json.loads(line) for line in out.splitlines()}
    assert (rows["echo"]["version"], rows["echo"]["state"], rows["echo"]["source"]) == (2, "enabled", "local")
    assert rows["recipe-loss"]["source"] == "shipped"

    assert json.loads(cli(data, "disable", "echo")[1])["state"] == "disabled"
    assert json.loads(cli(data, "enable", "echo")[1])["state"] == "enabled"
    code, out = cli(data, "rollback", "echo")
    assert code == 0 and json.loads(out) == {"name": "echo", "from_version": 2, "to_version": 1, "state": "enabled"}
    shown = json.loads(cli(data, "show", "echo")[1])
    assert shown["version"] == 1 and shown["manifest"]["params"] == {"tag": "v1"}
    assert [h["action"] for h in shown["history"]] == ["rolled_back", "enabled", "disabled", "installed", "installed"]
    assert shown["kpis"] == {
        "judged": 0,
        "right": 0,
        "wrong": 0,
        "precision": None,
        "false_positive_rate": None,
        "window": 20,
    }
    assert json.loads(cli(data, "remove", "echo")[1])["state"] == "removed"


def test_refusals_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = write_module(tmp_path / "src", "echo", 1)
    assert cli(data, "install", str(folder))[0] == 0
    code, out = cli(data, "rollback", "echo")
    assert code == 2 and "没有可回滚的上一版本" in out and "no previous version" in out
    code, out = cli(data, "enable", "ghost")
    assert code == 2 and "no scenario module named ghost" in out
    (folder / "module.py").write_text("def handle(ctx, event):\n    return []\n\ndef judge(ctx, d):\n    return None\n")
    code, out = cli(data, "install", str(folder))  # same version, other files
    assert code == 2 and "already installed" in out
    bad = write_module(tmp_path / "bad", "echo", 2)
    (bad / "manifest.yaml").write_text("name: echo\nversion: 2\n", encoding="utf-8")
    code, out = cli(data, "install", str(bad))
    assert code == 2 and "manifest refused" in out
    missing = write_module(tmp_path / "missing", "echo", 3)
    (missing / "module.py").unlink()
    code, out = cli(data, "install", str(missing))
    assert code == 2 and "entry file module.py is missing" in out
    conn = connect(data / "storebox.db", readonly=True)
    try:
        assert conn.execute("SELECT version, state FROM modules").fetchall()[0][:] == (1, "enabled")
        assert conn.execute("SELECT COUNT(*) FROM module_installs").fetchone()[0] == 1
    finally:
        conn.close()
    assert [p.name[:2] for p in (data / "modules" / "echo").iterdir()] == ["1-"]  # refused copies removed
    (installed,) = (data / "modules" / "echo").iterdir()
    assert "def handle(ctx, event):\n    line" in (installed / "module.py").read_text()  # v1's files untouched
