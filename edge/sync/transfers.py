"""Cross-store transfers through the aggregator (门店调拨): incoming transfers, receiving them, settling the
transfers this store shipped once the other store has received them, and other stores' stock of an item.

The accounting is in docs/transfers.md. The unit of a transfer is one item and lot as it went into the
sending store's transit location (a "part"); both stores value a part received at the sender's value shipped,
pro rata, rounded half-up once per part (`edge.ledger.posting.transfer_share`).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from edge.ledger.commands import DocType, Line, PostDocument, SettledPart, SettleTransfer
from edge.ledger.posting import MAX_QTY, PostingContext, post, transfer_share
from edge.replenishment.emergency_orders import PeerStockRow
from edge.sync.errors import SyncError

log = logging.getLogger(__name__)

REF_PATTERN = re.compile(r"^transfer:(?P<store>[A-Za-z0-9_.\-]{1,64}):(?P<doc_no>[A-Za-z0-9_.\-]{1,64})$")
STATES = ("in_transit", "received", "settled", "cancelled")


class TransferError(SyncError):
    code = "transfer_error"
    status = 409


class UnknownTransfer(TransferError):
    code = "unknown_transfer"
    status = 404

    def __init__(self, transfer_id: int) -> None:
        super().__init__(
            f"没有这张调入单: {transfer_id}", f"no incoming transfer {transfer_id}", transfer_id=transfer_id
        )


class TransferNotReceivable(TransferError):
    code = "transfer_not_receivable"


class InvalidCount(TransferError):
    code = "invalid_count"
    status = 422


def external_ref(from_store: str, doc_no: str) -> str:
    """How a receiving store's transfer in names the sender's transfer out."""
    return f"transfer:{from_store}:{doc_no}"


def parse_external_ref(text: str) -> tuple[str, str] | None:
    """(from_store, doc_no) of `transfer:<from_store>:<doc_no>`, else None."""
    match = REF_PATTERN.match(text) if isinstance(text, str) else None
    return (match["store"], match["doc_no"]) if match else None


@dataclass(frozen=True, slots=True)
class ShippedPart:
    """One item and lot of a transfer out as it went into the sender's transit, with what was received of it."""

    part_no: int
    sku: str
    lot: str
    qty: int  # base units shipped
    value_fen: int  # at the sender's cost
    expiry: str | None = None
    received_qty: int | None = None


def parse_parts(raw: Any) -> tuple[ShippedPart, ...]:
    """Parts as the aggregator sends them; anything malformed is refused (outside input)."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= 1000:
        raise InvalidCount("调拨明细无效", "the transfer's parts are malformed")
    parts: list[ShippedPart] = []
    for i, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise InvalidCount(f"调拨明细第 {i} 项无效", f"part {i} is malformed", part=i)
        sku, lot, qty, value = item.get("sku"), item.get("lot", ""), item.get("qty"), item.get("value_fen")
        expiry, received = item.get("expiry"), item.get("received_qty")
        if (
            not isinstance(sku, str)
            or not 1 <= len(sku) <= 64
            or not isinstance(lot, str)
            or len(lot) > 64
            or not _is_int(qty, 1, MAX_QTY * 1000)
            or not _is_int(value, 0, 10**13)
            or not (expiry is None or _is_date(expiry))
            or not (received is None or _is_int(received, 0, MAX_QTY * 1000))
        ):
            raise InvalidCount(f"调拨明细第 {i} 项无效", f"part {i} is malformed", part=i)
        parts.append(ShippedPart(i, sku, lot, int(qty or 0), int(value or 0), expiry, received))
    return tuple(parts)


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def receipt_command(
    *,
    key: str,
    from_store: str,
    doc_no: str,
    parts: Sequence[ShippedPart],
    counts: Mapping[int, int],
    location: str | None = None,
    actor: str = "system",
    note: str | None = None,
) -> PostDocument:
    """The transfer in (调拨入库单) receiving `counts` (part_no -> base units counted) of a transfer out, at the
    sender's value pro rata, with the lots and expiries as shipped. Parts not counted were not received."""
    by_no = {p.part_no: p for p in parts}
    unknown = sorted(set(counts) - set(by_no))
    if unknown:
        raise InvalidCount(f"调拨单没有第 {unknown[0]} 项", f"the transfer has no part {unknown[0]}", part=unknown[0])
    lines: list[Line] = []
    for part in parts:
        qty = counts.get(part.part_no, 0)
        if not _is_int(qty, 0, MAX_QTY):
            raise InvalidCount(
                f"第 {part.part_no} 项数量无效: {qty!r}", f"part {part.part_no}: invalid quantity {qty!r}"
            )
        if qty == 0:
            continue
        lines.append(
            Line(
                code=part.sku,
                qty=qty,
                lot=part.lot or None,
                expiry=date.fromisoformat(part.expiry) if part.expiry else None,
                amount_fen=transfer_share(part.value_fen, part.qty, qty),
            )
        )
    if not lines:
        raise InvalidCount("至少须收到一项货品", "at least one part must be received", field="lines")
    return PostDocument(
        key=key,
        type=DocType.TRANSFER_IN,
        lines=tuple(lines),
        to_location=location,
        counterparty=from_store,
        note=note,
        actor=actor,
        external_ref=external_ref(from_store, doc_no),
    )


