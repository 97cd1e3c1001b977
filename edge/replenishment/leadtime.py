"""Supplier lead times learned from the ledger (到货周期, docs/signals.md "Lead times").

One observation per purchase order: the days from the PO's business date to its receipts' business dates
(receipts whose ref_id is the PO), quantity-weighted over partial receipts: a PO received 80 units on day 2 and
20 on day 5 took 0.8 x 2 + 0.2 x 5 = 2.6 days, which is when its stock was on the shelf on average. POs over the
last `window_days` count, and deliveries imported from a previous system (lead_time_history) over the last
`history_window_days`. Reversed POs and receipts do not count.

With few observations the estimate is shrunk towards the supplier's default (the mean lead_time_days of its
item_suppliers rows, else `default_days`), as if `prior_weight` observations of the default had been seen:
    mean = (n x sample mean + k x default) / (n + k)
    var  = (n x sample variance + k x default_std^2) / (n + k)
Supplier delay signals are added to the mean by the plan (SignalEffects.lead_time_extra_days), not here.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from edge.ledger.audit import append_audit
from edge.replenishment.errors import InvalidSignal
from edge.replenishment.signal_formats import LeadTimeIn, invalid_record


@dataclass(frozen=True, slots=True)
class LeadTime:
    """A supplier's lead time in days: mean and standard deviation after shrinkage, and the observations."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True, slots=True)
class LeadTimePolicy:
    window_days: int = 180
    history_window_days: int = 365
    prior_weight: float = 5.0
    default_days: float = 3.0
    default_std_days: float = 1.0

    @staticmethod
    def from_settings(settings: Any) -> LeadTimePolicy:
        values: dict[str, Any] = {}
        for name in LeadTimePolicy.__dataclass_fields__:
            if hasattr(settings, f"leadtime_{name}"):
                values[name] = getattr(settings, f"leadtime_{name}")
        return LeadTimePolicy(**values)


def _weighted(deliveries: Sequence[tuple[int, float]]) -> float:
    total = sum(q for q, _ in deliveries)
    return sum(q * d for q, d in deliveries) / total if total else 0.0


def lead_time_observations(
    conn: sqlite3.Connection, today: date, policy: LeadTimePolicy | None = None
) -> dict[str, list[float]]:
    """Supplier -> days per purchase order (ledger POs and imported history), see the module docstring."""
    policy = policy or LeadTimePolicy()
    per_po: dict[tuple[str, str], list[tuple[int, float]]] = {}
    rows = conn.execute(
        "SELECT po.id, po.counterparty AS supplier, po.business_date AS ordered, rc.business_date AS received,"
        " SUM(rl.qty_base) AS qty"
        " FROM documents po JOIN documents rc ON rc.ref_id = po.id AND rc.type = 'receipt'"
        " JOIN document_lines rl ON rl.document_id = rc.id"
        " WHERE po.type = 'purchase_order' AND po.counterparty IS NOT NULL AND po.business_date BETWEEN ? AND ?"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = po.id)"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = rc.id)"
        " GROUP BY po.id, rc.id HAVING SUM(rl.qty_base) > 0",
        ((today - timedelta(days=policy.window_days)).isoformat(), today.isoformat()),
    ).fetchall()
    for r in rows:
        days = (date.fromisoformat(r["received"]) - date.fromisoformat(r["ordered"])).days
        if days >= 0:
            per_po.setdefault((r["supplier"], f"po:{r['id']}"), []).append((int(r["qty"]), float(days)))
    for r in conn.execute(
        "SELECT supplier, po_ref, ordered_on, received_on, qty FROM lead_time_history WHERE ordered_on >= ?",
        ((today - timedelta(days=policy.history_window_days)).isoformat(),),
    ):
        days = (date.fromisoformat(r["received_on"]) - date.fromisoformat(r["ordered_on"])).days
        per_po.setdefault((r["supplier"], f"history:{r['po_ref']}"), []).append((int(r["qty"]), float(days)))
    out: dict[str, list[float]] = {}
    for (supplier, _), deliveries in sorted(per_po.items()):
        out.setdefault(supplier, []).append(_weighted(deliveries))
    return out


