"""Queries over transfers and other stores' stock for the store endpoints (and HQ)."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from cloud_sync.errors import CloudError
from cloud_sync.tables import item_activity, items, lots, stock, stores
from cloud_sync.transfers.derive import TRANSIT
from cloud_sync.transfers.tables import transfer_parts, transfer_requests, transfers

STATES = ("in_transit", "received", "settled", "cancelled")
DIRECTIONS = ("incoming", "outgoing")


def transfer_json(conn: sa.Connection, row: Any) -> dict[str, Any]:
    parts = conn.execute(
        sa.select(transfer_parts).where(transfer_parts.c.transfer_id == row.id).order_by(transfer_parts.c.part_no)
    ).all()
    return {
        "id": int(row.id),
        "from_store": row.from_store,
        "to_store": row.to_store,
        "out_doc_id": int(row.out_doc_id),
        "out_doc_no": row.out_doc_no,
        "external_ref": f"transfer:{row.from_store}:{row.out_doc_no}",
        "shipped_date": row.shipped_date,
        "state": row.state,
        "shipped_value_fen": int(row.shipped_value_fen),
        "received_value_fen": None if row.received_value_fen is None else int(row.received_value_fen),
        "in_doc_no": row.in_doc_no,
        "received_date": row.received_date,
        "settle_doc_no": row.settle_doc_no,
        "settled_date": row.settled_date,
        "cancelled_date": row.cancelled_date,
        "parts": [
            {
                "part_no": int(p.part_no),
                "sku": p.sku,
                "lot": p.lot,
                "qty": int(p.qty),
                "value_fen": int(p.value_fen),
                "expiry": p.expiry,
                "received_qty": None if p.received_qty is None else int(p.received_qty),
                "received_value_fen": None if p.received_value_fen is None else int(p.received_value_fen),
            }
            for p in parts
        ],
    }


def list_transfers(
    conn: sa.Connection, store: str, direction: str, state: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """This store's incoming (to it) or outgoing (from it) transfers, newest first."""
    column = transfers.c.to_store if direction == "incoming" else transfers.c.from_store
    query = sa.select(transfers).where(column == store)
    if state is not None:
        query = query.where(transfers.c.state == state)
    rows = conn.execute(query.order_by(transfers.c.id.desc()).limit(limit)).all()
    return [transfer_json(conn, row) for row in rows]


def distance_km(lat1: float | None, lon1: float | None, lat2: float | None, lon2: float | None) -> float | None:
    """Great-circle distance (haversine), None when a position is unknown."""
    if None in (lat1, lon1, lat2, lon2):
        return None
    p1, p2 = math.radians(float(lat1)), math.radians(float(lat2))  # type: ignore[arg-type]
    dp = p2 - p1
    dl = math.radians(float(lon2) - float(lon1))  # type: ignore[arg-type]
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * 6371.0 * math.asin(math.sqrt(min(1.0, a))), 1)


def peer_stock(conn: sa.Connection, store: str, sku: str, today: date) -> list[dict[str, Any]]:
    """Other active stores of this store's company: on hand of `sku` outside transit, last outbound date,
    shortest remaining shelf life of their lots with stock, cold-chain capability and distance; nearest first."""
    me = conn.execute(sa.select(stores).where(stores.c.id == store)).one()
    others = conn.execute(
        sa.select(stores).where(stores.c.company == me.company, stores.c.id != store, stores.c.disabled_at.is_(None))
    ).all()
    out: list[dict[str, Any]] = []
    for other in others:
        on_hand = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(stock.c.qty), 0)).where(
                stock.c.store == other.id, stock.c.sku == sku, stock.c.location != TRANSIT
            )
        ).scalar_one()
        expiries = conn.execute(
            sa.select(lots.c.expiry)
            .select_from(
                stock.join(
                    lots, sa.and_(lots.c.store == stock.c.store, lots.c.sku == stock.c.sku, lots.c.lot == stock.c.lot)
                )
            )
            .where(stock.c.store == other.id, stock.c.sku == sku, stock.c.location != TRANSIT, stock.c.qty > 0)
            .where(lots.c.expiry.is_not(None))
        ).scalars()
        shelf = [(date.fromisoformat(e) - today).days for e in expiries if e]
        last_out = conn.execute(
            sa.select(item_activity.c.last_outbound_date).where(
                item_activity.c.store == other.id, item_activity.c.sku == sku
            )
        ).scalar()
        storage_class = conn.execute(
            sa.select(items.c.storage_class).where(items.c.store == other.id, items.c.sku == sku)
        ).scalar()
        if int(on_hand) <= 0 and last_out is None:
            continue
        out.append(
            {
                "store": other.id,
                "name": other.name,
                "sku": sku,
                "qty": max(int(on_hand), 0),
                "storage_class": storage_class,
                "last_outbound_date": last_out,
                "min_shelf_life_days": max(min(shelf), 0) if shelf else None,
                "cold_chain_capable": bool(other.cold_chain),
                "distance_km": distance_km(me.lat, me.lon, other.lat, other.lon),
            }
        )
    out.sort(key=lambda r: (r["qty"] <= 0, r["distance_km"] is None, r["distance_km"] or 0.0, r["store"]))
    return out