def settle_command(
    *, key: str, transfer_out_id: int, parts: Sequence[ShippedPart], received_ref: str | None
) -> SettleTransfer:
    """The settlement of a transfer out this store shipped, from what the other store received of each part."""
    received: dict[tuple[str, str], int] = {}
    for part in parts:
        received[(part.sku, part.lot)] = received.get((part.sku, part.lot), 0) + (part.received_qty or 0)
    return SettleTransfer(
        key=key,
        transfer_out_id=transfer_out_id,
        received=tuple(SettledPart(sku, lot, qty) for (sku, lot), qty in received.items()),
        external_ref=received_ref,
    )


# --- the local copy of this store's transfers (edge/sync/migrations/0002_transfers.sql) ---------------------


def store_transfers(conn: sqlite3.Connection, direction: str, rows: list[dict[str, Any]], now: str) -> int:
    """Upsert transfers as the aggregator listed them (writer job); return how many were written."""
    written = 0
    for t in rows:
        parts = parse_parts(t.get("parts"))
        if not _is_int(t.get("id"), 1, 2**62) or t.get("state") not in STATES:
            raise InvalidCount("调拨单无效", "a transfer from the aggregator is malformed")
        conn.execute(
            "INSERT INTO sync_transfers (id, direction, from_store, to_store, out_doc_id, out_doc_no, external_ref,"
            " shipped_date, state, shipped_value_fen, received_value_fen, in_doc_no, settle_doc_no, parts,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, received_value_fen = excluded.received_value_fen,"
            " in_doc_no = excluded.in_doc_no, settle_doc_no = excluded.settle_doc_no, parts = excluded.parts,"
            " updated_at = excluded.updated_at",
            (
                int(t["id"]),
                direction,
                str(t["from_store"])[:64],
                str(t["to_store"])[:64],
                int(t["out_doc_id"]),
                str(t["out_doc_no"])[:64],
                external_ref(str(t["from_store"]), str(t["out_doc_no"])),
                str(t["shipped_date"])[:10],
                t["state"],
                int(t["shipped_value_fen"]),
                t.get("received_value_fen"),
                t.get("in_doc_no"),
                t.get("settle_doc_no"),
                json.dumps([_part_json(p) for p in parts]),
                now,
            ),
        )
        written += 1
    return written


def _part_json(part: ShippedPart) -> dict[str, Any]:
    return {
        "part_no": part.part_no,
        "sku": part.sku,
        "lot": part.lot,
        "qty": part.qty,
        "value_fen": part.value_fen,
        "expiry": part.expiry,
        "received_qty": part.received_qty,
    }


