"""What the plan reads from the database, in a few set queries into NumPy arrays (no Python loop over SKUs).

The SKU-locations planned are the items with an active primary supplier (item_suppliers) at each location that
has stock of them or sold them, transit excluded; stock and sales of a pooled location (the back room) count for
the location it feeds (the sales floor). Quantities are base units.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

EPOCH = date(1970, 1, 1)
_SEP = ";"


def epoch_day(day: date) -> int:
    """Days since 1970-01-01: the key of sales_daily and sales_history."""
    return (day - EPOCH).days


@dataclass(frozen=True, slots=True)
class Universe:
    """One row per SKU-location planned, with its item and supplier facts."""

    sku: np.ndarray  # (n,) object str
    location: np.ndarray  # (n,) object str
    supplier: np.ndarray  # (n,) object str
    unit: np.ndarray  # (n,) object str, the purchase unit
    base_unit: np.ndarray  # (n,) object str
    category: np.ndarray  # (n,) object str ('' if none)
    storage_class: np.ndarray  # (n,) object str
    pack: np.ndarray  # (n,) int64
    moq: np.ndarray  # (n,) int64
    lead_time_days: np.ndarray  # (n,) float64 default of item_suppliers
    review_days: np.ndarray  # (n,) float64
    service_level: np.ndarray  # (n,) float64
    shelf_life_days: np.ndarray  # (n,) float64, 0 = none

    @property
    def n(self) -> int:
        return int(self.sku.shape[0])


@dataclass(frozen=True, slots=True)
class StockFacts:
    on_hand: np.ndarray  # (n,) usable: transit and excursion-blocked lots excluded
    blocked: np.ndarray  # (n,) in lots under an open cold-room alarm
    in_transit: np.ndarray  # (n,) on open ASNs already shipped
    on_order: np.ndarray  # (n,) open PO quantity neither received nor shipped
    lots_days_left: np.ndarray  # (m,)
    lots_qty: np.ndarray  # (m,)
    lots_row: np.ndarray  # (m,) int64 sorted by row then days left


def _concat_query(conn: sqlite3.Connection, sql: str, params: Sequence[object], columns: int) -> list[str] | None:
    """Run `sql` (selecting `columns` numeric columns c0..cN) and return each column as one comma-joined text.

    Fetching millions of small rows through the sqlite3 module costs seconds; SQLite joins them in C and NumPy
    parses the text at C speed."""
    parts = f" || '{_SEP}' || ".join(f"group_concat(c{i}, ',')" for i in range(columns))
    row = conn.execute(f"SELECT {parts} FROM ({sql})", tuple(params)).fetchone()
    if row is None or row[0] is None:
        return None
    texts = str(row[0]).split(_SEP)
    return texts


def int_columns(conn: sqlite3.Connection, sql: str, params: Sequence[object], columns: int) -> list[np.ndarray]:
    texts = _concat_query(conn, sql, params, columns)
    if texts is None:
        return [np.zeros(0, dtype=np.int64) for _ in range(columns)]
    return [np.fromstring(t, dtype=np.int64, sep=",") if t else np.zeros(0, dtype=np.int64) for t in texts]


def float_columns(conn: sqlite3.Connection, sql: str, params: Sequence[object], columns: int) -> list[np.ndarray]:
    texts = _concat_query(conn, sql, params, columns)
    if texts is None:
        return [np.zeros(0, dtype=np.float64) for _ in range(columns)]
    return [np.fromstring(t, dtype=np.float64, sep=",") if t else np.zeros(0, dtype=np.float64) for t in texts]


def per_row(n: int, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum `values` by `rows` into an (n,) float64 array."""
    if rows.size == 0:
        return np.zeros(n, dtype=np.float64)
    return np.bincount(rows, weights=values.astype(np.float64), minlength=n)[:n]