def supplier_defaults(conn: sqlite3.Connection) -> dict[str, float]:
    """Supplier -> mean lead_time_days of its active item_suppliers rows (what the purchaser entered)."""
    return {
        r[0]: float(r[1])
        for r in conn.execute(
            "SELECT supplier, AVG(lead_time_days) FROM item_suppliers WHERE active = 1 GROUP BY supplier"
        )
    }


def shrink(observations: Sequence[float], default: float, policy: LeadTimePolicy) -> LeadTime:
    """The shrunk estimate of one supplier (module docstring)."""
    n = len(observations)
    k = policy.prior_weight
    if n == 0:
        return LeadTime(default, policy.default_std_days, 0)
    sample_mean = sum(observations) / n
    sample_var = sum((x - sample_mean) ** 2 for x in observations) / n
    mean = (n * sample_mean + k * default) / (n + k)
    var = (n * sample_var + k * policy.default_std_days**2) / (n + k)
    return LeadTime(round(mean, 3), round(math.sqrt(var), 3), n)


def supplier_lead_times(
    conn: sqlite3.Connection,
    today: date,
    policy: LeadTimePolicy | None = None,
    defaults: Mapping[str, float] | None = None,
) -> dict[str, LeadTime]:
    """Lead time per supplier with observations or a default in item_suppliers."""
    policy = policy or LeadTimePolicy()
    observed = lead_time_observations(conn, today, policy)
    known = dict(supplier_defaults(conn) if defaults is None else defaults)
    return {
        supplier: shrink(observed.get(supplier, []), known.get(supplier, policy.default_days), policy)
        for supplier in sorted(set(observed) | set(known))
    }


def import_lead_times(
    conn: sqlite3.Connection,
    records: Sequence[LeadTimeIn],
    key: str,
    actor: str,
    now: datetime,
    today: date,
    lines: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Store lead-time history from a previous system; all rows or none. A delivery already stored (same
    supplier, order and receipt date) is a duplicate; importing the same file (key) again changes nothing."""
    if conn.execute("SELECT 1 FROM lead_time_history WHERE command_key = ? LIMIT 1", (key,)).fetchone():
        count = int(conn.execute("SELECT COUNT(*) FROM lead_time_history WHERE command_key = ?", (key,)).fetchone()[0])
        return {"records": len(records), "accepted": count, "duplicates": len(records) - count, "replayed": True}
    if not records:
        raise InvalidSignal("没有记录", "no records", kind="lead_time", field="records")
    suppliers = {r[0] for r in conn.execute("SELECT id FROM suppliers")}
    for index, r in enumerate(records):
        line = lines[index] if lines is not None and index < len(lines) else None
        if r.supplier not in suppliers:
            raise invalid_record(
                "lead_time", index, line, "supplier", f"未知供应商 {r.supplier}", f"unknown supplier {r.supplier}"
            )
        if r.received_on > today:
            raise invalid_record(
                "lead_time",
                index,
                line,
                "received_on",
                f"日期 {r.received_on} 在今天之后",
                f"{r.received_on} is after today",
            )
    accepted = 0
    for r in records:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO lead_time_history (supplier, po_ref, ordered_on, received_on, qty, imported_at,"
            " command_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (r.supplier, r.po_ref, r.ordered_on.isoformat(), r.received_on.isoformat(), r.qty, now.isoformat(), key),
        )
        accepted += cursor.rowcount
    append_audit(
        conn,
        ts=now.isoformat(),
        actor=actor,
        device=None,
        action="lead_times.import",
        object=f"lead_time_history:{hashlib.sha256(key.encode()).hexdigest()[:12]}",
        detail={"records": len(records), "accepted": accepted, "key": key},
    )
    return {"records": len(records), "accepted": accepted, "duplicates": len(records) - accepted, "replayed": False}
