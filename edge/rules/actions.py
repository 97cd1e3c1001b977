"""What a firing does (规则动作), run in the writer: one transaction records the firing and each action's effect.

`execute_firing(conn, firing, now, config)` inserts the firing (unique per rule id, version and event key: the same
event replayed never acts twice) and runs its actions in order, each in a savepoint of its own: an action that fails
(a team without e-mail addresses, nothing to hold) is recorded as failed with its reason and the others still run
(the firing is then `partial`). Every action is in the audit trail with the rule's id and version (or the module's
name and version: scenario modules' proposals run through here with `Origin.module`).

Effects (edge/rules/data/actions.yaml): notify and send_email queue a row in an outbox (rule_notifications,
rule_emails) that the shell delivers (edge/rules/runtime.py: MQTT `storebox/<store>/alert/rule`, SMTP); open_ticket,
hold_document, create_draft and tag_return write their rows; adjust_parameter changes item_suppliers within the
rule's bounds and records before/after (parameter_changes) so `restore_parameter_changes` undoes it exactly;
emit_signal returns a signal event the shell evaluates next (depth-limited).

The outbox readers and markers the delivery loop uses live here too (they are the actions' other half).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from edge.ledger.audit import append_audit
from edge.rules.catalogue import PARAMETER_LIMITS, targets
from edge.rules.engine import Event, Firing, Origin, facts_json, signal_event
from edge.rules.errors import RuleError
from edge.rules.holds import place_hold
from edge.rules.model import MAX_CHAIN, render_one, render_text

MAX_ERROR = 500
FACT_NAME = re.compile(r"^([a-z_]+)\.([a-z_]+)$")
SALES_DAYS = 28  # a purchase order draft's qty_days of cover count the daily sales of this many days


class ActionFailed(RuleError):
    """An action could not act on this event (nothing to hold, a team without addresses, ...)."""

    code = "rule_action_failed"
    status = 409


@dataclass(frozen=True, slots=True)
class ActionConfig:
    """What actions need from the box's settings (plain values: this crosses into the writer process)."""

    store_id: str
    teams: tuple[str, ...] = ()
    email_routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    signal_depth_max: int = MAX_CHAIN

    @staticmethod
    def from_settings(settings: Any) -> ActionConfig:
        return ActionConfig(
            store_id=settings.store_id,
            teams=tuple(settings.rule_teams),
            email_routes={k: tuple(v) for k, v in settings.rule_email_routes.items()},
            signal_depth_max=settings.rules_signal_depth_max,
        )


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    index: int
    action: str
    state: str  # done | queued | failed | skipped
    object_kind: str | None = None
    object_id: str | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FiringResult:
    """What executing one firing did. `replayed`: the event had fired this rule version before; nothing acted."""

    origin: Origin
    event_key: str
    firing_id: int
    state: str  # done | partial | failed
    replayed: bool = False
    actions: tuple[ActionOutcome, ...] = ()
    signals: tuple[Event, ...] = ()  # raised by emit_signal: the shell evaluates them next
    error: str | None = None

    @property
    def queued(self) -> bool:
        """Did it queue a notification or an e-mail (the delivery loop should look now)?"""
        return any(a.state == "queued" for a in self.actions)


def execute_firings(
    conn: sqlite3.Connection, firings: Sequence[Firing], now: datetime, config: ActionConfig
) -> list[FiringResult]:
    """`execute_firing` for each (one writer job for all the firings of an event)."""
    return [execute_firing(conn, firing, now, config) for firing in firings]


def execute_ledger_batch(
    conn: sqlite3.Connection, firings: Sequence[Firing], now: datetime, config: ActionConfig, last_id: int
) -> list[FiringResult]:
    """The firings of a batch of posted documents and the rules' ledger cursor moved past them, in one transaction:
    each posting is evaluated once, none is skipped (table rule_cursors)."""
    results = execute_firings(conn, firings, now, config)
    set_ledger_cursor(conn, last_id, now)
    return results


def ledger_cursor(conn: sqlite3.Connection) -> int | None:
    """The id of the last posted document the rules have read; None before the first look."""
    row = conn.execute("SELECT last_id FROM rule_cursors WHERE name = 'ledger'").fetchone()
    return None if row is None else int(row[0])


def set_ledger_cursor(conn: sqlite3.Connection, last_id: int, now: datetime) -> None:
    conn.execute(
        "INSERT INTO rule_cursors (name, last_id, at) VALUES ('ledger', ?, ?) ON CONFLICT (name) DO UPDATE"
        " SET last_id = MAX(last_id, excluded.last_id), at = excluded.at",
        (last_id, now.isoformat()),
    )


