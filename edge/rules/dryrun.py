"""Dry run (试运行): what a rule would have done over the last N days, before it is activated. No effects.

The rule is evaluated, exactly as the runtime does (edge.rules.engine.evaluate), against the events of the window
rebuilt from the database:

- `ledger`: every line of the documents of the trigger's type whose business date lies in the window;
- `signal` `invoice.registered`: the invoices entered in the window; `paper.expiring`: the paper alerts raised in it;
  `supplier.lead_time_changed`: the lead-time estimate recomputed day by day over the window (a change of at least
  `step_days` from the last signalled estimate, as the runtime raises it);
- `schedule`: each time the crontab fires in the window (store time zone);
- `bus`, `alert` and `rule.<name>` signals are not kept in a form that can be replayed: the answer says so.

For each firing it says what each action would do (the rendered message, the addresses, the parameter rows and
their new values, the document it would hold), reading the database only. The answer counts events, firings and
failures, and lists the first `sample` firings.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from edge.replenishment.leadtime import LeadTime, shrink, supplier_defaults
from edge.rules.actions import resolve_recipients
from edge.rules.catalogue import PARAMETER_LIMITS
from edge.rules.engine import (
    Event,
    Firing,
    LoadedRule,
    evaluate,
    ledger_events,
    schedule_event,
    signal_event,
)
from edge.rules.errors import RuleError
from edge.rules.model import render_one, render_text
from edge.rules.signals import (
    INVOICE_REGISTERED,
    LEAD_TIME_CHANGED,
    PAPER_EXPIRING,
    WEATHER_FORECAST,
    SignalPolicy,
    invoice_event,
    lead_time_facts,
    paper_event,
    weather_event,
)

MAX_DAYS = 366
MAX_EVENTS = 200_000  # a window with more events is cut here (the answer says so)
SAMPLE = 20


class DryRunInvalid(RuleError):
    code = "rule_dry_run_invalid"
    status = 422


@dataclass(slots=True)
class DryRun:
    """The answer of a dry run (see the module docstring)."""

    rule_id: str
    version: int
    days: int
    since: date
    until: date
    replayable: bool = True
    note: str = ""
    note_en: str = ""
    events: int = 0
    firings: int = 0
    failed: int = 0
    failed_actions: int = 0  # actions the live run would fail (an e-mail to a team without an address)
    truncated: bool = False
    actions: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "version": self.version,
            "days": self.days,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "replayable": self.replayable,
            "note": self.note,
            "note_en": self.note_en,
            "events": self.events,
            "firings": self.firings,
            "failed": self.failed,
            "failed_actions": self.failed_actions,
            "truncated": self.truncated,
            "actions": dict(self.actions),
            "samples": list(self.samples),
            "errors": list(self.errors),
        }


def dry_run(
    conn: sqlite3.Connection,
    rule: LoadedRule,
    *,
    days: int,
    now: datetime,
    timezone: str,
    store_id: str,
    teams: Collection[str] = (),
    email_routes: Mapping[str, tuple[str, ...]] | None = None,
    policy: SignalPolicy | None = None,
    sample: int = SAMPLE,
) -> DryRun:
    """Replay the last `days` days (today included) through `rule`; read-only (see the module docstring)."""
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise DryRunInvalid(
            f"试运行天数须为 1 到 {MAX_DAYS} 的整数", f"days must be a whole number from 1 to {MAX_DAYS}", field="days"
        )
    tz = ZoneInfo(timezone)
    until = now.astimezone(tz).date()
    since = until - timedelta(days=days - 1)
    result = DryRun(rule.rule_id, rule.version, days, since, until)
    if rule.condition is None:
        result.errors.append(rule.error or "the rule does not validate")
    runnable = LoadedRule(**{**_fields(rule), "enabled": True})  # a disabled rule is dry-run all the same
    source = _events(conn, rule, since, until, now, tz, policy or SignalPolicy())
    if source is None:
        result.replayable = False
        result.note = "设备事件、告警和规则信号不保存可重放的历史: 试运行无法重放此触发条件"
        result.note_en = (
            "device events, alerts and rule signals keep no replayable history: this trigger cannot be replayed"
        )
        return result
    for event in source:
        if result.events >= MAX_EVENTS:
            result.truncated = True
            break
        result.events += 1
        for firing in evaluate([runnable], event, store_id):
            result.firings += 1
            if firing.failed:
                result.failed += 1
                if len(result.errors) < sample:
                    result.errors.append(f"{firing.event_key}: {firing.error}")
                continue
            would = [_would(conn, firing, spec, teams, email_routes or {}) for spec in firing.actions]
            for spec in firing.actions:
                kind = str(spec.get("action"))
                result.actions[kind] = result.actions.get(kind, 0) + 1
            failing = [w for w in would if w.get("error")]
            if failing:  # the live firing would be `partial` (or `failed` when no action works)
                result.failed_actions += len(failing)
                if len(result.errors) < sample:
                    result.errors.append(f"{firing.event_key}: {failing[0]['action']}: {failing[0]['error']}")
            if len(result.samples) < sample:
                result.samples.append(
                    {
                        "event_key": firing.event_key,
                        "at": firing.at.isoformat() if firing.at else None,
                        "subject": firing.subject,
                        "facts": firing.facts,
                        "actions": would,
                    }
                )
    return result


def _fields(rule: LoadedRule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in rule.__dataclass_fields__}


def _events(
    conn: sqlite3.Connection,
    rule: LoadedRule,
    since: date,
    until: date,
    now: datetime,
    tz: ZoneInfo,
    policy: SignalPolicy,
) -> Iterator[Event] | None:
    kind, key = rule.trigger_kind, rule.trigger_key
    if kind == "ledger":
        return _ledger(conn, key, since, until)
    if kind == "schedule":
        return _schedule(key, since, until, now, tz)
    if kind == "signal" and key == INVOICE_REGISTERED:
        return _invoices(conn, since, until, tz)
    if kind == "signal" and key == PAPER_EXPIRING:
        return _papers(conn, since, until, tz)
    if kind == "signal" and key == LEAD_TIME_CHANGED:
        return _lead_times(conn, since, until, tz, policy)
    if kind == "signal" and key == WEATHER_FORECAST:
        return _forecasts(conn, since, until, tz)
    return None


def _forecasts(conn: sqlite3.Connection, since: date, until: date, tz: ZoneInfo) -> Iterator[Event]:
    """Each forecast pushed in the window for its push day or later, as the running box raised it then."""
    rows = conn.execute(
        "SELECT w.id, w.location, w.date, w.temp_max_c, w.temp_min_c, w.rain_mm, b.received_at FROM signal_weather w"
        " JOIN signal_batches b ON b.id = w.batch_id ORDER BY w.id"
    ).fetchall()
    for row in rows:
        at = datetime.fromisoformat(row["received_at"])
        pushed = at.astimezone(tz).date()
        if since <= pushed <= until and row["date"] >= pushed.isoformat():
            yield weather_event(row, pushed, at)


def _ledger(conn: sqlite3.Connection, doc_type: str, since: date, until: date) -> Iterator[Event]:
    ids = [
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM documents WHERE type = ? AND business_date BETWEEN ? AND ? ORDER BY id",
            (doc_type, since.isoformat(), until.isoformat()),
        )
    ]
    for document_id in ids:
        yield from ledger_events(conn, document_id)


def _local_noon(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=tz)


def _invoices(conn: sqlite3.Connection, since: date, until: date, tz: ZoneInfo) -> Iterator[Event]:
    start = datetime.combine(since, time(0, 0), tzinfo=tz)
    end = datetime.combine(until + timedelta(days=1), time(0, 0), tzinfo=tz)
    rows = conn.execute("SELECT id, entered_at FROM invoices WHERE kind = 'invoice' ORDER BY id").fetchall()
    for row in rows:
        at = datetime.fromisoformat(row["entered_at"])
        if start <= at < end:
            event = invoice_event(conn, int(row["id"]), at)
            if event is not None:
                yield event


def _papers(conn: sqlite3.Connection, since: date, until: date, tz: ZoneInfo) -> Iterator[Event]:
    rows = conn.execute(
        "SELECT id, raised_on FROM compliance_alerts WHERE raised_on BETWEEN ? AND ? ORDER BY id",
        (since.isoformat(), until.isoformat()),
    ).fetchall()
    for row in rows:
        raised = date.fromisoformat(row["raised_on"])
        event = paper_event(conn, int(row["id"]), raised, _local_noon(raised, tz))
        if event is not None:
            yield event


def _lead_times(
    conn: sqlite3.Connection, since: date, until: date, tz: ZoneInfo, policy: SignalPolicy
) -> Iterator[Event]:
    entered = supplier_defaults(conn)
    marks = {s: lt.mean for s, lt in _estimates_as_of(conn, since - timedelta(days=1), policy, entered).items()}
    day = since
    while day <= until:
        at = _local_noon(day, tz)
        for supplier, estimate in _estimates_as_of(conn, day, policy, entered).items():
            baseline = float(entered.get(supplier, policy.lead_time.default_days))
            days = round(estimate.mean, 3)
            last = marks.get(supplier, baseline)
            if abs(days - last) < policy.step_days:
                continue
            marks[supplier] = days
            facts = lead_time_facts(conn, supplier, days, baseline, estimate.n, last)
            yield signal_event(LEAD_TIME_CHANGED, f"{supplier}:{day.isoformat()}", at, facts, supplier)
        day += timedelta(days=1)


def _estimates_as_of(
    conn: sqlite3.Connection, day: date, policy: SignalPolicy, entered: Mapping[str, float]
) -> dict[str, LeadTime]:
    """Each supplier's lead-time estimate as it stood on `day`: only deliveries received by then count (the
    planner's estimate, edge/replenishment/leadtime.py, over the deliveries known that day)."""
    lt = policy.lead_time
    per_po: dict[tuple[str, str], list[tuple[int, float]]] = {}
    rows = conn.execute(
        "SELECT po.id, po.counterparty AS supplier, po.business_date AS ordered, rc.business_date AS received,"
        " SUM(rl.qty_base) AS qty"
        " FROM documents po JOIN documents rc ON rc.ref_id = po.id AND rc.type = 'receipt'"
        " JOIN document_lines rl ON rl.document_id = rc.id"
        " WHERE po.type = 'purchase_order' AND po.counterparty IS NOT NULL AND po.business_date BETWEEN ? AND ?"
        " AND rc.business_date <= ?"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = po.id)"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = rc.id)"
        " GROUP BY po.id, rc.id HAVING SUM(rl.qty_base) > 0",
        ((day - timedelta(days=lt.window_days)).isoformat(), day.isoformat(), day.isoformat()),
    ).fetchall()
    for r in rows:
        took = (date.fromisoformat(r["received"]) - date.fromisoformat(r["ordered"])).days
        if took >= 0:
            per_po.setdefault((r["supplier"], f"po:{r['id']}"), []).append((int(r["qty"]), float(took)))
    for r in conn.execute(
        "SELECT supplier, po_ref, ordered_on, received_on, qty FROM lead_time_history"
        " WHERE ordered_on >= ? AND received_on <= ?",
        ((day - timedelta(days=lt.history_window_days)).isoformat(), day.isoformat()),
    ):
        took = (date.fromisoformat(r["received_on"]) - date.fromisoformat(r["ordered_on"])).days
        per_po.setdefault((r["supplier"], f"history:{r['po_ref']}"), []).append((int(r["qty"]), float(took)))
    observed: dict[str, list[float]] = {}
    for (supplier, _), parts in sorted(per_po.items()):
        total = sum(q for q, _ in parts)
        observed.setdefault(supplier, []).append(sum(q * d for q, d in parts) / total if total else 0.0)
    return {
        supplier: shrink(observed.get(supplier, []), entered.get(supplier, lt.default_days), lt)
        for supplier in sorted(set(observed) | set(entered))
    }


