"""A real store for the scan-to-receive tests: the sample ledger store (tests/edge/ledger/sample_store.py) migrated
with every package, a purchase order to receive against, a supplier signing key, and signed delivery notes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.db import connect, migrate
from edge.devices.delivery_note import NoteLine, generate_key_pair, public_key_text, set_signing_key
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.posting import PostingContext
from tests.edge.ledger.sample_store import COLA_CAN, COLA_CASE, MILK_CARTON, MILK_CASE, NOW, TODAY, context, seed
from tools.delivery_note import sign_note

T = TypeVar("T")
__all__ = ["COLA_CAN", "COLA_CASE", "MILK_CARTON", "MILK_CASE", "NOW", "TODAY", "context"]

# A purchase order of sup1: 2 cases of cola (48 cans) at 48.00 a case, 24 cartons of milk at 4.20, 10 bags of
# dumplings at 12.07.
PO_LINES = (Line(COLA_CASE, 2, 4800), Line("M1", 24, 420), Line("F1", 10, 1207))
MILK_EXPIRY = TODAY + timedelta(days=7)
DUMPLING_EXPIRY = TODAY + timedelta(days=180)
NOTE_LINES = (
    NoteLine(COLA_CASE, 2),
    NoteLine(MILK_CARTON, 24, "M2611", MILK_EXPIRY),
    NoteLine("F1", 10, "F2611", DUMPLING_EXPIRY),
)


def open_store(path: Path) -> sqlite3.Connection:
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    seed(conn)
    return conn


def in_tx(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn(conn, *args)` in its own transaction, as the writer runs one job (rolled back when it raises)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args, **kwargs)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def post_po(
    conn: sqlite3.Connection, lines: Sequence[Line] = PO_LINES, *, supplier: str = "sup1", key: str = "po-1"
) -> tuple[int, str]:
    """Post a purchase order; (document id, doc_no)."""
    from edge.ledger.posting import post

    command = PostDocument(key=key, type=DocType.PURCHASE_ORDER, lines=tuple(lines), counterparty=supplier)
    result = in_tx(conn, post, command, context())
    assert result.ok, result
    assert result.document_id is not None and result.doc_no is not None
    return result.document_id, result.doc_no


def register_key(conn: sqlite3.Connection, supplier: str = "sup1") -> Ed25519PrivateKey:
    private, public = generate_key_pair()
    in_tx(conn, set_signing_key, supplier, public_key_text(public), "test", NOW)
    return private


def note(
    private: Ed25519PrivateKey,
    po_no: str,
    lines: Sequence[NoteLine] = NOTE_LINES,
    *,
    supplier: str = "sup1",
    asn_id: str = "ASN-1",
    issued_at: datetime = NOW - timedelta(hours=2),
    nonce: str | None = None,
) -> str:
    return sign_note(
        private, supplier=supplier, asn_id=asn_id, po_no=po_no, lines=lines, issued_at=issued_at, nonce=nonce
    )


def ctx_at(now: datetime = NOW, business_date: date = TODAY) -> PostingContext:
    return context(business_date, now)