def start_ledger_cursor(conn: sqlite3.Connection, now: datetime) -> int:
    """The first look (a new box, or one upgraded to rules): start after the last posted document, so that the
    rules act on what is posted from now on, not on the history (a dry run shows what they would have done)."""
    current = ledger_cursor(conn)
    if current is not None:
        return current
    top = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM documents").fetchone()[0])
    set_ledger_cursor(conn, top, now)
    return top


def execute_firing(conn: sqlite3.Connection, firing: Firing, now: datetime, config: ActionConfig) -> FiringResult:
    """Record the firing once and run its actions; see the module docstring."""
    origin = firing.origin
    ts = now.isoformat()
    cursor = conn.execute(
        "INSERT OR IGNORE INTO rule_firings (rule_id, version, event_key, trigger_kind, subject, facts, state, error,"
        " depth, fired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            origin.rule_id,
            origin.version,
            firing.event_key,
            firing.trigger_kind,
            firing.subject,
            facts_json(firing.facts),
            "failed" if firing.failed else "fired",
            firing.error,
            firing.depth,
            ts,
        ),
    )
    if cursor.rowcount == 0:
        row = conn.execute(
            "SELECT id, state, error FROM rule_firings WHERE rule_id = ? AND version = ? AND event_key = ?",
            (origin.rule_id, origin.version, firing.event_key),
        ).fetchone()
        return FiringResult(origin, firing.event_key, int(row["id"]), row["state"], True, error=row["error"])
    firing_id = int(cursor.lastrowid or 0)
    if firing.failed:
        conn.execute("UPDATE rule_firings SET finished_at = ? WHERE id = ?", (ts, firing_id))
        _audit(conn, origin, ts, "rule.fire_failed", f"rule_firing:{firing_id}", firing, {"error": firing.error})
        return FiringResult(origin, firing.event_key, firing_id, "failed", error=firing.error)
    outcomes: list[ActionOutcome] = []
    signals: list[Event] = []
    for index, spec in enumerate(firing.actions):
        kind = str(spec.get("action", ""))
        conn.execute("SAVEPOINT rule_action")
        try:
            outcome, signal = _run(conn, firing, firing_id, index, kind, spec, now, config)
            conn.execute("RELEASE rule_action")
        except Exception as exc:  # this action only: recorded as failed, the next ones still run
            conn.execute("ROLLBACK TO rule_action")
            conn.execute("RELEASE rule_action")
            message = getattr(exc, "message_en", None) or f"{type(exc).__name__}: {exc}"
            outcome, signal = ActionOutcome(index, kind, "failed", error=message[:MAX_ERROR]), None
            _record_action(conn, firing_id, index, kind, spec, outcome, ts)
            _audit(
                conn,
                origin,
                ts,
                f"rule.{kind or 'action'}_failed",
                f"rule_firing:{firing_id}",
                firing,
                {
                    "action_index": index,
                    "error": outcome.error,
                },
            )
        outcomes.append(outcome)
        if signal is not None:
            signals.append(signal)
    failed = sum(o.state == "failed" for o in outcomes)
    state = "done" if failed == 0 else ("failed" if failed == len(outcomes) else "partial")
    errors = "; ".join(f"then[{o.index + 1}] {o.action}: {o.error}" for o in outcomes if o.error)
    conn.execute(
        "UPDATE rule_firings SET state = ?, error = ?, finished_at = ? WHERE id = ?",
        (state, errors[:MAX_ERROR] or None, ts, firing_id),
    )
    return FiringResult(
        origin, firing.event_key, firing_id, state, False, tuple(outcomes), tuple(signals), errors or None
    )


def _run(
    conn: sqlite3.Connection,
    firing: Firing,
    firing_id: int,
    index: int,
    kind: str,
    spec: Mapping[str, Any],
    now: datetime,
    config: ActionConfig,
) -> tuple[ActionOutcome, Event | None]:
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise ActionFailed(f"未知的动作 {kind!r}", f"unknown action {kind!r}", action=kind)
    ts = now.isoformat()
    # The action row first: its id is the lineage of what the handler writes.
    action_id = _record_action(conn, firing_id, index, kind, spec, ActionOutcome(index, kind, "done"), ts)
    context = _Context(conn, firing, firing_id, action_id, now, config)
    outcome, signal = handler(context, index, spec)
    conn.execute(
        "UPDATE rule_actions SET state = ?, result = ?, object_kind = ?, object_id = ?, error = ? WHERE id = ?",
        (
            outcome.state,
            json.dumps(outcome.result, ensure_ascii=False, default=str),
            outcome.object_kind,
            outcome.object_id,
            outcome.error,
            action_id,
        ),
    )
    obj = f"{outcome.object_kind}:{outcome.object_id}" if outcome.object_kind else f"rule_firing:{firing_id}"
    _audit(
        conn,
        firing.origin,
        ts,
        f"rule.{kind}",
        obj,
        firing,
        {
            "action_index": index,
            "state": outcome.state,
            "result": outcome.result,
        },
    )
    return outcome, signal