def prepare_universe(
    conn: sqlite3.Connection, pool: Sequence[tuple[str, str]], skus: Collection[str] | None
) -> Universe:
    """Fill the temp tables plan_pool and plan_rows (dropped and rebuilt each run) and return the rows."""
    conn.execute("DROP TABLE IF EXISTS temp.plan_pool")
    conn.execute("DROP TABLE IF EXISTS temp.plan_rows")
    conn.execute("CREATE TEMP TABLE plan_pool (location TEXT PRIMARY KEY, plan_location TEXT NOT NULL)")
    conn.executemany("INSERT OR REPLACE INTO temp.plan_pool VALUES (?, ?)", list(pool))
    only = "" if skus is None else "AND q.sku IN (SELECT value FROM json_each(?))"
    params: tuple[object, ...] = () if skus is None else (json.dumps(sorted(set(skus))),)
    conn.execute(
        "CREATE TEMP TABLE plan_rows AS"
        " WITH raw(sku, location) AS ("
        "   SELECT sku, location FROM plan_series UNION SELECT sku, location FROM balances WHERE qty != 0),"
        " pooled AS (SELECT DISTINCT r.sku, COALESCE(p.plan_location, r.location) AS location FROM raw r"
        "   LEFT JOIN temp.plan_pool p ON p.location = r.location)"
        " SELECT ROW_NUMBER() OVER (ORDER BY q.sku, q.location) - 1 AS row, q.sku AS sku, q.location AS location,"
        " s.supplier, s.unit, i.base_unit, COALESCE(i.category, '') AS category, i.storage_class, s.pack, s.moq,"
        " s.lead_time_days, s.review_days, s.service_level, COALESCE(i.shelf_life_days, 0) AS shelf_life_days"
        " FROM pooled q JOIN items i ON i.sku = q.sku AND i.active = 1"
        " JOIN item_suppliers s ON s.sku = q.sku AND s.is_primary = 1 AND s.active = 1"
        " JOIN locations l ON l.code = q.location AND l.kind != 'transit'"
        f" WHERE 1 {only}",
        params,
    )
    conn.execute("CREATE UNIQUE INDEX temp.plan_rows_by_key ON plan_rows(sku, location)")
    rows = conn.execute(
        "SELECT sku, location, supplier, unit, base_unit, category, storage_class FROM temp.plan_rows ORDER BY row"
    ).fetchall()
    numbers = float_columns(
        conn,
        "SELECT pack AS c0, moq AS c1, lead_time_days AS c2, review_days AS c3, service_level AS c4,"
        " shelf_life_days AS c5 FROM temp.plan_rows ORDER BY row",
        (),
        6,
    )
    texts = [np.array([r[i] for r in rows], dtype=object) for i in range(7)] if rows else [np.zeros(0, object)] * 7
    return Universe(
        sku=texts[0],
        location=texts[1],
        supplier=texts[2],
        unit=texts[3],
        base_unit=texts[4],
        category=texts[5],
        storage_class=texts[6],
        pack=np.maximum(numbers[0].astype(np.int64), 1),
        moq=np.maximum(numbers[1].astype(np.int64), 0),
        lead_time_days=numbers[2],
        review_days=numbers[3],
        service_level=numbers[4],
        shelf_life_days=numbers[5],
    )


# Stock at a location mapped to its plan row (pooled locations to the location they feed).
_POOLED = (
    "LEFT JOIN temp.plan_pool p ON p.location = {t}.location"
    " JOIN temp.plan_rows r ON r.sku = {t}.sku AND r.location = COALESCE(p.plan_location, {t}.location)"
)
# Lots under a cold-room excursion that is an alarm and has not ended: not usable until someone decides.
_BLOCKED = (
    "SELECT DISTINCT x.sku, x.lot, e.location FROM cold_excursion_lots x"
    " JOIN cold_excursions e ON e.id = x.excursion_id WHERE e.alarmed_at IS NOT NULL AND e.ended_at IS NULL"
)