def _schedule(cron: str, since: date, until: date, now: datetime, tz: ZoneInfo) -> Iterator[Event]:
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    from edge.forecast.calendar import day_facts

    trigger = CronTrigger.from_crontab(cron, timezone=tz)
    start = datetime.combine(since, time(0, 0), tzinfo=tz)
    fire = trigger.get_next_fire_time(None, start)
    holidays: dict[date, bool] = {}
    while fire is not None and fire <= now:
        local = fire.astimezone(tz).date()
        if local not in holidays:
            holidays[local] = bool(day_facts([local]).is_holiday[0])
        yield schedule_event(cron, fire, local, holidays[local])
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))


def _would(
    conn: sqlite3.Connection,
    firing: Firing,
    spec: Mapping[str, Any],
    teams: Collection[str],
    routes: Mapping[str, tuple[str, ...]],
) -> dict[str, Any]:
    """What one action would do for this firing, read from the database without changing it."""
    kind = str(spec.get("action"))
    facts = firing.facts
    out: dict[str, Any] = {"action": kind}

    def fact(name: str) -> Any:
        namespace, _, field_name = name.partition(".")
        return (facts.get(namespace) or {}).get(field_name)

    if kind == "notify":
        out["role"] = spec["role"]
        out["message"], out["message_en"] = render_text(spec["message"], facts)
    elif kind == "open_ticket":
        out["queue"] = spec["queue"]
        out["title"], out["title_en"] = render_text(spec["title"], facts)
        subject = spec.get("subject")
        out["subject"] = fact(subject) if isinstance(subject, str) and fact(subject) else firing.subject
    elif kind == "hold_document":
        if fact("invoice.id"):
            out["object"] = f"invoice:{fact('invoice.id')}"
        elif fact("document.id"):
            out["object"] = f"document:{fact('document.id')}"
        out["reason"], out["reason_en"] = render_text(spec["reason"], facts)
    elif kind == "adjust_parameter":
        out.update(_parameter_preview(conn, spec, fact))
    elif kind == "create_draft":
        out["draft"] = spec["draft"]
        out["sku"] = render_one(str(spec["sku"]), facts) if spec.get("sku") else (fact("item.sku") or fact("line.sku"))
    elif kind == "tag_return":
        out["channel"] = spec["channel"]
        out["line"] = f"{fact('document.no')}#{fact('line.line_no')}"
    elif kind == "send_email":
        addresses, missing = resolve_recipients(list(spec["to"]), routes)
        out["to"] = addresses
        if missing:
            out["teams_without_address"] = missing
        if not addresses:  # the live run fails this action, so the dry run says so (docs/rules-runtime.md)
            out["error"] = (
                f"no recipient: team(s) {', '.join(missing)} have no address in the setting rule_email_routes"
            )
        out["subject"], out["subject_en"] = render_text(spec["subject"], facts)
    elif kind == "emit_signal":
        out["signal"] = spec["name"]
        out["subject"] = render_one(str(spec["subject"]), facts) if spec.get("subject") else firing.subject
    return out


def _parameter_preview(conn: sqlite3.Connection, spec: Mapping[str, Any], fact: Any) -> dict[str, Any]:
    parameter, scope = str(spec["parameter"]), str(spec["scope"])
    low, high = PARAMETER_LIMITS.get(parameter, (0.0, 0.0))
    lo, hi = max(float(spec["min"]), low), min(float(spec["max"]), high)
    subject = fact("supplier.id") if scope == "supplier" else (fact("item.sku") or fact("line.sku"))
    column = "supplier" if scope == "supplier" else "sku"
    changes = []
    if subject and parameter in PARAMETER_LIMITS:
        for row in conn.execute(
            f"SELECT sku, supplier, {parameter} AS value FROM item_suppliers WHERE {column} = ? AND active = 1"
            " ORDER BY sku, supplier",
            (subject,),
        ):
            before = float(row["value"])
            target = before + float(spec["by"]) if "by" in spec else float(spec["to"])
            changes.append(
                {
                    "sku": row["sku"],
                    "supplier": row["supplier"],
                    "before": before,
                    "after": round(min(max(target, lo), hi), 6),
                }
            )
    return {"parameter": parameter, "scope": scope, "subject": subject, "changes": changes}