def _record_action(
    conn: sqlite3.Connection,
    firing_id: int,
    index: int,
    kind: str,
    spec: Mapping[str, Any],
    outcome: ActionOutcome,
    ts: str,
) -> int:
    cursor = conn.execute(
        "INSERT INTO rule_actions (firing_id, action_index, action, spec, state, result, object_kind, object_id,"
        " error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            firing_id,
            index,
            kind or "unknown",
            json.dumps(dict(spec), ensure_ascii=False, default=str),
            outcome.state,
            json.dumps(outcome.result, ensure_ascii=False, default=str),
            outcome.object_kind,
            outcome.object_id,
            outcome.error,
            ts,
        ),
    )
    return int(cursor.lastrowid or 0)


def _audit(
    conn: sqlite3.Connection,
    origin: Origin,
    ts: str,
    action: str,
    obj: str,
    firing: Firing,
    detail: Mapping[str, Any],
) -> None:
    who = (
        {"rule_id": origin.name, "version": origin.version}
        if origin.kind == "rule"
        else {
            "module": origin.name,
            "version": origin.version,
        }
    )
    append_audit(
        conn,
        ts=ts,
        actor=origin.actor,
        device=None,
        action=action,
        object=obj,
        detail={**who, "event_key": firing.event_key, **detail},
    )


@dataclass(frozen=True, slots=True)
class _Context:
    conn: sqlite3.Connection
    firing: Firing
    firing_id: int
    action_id: int
    now: datetime
    config: ActionConfig

    @property
    def origin(self) -> Origin:
        return self.firing.origin

    def fact(self, name: str) -> Any:
        namespace, _, field_name = name.partition(".")
        return (self.firing.facts.get(namespace) or {}).get(field_name)

    def text(self, template: Mapping[str, str]) -> tuple[str, str]:
        return render_text(template, self.firing.facts)

    def one(self, text: str) -> str:
        return render_one(text, self.firing.facts)


def _check_target(ctx: _Context, name: str) -> None:
    if name not in targets(ctx.config.teams):
        raise ActionFailed(
            f"没有角色或小组 {name!r} (配置 rule_teams 中已删除?)",
            f"no role or team {name!r} (removed from the setting rule_teams?)",
            target=name,
        )


def _notify(ctx: _Context, index: int, spec: Mapping[str, Any]) -> tuple[ActionOutcome, Event | None]:
    role = str(spec["role"])
    _check_target(ctx, role)
    message, message_en = ctx.text(spec["message"])
    cursor = ctx.conn.execute(
        "INSERT INTO rule_notifications (firing_id, action_id, rule_id, version, role, message, message_en, subject,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ctx.firing_id,
            ctx.action_id,
            ctx.origin.rule_id,
            ctx.origin.version,
            role,
            message,
            message_en,
            ctx.firing.subject,
            ctx.now.isoformat(),
        ),
    )
    notification = int(cursor.lastrowid or 0)
    result = {"notification": notification, "role": role, "message": message, "message_en": message_en}
    return ActionOutcome(index, "notify", "queued", "notification", str(notification), result), None


def _subject_of(ctx: _Context, value: Any) -> tuple[str | None, str | None]:
    """An action's `subject`: a fact name (`supplier.id`) gives (namespace, value); a template its text."""
    if not isinstance(value, str) or not value:
        return None, ctx.firing.subject
    match = FACT_NAME.match(value)
    if match and ctx.fact(value) not in (None, ""):
        return match.group(1), str(ctx.fact(value))
    return None, ctx.one(value)