def read_stock(conn: sqlite3.Connection, n: int, today: date, open_po_days: int) -> StockFacts:
    """On hand, blocked, in transit, on order and lots with expiry per plan row (temp.plan_rows must exist)."""
    rows, qty = int_columns(
        conn,
        f"SELECT r.row AS c0, SUM(b.qty) AS c1 FROM balances b {_POOLED.format(t='b')} GROUP BY r.row",
        (),
        2,
    )
    total = per_row(n, rows, qty)
    rows, qty = int_columns(
        conn,
        f"SELECT r.row AS c0, SUM(b.qty) AS c1 FROM balances b JOIN ({_BLOCKED}) z"
        f" ON z.sku = b.sku AND z.lot = b.lot AND z.location = b.location {_POOLED.format(t='b')}"
        " WHERE b.qty > 0 GROUP BY r.row",
        (),
        2,
    )
    blocked = per_row(n, rows, qty)
    lot_rows, lot_qty, lot_left = float_columns(
        conn,
        "SELECT r.row AS c0, b.qty AS c1, julianday(l.expiry) - julianday(?) AS c2 FROM balances b"
        " JOIN lots l ON l.sku = b.sku AND l.lot = b.lot"
        f" LEFT JOIN ({_BLOCKED}) z ON z.sku = b.sku AND z.lot = b.lot AND z.location = b.location"
        f" {_POOLED.format(t='b')}"
        " WHERE b.qty > 0 AND l.expiry IS NOT NULL AND z.sku IS NULL ORDER BY r.row, l.expiry",
        (today.isoformat(),),
        3,
    )
    ship_cutoff = today.isoformat()
    # The location of goods on a PO line (or an ASN line of that PO): the PO line's, else the PO's, else floor.
    rows, qty = int_columns(
        conn,
        "WITH shipped AS ("
        "  SELECT al.sku AS sku, COALESCE((SELECT dl.location FROM document_lines dl"
        "    WHERE dl.document_id = a.po_id AND dl.sku = al.sku ORDER BY dl.line_no LIMIT 1), po.location, 'floor')"
        "    AS location, al.qty_base AS qty"
        "  FROM asns a JOIN asn_lines al ON al.supplier = a.supplier AND al.asn_id = a.asn_id"
        "  JOIN documents po ON po.id = a.po_id"
        "  WHERE a.state = 'open' AND a.ship_date <= ?"
        "  AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = a.po_id))"
        f" SELECT r.row AS c0, SUM(s.qty) AS c1 FROM shipped s {_POOLED.format(t='s')} GROUP BY r.row",
        (ship_cutoff,),
        2,
    )
    in_transit = per_row(n, rows, qty)
    # Our own transfers between locations (调拨) not yet received: the transit location's moves of each transfer
    # out with a destination, of the transfers in against it and of reversals of either, for the destination.
    rows, qty = int_columns(
        conn,
        "WITH outs AS ("
        "  SELECT id, to_location FROM documents WHERE type = 'transfer_out' AND to_location IS NOT NULL"
        "  AND business_date >= ?),"
        " related AS ("
        "  SELECT o.id AS out_id, o.id AS doc_id FROM outs o"
        "  UNION ALL SELECT o.id, d.id FROM outs o JOIN documents d ON d.ref_id = o.id AND d.type = 'transfer_in'"
        "  UNION ALL SELECT o.id, v.id FROM outs o JOIN documents d ON d.ref_id = o.id AND d.type = 'transfer_in'"
        "    JOIN documents v ON v.reverses_id = d.id"
        "  UNION ALL SELECT o.id, v.id FROM outs o JOIN documents v ON v.reverses_id = o.id),"
        " moving AS ("
        "  SELECT m.sku AS sku, o.to_location AS location, MAX(SUM(m.qty), 0) AS qty FROM related x"
        "  JOIN outs o ON o.id = x.out_id JOIN stock_moves m ON m.document_id = x.doc_id"
        "  JOIN locations t ON t.code = m.location AND t.kind = 'transit'"
        "  GROUP BY x.out_id, m.sku)"
        f" SELECT r.row AS c0, SUM(s.qty) AS c1 FROM moving s {_POOLED.format(t='s')} WHERE s.qty > 0 GROUP BY r.row",
        ((today - timedelta(days=open_po_days)).isoformat(),),
        2,
    )
    in_transit += per_row(n, rows, qty)
    cutoff = (today - timedelta(days=open_po_days)).isoformat()
    rows, qty = int_columns(
        conn,
        "WITH po_lines AS ("
        "  SELECT d.id AS po, dl.sku AS sku, MIN(COALESCE(dl.location, d.location, 'floor')) AS location,"
        "  SUM(dl.qty_base) AS ordered FROM documents d JOIN document_lines dl ON dl.document_id = d.id"
        "  WHERE d.type = 'purchase_order' AND d.business_date >= ?"
        "  AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id)"
        "  GROUP BY d.id, dl.sku),"
        " received AS ("
        "  SELECT rc.ref_id AS po, rl.sku AS sku, SUM(rl.qty_base) AS qty FROM documents rc"
        "  JOIN document_lines rl ON rl.document_id = rc.id"
        "  WHERE rc.type = 'receipt' AND rc.ref_id IN (SELECT po FROM po_lines)"
        "  AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = rc.id)"
        "  GROUP BY rc.ref_id, rl.sku),"
        " shipped AS ("
        "  SELECT a.po_id AS po, al.sku AS sku, SUM(al.qty_base) AS qty FROM asns a"
        "  JOIN asn_lines al ON al.supplier = a.supplier AND al.asn_id = a.asn_id"
        "  WHERE a.state = 'open' AND a.ship_date <= ? GROUP BY a.po_id, al.sku),"
        " open_lines AS ("
        "  SELECT pl.sku AS sku, pl.location AS location,"
        "  MAX(pl.ordered - COALESCE(rc.qty, 0) - COALESCE(sh.qty, 0), 0) AS qty FROM po_lines pl"
        "  LEFT JOIN received rc ON rc.po = pl.po AND rc.sku = pl.sku"
        "  LEFT JOIN shipped sh ON sh.po = pl.po AND sh.sku = pl.sku)"
        f" SELECT r.row AS c0, SUM(o.qty) AS c1 FROM open_lines o {_POOLED.format(t='o')} GROUP BY r.row",
        (cutoff, ship_cutoff),
        2,
    )
    on_order = per_row(n, rows, qty)
    return StockFacts(
        on_hand=np.maximum(total - blocked, 0.0),
        blocked=blocked,
        in_transit=in_transit,
        on_order=on_order,
        lots_days_left=lot_left,
        lots_qty=lot_qty,
        lots_row=lot_rows.astype(np.int64),
    )


