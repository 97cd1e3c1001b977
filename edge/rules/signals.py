"""Signals for rules (信号): things worked out from the ledger rather than posted, raised once each.

- `supplier.lead_time_changed`: a supplier's lead-time estimate (edge/replenishment/leadtime.py) moved by at least
  `step_days` from the estimate of its last signal (the first time: from the lead time the purchaser entered in
  item_suppliers). Facts `supplier`, `lead_time`: days (the estimate), previous_days (the lead time the purchaser
  entered, which the plan starts from), change_days (their difference: the whole drift, not the last step),
  deliveries.
- `invoice.registered`: a purchase invoice was entered (matched or not). Facts `invoice` (price difference summed
  over the match's price_difference reasons; basis points of the expected amount) and `supplier`.
- `weather.forecast`: a weather forecast was pushed (edge/replenishment signals, table signal_weather) for today or
  a later day. Facts `weather`: date, days_ahead, temp_min_c, temp_max_c, rain_mm, location (a frost rule reads
  `weather.temp_min_c < 0 and weather.days_ahead <= 2`).
- `paper.expiring`: a supplier paper alert was recorded (30 and 7 days before the end date, and when expired:
  edge/finance/compliance.py `due_expiry_alerts`). Facts `paper`, `supplier`.

`detect_signals` runs in the writer (it moves the marks in rule_lead_time_marks / rule_signal_marks in the same
transaction) and returns the events; the shell evaluates them. On its first look at invoices and paper alerts it
takes only those of the last `FIRST_LOOK_DAYS`, so an upgraded box does not replay its whole history.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from edge.replenishment.leadtime import LeadTimePolicy, supplier_defaults, supplier_lead_times
from edge.rules.engine import Event, signal_event, supplier_facts

LEAD_TIME_CHANGED = "supplier.lead_time_changed"
INVOICE_REGISTERED = "invoice.registered"
PAPER_EXPIRING = "paper.expiring"
WEATHER_FORECAST = "weather.forecast"
FIRST_LOOK_DAYS = 1


@dataclass(frozen=True, slots=True)
class SignalPolicy:
    step_days: float = 1.0  # a lead-time estimate that moved less than this raises nothing
    lead_time: LeadTimePolicy = field(default_factory=LeadTimePolicy)

    @staticmethod
    def from_settings(settings: Any) -> SignalPolicy:
        return SignalPolicy(
            step_days=float(getattr(settings, "rules_lead_time_step_days", 1.0)),
            lead_time=LeadTimePolicy.from_settings(settings),
        )


def detect_signals(conn: sqlite3.Connection, today: date, now: datetime, policy: SignalPolicy) -> list[Event]:
    """Every signal due since the last look, in order: lead times, invoices, papers (see the module docstring)."""
    return [
        *lead_time_signals(conn, today, now, policy),
        *invoice_signals(conn, now),
        *paper_signals(conn, today, now),
        *weather_signals(conn, today, now),
    ]


def lead_time_signals(conn: sqlite3.Connection, today: date, now: datetime, policy: SignalPolicy) -> list[Event]:
    estimates = supplier_lead_times(conn, today, policy.lead_time)
    entered = supplier_defaults(conn)
    marks = {r["supplier"]: float(r["days"]) for r in conn.execute("SELECT supplier, days FROM rule_lead_time_marks")}
    events: list[Event] = []
    for supplier, estimate in estimates.items():
        baseline = float(entered.get(supplier, policy.lead_time.default_days))
        days = round(estimate.mean, 3)
        last = marks.get(supplier, baseline)
        if abs(days - last) < policy.step_days:
            if supplier not in marks:
                _mark(conn, supplier, days, estimate.n, now)
            continue
        _mark(conn, supplier, days, estimate.n, now)
        facts = lead_time_facts(conn, supplier, days, baseline, estimate.n, last)
        events.append(signal_event(LEAD_TIME_CHANGED, f"{supplier}:{now.isoformat()}", now, facts, supplier))
    return events


def lead_time_facts(
    conn: sqlite3.Connection,
    supplier: str,
    days: float,
    baseline: float,
    deliveries: int,
    last: float | None = None,
) -> dict[str, dict[str, Any]]:
    """The facts of a lead-time signal: the new estimate against the lead time the purchaser entered (the plan's
    baseline), so that a rule on `change_days > 15` sees the whole drift, however many small steps it took; and
    the drift at the supplier's previous signal (`last_change_days`), so that a rule can act once, when the drift
    passes its threshold, rather than at every later step."""
    return {
        "supplier": supplier_facts(conn, supplier),
        "lead_time": {
            "days": days,
            "previous_days": round(baseline, 3),
            "change_days": round(days - baseline, 3),
            "last_change_days": round((baseline if last is None else last) - baseline, 3),
            "deliveries": deliveries,
        },
    }


def _mark(conn: sqlite3.Connection, supplier: str, days: float, deliveries: int, now: datetime) -> None:
    conn.execute(
        "INSERT INTO rule_lead_time_marks (supplier, days, deliveries, at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (supplier) DO UPDATE SET days = excluded.days, deliveries = excluded.deliveries,"
        " at = excluded.at",
        (supplier, days, deliveries, now.isoformat()),
    )


def _watermark(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT last_id FROM rule_signal_marks WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def _set_watermark(conn: sqlite3.Connection, name: str, last_id: int, now: datetime) -> None:
    conn.execute(
        "INSERT INTO rule_signal_marks (name, last_id, at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id, at = excluded.at",
        (name, last_id, now.isoformat()),
    )


def invoice_facts(conn: sqlite3.Connection, invoice_id: int) -> dict[str, Any] | None:
    """The `invoice` namespace of one purchase invoice, its price difference from the match's reasons."""
    row = conn.execute(
        "SELECT i.id, i.invoice_no, i.supplier_id, i.net_fen, i.tax_fen, i.status, e.reasons FROM invoices i"
        " LEFT JOIN invoice_exceptions e ON e.invoice_id = i.id WHERE i.id = ?",
        (invoice_id,),
    ).fetchone()
    if row is None:
        return None
    diff = expected = 0
    for reason in json.loads(row["reasons"] or "[]"):
        if reason.get("code") == "price_difference":
            detail = reason.get("detail") or {}
            diff += int(detail.get("difference_fen") or 0)
            expected += int(detail.get("expected_fen") or 0)
    return {
        "id": int(row["id"]),
        "no": row["invoice_no"],
        "supplier": row["supplier_id"] or "",
        "total_fen": int(row["net_fen"]) + int(row["tax_fen"]),
        "price_diff_fen": diff,
        "price_diff_bp": round(diff * 10_000 / expected) if expected else 0,
        "matched": row["status"] == "matched",
    }