def _open_ticket(ctx: _Context, index: int, spec: Mapping[str, Any]) -> tuple[ActionOutcome, Event | None]:
    queue = str(spec["queue"])
    _check_target(ctx, queue)
    title, title_en = ctx.text(spec["title"])
    subject_kind, subject = _subject_of(ctx, spec.get("subject"))
    # One open ticket per rule, queue and subject: the same problem seen again does not open another.
    existing = ctx.conn.execute(
        "SELECT id FROM rule_tickets WHERE state = 'open' AND rule_id = ? AND queue = ?"
        " AND subject_kind IS ? AND subject IS ? ORDER BY id LIMIT 1",
        (ctx.origin.rule_id, queue, subject_kind, subject),
    ).fetchone()
    if existing is not None:
        ticket = int(existing[0])
        result = {"ticket": ticket, "queue": queue, "already_open": True}
        return ActionOutcome(index, "open_ticket", "skipped", "ticket", str(ticket), result), None
    detail = {"event_key": ctx.firing.event_key, "facts": ctx.firing.facts}
    cursor = ctx.conn.execute(
        "INSERT INTO rule_tickets (queue, title, title_en, subject_kind, subject, rule_id, version, firing_id,"
        " action_id, detail, opened_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            queue,
            title,
            title_en,
            subject_kind,
            subject,
            ctx.origin.rule_id,
            ctx.origin.version,
            ctx.firing_id,
            ctx.action_id,
            json.dumps(detail, ensure_ascii=False, default=str),
            ctx.now.isoformat(),
        ),
    )
    ticket = int(cursor.lastrowid or 0)
    result = {"ticket": ticket, "queue": queue, "title": title, "subject": subject}
    return ActionOutcome(index, "open_ticket", "done", "ticket", str(ticket), result), None


def _hold_target(ctx: _Context) -> tuple[str, int]:
    invoice = ctx.fact("invoice.id")
    if isinstance(invoice, int) and invoice > 0:
        return "invoice", invoice
    document = ctx.fact("document.id")
    if isinstance(document, int) and document > 0:
        return ("purchase_order" if ctx.fact("document.type") == "purchase_order" else "document"), document
    raise ActionFailed("此事件没有可暂挂的单据或发票", "this event has no document or invoice to hold")


def _hold_document(ctx: _Context, index: int, spec: Mapping[str, Any]) -> tuple[ActionOutcome, Event | None]:
    kind, object_id = _hold_target(ctx)
    reason, reason_en = ctx.text(spec["reason"])
    hold, created = place_hold(
        ctx.conn,
        kind=kind,
        object_id=object_id,
        rule_id=ctx.origin.rule_id,
        version=ctx.origin.version,
        reason=reason,
        reason_en=reason_en,
        now=ctx.now,
        firing_id=ctx.firing_id,
        action_id=ctx.action_id,
    )
    result = {"hold": hold, "object_kind": kind, "object_id": object_id, "already_held": not created}
    return ActionOutcome(index, "hold_document", "done" if created else "skipped", kind, str(object_id), result), None


def _adjust_parameter(ctx: _Context, index: int, spec: Mapping[str, Any]) -> tuple[ActionOutcome, Event | None]:
    parameter = str(spec["parameter"])
    if parameter not in PARAMETER_LIMITS:
        raise ActionFailed(f"不能调整参数 {parameter}", f"cannot adjust {parameter}", parameter=parameter)
    low, high = PARAMETER_LIMITS[parameter]
    lo, hi = max(float(spec["min"]), low), min(float(spec["max"]), high)
    scope = str(spec["scope"])
    if scope == "supplier":
        subject = ctx.fact("supplier.id")
        where = "supplier = ?"
    elif scope == "category":
        subject = str(spec["category"])
        where = "sku IN (SELECT sku FROM items WHERE category = ?)"
    else:
        subject = ctx.fact("item.sku") or ctx.fact("line.sku")
        where = "sku = ?"
    if not subject:
        raise ActionFailed(f"此事件没有{scope}可调整", f"this event has no {scope} to adjust the parameter for")
    rows = ctx.conn.execute(
        f"SELECT sku, supplier, {parameter} AS value FROM item_suppliers WHERE {where} AND active = 1"
        " ORDER BY sku, supplier",
        (subject,),
    ).fetchall()
    if not rows:
        raise ActionFailed(
            f"{subject} 没有在用的商品供应商设置 (item_suppliers)",
            f"{subject} has no active item supplier rows to adjust",
            scope=scope,
            subject=subject,
        )
    changes: list[dict[str, Any]] = []
    ts = ctx.now.isoformat()
    for row in rows:
        before = float(row["value"])
        target = before + float(spec["by"]) if "by" in spec else float(spec["to"])
        after = round(min(max(target, lo), hi), 6)
        if after == before:
            continue
        # Parameters are set from code paths that check their own limits; this one clamps to [min, max] above.
        ctx.conn.execute(
            f"UPDATE item_suppliers SET {parameter} = ?, updated_at = ?, updated_by = ? WHERE sku = ? AND supplier = ?",
            (after, ts, ctx.origin.actor, row["sku"], row["supplier"]),
        )
        ctx.conn.execute(
            "INSERT INTO parameter_changes (firing_id, action_id, rule_id, version, sku, supplier, parameter, before,"
            " after, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ctx.firing_id,
                ctx.action_id,
                ctx.origin.rule_id,
                ctx.origin.version,
                row["sku"],
                row["supplier"],
                parameter,
                before,
                after,
                ts,
            ),
        )
        changes.append({"sku": row["sku"], "supplier": row["supplier"], "before": before, "after": after})
    result = {"parameter": parameter, "scope": scope, "subject": subject, "changes": changes, "bounds": [lo, hi]}
    state = "done" if changes else "skipped"  # already at its bound: nothing to change
    return ActionOutcome(index, "adjust_parameter", state, scope, str(subject), result), None


