"""`storebox backup create|verify|restore` against a real box that posts sales from simulated devices meanwhile."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tools.box_process import BoxProcess, storebox_command

pytestmark = pytest.mark.slow


def _count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0] or 0)
    finally:
        conn.close()


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_backup_while_posting_then_restore_verifies_with_the_balances_of_that_instant(tmp_path: Path) -> None:
    box = BoxProcess(tmp_path / "box")
    box.start()
    simulator = subprocess.Popen(
        storebox_command("simulate", "--duration", "120"),
        env=box.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    live_db = box.data_dir / "storebox.db"
    archive = tmp_path / "backups" / "box.tar.gz"
    try:
        seeded = _count(live_db, "SELECT max(id) FROM documents")
        _wait(lambda: _count(live_db, "SELECT max(id) FROM documents") > seeded + 5, 60, "sales to post")
        created = box.cli("backup", "create", "--out", str(archive))
        assert "integrity_check ok" in created.stderr and "100%" in created.stderr  # progress shown
        report = json.loads(created.stdout)
        at_backup = report["database"]["documents"]
        _wait(lambda: _count(live_db, "SELECT count(*) FROM documents") > at_backup, 60, "sales after the backup")

        refused = box.cli("backup", "restore", str(archive), "--data-dir", str(box.data_dir), "--force", check=False)
        assert refused.returncode == 2 and "in use" in refused.stderr

        verified = box.cli("backup", "verify", str(archive))
        assert json.loads(verified.stdout)["ok"] is True
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
        box.stop()

    restored = tmp_path / "restored"
    result = box.cli("backup", "restore", str(archive), "--data-dir", str(restored))
    assert json.loads(result.stdout)["data_dir"] == str(restored.absolute())
    check = box.cli("ledger", "verify", "--data-dir", str(restored), check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    # The copy is the ledger of one instant: its balances are the live ledger's moves up to its last document.
    copy = sqlite3.connect(restored / "storebox.db")
    last = copy.execute("SELECT max(id) FROM documents").fetchone()[0]
    assert copy.execute("SELECT count(*) FROM documents").fetchone()[0] == at_backup
    balances = {
        tuple(r[:3]): tuple(r[3:]) for r in copy.execute("SELECT sku, location, lot, qty, value_fen FROM balances")
    }
    live = sqlite3.connect(f"file:{live_db}?mode=ro", uri=True)
    moves = {
        tuple(r[:3]): tuple(r[3:])
        for r in live.execute(
            "SELECT sku, location, lot, sum(qty), sum(value_fen) FROM stock_moves WHERE document_id <= ?"
            " GROUP BY sku, location, lot",
            (last,),
        )
    }
    assert live.execute("SELECT max(id) FROM documents").fetchone()[0] > last  # the box went on posting
    assert {k: v for k, v in balances.items() if v != (0, 0)} == {k: v for k, v in moves.items() if v != (0, 0)}
    assert (restored / "secret.key").read_bytes() == (box.data_dir / "secret.key").read_bytes()
    assert (restored / "demo.json").exists()

    # A second box starts on the restored data dir.
    again = BoxProcess(restored, demo=False)
    again.start()
    again.terminate()


def test_verify_refuses_a_damaged_archive_and_restore_needs_force(tmp_path: Path) -> None:
    box = BoxProcess(tmp_path / "box")
    box.data_dir.mkdir(parents=True)
    box.cli("migrate")
    archive = tmp_path / "b.tar.gz"
    box.cli("backup", "create", "--out", str(archive))
    again = box.cli("backup", "create", "--out", str(archive), check=False)
    assert again.returncode == 2  # never overwrites an archive

    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    (tmp_path / "bad.tar.gz").write_bytes(bytes(raw))
    bad = box.cli("backup", "verify", str(tmp_path / "bad.tar.gz"), check=False)
    assert bad.returncode == 1 and "backup archive invalid" in bad.stderr
    assert "Traceback" not in bad.stderr

    occupied = box.cli("backup", "restore", str(archive), "--data-dir", str(box.data_dir), check=False)
    assert occupied.returncode == 2 and "--force" in occupied.stderr

    folder = tmp_path / "daily"
    for _ in range(3):
        box.cli("backup", "create", "--dir", str(folder), "--keep", "2")  # names to the microsecond
    assert len(list(folder.glob("storebox-store-001-*.tar.gz"))) == 2
