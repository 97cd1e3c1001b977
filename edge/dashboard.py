"""The store at a glance (today's sales and margin, stock alerts, devices, cold rooms, open work): read queries
over one connection, for `GET /api/v1/dashboard` and so for the manager's page. Pure reads, no clock: the
caller passes the business day and the UTC instant it started."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

TOP = 8


def sales_today(conn: sqlite3.Connection, day: date) -> dict[str, Any]:
    """Sales of the business day net of customer returns, reversed documents left out. Amounts in fen; net is
    without VAT, margin = net - cost of goods sold."""
    row = conn.execute(
        "SELECT"
        " COALESCE(SUM(CASE WHEN type = 'sale' THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN type = 'sale' THEN gross_fen ELSE -gross_fen END), 0),"
        " COALESCE(SUM(CASE WHEN type = 'sale' THEN gross_fen - tax_fen ELSE tax_fen - gross_fen END), 0),"
        " COALESCE(SUM(CASE WHEN type = 'sale' THEN cost_fen ELSE -cost_fen END), 0),"
        " COALESCE(SUM(CASE WHEN type = 'customer_return' THEN gross_fen ELSE 0 END), 0)"
        " FROM documents d WHERE business_date = ? AND type IN ('sale', 'customer_return')"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (day.isoformat(),),
    ).fetchone()
    count, gross, net, cost, returns = (int(v) for v in row)
    return {
        "business_date": day.isoformat(),
        "sales": count,
        "gross_fen": gross,
        "net_fen": net,
        "cost_fen": cost,
        "margin_fen": net - cost,
        "margin_rate": round((net - cost) / net, 4) if net else None,
        "returns_fen": returns,
    }


def sales_by_hour(conn: sqlite3.Connection, day: date, tz: tzinfo) -> list[int]:
    """Gross sales (fen) of each hour of the business day in the store's time zone, 24 values."""
    hours = [0] * 24
    for posted_at, gross in conn.execute(
        "SELECT posted_at, gross_fen FROM documents d WHERE business_date = ? AND type = 'sale'"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (day.isoformat(),),
    ):
        hours[datetime.fromisoformat(str(posted_at)).astimezone(tz).hour] += int(gross)
    return hours


def below_reorder(conn: sqlite3.Connection) -> dict[str, Any]:
    """Items the plan says to order now: open suggestions whose order-by day has come."""
    rows = conn.execute(
        "SELECT s.id, s.sku, i.name, s.location, s.qty, s.unit, s.order_by FROM suggestions s"
        " JOIN items i ON i.sku = s.sku WHERE s.state = 'open' ORDER BY s.order_by, s.sku"
    ).fetchall()
    items = [
        {"suggestion": r[0], "sku": r[1], "name": r[2], "location": r[3], "qty": r[4], "unit": r[5], "order_by": r[6]}
        for r in rows
    ]
    return {"count": len(items), "items": items[:TOP]}


def near_expiry(conn: sqlite3.Connection, day: date, days: int) -> dict[str, Any]:
    """Lots on hand that expire within `days` (or already have)."""
    rows = conn.execute(
        "SELECT b.sku, i.name, b.location, b.lot, l.expiry, b.qty, i.base_unit FROM balances b"
        " JOIN lots l ON l.sku = b.sku AND l.lot = b.lot JOIN items i ON i.sku = b.sku"
        " WHERE b.qty > 0 AND l.expiry IS NOT NULL AND l.expiry <= ? ORDER BY l.expiry, b.sku",
        ((day + timedelta(days=days)).isoformat(),),
    ).fetchall()
    lots = [
        {
            "sku": r[0],
            "name": r[1],
            "location": r[2],
            "lot": r[3],
            "expiry": r[4],
            "qty": r[5],
            "unit": r[6],
            "days_left": (date.fromisoformat(r[4]) - day).days,
        }
        for r in rows
    ]
    return {"count": len(lots), "within_days": days, "lots": lots[:TOP]}


def negative_refused(conn: sqlite3.Connection, since_utc: str) -> dict[str, Any]:
    """Postings refused today because they would have taken stock below zero (from the API, CLI or devices)."""
    commands = conn.execute(
        "SELECT COUNT(*) FROM commands WHERE ok = 0 AND code = 'insufficient_stock' AND ts >= ?", (since_utc,)
    ).fetchone()[0]
    events = conn.execute(
        "SELECT COUNT(*) FROM event_outcomes WHERE ok = 0 AND outcome LIKE '%insufficient_stock%' AND ts >= ?",
        (since_utc,),
    ).fetchone()[0]
    return {"count": int(commands) + int(events)}


def devices(conn: sqlite3.Connection) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT d.id, d.kind, COALESCE(s.state, 'offline'), COALESCE(s.updated_at, d.last_seen) FROM devices d"
        " LEFT JOIN device_status s ON s.device = d.id WHERE d.enabled = 1 ORDER BY d.id"
    ).fetchall()
    listed = [{"device": r[0], "kind": r[1], "state": r[2], "last_seen": r[3]} for r in rows]
    online = sum(1 for d in listed if d["state"] == "online")
    return {"online": online, "offline": len(listed) - online, "devices": listed}


def open_work(conn: sqlite3.Connection) -> dict[str, int]:
    """Counts of what waits for someone: match exceptions, review tickets, receipt drafts, cold-room excursions."""

    def count(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    return {
        "match_exceptions": count("SELECT COUNT(*) FROM invoice_exceptions WHERE closed_at IS NULL"),
        "review_tickets": count("SELECT COUNT(*) FROM review_tickets WHERE state = 'open'"),
        "receipt_drafts": count("SELECT COUNT(*) FROM receipt_drafts WHERE state = 'open'"),
        "cold_excursions": count("SELECT COUNT(*) FROM cold_excursions WHERE ended_at IS NULL"),
    }
