"""`storebox signals ...`: files imported whole or refused whole, lead-time history, spikes and quality."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app
from tests.edge.replenishment.test_signals import open_store

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    open_store(tmp_path / "storebox.db").close()
    return tmp_path


def count(data_dir: Path, table: str) -> int:
    import sqlite3

    conn = sqlite3.connect(data_dir / "storebox.db")
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_import_a_promotion_csv_once(data_dir: Path, tmp_path: Path) -> None:
    start = date.today() + timedelta(days=3)
    file = tmp_path / "promos.csv"
    file.write_text(
        "\ufeffsku,category,start,end,discount,kind,note\n"
        f"S1,,{start},{start + timedelta(days=6)},0.2,折扣,双十二\n"
        f",snacks,{start},{start + timedelta(days=1)},0.1,满减,\n",
        encoding="utf-8",
    )
    args = ["signals", "import", str(file), "--kind", "promotion", "--data-dir", str(data_dir)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 new" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "imported before" in again.output
    assert count(data_dir, "signal_promotions") == 2
    listed = runner.invoke(app, ["signals", "list", "--kind", "promotion", "--json", "--data-dir", str(data_dir)])
    assert sorted(r["discount"] for r in json.loads(listed.output)) == [0.1, 0.2]


def test_a_bad_line_refuses_the_whole_file(data_dir: Path, tmp_path: Path) -> None:
    file = tmp_path / "bounce.csv"
    today = date.today()
    file.write_text(f"sku,date,rate\nS1,{today},0.3\nS2,{today},1.7\n", encoding="utf-8")
    result = runner.invoke(app, ["signals", "import", str(file), "-k", "search-bounce", "--data-dir", str(data_dir)])
    assert result.exit_code == 2
    assert "第 3 行" in result.output and "line 3" in result.output and "rate" in result.output
    assert count(data_dir, "signal_indicators") == 0 and count(data_dir, "signal_batches") == 0
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"sku,date,rate\nS1,{today},0.3\nNOPE,{today},0.2\n", encoding="utf-8")
    refused = runner.invoke(
        app, ["signals", "import", str(unknown), "-k", "search_bounce", "--data-dir", str(data_dir)]
    )
    assert refused.exit_code == 2 and "NOPE" in refused.output and "line 3" in refused.output
    assert count(data_dir, "signal_indicators") == 0
    wrong_kind = runner.invoke(app, ["signals", "import", str(file), "-k", "horoscope", "--data-dir", str(data_dir)])
    assert wrong_kind.exit_code == 2 and "horoscope" in wrong_kind.output


def test_lead_time_history_is_imported_and_learned(data_dir: Path, tmp_path: Path) -> None:
    today = date.today()
    rows = [(f"OLD-{i}", today - timedelta(days=60 + i), today - timedelta(days=55 + i)) for i in range(10)]
    file = tmp_path / "lead.csv"
    file.write_text(
        "supplier,po_ref,ordered_on,received_on,qty\n" + "".join(f"sup2,{p},{o},{r},10\n" for p, o, r in rows),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["signals", "import-lead-times", str(file), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert count(data_dir, "lead_time_history") == 10
    learned = runner.invoke(app, ["signals", "lead-times", "--json", "--data-dir", str(data_dir)])
    sup2 = next(r for r in json.loads(learned.output) if r["supplier"] == "sup2")
    assert sup2["observations"] == 10
    assert sup2["mean_days"] == pytest.approx((10 * 5 + 5 * 2) / 15)  # item_suppliers says 2 days
    bad = tmp_path / "bad.csv"
    bad.write_text(f"supplier,po_ref,ordered_on,received_on\nnobody,X,{today},{today}\n", encoding="utf-8")
    refused = runner.invoke(app, ["signals", "import-lead-times", str(bad), "--data-dir", str(data_dir)])
    assert refused.exit_code == 2 and "nobody" in refused.output


def test_spikes_and_quality_commands_answer_on_an_empty_store(data_dir: Path) -> None:
    spikes = runner.invoke(app, ["signals", "return-spikes", "--check", "--data-dir", str(data_dir)])
    assert spikes.exit_code == 0 and "no return spikes" in spikes.output
    quality = runner.invoke(app, ["signals", "quality", "sup1", "--data-dir", str(data_dir)])
    assert quality.exit_code == 0 and "100.0" in quality.output
    missing = runner.invoke(app, ["signals", "quality", "nobody", "--data-dir", str(data_dir)])
    assert missing.exit_code == 2 and "nobody" in missing.output
