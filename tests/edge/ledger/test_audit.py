"""Audit trail (审计日志): one row per posting, each hash chained to the one before, so tampering shows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.ledger.audit import GENESIS, row_hash, verify_chain
from edge.ledger.commands import DocType, Line, PostDocument, PostResult, ReverseDocument
from edge.ledger.verify import verify_ledger
from tests.edge.ledger.sample_store import NOW, copy_ledger

Post = Callable[..., PostResult]
TRIGGERS = ("audit_append_only_update", "audit_append_only_delete")


@pytest.fixture
def audited(conn: sqlite3.Connection, posted: Post) -> sqlite3.Connection:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 24),), actor="keeper-2", device="handheld-3"))
    posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 30),), actor="cashier-1", device="pos-1"))  # refused
    posted(PostDocument("sa-2", DocType.SALE, (Line("A1", 3),), actor="cashier-1", device="pos-1"))
    posted(ReverseDocument("rv-1", 2, actor="manager-1"))
    posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 20),), actor="keeper-2"))
    return conn


def tamperable_copy(conn: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """A copy of the ledger with the audit triggers dropped: what someone with the file could do."""
    copy = copy_ledger(conn, path)
    for trigger in TRIGGERS:
        copy.execute(f"DROP TRIGGER {trigger}")
    return copy


def test_every_posting_appends_one_audit_row_saying_who_where_when_and_what(audited: sqlite3.Connection) -> None:
    rows = audited.execute("SELECT ts, actor, device, action, object, detail FROM audit ORDER BY seq").fetchall()
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("keeper-2", "handheld-3", "post.receipt", "document:1"),
        ("cashier-1", "pos-1", "post.sale", "document:2"),
        ("manager-1", None, "post.reversal", "document:3"),
        ("keeper-2", None, "post.stocktake", "document:4"),
    ]
    assert {r[0] for r in rows} == {NOW.isoformat()}
    assert json.loads(rows[1][5]) == {"doc_no": "SA20261125-000002", "gross_fen": 900, "key": "sa-2"}


def test_the_chain_links_every_row_to_the_one_before(audited: sqlite3.Connection) -> None:
    assert verify_chain(audited) == []
    prev = GENESIS
    for r in audited.execute("SELECT ts, actor, device, action, object, detail, prev_hash, hash FROM audit"):
        assert r[6] == prev
        assert r[7] == row_hash(prev, *r[:6])
        prev = r[7]


def test_a_changed_audit_row_is_detected(audited: sqlite3.Connection, tmp_path: Path) -> None:
    copy = tamperable_copy(audited, tmp_path / "copy.db")
    copy.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 2")
    assert verify_chain(copy) == [{"seq": 2, "problem": "hash does not match the row's content"}]
    assert not verify_ledger(copy)["ok"]
    copy.close()


def test_a_changed_row_with_its_hash_recomputed_breaks_the_next_link(
    audited: sqlite3.Connection, tmp_path: Path
) -> None:
    copy = tamperable_copy(audited, tmp_path / "copy.db")
    r = copy.execute("SELECT ts, device, action, object, detail, prev_hash FROM audit WHERE seq = 2").fetchone()
    forged = row_hash(r[5], r[0], "someone-else", r[1], r[2], r[3], r[4])
    copy.execute("UPDATE audit SET actor = 'someone-else', hash = ? WHERE seq = 2", (forged,))
    assert verify_chain(copy) == [{"seq": 3, "problem": "prev_hash does not match the previous row"}]
    copy.close()


def test_a_deleted_audit_row_is_detected(audited: sqlite3.Connection, tmp_path: Path) -> None:
    copy = tamperable_copy(audited, tmp_path / "copy.db")
    copy.execute("DELETE FROM audit WHERE seq = 2")
    assert [p["seq"] for p in verify_chain(copy)] == [3]
    report = verify_ledger(copy)
    assert [d["document_id"] for d in report["audit"] if "document_id" in d] == [2]
    copy.close()


def test_the_last_audit_row_cut_off_is_found_by_its_document(audited: sqlite3.Connection, tmp_path: Path) -> None:
    copy = tamperable_copy(audited, tmp_path / "copy.db")
    copy.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")
    assert verify_chain(copy) == []  # a chain cannot see its own tail cut off ...
    assert verify_ledger(copy)["audit"] == [{"document_id": 4, "doc_no": "ST20261125-000004"}]  # ... the documents can
    copy.close()


def test_audit_rows_cannot_be_changed_in_the_ledger_itself(audited: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        audited.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        audited.execute("DELETE FROM audit")
    assert verify_chain(audited) == []
