"""`storebox transfers ...` over a real data dir: list incoming transfers offline, receive with counted lines."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edge.cli import app
from edge.db import connect
from edge.sync import transfers as tr
from tests.edge.sync.test_transfers import INCOMING
from tests.edge.web.apibox import seed

runner = CliRunner()


def test_incoming_lists_offline_and_receive_posts_the_transfer_in(tmp_path: Path) -> None:
    seed(tmp_path / "storebox.db")
    conn = connect(tmp_path / "storebox.db")
    try:
        with conn:
            tr.store_transfers(conn, "incoming", [INCOMING], "2026-12-05T10:00:00+00:00")
    finally:
        conn.close()
    shown = runner.invoke(app, ["transfers", "incoming", "--offline", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "TO20261205-000041" in shown.output and "M-9" in shown.output
    bad = runner.invoke(app, ["transfers", "receive", "7", "--line", "one=2", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2
    got = runner.invoke(
        app, ["transfers", "receive", "7", "--line", "1=20", "--line", "2=5", "--data-dir", str(tmp_path), "--json"]
    )
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["ok"] is True
    again = runner.invoke(app, ["transfers", "receive", "7", "--line", "1=20", "--data-dir", str(tmp_path)])
    assert again.exit_code == 2 and "transfer:store-002:TO20261205-000041" in again.output
    listed = runner.invoke(app, ["transfers", "incoming", "--offline", "--json", "--data-dir", str(tmp_path)])
    assert json.loads(listed.output)[0]["received_here"] is not None
    unconfigured = runner.invoke(app, ["transfers", "sources", "COLA", "--data-dir", str(tmp_path)])
    assert unconfigured.exit_code == 2