def _row_json(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    received = conn.execute(
        "SELECT id, doc_no FROM documents d WHERE type = 'transfer_in' AND external_ref = ?"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (row["external_ref"],),
    ).fetchone()
    return {
        "id": row["id"],
        "direction": row["direction"],
        "from_store": row["from_store"],
        "to_store": row["to_store"],
        "out_doc_no": row["out_doc_no"],
        "external_ref": row["external_ref"],
        "shipped_date": row["shipped_date"],
        "state": row["state"],
        "shipped_value_fen": row["shipped_value_fen"],
        "received_value_fen": row["received_value_fen"],
        "in_doc_no": row["in_doc_no"],
        "settle_doc_no": row["settle_doc_no"],
        "received_here": None if received is None else {"document_id": received[0], "doc_no": received[1]},
        "parts": json.loads(row["parts"]),
        "updated_at": row["updated_at"],
    }


def list_local(conn: sqlite3.Connection, direction: str, state: str | None = None) -> list[dict[str, Any]]:
    """Transfers as last pulled from the aggregator, newest first."""
    query = "SELECT * FROM sync_transfers WHERE direction = ?"
    args: list[Any] = [direction]
    if state is not None:
        query += " AND state = ?"
        args.append(state)
    conn.row_factory = sqlite3.Row
    return [_row_json(conn, row) for row in conn.execute(query + " ORDER BY id DESC LIMIT 500", args)]


def get_local(conn: sqlite3.Connection, transfer_id: int) -> dict[str, Any]:
    conn.row_factory = sqlite3.Row
    row = conn.execute(
        "SELECT * FROM sync_transfers WHERE id = ? AND direction = 'incoming'", (transfer_id,)
    ).fetchone()
    if row is None:
        raise UnknownTransfer(transfer_id)
    return _row_json(conn, row)


def receive_incoming(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    transfer_id: int,
    counts: dict[int, int],
    location: str | None,
    actor: str,
    key: str,
    note: str | None,
) -> dict[str, Any]:
    """Receive an incoming transfer (writer job with the posting context): post the transfer in at the sender's
    value for the counted quantities; the sender settles once the aggregator has seen it."""
    transfer = get_local(conn, transfer_id)
    if transfer["state"] != "in_transit" and transfer["received_here"] is None:
        raise TransferNotReceivable(
            f"调入单 {transfer_id} 状态为 {transfer['state']}，不能收货",
            f"incoming transfer {transfer_id} is {transfer['state']} and cannot be received",
            state=transfer["state"],
        )
    conn.execute(
        "INSERT OR IGNORE INTO stores (id, name) VALUES (?, ?)", (transfer["from_store"], transfer["from_store"])
    )
    command = receipt_command(
        key=key,
        from_store=transfer["from_store"],
        doc_no=transfer["out_doc_no"],
        parts=parse_parts(transfer["parts"]),
        counts=counts,
        location=location,
        actor=actor,
        note=note,
    )
    result = post(conn, command, ctx)
    return {**result.to_dict(), "replayed": result.replayed, "transfer_id": transfer_id}


# --- other stores' stock of an item (issue 5's peer_stock table) --------------------------------------------


def parse_peer_rows(raw: Any, sku: str, now: datetime) -> list[PeerStockRow]:
    """The aggregator's peer-stock answer as issue 5's rows; malformed rows are refused (outside input)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("stores"), list) or len(raw["stores"]) > 10_000:
        raise InvalidCount("他店库存答复无效", "the aggregator's peer stock answer is malformed")
    rows: list[PeerStockRow] = []
    for i, r in enumerate(raw["stores"], start=1):
        ok = (
            isinstance(r, dict)
            and isinstance(r.get("store"), str)
            and 1 <= len(r["store"]) <= 64
            and _is_int(r.get("qty"), 0, 10**12)
            and (r.get("last_outbound_date") is None or _is_date(r["last_outbound_date"]))
            and (r.get("min_shelf_life_days") is None or _is_int(r["min_shelf_life_days"], 0, 100_000))
            and (
                r.get("distance_km") is None
                or (isinstance(r["distance_km"], (int, float)) and 0 <= r["distance_km"] < 50_000)
            )
            and r.get("storage_class") in (None, "ambient", "chilled", "frozen")
        )
        if not ok:
            raise InvalidCount(f"他店库存第 {i} 行无效", f"peer stock row {i} is malformed", row=i)
        rows.append(
            PeerStockRow(
                store=r["store"],
                sku=sku,
                qty=r["qty"],
                storage_class=r.get("storage_class") or "ambient",
                cold_chain_capable=bool(r.get("cold_chain_capable")),
                updated_at=now,
                last_outbound_date=date.fromisoformat(r["last_outbound_date"]) if r.get("last_outbound_date") else None,
                min_shelf_life_days=r.get("min_shelf_life_days"),
                distance_km=float(r["distance_km"]) if r.get("distance_km") is not None else None,
            )
        )
    return rows


def save_peer_stock(conn: sqlite3.Connection, sku: str, rows: list[PeerStockRow]) -> int:
    """Replace the other stores' rows of one item in peer_stock (writer job); unknown items are not kept."""
    if conn.execute("SELECT 1 FROM items WHERE sku = ?", (sku,)).fetchone() is None:
        return 0
    conn.execute("DELETE FROM peer_stock WHERE sku = ?", (sku,))
    for r in rows:
        conn.execute("INSERT OR IGNORE INTO stores (id, name) VALUES (?, ?)", (r.store, r.store))
        conn.execute(
            "INSERT INTO peer_stock (store, sku, qty, storage_class, cold_chain_capable, last_outbound_date,"
            " min_shelf_life_days, distance_km, eta_minutes, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r.store,
                sku,
                r.qty,
                r.storage_class,
                int(r.cold_chain_capable),
                r.last_outbound_date.isoformat() if r.last_outbound_date else None,
                r.min_shelf_life_days,
                r.distance_km,
                r.eta_minutes,
                r.updated_at.isoformat(),
            ),
        )
    return len(rows)


