"""Customer-return spikes and the supplier quality score (退货异常, docs/signals.md "Return spikes").

Customer returns (documents of type customer_return, with a reason code of edge.ledger.commands.ReturnReason)
are counted per (reason, item) and per (reason, supplier) over the last `recent_days` against the
`baseline_days` before them. A rise (at least `min_count` returns and a daily rate at least `ratio` times the
baseline's) is a spike: one row in `return_spikes` while it lasts (raised once; ended when a later check no
longer finds it), published by the shell on MQTT `alert/returns`, fed to the plan as a demand factor of the
item (direction by reason, see REASON_EFFECT) and lowering the supplier's quality score.

An item's supplier is its active primary supplier in item_suppliers, else the supplier it was last received from.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from edge.finance.errors import UnknownSupplier
from edge.ledger.commands import REASON_NAMES, ReturnReason
from edge.replenishment.signals import SignalNote

# Weight of each reason's return rate in the quality score (a supplier's fault weighs most).
QUALITY_WEIGHTS: dict[str, float] = {
    ReturnReason.QUALITY: 4.0,
    ReturnReason.DAMAGED_PACKAGING: 3.0,
    ReturnReason.LATE_DELIVERY: 2.0,
    ReturnReason.TASTE: 1.0,
    ReturnReason.OTHER: 0.5,
}

# How a spike of a reason changes the item's effective demand, and why (docs/signals.md):
# - quality, taste: shoppers turn away from the item; ordering more of a suspect batch is the wrong reaction,
#   so demand is lowered by a fixed factor while the spike lasts;
# - damaged packaging, late delivery: shoppers still want the item, but a return puts the unit back into stock
#   in the ledger although it cannot be sold again; demand is raised by the returned share of sales
#   (returned / sold in the recent window, at most MAX_REPLACE_LIFT) so the plan replaces those units;
# - other: no change (the reason says too little).
LOWER_FACTOR: dict[str, float] = {ReturnReason.QUALITY: 0.80, ReturnReason.TASTE: 0.85}
REPLACE_REASONS: frozenset[str] = frozenset({ReturnReason.DAMAGED_PACKAGING, ReturnReason.LATE_DELIVERY})
MAX_REPLACE_LIFT = 0.30


@dataclass(frozen=True, slots=True)
class ReturnSpikePolicy:
    recent_days: int = 7
    baseline_days: int = 28
    min_count: int = 3  # return lines in the recent window, at least
    ratio: float = 2.0  # recent daily rate / baseline daily rate, at least
    quality_window_days: int = 90
    spike_penalty: float = 5.0  # quality points per spike of the supplier (or its items) in the window

    @staticmethod
    def from_settings(settings: Any) -> ReturnSpikePolicy:
        values: dict[str, Any] = {}
        for name in ReturnSpikePolicy.__dataclass_fields__:
            if hasattr(settings, f"returns_{name}"):
                values[name] = getattr(settings, f"returns_{name}")
        return ReturnSpikePolicy(**values)


@dataclass(frozen=True, slots=True)
class ReturnSpike:
    """A rise of one return reason for one item or supplier (退货激增)."""

    id: int
    scope: str  # item | supplier
    subject: str  # the SKU or the supplier id
    reason: str
    detected_on: date
    recent_qty: int
    recent_count: int
    baseline_qty: int
    ratio: float
    sold_qty: int
    skus: tuple[str, ...]  # the SKUs it touches
    ended_on: date | None
    published_at: str | None

    @property
    def message(self) -> str:
        reason = REASON_NAMES.get(self.reason, (self.reason, self.reason))[0]
        who = f"商品 {self.subject}" if self.scope == "item" else f"供应商 {self.subject}"
        return (
            f"退货激增: {who} 因「{reason}」近期退货 {self.recent_count} 次 {self.recent_qty} 件，"
            f"为基线的 {self.ratio:.1f} 倍"
        )

    @property
    def message_en(self) -> str:
        reason = REASON_NAMES.get(self.reason, (self.reason, self.reason))[1]
        who = f"item {self.subject}" if self.scope == "item" else f"supplier {self.subject}"
        return (
            f"return spike: {who}, {reason}: {self.recent_count} returns ({self.recent_qty} units) recently,"
            f" {self.ratio:.1f} x the baseline"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": self.scope,
            "subject": self.subject,
            "reason": self.reason,
            "reason_name": REASON_NAMES.get(self.reason, (self.reason, self.reason))[0],
            "detected_on": self.detected_on.isoformat(),
            "recent_qty": self.recent_qty,
            "recent_count": self.recent_count,
            "baseline_qty": self.baseline_qty,
            "ratio": self.ratio,
            "sold_qty": self.sold_qty,
            "skus": list(self.skus),
            "ended_on": None if self.ended_on is None else self.ended_on.isoformat(),
            "published_at": self.published_at,
            "message": self.message,
            "message_en": self.message_en,
        }


def _spike(row: sqlite3.Row) -> ReturnSpike:
    return ReturnSpike(
        id=int(row["id"]),
        scope=row["scope"],
        subject=row["subject"],
        reason=row["reason"],
        detected_on=date.fromisoformat(row["detected_on"]),
        recent_qty=int(row["recent_qty"]),
        recent_count=int(row["recent_count"]),
        baseline_qty=int(row["baseline_qty"]),
        ratio=float(row["ratio"]),
        sold_qty=int(row["sold_qty"]),
        skus=tuple(json.loads(row["skus"])),
        ended_on=None if row["ended_on"] is None else date.fromisoformat(row["ended_on"]),
        published_at=row["published_at"],
    )


def item_suppliers_of(conn: sqlite3.Connection) -> dict[str, str]:
    """SKU -> supplier: the active primary supplier of item_suppliers, else the one it was last received from."""
    found: dict[str, str] = {}
    for r in conn.execute(
        "SELECT d.counterparty, l.sku FROM documents d JOIN document_lines l ON l.document_id = d.id"
        " WHERE d.type = 'receipt' AND d.counterparty IS NOT NULL ORDER BY d.id"
    ):
        found[r[1]] = r[0]
    for r in conn.execute("SELECT sku, supplier FROM item_suppliers WHERE is_primary = 1 AND active = 1"):
        found[r[0]] = r[1]
    return found


def _returns(conn: sqlite3.Connection, first: date, last: date) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT d.business_date AS day, d.reason, l.sku, l.qty_base AS qty FROM documents d"
        " JOIN document_lines l ON l.document_id = d.id"
        " WHERE d.type = 'customer_return' AND d.reason IS NOT NULL AND d.business_date BETWEEN ? AND ?"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id)",
        (first.isoformat(), last.isoformat()),
    ).fetchall()


def _sold(conn: sqlite3.Connection, first: date, last: date) -> dict[str, int]:
    return {
        r[0]: int(r[1])
        for r in conn.execute(
            "SELECT l.sku, SUM(l.qty_base) FROM documents d JOIN document_lines l ON l.document_id = d.id"
            " WHERE d.type = 'sale' AND d.business_date BETWEEN ? AND ?"
            " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id) GROUP BY l.sku",
            (first.isoformat(), last.isoformat()),
        )
    }


@dataclass
class _Tally:
    recent_qty: int = 0
    recent_count: int = 0
    baseline_qty: int = 0
    baseline_count: int = 0


def detect_return_spikes(
    conn: sqlite3.Connection, today: date, policy: ReturnSpikePolicy | None = None
) -> list[ReturnSpike]:
    """Check the return counts as of `today`: record new spikes (once per spike), end the spikes that are over;
    return the new ones. Writes: the caller owns the transaction."""
    policy = policy or ReturnSpikePolicy()
    recent_first = today - timedelta(days=policy.recent_days - 1)
    base_first = recent_first - timedelta(days=policy.baseline_days)
    suppliers = item_suppliers_of(conn)
    tallies: dict[tuple[str, str, str], _Tally] = {}
    skus_of: dict[tuple[str, str, str], set[str]] = {}
    for r in _returns(conn, base_first, today):
        day = date.fromisoformat(r["day"])
        recent = day >= recent_first
        subjects = [("item", r["sku"])]
        if r["sku"] in suppliers:
            subjects.append(("supplier", suppliers[r["sku"]]))
        for scope, subject in subjects:
            key = (scope, subject, r["reason"])
            tally = tallies.setdefault(key, _Tally())
            skus_of.setdefault(key, set()).add(r["sku"])
            if recent:
                tally.recent_qty += int(r["qty"])
                tally.recent_count += 1
            else:
                tally.baseline_qty += int(r["qty"])
                tally.baseline_count += 1
    sold = _sold(conn, recent_first, today)
    open_rows = {
        (r["scope"], r["subject"], r["reason"]): int(r["id"])
        for r in conn.execute("SELECT id, scope, subject, reason FROM return_spikes WHERE ended_on IS NULL")
    }
    new_ids: list[int] = []
    spiking: set[tuple[str, str, str]] = set()
    for key, tally in sorted(tallies.items()):
        recent_rate = tally.recent_count / policy.recent_days
        base_rate = max(tally.baseline_count / policy.baseline_days, 1.0 / policy.baseline_days)
        ratio = recent_rate / base_rate
        if tally.recent_count < policy.min_count or ratio < policy.ratio:
            continue
        spiking.add(key)
        if key in open_rows:
            continue
        scope, subject, reason = key
        skus = sorted(skus_of[key]) if scope == "item" else sorted(s for s, sup in suppliers.items() if sup == subject)
        cursor = conn.execute(
            "INSERT INTO return_spikes (scope, subject, reason, detected_on, recent_qty, recent_count, baseline_qty,"
            " ratio, sold_qty, skus) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scope,
                subject,
                reason,
                today.isoformat(),
                tally.recent_qty,
                tally.recent_count,
                tally.baseline_qty,
                round(ratio, 2),
                sum(sold.get(s, 0) for s in skus_of[key]),
                json.dumps(skus, ensure_ascii=False),
            ),
        )
        new_ids.append(int(cursor.lastrowid or 0))
    for key, spike_id in open_rows.items():
        if key not in spiking:
            conn.execute("UPDATE return_spikes SET ended_on = ? WHERE id = ?", (today.isoformat(), spike_id))
    return list_spikes(conn, ids=new_ids)


def spikes_since(
    conn: sqlite3.Connection, cursor: int, today: date, policy: ReturnSpikePolicy | None = None
) -> tuple[int, list[ReturnSpike]]:
    """Check for spikes as of `today` (recording new ones: needs the write connection, the caller owns the
    transaction), then the spikes raised after `cursor` (a return_spikes id) and the new cursor."""
    detect_return_spikes(conn, today, policy)
    rows = conn.execute("SELECT * FROM return_spikes WHERE id > ? ORDER BY id", (cursor,)).fetchall()
    spikes = [_spike(r) for r in rows]
    return (spikes[-1].id if spikes else cursor), spikes


def list_spikes(
    conn: sqlite3.Connection,
    *,
    ids: Collection[int] | None = None,
    open_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[ReturnSpike]:
    """Spikes, newest first (or the given ids)."""
    if ids is not None:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = conn.execute(f"SELECT * FROM return_spikes WHERE id IN ({marks}) ORDER BY id", tuple(ids)).fetchall()
    else:
        where = " WHERE ended_on IS NULL" if open_only else ""
        rows = conn.execute(
            f"SELECT * FROM return_spikes{where} ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)
        ).fetchall()
    return [_spike(r) for r in rows]


def unpublished_spikes(conn: sqlite3.Connection) -> list[ReturnSpike]:
    """Spikes not yet published on MQTT alert/returns, oldest first."""
    return [_spike(r) for r in conn.execute("SELECT * FROM return_spikes WHERE published_at IS NULL ORDER BY id")]


def mark_spikes_published(conn: sqlite3.Connection, ids: Collection[int], now: datetime) -> None:
    conn.executemany(
        "UPDATE return_spikes SET published_at = ? WHERE id = ? AND published_at IS NULL",
        [(now.isoformat(), i) for i in ids],
    )


def spike_alert_data(spike: ReturnSpike) -> dict[str, Any]:
    """The `data` of the MQTT alert/returns message (the shell wraps it as {"id": "returns-<id>", "ts", "data"})."""
    return {"alert": spike.id, "kind": "return_spike", **spike.to_dict()}


def return_spike_factors(
    conn: sqlite3.Connection, start: date, recent_days: int = 7
) -> dict[str, tuple[float, list[SignalNote]]]:
    """SKU -> (demand factor, note) of the open item spikes detected in the last two recent windows (see
    REASON_EFFECT in the module docstring); several reasons of one item multiply."""
    rows = conn.execute(
        "SELECT * FROM return_spikes WHERE scope = 'item' AND ended_on IS NULL AND detected_on >= ? ORDER BY id",
        ((start - timedelta(days=2 * recent_days)).isoformat(),),
    ).fetchall()
    out: dict[str, tuple[float, list[SignalNote]]] = {}
    for row in rows:
        spike = _spike(row)
        if spike.reason in LOWER_FACTOR:
            factor = LOWER_FACTOR[spike.reason]
        elif spike.reason in REPLACE_REASONS:
            factor = 1.0 + min(spike.recent_qty / max(spike.sold_qty, 1), MAX_REPLACE_LIFT)
        else:
            continue
        zh, en = REASON_NAMES.get(spike.reason, (spike.reason, spike.reason))
        note = SignalNote(
            "return_spike",
            f"退货激增: {zh} {spike.recent_count} 次 {spike.recent_qty} 件，需求 ×{factor:.2f}",
            f"return spike: {en}, {spike.recent_count} returns ({spike.recent_qty} units), demand ×{factor:.2f}",
            round(factor, 3),
        )
        previous, notes = out.get(spike.subject, (1.0, []))
        out[spike.subject] = (previous * factor, [*notes, note])
    return out


def supplier_quality(
    conn: sqlite3.Connection, supplier: str, today: date, policy: ReturnSpikePolicy | None = None
) -> dict[str, Any]:
    """Quality score 0..100 of a supplier (供应商质量分) over the last `quality_window_days`:
    100 - 100 x sum over reasons of weight x (returned / sold units of the supplier's items)
        - spike_penalty x spikes of the supplier or its items detected in the window, clipped to 0..100.
    A supplier with no sales in the window scores 100 less the spike penalties."""
    policy = policy or ReturnSpikePolicy()
    if conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (supplier,)).fetchone() is None:
        raise UnknownSupplier(supplier)
    first = today - timedelta(days=policy.quality_window_days - 1)
    skus = {s for s, sup in item_suppliers_of(conn).items() if sup == supplier}
    sold_by_sku = _sold(conn, first, today)
    sold = sum(sold_by_sku.get(s, 0) for s in skus)
    returned: dict[str, int] = {}
    for r in _returns(conn, first, today):
        if r["sku"] in skus:
            returned[r["reason"]] = returned.get(r["reason"], 0) + int(r["qty"])
    rates = {reason: (qty / sold if sold else 0.0) for reason, qty in returned.items()}
    spikes = [
        s
        for s in list_spikes(conn, limit=10_000)
        if s.detected_on >= first
        and ((s.scope == "supplier" and s.subject == supplier) or (s.scope == "item" and s.subject in skus))
    ]
    penalty_rates = 100.0 * sum(QUALITY_WEIGHTS.get(reason, 0.5) * rate for reason, rate in rates.items())
    score = max(0.0, min(100.0, 100.0 - penalty_rates - policy.spike_penalty * len(spikes)))
    return {
        "supplier": supplier,
        "score": round(score, 1),
        "window_days": policy.quality_window_days,
        "sold_qty": sold,
        "returned_qty": sum(returned.values()),
        "by_reason": [
            {
                "reason": reason,
                "reason_name": REASON_NAMES.get(reason, (reason, reason))[0],
                "returned_qty": returned[reason],
                "rate": round(rates[reason], 4),
                "weight": QUALITY_WEIGHTS.get(reason, 0.5),
            }
            for reason in sorted(returned)
        ],
        "spikes": [s.id for s in spikes],
    }