def received_in_transit(conn: sa.Connection, store: str | None = None) -> dict[tuple[str, str, str], int]:
    """Goods still in a sender's transit that the receiver has already booked (received, not yet settled), by
    (from_store, sku, lot): subtract these from the stock table's transit rows to count stock once."""
    query = (
        sa.select(transfers.c.from_store, transfer_parts.c.sku, transfer_parts.c.lot, sa.func.sum(transfer_parts.c.qty))
        .select_from(transfers.join(transfer_parts, transfer_parts.c.transfer_id == transfers.c.id))
        .where(transfers.c.state == "received")
        .group_by(transfers.c.from_store, transfer_parts.c.sku, transfer_parts.c.lot)
    )
    if store is not None:
        query = query.where(transfers.c.from_store == store)
    return {(r[0], r[1], r[2]): int(r[3]) for r in conn.execute(query)}


def company_stock(conn: sa.Connection, company: str, sku: str) -> dict[str, int]:
    """A company's stock of an item counted once: on hand everywhere, plus what is in transit and not yet received."""
    store_ids = [r[0] for r in conn.execute(sa.select(stores.c.id).where(stores.c.company == company))]
    rows = conn.execute(
        sa.select(stock.c.store, stock.c.location, stock.c.lot, stock.c.qty, stock.c.value_fen).where(
            stock.c.store.in_(store_ids), stock.c.sku == sku
        )
    ).all()
    on_hand = sum(int(r.qty) for r in rows if r.location != TRANSIT)
    transit = sum(int(r.qty) for r in rows if r.location == TRANSIT)
    already = sum(q for (s, k, _), q in received_in_transit(conn).items() if s in store_ids and k == sku)
    return {"on_hand": on_hand, "in_transit": transit - already, "total": on_hand + transit - already}


CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REQUEST_FIELDS = ("request_id", "from_store", "sku", "qty", "unit", "qty_base", "cold_chain", "deadline", "note")


def _invalid(field: str) -> CloudError:
    return CloudError(
        "transfer_request_invalid",
        f"调拨申请字段无效: {field}",
        f"transfer request field is invalid: {field}",
        422,
        field=field,
    )


def store_request(conn: sa.Connection, store: str, body: bytes, now: datetime) -> dict[str, Any]:
    """Keep a transfer request from `store` to another store of its company (outside input: every field checked)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("body") from None
    if not isinstance(data, dict) or set(data) - set(REQUEST_FIELDS):
        raise _invalid("body")

    def whole(name: str, high: int) -> int:
        value = data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            raise _invalid(name)
        return value

    def text(name: str, limit: int, *, optional: bool = False, pattern: re.Pattern[str] | None = None) -> str | None:
        value = data.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= limit or (pattern and not pattern.match(value)):
            raise _invalid(name)
        return value

    row = {
        "to_store": store,
        "request_id": whole("request_id", 2**62),
        "from_store": text("from_store", 64, pattern=CODE),
        "sku": text("sku", 64, pattern=CODE),
        "qty": whole("qty", 10**9),
        "unit": text("unit", 16),
        "qty_base": whole("qty_base", 10**12),
        "cold_chain": data.get("cold_chain"),
        "deadline": text("deadline", 40, optional=True),
        "note": text("note", 500, optional=True),
        "sent_at": now.isoformat(),
    }
    if row["cold_chain"] not in ("ambient", "chilled", "frozen"):
        raise _invalid("cold_chain")
    company = sa.select(stores.c.company).where(stores.c.id == store).scalar_subquery()
    source = conn.execute(
        sa.select(stores.c.id).where(
            stores.c.id == row["from_store"], stores.c.company == company, stores.c.disabled_at.is_(None)
        )
    ).first()
    if source is None or row["from_store"] == store:
        raise CloudError(
            "unknown_source_store",
            f"本公司没有可调出的门店 {row['from_store']}",
            f"no other active store {row['from_store']} in this company",
            422,
            field="from_store",
        )
    found = conn.execute(
        sa.select(transfer_requests.c.id).where(
            transfer_requests.c.to_store == store, transfer_requests.c.request_id == row["request_id"]
        )
    ).first()
    if found is not None:
        return {"id": int(found.id), "status": "duplicate"}
    inserted = conn.execute(transfer_requests.insert().values(**row)).inserted_primary_key
    assert inserted is not None
    return {"id": int(inserted[0]), "status": "stored"}


def list_requests(conn: sa.Connection, store: str, direction: str, limit: int = 200) -> list[dict[str, Any]]:
    column = transfer_requests.c.from_store if direction == "incoming" else transfer_requests.c.to_store
    rows = conn.execute(
        sa.select(transfer_requests).where(column == store).order_by(transfer_requests.c.id.desc()).limit(limit)
    ).all()
    return [dict(r._mapping) for r in rows]
