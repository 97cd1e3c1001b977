"""`storebox replenish plan | suggestions | approve | reject | import-history` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.db import connect
from tests.edge.replenishment.test_planner import store_with_documents, template
from tools.box_process import storebox_command

__all__ = ["template"]  # fixture

pytestmark = pytest.mark.slow


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREBOX_")}
    return subprocess.run(storebox_command(*args), capture_output=True, text=True, timeout=300, env=env)


def test_plan_suggestions_reject_approve_and_import_from_the_shell(template: Path, tmp_path: Path) -> None:
    shutil.copyfile(template, tmp_path / "storebox.db")
    conn = connect(tmp_path / "storebox.db")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the box's business day, as the CLI will see it
    store_with_documents(conn, today)
    conn.close()
    where = ("--data-dir", str(tmp_path))
    planned = run("replenish", "plan", "--json", *where)
    assert planned.returncode == 0, planned.stderr
    body = json.loads(planned.stdout)
    assert body["run"]["trigger"] == "cli" and body["run"]["series"] == 2
    ids = {s["sku"]: s["id"] for s in body["suggestions"]}
    assert set(ids) == {"COLA", "MILK"}

    listed = run("replenish", "suggestions", *where)
    assert listed.returncode == 0 and "2 条建议" in listed.stdout and "建议订" in listed.stdout

    rejected = run("replenish", "reject", str(ids["MILK"]), "--reason", "冷库检修", *where)
    assert rejected.returncode == 0, rejected.stderr
    unreasoned = run("replenish", "reject", str(ids["COLA"]), "--reason", " ", *where)
    assert unreasoned.returncode == 2 and "reason" in unreasoned.stderr

    approved = run("replenish", "approve", str(ids["COLA"]), "--qty", "3", "--json", *where)
    assert approved.returncode == 0, approved.stderr
    po = json.loads(approved.stdout)["approved"][0]
    conn = connect(tmp_path / "storebox.db", readonly=True)
    try:
        line = conn.execute("SELECT sku, qty FROM document_lines WHERE document_id = ?", (po["po_id"],)).fetchone()
        reason = conn.execute("SELECT reject_reason FROM suggestions WHERE id = ?", (ids["MILK"],)).fetchone()[0]
    finally:
        conn.close()
    assert tuple(line) == ("COLA", 3) and reason == "冷库检修"

    day = today - timedelta(days=3)
    history = tmp_path / "history.csv"
    history.write_text(f"sku,location,date,qty\nCOLA,floor,{day},5\n", encoding="utf-8")
    imported = run("replenish", "import-history", str(history), *where)
    assert imported.returncode == 0, imported.stderr
    assert "已导入 1 行" in imported.stdout
    history.write_text("sku,location,date,qty\nCOLA,floor,yesterday,5\n", encoding="utf-8")
    refused = run("replenish", "import-history", str(history), *where)
    assert refused.returncode == 2 and "line 2" in refused.stderr