def rank_sources(rows: Sequence[PeerStockRow], storage_class: str | None) -> list[dict[str, Any]]:
    """Where to transfer from: stores with stock first, those that can ship the item's cold chain, then the
    longest remaining shelf life, then the nearest."""
    needs_cold = storage_class in ("chilled", "frozen")

    def key(r: PeerStockRow) -> tuple[Any, ...]:
        return (
            r.qty <= 0,
            needs_cold and not r.cold_chain_capable,
            -(r.min_shelf_life_days if r.min_shelf_life_days is not None else 100_000),
            r.distance_km if r.distance_km is not None else float("inf"),
            r.store,
        )

    return [
        {
            "rank": i,
            "store": r.store,
            "sku": r.sku,
            "qty": r.qty,
            "storage_class": r.storage_class,
            "cold_chain_capable": r.cold_chain_capable,
            "last_outbound_date": r.last_outbound_date.isoformat() if r.last_outbound_date else None,
            "min_shelf_life_days": r.min_shelf_life_days,
            "distance_km": r.distance_km,
            "usable": r.qty > 0 and not (needs_cold and not r.cold_chain_capable),
        }
        for i, r in enumerate(sorted(rows, key=key), start=1)
    ]


async def sources(client: Any, settings: Any, writer: Any, reader: Any, sku: str, clock: Any) -> dict[str, Any]:
    """Other stores' stock of `sku` live from the aggregator, ranked; peer_stock is refreshed with it."""
    answer = await client.get_json("/api/v1/sync/peer-stock", params={"sku": sku})
    now = clock()
    rows = parse_peer_rows(answer, sku, now)
    await writer.execute(save_peer_stock, sku, rows)
    conn = reader()
    try:
        found = conn.execute("SELECT storage_class FROM items WHERE sku = ?", (sku,)).fetchone()
    finally:
        conn.close()
    return {"sku": sku, "as_of": answer.get("as_of"), "sources": rank_sources(rows, found[0] if found else None)}


# --- transfer requests (调拨申请, issue 5's transfer_requests) -----------------------------------------------