def read_history(conn: sqlite3.Connection, n: int, start: date, days: int, skus_only: bool) -> np.ndarray:
    """(n, days) float32 daily net sales, ledger and imported history summed; the last column is the day before
    `start`. Reads series ids and maps them to rows in NumPy."""
    series, rows = int_columns(
        conn,
        "SELECT ps.id AS c0, r.row AS c1 FROM plan_series ps LEFT JOIN temp.plan_pool p ON p.location = ps.location"
        " JOIN temp.plan_rows r ON r.sku = ps.sku AND r.location = COALESCE(p.plan_location, ps.location)",
        (),
        2,
    )
    history = np.zeros((n, days), dtype=np.float32)
    if series.size == 0 or n == 0:
        return history
    lookup = np.full(int(series.max()) + 1, -1, dtype=np.int64)
    lookup[series] = rows
    first = epoch_day(start) - days
    last = epoch_day(start)  # exclusive
    where = "day >= ? AND day < ?"
    params: list[object] = [first, last]
    if skus_only:  # a partial run: only the series of the rows planned
        where += " AND series IN (SELECT ps.id FROM plan_series ps JOIN temp.plan_rows r ON r.sku = ps.sku)"
    flat = np.zeros(n * days, dtype=np.float64)
    for table in ("sales_daily", "sales_history"):
        ids, day, qty = int_columns(
            conn, f"SELECT series AS c0, day AS c1, qty AS c2 FROM {table} WHERE {where}", params, 3
        )
        if ids.size == 0:
            continue
        inside = ids < lookup.shape[0]
        row = np.where(inside, lookup[np.minimum(ids, lookup.shape[0] - 1)], -1)
        keep = row >= 0
        index = row[keep] * days + (day[keep] - first)
        flat += np.bincount(index, weights=qty[keep].astype(np.float64), minlength=n * days)
    history[:] = flat.reshape(n, days)
    return history