def restore_parameter_changes(
    conn: sqlite3.Connection,
    actor: str,
    now: datetime,
    *,
    firing_id: int | None = None,
    rule_id: str | None = None,
    version: int | None = None,
    kept: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Undo the planning-parameter changes of a firing (or of a rule, or a rule version), newest first, so each
    row gets exactly the value it had before; audited. A row whose value someone (or something) changed since the
    rule's last change keeps that value and is listed in `kept` (as a price list's rollback keeps a price changed
    since). Returns what was restored."""
    if firing_id is None and rule_id is None:
        raise ValueError("name a firing or a rule")
    where = "firing_id = ?" if firing_id is not None else "rule_id = ?"
    params: list[Any] = [firing_id if firing_id is not None else rule_id]
    if version is not None:
        where += " AND version = ?"
        params.append(version)
    rows = conn.execute(
        f"SELECT * FROM parameter_changes WHERE {where} AND restored_at IS NULL ORDER BY id DESC", params
    ).fetchall()
    ts = now.isoformat()
    restored: list[dict[str, Any]] = []
    decided: dict[tuple[str, str, str], bool] = {}  # row -> restore it? (decided by its newest change)
    for row in rows:
        parameter = row["parameter"]
        if parameter not in PARAMETER_LIMITS:
            continue
        key = (row["sku"], row["supplier"], parameter)
        if key not in decided:  # the newest change of this row: is the value still the one the rule set?
            current = conn.execute(
                f"SELECT {parameter} FROM item_suppliers WHERE sku = ? AND supplier = ?", (row["sku"], row["supplier"])
            ).fetchone()
            decided[key] = current is not None and abs(float(current[0]) - float(row["after"])) <= 1e-9
            if not decided[key] and kept is not None:
                kept.append(
                    {
                        "sku": row["sku"],
                        "supplier": row["supplier"],
                        "parameter": parameter,
                        "current": None if current is None else float(current[0]),
                        "rule_set": row["after"],
                    }
                )
        if not decided[key]:  # changed since by someone else: their value stays
            continue
        conn.execute(
            f"UPDATE item_suppliers SET {parameter} = ?, updated_at = ?, updated_by = ? WHERE sku = ? AND supplier = ?",
            (row["before"], ts, actor, row["sku"], row["supplier"]),
        )
        conn.execute(
            "UPDATE parameter_changes SET restored_by = ?, restored_at = ? WHERE id = ?", (actor, ts, row["id"])
        )
        change = {"change": row["id"], "sku": row["sku"], "supplier": row["supplier"], "parameter": parameter}
        restored.append({**change, "restored_to": row["before"]})
        append_audit(
            conn,
            ts=ts,
            actor=actor,
            device=None,
            action="rule.parameter_restore",
            object=f"item_supplier:{row['sku']}/{row['supplier']}",
            detail={**change, "rule_id": row["rule_id"], "version": row["version"], "restored_to": row["before"]},
        )
    return restored


def restore_rule_parameters(
    conn: sqlite3.Connection, rule_id: str, actor: str, now: datetime, version: int | None = None
) -> dict[str, Any]:
    """What the API and CLI call: a rule's (or one version's) parameter changes undone in one transaction."""
    from edge.rules.store import UnknownRule

    if conn.execute("SELECT 1 FROM rules WHERE id = ?", (rule_id,)).fetchone() is None:
        raise UnknownRule(rule_id)
    kept: list[dict[str, Any]] = []
    restored = restore_parameter_changes(conn, actor, now, rule_id=rule_id, version=version, kept=kept)
    return {"rule_id": rule_id, "version": version, "restored": restored, "kept": kept}


def _create_draft(ctx: _Context, index: int, spec: Mapping[str, Any]) -> tuple[ActionOutcome, Event | None]:
    kind = str(spec["draft"])
    sku = ctx.one(str(spec["sku"])) if spec.get("sku") else (ctx.fact("item.sku") or ctx.fact("line.sku"))
    if not sku:
        raise ActionFailed("草稿需要商品 (sku)", "a draft needs an item (sku)")
    item = ctx.conn.execute("SELECT sku, base_unit FROM items WHERE sku = ?", (sku,)).fetchone()
    if item is None:
        raise ActionFailed(f"未知商品 {sku}", f"unknown item {sku}", sku=sku)
    payload: dict[str, Any] = {"sku": sku, "base_unit": item["base_unit"]}
    for key in ("qty", "qty_days", "discount_bp", "to_store"):
        if key in spec:
            payload[key] = spec[key]
    if "note" in spec:
        payload["note"], payload["note_en"] = ctx.text(spec["note"])
    if kind == "purchase_order":
        payload.update(_order_proposal(ctx.conn, sku, spec, ctx.now.date()))
    cursor = ctx.conn.execute(
        "INSERT INTO rule_drafts (kind, payload, subject, rule_id, version, firing_id, action_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            kind,
            json.dumps(payload, ensure_ascii=False, default=str),
            sku,
            ctx.origin.rule_id,
            ctx.origin.version,
            ctx.firing_id,
            ctx.action_id,
            ctx.now.isoformat(),
        ),
    )
    draft = int(cursor.lastrowid or 0)
    return ActionOutcome(
        index, "create_draft", "done", "draft", str(draft), {"draft": draft, "kind": kind, **payload}
    ), None


def _order_proposal(conn: sqlite3.Connection, sku: str, spec: Mapping[str, Any], today: date) -> dict[str, Any]:
    """A purchase order draft's supplier and quantity: the plan's open suggestion, or `qty_days` of recent sales."""
    supplier = conn.execute(
        "SELECT supplier, pack FROM item_suppliers WHERE sku = ? AND active = 1 ORDER BY is_primary DESC LIMIT 1",
        (sku,),
    ).fetchone()
    out: dict[str, Any] = {"supplier": supplier["supplier"] if supplier else None}
    if "qty" in spec:
        out["base_qty"] = int(spec["qty"])
        return out
    if "qty_days" in spec:
        sold = conn.execute(
            "SELECT COALESCE(SUM(l.qty_base), 0) FROM document_lines l JOIN documents d ON d.id = l.document_id"
            " WHERE d.type = 'sale' AND l.sku = ? AND d.business_date > ?",
            (sku, (today - timedelta(days=SALES_DAYS)).isoformat()),
        ).fetchone()[0]
        daily = float(sold) / SALES_DAYS
        pack = int(supplier["pack"]) if supplier else 1
        packs = max(1, -(-round(daily * float(spec["qty_days"])) // pack))
        out.update({"base_qty": packs * pack, "daily_sales": round(daily, 3), "qty_days": spec["qty_days"]})
        return out
    suggestion = conn.execute(
        "SELECT id, supplier, base_qty FROM suggestions WHERE sku = ? AND state = 'open' ORDER BY id DESC LIMIT 1",
        (sku,),
    ).fetchone()
    if suggestion is not None:
        out.update({"supplier": suggestion["supplier"], "base_qty": int(suggestion["base_qty"])})
        out["suggestion"] = int(suggestion["id"])
    return out


def _tag_return(ctx: _Context, index: int, spec: Mapping[str, Any]) -> tuple[ActionOutcome, Event | None]:
    channel = str(spec["channel"])
    document, line_no = ctx.fact("document.id"), ctx.fact("line.line_no")
    if not isinstance(document, int) or not isinstance(line_no, int):
        raise ActionFailed("此事件不是退货单的一行", "this event is not a line of a return")
    cursor = ctx.conn.execute(
        "INSERT OR IGNORE INTO return_flows (document_id, line_no, channel, rule_id, version, firing_id, action_id,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            document,
            line_no,
            channel,
            ctx.origin.rule_id,
            ctx.origin.version,
            ctx.firing_id,
            ctx.action_id,
            ctx.now.isoformat(),
        ),
    )
    if cursor.rowcount == 0:
        row = ctx.conn.execute(
            "SELECT id FROM return_flows WHERE document_id = ? AND line_no = ? AND channel = ?",
            (document, line_no, channel),
        ).fetchone()
        result = {"return_flow": int(row[0]), "channel": channel, "already_tagged": True}
        return ActionOutcome(index, "tag_return", "skipped", "return_flow", str(row[0]), result), None
    flow = int(cursor.lastrowid or 0)
    result = {"return_flow": flow, "channel": channel, "document_id": document, "line_no": line_no}
    return ActionOutcome(index, "tag_return", "done", "return_flow", str(flow), result), None


def one_line(text: str) -> str:
    """A header's text: a fact with a line break (a return's free-text reason) folded into spaces, because an
    e-mail header may not hold CR or LF (and must not: header injection)."""
    return " ".join(text.split())


def resolve_recipients(to: Sequence[str], routes: Mapping[str, Sequence[str]]) -> tuple[list[str], list[str]]:
    """Addresses for `to` (addresses, or `role:<team>` looked up in settings.rule_email_routes): (addresses,
    teams without a route)."""
    addresses: list[str] = []
    missing: list[str] = []
    for entry in to:
        if entry.startswith("role:"):
            team = entry[5:]
            if team in routes:
                addresses.extend(routes[team])
            else:
                missing.append(team)
        else:
            addresses.append(entry)
    return list(dict.fromkeys(addresses)), missing


def _send_email(ctx: _Context, index: int, spec: Mapping[str, Any]) -> tuple[ActionOutcome, Event | None]:
    addresses, missing = resolve_recipients(list(spec["to"]), ctx.config.email_routes)
    if not addresses:
        raise ActionFailed(
            f"没有收件地址: 小组 {', '.join(missing)} 未在 rule_email_routes 中配置邮箱",
            f"no recipient: team(s) {', '.join(missing)} have no address in the setting rule_email_routes",
            teams=missing,
        )
    subject, subject_en = (one_line(t) for t in ctx.text(spec["subject"]))
    body, body_en = ctx.text(spec["body"])
    ts = ctx.now.isoformat()
    cursor = ctx.conn.execute(
        "INSERT INTO rule_emails (firing_id, action_id, rule_id, version, recipients, subject, subject_en, body,"
        " body_en, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ctx.firing_id,
            ctx.action_id,
            ctx.origin.rule_id,
            ctx.origin.version,
            json.dumps(addresses, ensure_ascii=False),
            subject,
            subject_en,
            body,
            body_en,
            ts,
            ts,
        ),
    )
    email = int(cursor.lastrowid or 0)
    result = {"email": email, "to": addresses, "subject": subject, "teams_without_address": missing}
    return ActionOutcome(index, "send_email", "queued", "email", str(email), result), None


def _emit_signal(ctx: _Context, index: int, spec: Mapping[str, Any]) -> tuple[ActionOutcome, Event | None]:
    name = str(spec["name"])
    depth = ctx.firing.depth + 1
    subject = ctx.one(str(spec["subject"])) if spec.get("subject") else (ctx.firing.subject or "")
    if depth > ctx.config.signal_depth_max:
        result = {"signal": name, "depth": depth, "limit": ctx.config.signal_depth_max}
        error = f"signal chain deeper than {ctx.config.signal_depth_max}: {name} not raised"
        return ActionOutcome(index, "emit_signal", "skipped", "signal", name, result, error), None
    facts = {"signal": {"name": name, "subject": subject, "source_rule": ctx.origin.rule_id}}
    event = signal_event(name, f"{ctx.firing_id}.{index}", ctx.now, facts, subject or None, depth)
    result = {"signal": name, "subject": subject, "depth": depth, "event_key": event.key}
    return ActionOutcome(index, "emit_signal", "done", "signal", name, result), event


_HANDLERS = {
    "notify": _notify,
    "open_ticket": _open_ticket,
    "hold_document": _hold_document,
    "adjust_parameter": _adjust_parameter,
    "create_draft": _create_draft,
    "tag_return": _tag_return,
    "send_email": _send_email,
    "emit_signal": _emit_signal,
}


# --- the outbox: notifications and e-mails waiting for delivery ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    rule_id: str
    version: int
    role: str
    message: str
    message_en: str
    subject: str | None
    created_at: str

    def payload(self, ts: datetime) -> bytes:
        """The MQTT message on `storebox/<store>/alert/rule` ({"id", "ts", "data"}, like every alert)."""
        data = {
            "rule": self.rule_id,
            "version": self.version,
            "role": self.role,
            "message": self.message,
            "message_en": self.message_en,
            "subject": self.subject,
            "notification": self.id,
        }
        body = {"id": f"rule-{self.id}", "ts": ts.isoformat(), "data": data}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def unpublished_notifications(conn: sqlite3.Connection, limit: int = 100) -> list[Notification]:
    rows = conn.execute(
        "SELECT id, rule_id, version, role, message, message_en, subject, created_at FROM rule_notifications"
        " WHERE published_at IS NULL ORDER BY id LIMIT ?",
        (limit,),
    )
    return [Notification(*tuple(r)) for r in rows]


def mark_notifications_published(conn: sqlite3.Connection, ids: Sequence[int], now: datetime) -> int:
    marked = 0
    for notification in ids:
        marked += conn.execute(
            "UPDATE rule_notifications SET published_at = ?, attempts = attempts + 1 WHERE id = ?"
            " AND published_at IS NULL",
            (now.isoformat(), notification),
        ).rowcount
    return marked


def note_notification_failure(conn: sqlite3.Connection, notification: int, error: str) -> None:
    conn.execute(
        "UPDATE rule_notifications SET attempts = attempts + 1, last_error = ? WHERE id = ?",
        (error[:MAX_ERROR], notification),
    )


@dataclass(frozen=True, slots=True)
class Email:
    id: int
    rule_id: str
    version: int
    recipients: tuple[str, ...]
    subject: str
    subject_en: str
    body: str
    body_en: str
    attempts: int

    @property
    def bilingual_subject(self) -> str:
        return self.subject if self.subject == self.subject_en else f"{self.subject} / {self.subject_en}"

    @property
    def bilingual_body(self) -> str:
        if self.body == self.body_en:
            return self.body
        return f"{self.body}\n\n---\n\n{self.body_en}"


def due_emails(conn: sqlite3.Connection, now: datetime, limit: int = 20) -> list[Email]:
    """Queued e-mails whose next attempt is due."""
    rows = conn.execute(
        "SELECT id, rule_id, version, recipients, subject, subject_en, body, body_en, attempts FROM rule_emails"
        " WHERE state = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY next_attempt_at, id"
        " LIMIT ?",
        (now.isoformat(), limit),
    )
    return [Email(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5], r[6], r[7], int(r[8])) for r in rows]


def next_email_due(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT MIN(next_attempt_at) FROM rule_emails WHERE state = 'queued'").fetchone()
    return None if row is None else row[0]


def mark_email_sent(conn: sqlite3.Connection, email: int, now: datetime) -> None:
    conn.execute(
        "UPDATE rule_emails SET state = 'sent', sent_at = ?, attempts = attempts + 1, next_attempt_at = NULL,"
        " last_error = NULL WHERE id = ? AND state = 'queued'",
        (now.isoformat(), email),
    )


def backoff_seconds(attempts: int, cap: float) -> float:
    """Wait before attempt `attempts + 1`: 30 s, 60 s, 120 s, ... up to `cap`."""
    return float(min(cap, 30.0 * 2 ** max(0, attempts - 1)))


def note_email_failure(
    conn: sqlite3.Connection, email: int, error: str, now: datetime, max_attempts: int, backoff_cap: float
) -> str:
    """Count a failed attempt: queued again after the backoff, or `failed` (kept, visible) after the last one.
    Returns the e-mail's state."""
    row = conn.execute("SELECT attempts, state FROM rule_emails WHERE id = ?", (email,)).fetchone()
    if row is None or row["state"] != "queued":
        return "unknown" if row is None else str(row["state"])
    attempts = int(row["attempts"]) + 1
    if attempts >= max_attempts:
        conn.execute(
            "UPDATE rule_emails SET state = 'failed', attempts = ?, last_error = ?, next_attempt_at = NULL"
            " WHERE id = ?",
            (attempts, error[:MAX_ERROR], email),
        )
        return "failed"
    due = now + timedelta(seconds=backoff_seconds(attempts, backoff_cap))
    conn.execute(
        "UPDATE rule_emails SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
        (attempts, error[:MAX_ERROR], due.isoformat(), email),
    )
    return "queued"


def resend_email(conn: sqlite3.Connection, email: int, actor: str, now: datetime) -> None:
    """Queue a failed e-mail again (a fixed SMTP setting); audited."""
    changed = conn.execute(
        "UPDATE rule_emails SET state = 'queued', attempts = 0, next_attempt_at = ? WHERE id = ? AND state = 'failed'",
        (now.isoformat(), email),
    ).rowcount
    if not changed:
        raise ActionFailed(f"邮件 {email} 不是发送失败状态", f"e-mail {email} has not failed", email=email)
    append_audit(
        conn,
        ts=now.isoformat(),
        actor=actor,
        device=None,
        action="rule.email_resend",
        object=f"email:{email}",
        detail={},
    )