def draft_requests(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Drafts to send to the store they ask to ship."""
    rows = conn.execute(
        "SELECT id, from_store, sku, qty, unit, qty_base, cold_chain, deadline, note FROM transfer_requests"
        " WHERE state = 'draft' ORDER BY id"
    ).fetchall()
    return [
        {
            "request_id": r[0],
            "from_store": r[1],
            "sku": r[2],
            "qty": r[3],
            "unit": r[4],
            "qty_base": r[5],
            "cold_chain": r[6],
            "deadline": r[7],
            "note": r[8],
        }
        for r in rows
    ]


def mark_request_sent(conn: sqlite3.Connection, request_id: int) -> None:
    """draft -> sent, once the aggregator has stored it (a request cancelled meanwhile stays cancelled)."""
    conn.execute("UPDATE transfer_requests SET state = 'sent' WHERE id = ? AND state = 'draft'", (request_id,))


def store_requests(conn: sqlite3.Connection, rows: list[dict[str, Any]], now: str) -> int:
    """Keep the requests other stores sent here (writer job); malformed rows are refused."""
    for r in rows:
        if not isinstance(r, dict) or not _is_int(r.get("id"), 1, 2**62) or not _is_int(r.get("qty_base"), 1, 10**12):
            raise InvalidCount("调拨申请无效", "a transfer request from the aggregator is malformed")
        conn.execute(
            "INSERT OR REPLACE INTO sync_transfer_requests (id, to_store, request_id, sku, qty, unit, qty_base,"
            " cold_chain, deadline, note, sent_at, pulled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r["id"],
                str(r["to_store"])[:64],
                int(r["request_id"]),
                str(r["sku"])[:64],
                int(r["qty"]),
                str(r["unit"])[:16],
                r["qty_base"],
                str(r["cold_chain"])[:16],
                r.get("deadline"),
                r.get("note"),
                str(r["sent_at"])[:40],
                now,
            ),
        )
    return len(rows)


def list_requests(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute("SELECT * FROM sync_transfer_requests ORDER BY id DESC LIMIT 500")]


async def _sync_requests(client: Any, ctx: Any, now: str) -> None:
    conn = ctx.open_reader()
    try:
        drafts = draft_requests(conn)
    finally:
        conn.close()
    for draft in drafts:
        await client.post_json("/api/v1/sync/transfer-requests", draft, gzip=False)
        await ctx.writer.execute(mark_request_sent, draft["request_id"])
    answer = await client.get_json("/api/v1/sync/transfer-requests", params={"direction": "incoming"})
    rows = answer.get("requests") if isinstance(answer, dict) else None
    if not isinstance(rows, list):
        raise InvalidCount("调拨申请列表无效", "the aggregator's transfer request list is malformed")
    await ctx.writer.execute(store_requests, rows, now)


# --- the puller ----------------------------------------------------------------------------------------------


def settlements_due(conn: sqlite3.Connection, store: str, received: list[dict[str, Any]]) -> list[SettleTransfer]:
    """Settlements to post for outgoing transfers the other store has received and this box has not settled."""
    due: list[SettleTransfer] = []
    for t in received:
        if t.get("from_store") != store or t.get("state") != "received":
            continue
        doc = conn.execute(
            "SELECT id FROM documents d WHERE id = ? AND doc_no = ? AND type = 'transfer_out'"
            " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)"
            " AND NOT EXISTS (SELECT 1 FROM documents s WHERE s.type = 'transfer_settle' AND s.ref_id = d.id"
            "   AND NOT EXISTS (SELECT 1 FROM documents r2 WHERE r2.reverses_id = s.id))",
            (t.get("out_doc_id"), t.get("out_doc_no")),
        ).fetchone()
        if doc is None:
            continue
        parts = parse_parts(t.get("parts"))
        ref = f"transfer_in:{t['to_store']}:{t.get('in_doc_no')}"
        due.append(
            settle_command(
                key=f"transfer-settle:{doc[0]}:{t.get('in_doc_no')}",
                transfer_out_id=doc[0],
                parts=parts,
                received_ref=ref,
            )
        )
    return due


async def pull(client: Any, ctx: Any) -> None:
    """Refresh incoming and outgoing transfers; settle the outgoing ones the other store has received."""
    now = ctx.clock().isoformat()
    for direction in ("incoming", "outgoing"):
        answer = await client.get_json("/api/v1/sync/transfers", params={"direction": direction})
        rows = answer.get("transfers") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise InvalidCount("调拨列表无效", "the aggregator's transfer list is malformed")
        await ctx.writer.execute(store_transfers, direction, rows, now)
        if direction == "outgoing":
            conn = ctx.open_reader()
            try:
                due = settlements_due(conn, ctx.settings.store_id, rows)
            finally:
                conn.close()
            for command in due:
                result = await ctx.writer.post(command)
                if not result.ok:
                    log.warning("transfer settlement %s refused: %s", command.key, result.message_en)
    await _sync_requests(client, ctx, now)


__all__ = [
    "STATES",
    "InvalidCount",
    "ShippedPart",
    "TransferError",
    "TransferNotReceivable",
    "UnknownTransfer",
    "draft_requests",
    "external_ref",
    "get_local",
    "list_local",
    "list_requests",
    "mark_request_sent",
    "parse_external_ref",
    "parse_parts",
    "parse_peer_rows",
    "pull",
    "rank_sources",
    "receipt_command",
    "receive_incoming",
    "save_peer_stock",
    "settle_command",
    "settlements_due",
    "sources",
    "store_requests",
    "store_transfers",
]
