"""The KPI tool (tools/sim/module_kpis.py) on a short scenario: the shipped modules run in the real module host over a
store posted through the real ledger, their actions land where the host puts them, and the report's numbers add up
and agree with the database (and with a run of the same scenario without the host)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tools.sim import module_kpis
from tools.sim.module_kpis import Options, markdown, run

DAYS = 42


def rows(path: Path, query: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_the_shipped_modules_measured_through_the_module_host(tmp_path: Path) -> None:
    (tmp_path / "host").mkdir()
    result = run(Options(days=DAYS, seed=3, runner="host"), tmp_path / "host")
    db = tmp_path / "host" / "storebox.db"
    assert set(result["modules"]) == {"near-expiry", "recipe-loss", "new-product-burst"}
    assert rows(db, "SELECT name, version, source FROM module_installs ORDER BY name") == [
        ("near-expiry", 1, "shipped"),
        ("new-product-burst", 1, "shipped"),
        ("recipe-loss", 1, "shipped"),
    ]
    for name, m in result["modules"].items():
        decided = rows(
            db, f"SELECT COUNT(*), COUNT(outcome), SUM(outcome) FROM module_decisions WHERE module = '{name}'"
        )
        assert (m["decisions"], m["judged"], m["right"]) == (decided[0][0], decided[0][1], decided[0][2] or 0)
        assert m["right"] + m["wrong"] == m["judged"] and m["refused"] == 0
        if m["judged"]:
            assert m["precision"] == round(m["right"] / m["judged"], 4)
            assert m["false_positive_rate"] == round(m["wrong"] / m["judged"], 4)
        assert m["calls"] > 0
    assert result["modules"]["near-expiry"]["decisions"] > 0 and result["modules"]["recipe-loss"]["decisions"] > 0
    # What the host did with the proposals: drafts, notices and tickets attributed to the modules.
    drafts = dict(rows(db, "SELECT kind, COUNT(*) FROM rule_drafts WHERE rule_id = 'module:near-expiry' GROUP BY kind"))
    assert sum(drafts.values()) == result["modules"]["near-expiry"]["decisions"]
    assert rows(db, "SELECT COUNT(*) FROM rule_tickets WHERE rule_id = 'module:recipe-loss'")[0][0] > 0
    assert rows(db, "SELECT COUNT(*) FROM rule_notifications WHERE rule_id LIKE 'module:%'")[0][0] > 0
    table = markdown(result)
    assert table.count("\n") == 5 and "| near-expiry |" in table

    # The same scenario without the host decides exactly the same.
    (tmp_path / "inline").mkdir()
    inline = run(Options(days=DAYS, seed=3, runner="inline"), tmp_path / "inline")
    keys = "SELECT module, key, predicted, check_on, outcome FROM module_decisions ORDER BY module, key"
    assert rows(tmp_path / "inline" / "storebox.db", keys) == rows(db, keys)
    assert json.dumps(inline["store"]) == json.dumps(result["store"])


def test_the_command_line_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kpis.json"
    table = tmp_path / "kpis.md"
    code = module_kpis.main(
        [
            "--days",
            "36",
            "--runner",
            "inline",
            "--keep",
            str(tmp_path / "db"),
            "--json",
            str(out),
            "--markdown",
            str(table),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["options"]["days"] == 36 and report["machine"]
    assert table.read_text(encoding="utf-8") in capsys.readouterr().out
    assert (tmp_path / "db" / "storebox.db").is_file()


def test_too_few_days_are_refused() -> None:
    with pytest.raises(SystemExit):
        module_kpis.main(["--days", "30"])