def invoice_event(conn: sqlite3.Connection, invoice_id: int, at: datetime) -> Event | None:
    facts = invoice_facts(conn, invoice_id)
    if facts is None:
        return None
    supplier = facts["supplier"] or None
    namespaces = {"invoice": facts, "supplier": supplier_facts(conn, supplier)}
    return signal_event(INVOICE_REGISTERED, str(invoice_id), at, namespaces, facts["no"])


def invoice_signals(conn: sqlite3.Connection, now: datetime) -> list[Event]:
    last = _watermark(conn, INVOICE_REGISTERED)
    if last is None:
        since = (now - timedelta(days=FIRST_LOOK_DAYS)).isoformat()
        rows = conn.execute(
            "SELECT id, entered_at FROM invoices WHERE kind = 'invoice' AND entered_at >= ? ORDER BY id", (since,)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT id, entered_at FROM invoices WHERE kind = 'invoice' AND id > ? ORDER BY id", (last,)
        ).fetchall()
    top = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM invoices").fetchone()[0])
    events = [e for r in rows if (e := invoice_event(conn, int(r["id"]), datetime.fromisoformat(r["entered_at"])))]
    _set_watermark(conn, INVOICE_REGISTERED, max(top, last or 0), now)
    return events


def paper_event(conn: sqlite3.Connection, alert_id: int, today: date, at: datetime) -> Event | None:
    row = conn.execute(
        "SELECT a.id, a.paper, a.supplier, a.kind, a.expires_on, a.days_left FROM compliance_alerts a WHERE a.id = ?",
        (alert_id,),
    ).fetchone()
    if row is None:
        return None
    facts = {
        "paper": {
            "id": int(row["paper"]),
            "kind": row["kind"],
            "kind_name": _paper_name(row["kind"])[0],
            "kind_name_en": _paper_name(row["kind"])[1],
            "valid_to": row["expires_on"],
            "days_left": (date.fromisoformat(row["expires_on"]) - today).days,
        },
        "supplier": supplier_facts(conn, row["supplier"]),
    }
    return signal_event(PAPER_EXPIRING, f"alert-{alert_id}", at, facts, row["supplier"])


def _paper_name(kind: str) -> tuple[str, str]:
    from edge.finance.papers import PAPER_NAMES, PaperKind

    try:
        return PAPER_NAMES[PaperKind(kind)]
    except ValueError:
        return kind, kind


def paper_signals(conn: sqlite3.Connection, today: date, now: datetime) -> list[Event]:
    last = _watermark(conn, PAPER_EXPIRING)
    if last is None:
        since = (today - timedelta(days=FIRST_LOOK_DAYS)).isoformat()
        ids = [
            int(r[0])
            for r in conn.execute("SELECT id FROM compliance_alerts WHERE raised_on >= ? ORDER BY id", (since,))
        ]
    else:
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM compliance_alerts WHERE id > ? ORDER BY id", (last,))]
    top = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM compliance_alerts").fetchone()[0])
    events = [e for alert_id in ids if (e := paper_event(conn, alert_id, today, now))]
    _set_watermark(conn, PAPER_EXPIRING, max(top, last or 0), now)
    return events


def weather_signals(conn: sqlite3.Connection, today: date, now: datetime) -> list[Event]:
    """One `weather.forecast` per forecast row pushed since the last look, for today or later."""
    last = _watermark(conn, WEATHER_FORECAST)
    top = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM signal_weather").fetchone()[0])
    if last is None:  # first look: only what is still ahead, not the whole history
        last = int(
            conn.execute(
                "SELECT COALESCE(MIN(id) - 1, ?) FROM signal_weather WHERE date >= ? AND id > ?",
                (top, today.isoformat(), top - 1000),
            ).fetchone()[0]
        )
    rows = conn.execute(
        "SELECT id, location, date, temp_max_c, temp_min_c, rain_mm FROM signal_weather"
        " WHERE id > ? AND date >= ? ORDER BY id",
        (last, today.isoformat()),
    ).fetchall()
    events = [weather_event(row, today, now) for row in rows]
    _set_watermark(conn, WEATHER_FORECAST, max(top, last), now)
    return events


def weather_event(row: sqlite3.Row, today: date, at: datetime) -> Event:
    """The `weather.forecast` signal of one signal_weather row, seen on `today`."""
    facts = {
        "weather": {
            "date": row["date"],
            "days_ahead": (date.fromisoformat(row["date"]) - today).days,
            "temp_min_c": float(row["temp_min_c"]),
            "temp_max_c": float(row["temp_max_c"]),
            "rain_mm": float(row["rain_mm"]),
            "location": row["location"] or "",
        }
    }
    return signal_event(WEATHER_FORECAST, f"weather-{int(row['id'])}", at, facts, row["date"])
