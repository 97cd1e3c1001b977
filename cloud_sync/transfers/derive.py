"""Transfers derived from ingested outbox rows: the sender's transfer out opens one (in transit), the receiver's
transfer in naming it (`external_ref` = transfer:<from_store>:<doc_no>) receives it, the sender's transfer_settle
settles it; reversals step back (a reversed transfer out before receipt cancels it). docs/transfers.md."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cloud_sync.transfers.tables import transfer_parts, transfers

log = logging.getLogger(__name__)

TRANSIT = "transit"  # the box's in-transit location (edge.ledger.masterdata.TRANSIT_LOCATION)
REF = re.compile(r"^transfer:(?P<store>[^:]{1,64}):(?P<doc_no>[^:]{1,64})$")


def share(value_fen: int, qty: int, received_qty: int) -> int:
    """A part's received value at the sender's cost, pro rata, half-up (edge.ledger.posting.transfer_share)."""
    return (2 * value_fen * received_qty + qty) // (2 * qty)


def apply_rows(conn: sa.Connection, store: str, rows: Sequence[dict[str, Any]]) -> None:
    """Called by the ingest inside the batch's transaction, after the core facts, with the batch's rows in order."""
    for row in rows:
        if row.get("kind") != "document.posted":
            continue
        payload = row.get("payload") or {}
        document = payload.get("document") or {}
        kind = document.get("type")
        seq = int(row["seq"])
        if kind == "transfer_out":
            _opened(conn, store, seq, payload)
        elif kind == "transfer_in" and document.get("external_ref"):
            _received(conn, store, seq, payload)
        elif kind == "transfer_settle":
            _settled(conn, store, seq, document)
        elif kind == "reversal" and document.get("reverses_id") is not None:
            _reversed(conn, store, seq, document)


def _opened(conn: sa.Connection, store: str, seq: int, payload: dict[str, Any]) -> None:
    document = payload["document"]
    to_store = document.get("counterparty")
    if not to_store:
        return  # a transfer between this store's own locations
    expiry = {(str(s), str(lot)): str(e) for s, lot, e in payload.get("lot_expiry") or []}
    parts: dict[tuple[str, str], list[int]] = {}
    for _line_no, sku, location, lot, qty, value in payload.get("moves") or []:
        if location == TRANSIT and qty > 0:
            part = parts.setdefault((str(sku), str(lot or "")), [0, 0])
            part[0] += int(qty)
            part[1] += int(value)
    if not parts:
        return
    exists = conn.execute(
        sa.select(transfers.c.id).where(transfers.c.from_store == store, transfers.c.out_doc_id == document["id"])
    ).first()
    if exists is not None:
        return
    inserted = conn.execute(
        transfers.insert().values(
            from_store=store,
            to_store=str(to_store),
            out_doc_id=int(document["id"]),
            out_doc_no=str(document["doc_no"]),
            shipped_date=str(document["business_date"]),
            state="in_transit",
            shipped_value_fen=sum(v for _, v in parts.values()),
            updated_seq=seq,
        )
    ).inserted_primary_key
    assert inserted is not None
    transfer_id = inserted[0]
    conn.execute(
        transfer_parts.insert(),
        [
            {
                "transfer_id": transfer_id,
                "part_no": i,
                "sku": sku,
                "lot": lot,
                "qty": qty,
                "value_fen": value,
                "expiry": expiry.get((sku, lot)),
            }
            for i, ((sku, lot), (qty, value)) in enumerate(parts.items(), start=1)
        ],
    )


def _received(conn: sa.Connection, store: str, seq: int, payload: dict[str, Any]) -> None:
    document = payload["document"]
    match = REF.match(str(document["external_ref"]))
    if match is None:
        return
    found = conn.execute(
        sa.select(transfers).where(
            transfers.c.from_store == match["store"],
            transfers.c.out_doc_no == match["doc_no"],
            transfers.c.to_store == store,
        )
    ).first()
    if found is None or found.state != "in_transit":
        log.warning("transfer in %s of %s names no open transfer %s", document.get("doc_no"), store, match[0])
        return
    counted: dict[tuple[str, str], int] = {}
    for line in payload.get("lines") or []:
        key = (str(line["sku"]), str(line.get("lot") or ""))
        counted[key] = counted.get(key, 0) + int(line["qty_base"])
    received_value = 0
    for part in conn.execute(sa.select(transfer_parts).where(transfer_parts.c.transfer_id == found.id)).all():
        qty = counted.pop((part.sku, part.lot), 0)
        value = share(int(part.value_fen), int(part.qty), qty)
        received_value += value
        conn.execute(
            transfer_parts.update()
            .where(transfer_parts.c.transfer_id == found.id, transfer_parts.c.part_no == part.part_no)
            .values(received_qty=qty, received_value_fen=value)
        )
    conn.execute(
        transfers.update()
        .where(transfers.c.id == found.id)
        .values(
            state="received",
            in_doc_id=int(document["id"]),
            in_doc_no=str(document["doc_no"]),
            received_date=str(document["business_date"]),
            received_value_fen=received_value,
            updated_seq=seq,
        )
    )


def _settled(conn: sa.Connection, store: str, seq: int, document: dict[str, Any]) -> None:
    conn.execute(
        transfers.update()
        .where(transfers.c.from_store == store, transfers.c.out_doc_id == document.get("ref_id"))
        .values(
            state="settled",
            settle_doc_id=int(document["id"]),
            settle_doc_no=str(document["doc_no"]),
            settled_date=str(document["business_date"]),
            updated_seq=seq,
        )
    )


def _reversed(conn: sa.Connection, store: str, seq: int, document: dict[str, Any]) -> None:
    original = int(document["reverses_id"])
    t = transfers.c
    # The sender's transfer out, reversed before receipt: cancelled.
    conn.execute(
        transfers.update()
        .where(t.from_store == store, t.out_doc_id == original, t.state == "in_transit")
        .values(state="cancelled", cancelled_date=str(document["business_date"]), updated_seq=seq)
    )
    # The sender's settlement reversed: received again, to be settled again.
    conn.execute(
        transfers.update()
        .where(t.from_store == store, t.settle_doc_id == original)
        .values(state="received", settle_doc_id=None, settle_doc_no=None, settled_date=None, updated_seq=seq)
    )
    # The receiver's transfer in reversed before settlement: in transit again.
    reopened = conn.execute(
        sa.select(t.id).where(t.to_store == store, t.in_doc_id == original, t.state == "received")
    ).first()
    if reopened is not None:
        conn.execute(
            transfer_parts.update()
            .where(transfer_parts.c.transfer_id == reopened.id)
            .values(received_qty=None, received_value_fen=None)
        )
        conn.execute(
            transfers.update()
            .where(t.id == reopened.id)
            .values(
                state="in_transit",
                in_doc_id=None,
                in_doc_no=None,
                received_date=None,
                received_value_fen=None,
                updated_seq=seq,
            )
        )
