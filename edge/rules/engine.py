"""The rules engine (规则引擎): which active rules an event triggers, and what each firing is to do.

An `Event` is one thing that happened, with the documented facts it provides (edge/rules/data/facts.yaml): a
posted document line (`ledger`), an accepted device event (`bus`), an alert the box published (`alert`), a
schedule (`schedule`) or a signal (`signal`). `evaluate(rules, event)` runs the condition of every active,
enabled rule whose trigger the event matches and returns a `Firing` for each that holds (or that failed to
evaluate: a failed firing, recorded and counted, never raised). Executing a firing's actions is
edge/rules/actions.py (in the writer); wiring events in is the shell's (edge/rules/runtime.py).

The same events, as JSON (`Event.to_json`), are what scenario modules receive.

Pure functions over plain values, plus readers that build events and load the active rules from a connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from edge.ledger.commands import REASON_NAMES
from edge.rules.facts import namespaces_for
from edge.rules.model import Rule

TRIGGER_KINDS = ("ledger", "bus", "alert", "schedule", "signal")
MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Origin:
    """Who acts: a rule version, or a scenario module version (its proposals run through the same actions)."""

    kind: str  # "rule" or "module"
    name: str  # the rule id or the module name
    version: int

    @staticmethod
    def rule(rule_id: str, version: int) -> Origin:
        return Origin("rule", rule_id, version)

    @staticmethod
    def module(name: str, version: int) -> Origin:
        return Origin("module", name, version)

    @property
    def rule_id(self) -> str:
        """What rule_firings.rule_id (and every action row) holds: the rule id, or `module:<name>`."""
        return self.name if self.kind == "rule" else f"module:{self.name}"

    @property
    def actor(self) -> str:
        """The audit trail's actor: `rule:<id>@<version>` or `module:<name>@<version>`."""
        return f"{self.kind}:{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class Event:
    """One event rules (and modules) react to; `key` makes it unique (replaying it never acts twice)."""

    kind: str  # ledger | bus | alert | schedule | signal
    name: str  # doc_type, device event kind, alert kind, cron expression or signal name
    key: str
    at: datetime
    facts: Mapping[str, Mapping[str, Any]]
    subject: str | None = None  # what it is about (a supplier id, a document number, ...)
    depth: int = 0  # signals raised by rules: how many firings led here

    def to_json(self) -> dict[str, Any]:
        """The event as modules receive it: {"kind", "name", "key", "at", "facts"} (dates as ISO text)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "key": self.key,
            "at": self.at.isoformat(),
            "subject": self.subject,
            "facts": plain(self.facts),
            "depth": self.depth,  # a module's firing on this event carries it: its signals are cut like rules'
        }


@dataclass(frozen=True, slots=True)
class LoadedRule:
    """An active rule version as the runtime holds it: its params with the local override applied, enabled or
    not, and its condition compiled (or why it could not be)."""

    rule_id: str
    version: int
    trigger_kind: str
    trigger_key: str
    actions: tuple[Mapping[str, Any], ...]  # the rule's `then`, as written
    params: Mapping[str, Any]
    enabled: bool
    condition: Any  # edge.rules.expressions.Condition, or None when `error`
    error: str | None = None
    name: str = ""
    name_en: str = ""

    @property
    def origin(self) -> Origin:
        return Origin.rule(self.rule_id, self.version)


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule (or module) that an event made fire: the actions to take, or why its evaluation failed."""

    origin: Origin
    event_key: str
    trigger_kind: str
    subject: str | None
    facts: Mapping[str, Mapping[str, Any]]  # what the condition saw (plain JSON values)
    actions: tuple[Mapping[str, Any], ...]
    depth: int = 0
    error: str | None = None
    at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def plain(value: Any) -> Any:
    """`value` with dates as ISO text and tuples as lists: what JSON (and the module protocol) carries."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def facts_json(facts: Mapping[str, Any]) -> str:
    return json.dumps(plain(facts), ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def base_facts(event: Event, store_id: str, params: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The event's own facts plus `event`, `store` and `params`, which every trigger provides."""
    facts: dict[str, Mapping[str, Any]] = dict(event.facts)
    facts["event"] = {"kind": f"{event.kind}:{event.name}", "key": event.key, "at": event.at}
    facts["store"] = {"id": store_id}
    facts["params"] = dict(params)
    return facts


def triggered_by(rule: LoadedRule, event: Event) -> bool:
    """Does `event` match the rule's trigger (kind and doc type / event / alert / cron / signal name)?"""
    return rule.trigger_kind == event.kind and rule.trigger_key == event.name


def evaluate(rules: Iterable[LoadedRule], event: Event, store_id: str) -> list[Firing]:
    """Every firing `event` causes among `rules`: the enabled ones it triggers whose condition holds, and the
    ones whose condition could not be evaluated (a failed firing, with the error)."""
    firings: list[Firing] = []
    base: dict[str, Mapping[str, Any]] | None = None
    shown: dict[str, Any] | None = None  # the event's facts as a firing records them, made once per event
    for rule in rules:
        if not rule.enabled or not triggered_by(rule, event):
            continue
        if base is None:
            base = base_facts(event, store_id, {})
            provided = namespaces_for(event.kind, _signal(event))
            shown = plain({k: v for k, v in base.items() if k in provided} or base)
        assert shown is not None
        facts = {**base, "params": dict(rule.params)}
        seen = {**shown, "params": plain(rule.params)} if "params" in shown else shown
        if rule.condition is None:
            error = rule.error or "the rule's condition could not be compiled"
            firings.append(_firing(rule, event, seen, (), error))
            continue
        try:
            holds = rule.condition.matches(facts)
        except Exception as exc:  # a division by zero, a bad value: this rule only, recorded as failed
            firings.append(_firing(rule, event, seen, (), f"{type(exc).__name__}: {exc}"[:MAX_ERROR]))
            continue
        if holds:
            firings.append(_firing(rule, event, seen, rule.actions, None))
    return firings


def _signal(event: Event) -> str | None:
    return event.name if event.kind == "signal" else None


def _firing(
    rule: LoadedRule,
    event: Event,
    facts: Mapping[str, Mapping[str, Any]],
    actions: tuple[Mapping[str, Any], ...],
    error: str | None,
) -> Firing:
    return Firing(
        origin=rule.origin,
        event_key=event.key,
        trigger_kind=event.kind,
        subject=event.subject,
        facts=facts,  # already plain (evaluate made them once per event)
        actions=actions,
        depth=event.depth,
        error=error,
        at=event.at,
    )


# --- loading the active rules -------------------------------------------------------------------------------


def rules_fingerprint(conn: sqlite3.Connection) -> str:
    """Changes whenever a rule version becomes active or leaves, or an override changes: the runtime reloads."""
    row = conn.execute(
        "SELECT (SELECT group_concat(rule_id || '@' || version, ',') FROM"
        " (SELECT rule_id, version FROM rule_versions WHERE state = 'active' ORDER BY rule_id)),"
        " (SELECT group_concat(rule_id || '#' || updated_at, ',') FROM"
        " (SELECT rule_id, updated_at FROM rule_overrides ORDER BY rule_id))"
    ).fetchone()
    return f"{row[0] or ''}|{row[1] or ''}"


def load_active_rules(conn: sqlite3.Connection, teams: Collection[str] = ()) -> list[LoadedRule]:
    """The active version of every active rule, with its override (enabled, params) applied and its condition
    compiled. A rule the current catalogue refuses (after an upgrade of the box, or an override) is kept with its
    `error`: each event that triggers it records a failed firing, visibly, instead of the rule going quiet."""
    rows = conn.execute(
        "SELECT v.rule_id, v.version, v.document, o.enabled AS override_enabled, o.params AS override_params"
        " FROM rule_versions v JOIN rules r ON r.id = v.rule_id"
        " LEFT JOIN rule_overrides o ON o.rule_id = v.rule_id"
        " WHERE v.state = 'active' AND r.state = 'active' ORDER BY v.rule_id"
    ).fetchall()
    return [_loaded(row, int(row["version"]), teams) for row in rows]


def load_rule_version(
    conn: sqlite3.Connection, rule_id: str, version: int | None = None, teams: Collection[str] = ()
) -> LoadedRule | None:
    """One version of a rule (default: the active one, else the newest) with its override: what a dry run runs.
    None when there is no such rule or version."""
    rule = conn.execute("SELECT active_version, latest_version FROM rules WHERE id = ?", (rule_id,)).fetchone()
    if rule is None:
        return None
    chosen = version or int(rule["active_version"] or rule["latest_version"])
    row = conn.execute(
        "SELECT v.rule_id, v.version, v.document, o.enabled AS override_enabled, o.params AS override_params"
        " FROM rule_versions v LEFT JOIN rule_overrides o ON o.rule_id = v.rule_id"
        " WHERE v.rule_id = ? AND v.version = ?",
        (rule_id, chosen),
    ).fetchone()
    return None if row is None else _loaded(row, chosen, teams)


def _loaded(row: sqlite3.Row, version: int, teams: Collection[str]) -> LoadedRule:
    document = json.loads(row["document"])
    override = json.loads(row["override_params"] or "{}")
    enabled = None if row["override_enabled"] is None else bool(row["override_enabled"])
    return load_document(row["rule_id"], version, document, override, enabled, teams)


def effective_params(document: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's params with the store's overrides of the params it declares (others are kept but not used)."""
    declared = dict(document.get("params") or {})
    return {**declared, **{k: v for k, v in override.items() if k in declared}}


def load_document(
    rule_id: str,
    version: int,
    document: Mapping[str, Any],
    override_params: Mapping[str, Any] | None = None,
    override_enabled: bool | None = None,
    teams: Collection[str] = (),
) -> LoadedRule:
    """A rule document validated (edge.rules.model.validate_rule) with its override applied, ready to evaluate;
    one that no longer validates comes back with `error` and no condition."""
    from edge.rules.model import validate_rule

    params = effective_params(document, override_params or {})
    try:
        rule = validate_rule({**document, "params": params}, teams=teams)
    except Exception as exc:  # valid when saved; the catalogue or an override changed since
        raw = document.get("trigger")
        trigger: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        message = str(getattr(exc, "message_en", None) or exc)[:MAX_ERROR]
        return LoadedRule(
            rule_id=rule_id,
            version=version,
            trigger_kind=str(trigger.get("kind", "")),
            trigger_key=trigger_key_of(trigger),
            actions=(),
            params=params,
            enabled=bool(document.get("enabled", True)) if override_enabled is None else override_enabled,
            condition=None,
            error=message,
        )
    return from_rule(rule, version, enabled=override_enabled, rule_id=rule_id)


def trigger_key_of(trigger: Mapping[str, Any]) -> str:
    """What a trigger is indexed by: doc_type, event, alert, cron or signal name."""
    for name in ("doc_type", "event", "alert", "cron", "name"):
        value = trigger.get(name)
        if isinstance(value, str) and value:
            return value.strip()
    return ""


def from_rule(rule: Rule, version: int, *, enabled: bool | None = None, rule_id: str | None = None) -> LoadedRule:
    """A validated rule (edge.rules.model.Rule, its params already the effective ones) as the engine runs it."""
    return LoadedRule(
        rule_id=rule_id or rule.id,
        version=version,
        trigger_kind=rule.trigger.kind.value,
        trigger_key=rule.trigger.value,
        actions=tuple(action.to_dict() for action in rule.then),
        params=dict(rule.params),
        enabled=rule.enabled if enabled is None else enabled,
        condition=rule.condition,
        name=rule.name_zh,
        name_en=rule.name_en,
    )


# --- events from the ledger and the database -----------------------------------------------------------------


def reason_name(code: str | None, text: str | None) -> str:
    """A return or write-off reason as people write it (包装破损), from its code; free text for `other`."""
    if not code:
        return text or ""
    names = REASON_NAMES.get(code)
    if code == "other" and text:
        return text
    return names[0] if names else code


def supplier_facts(conn: sqlite3.Connection, supplier_id: str | None) -> dict[str, Any]:
    """The `supplier` namespace: name, the lead time last estimated (else what the purchaser entered), frozen."""
    if not supplier_id:
        return {}
    row = conn.execute("SELECT id, name FROM suppliers WHERE id = ?", (supplier_id,)).fetchone()
    if row is None:
        return {"id": supplier_id}
    facts: dict[str, Any] = {"id": row["id"], "name": row["name"]}
    mark = _one(conn, "SELECT days FROM rule_lead_time_marks WHERE supplier = ?", (supplier_id,))
    if mark is None:
        mark = _one(
            conn, "SELECT AVG(lead_time_days) FROM item_suppliers WHERE supplier = ? AND active = 1", (supplier_id,)
        )
    facts["lead_time_days"] = float(mark) if mark is not None else 0.0
    frozen = _one(
        conn, "SELECT 1 FROM supplier_freezes WHERE supplier = ? AND lifted_at IS NULL LIMIT 1", (supplier_id,)
    )
    facts["frozen"] = frozen is not None
    return facts


def item_facts(conn: sqlite3.Connection, sku: str) -> dict[str, Any]:
    """The `item` namespace of one SKU (its primary supplier from item_suppliers)."""
    row = conn.execute(
        "SELECT sku, name, category, base_unit, price_fen, shelf_life_days FROM items WHERE sku = ?", (sku,)
    ).fetchone()
    if row is None:
        return {"sku": sku}
    supplier = _one(
        conn,
        "SELECT supplier FROM item_suppliers WHERE sku = ? AND active = 1 ORDER BY is_primary DESC, supplier LIMIT 1",
        (sku,),
    )
    return {
        "sku": row["sku"],
        "name": row["name"],
        "category": row["category"] or "",
        "base_unit": row["base_unit"],
        "price_fen": int(row["price_fen"]),
        "shelf_life_days": int(row["shelf_life_days"] or 0),
        "supplier": supplier or "",
    }


def ledger_events(conn: sqlite3.Connection, document_id: int, doc_types: Collection[str] | None = None) -> list[Event]:
    """One `ledger` event per line of a posted document (a document without lines: one event for it); none when
    the document's type is not among `doc_types` (None: any type)."""
    doc = conn.execute("SELECT * FROM documents WHERE id = ?", (document_id,)).fetchone()
    if doc is None or (doc_types is not None and doc["type"] not in doc_types):
        return []
    lines = conn.execute(
        "SELECT * FROM document_lines WHERE document_id = ? ORDER BY line_no", (document_id,)
    ).fetchall()
    at = datetime.fromisoformat(doc["posted_at"])
    document = {
        "id": int(doc["id"]),
        "no": doc["doc_no"],
        "type": doc["type"],
        "business_date": doc["business_date"],
        "counterparty": doc["counterparty"] or "",
        "total_fen": int(doc["gross_fen"]),
        "line_count": len(lines),
        "created_by": doc["actor"],
    }
    reason = reason_name(doc["reason"], doc["reason_text"])
    supplier_id = doc["counterparty"] if doc["type"] in _SUPPLIER_DOCS else None
    supplier_cache: dict[str | None, dict[str, Any]] = {}
    events: list[Event] = []
    if not lines:
        whole = {"document": document, "supplier": supplier_facts(conn, supplier_id)}
        return [Event("ledger", doc["type"], f"doc:{document_id}", at, whole, doc["doc_no"])]
    for line in lines:
        item = item_facts(conn, line["sku"])
        line_supplier = supplier_id or item.get("supplier") or None
        if line_supplier not in supplier_cache:
            supplier_cache[line_supplier] = supplier_facts(conn, line_supplier)
        qty = int(line["qty_base"])
        amount = int(line["gross_fen"])
        facts: dict[str, Mapping[str, Any]] = {
            "document": document,
            "line": {
                "line_no": int(line["line_no"]),
                "sku": line["sku"],
                "qty": qty,
                "price_fen": round(amount / qty) if qty else 0,
                "amount_fen": amount,
                "location": line["location"] or doc["location"] or "",
                "lot": line["lot"] or "",
                "reason": reason,
                "reason_code": doc["reason"] or "",
            },
            "item": item,
            "supplier": supplier_cache[line_supplier],
            "return": {"reason": reason, "channel": "store"} if doc["type"] == "customer_return" else {},
        }
        key = f"doc:{document_id}:{int(line['line_no'])}"
        events.append(Event("ledger", doc["type"], key, at, facts, doc["doc_no"]))
    return events


_SUPPLIER_DOCS = frozenset({"purchase_order", "receipt", "supplier_return", "purchase_invoice", "credit_note"})


def alert_event(store_id: str, kind: str, payload: Mapping[str, Any], at: datetime) -> Event | None:
    """An alert the box published on `storebox/<store>/alert/<kind>` ({"id", "ts", "data"}) as an `alert` event."""
    alert_id = payload.get("id")
    data = payload.get("data")
    if not isinstance(alert_id, str | int) or not isinstance(data, Mapping):
        return None
    subject = next(
        (str(data[k]) for k in ("subject", "room", "location", "device", "supplier", "sku") if data.get(k)), ""
    )
    level = data.get("level") or data.get("severity") or "warning"
    facts = {
        "alert": {
            "kind": kind,
            "level": str(level),
            "subject": subject,
            "message": str(data.get("message") or data.get("message_zh") or ""),
        }
    }
    return Event("alert", kind, f"alert:{kind}:{alert_id}", at, facts, subject or None)


def bus_event(device: str, kind: str, payload: Mapping[str, Any], at: datetime) -> Event | None:
    """An accepted device event ({"id", "ts", "data"}) as a `bus` event; its reading facts when it has one."""
    event_id = payload.get("id")
    data = payload.get("data")
    if not isinstance(event_id, str | int) or not isinstance(data, Mapping):
        return None
    value = next((data[k] for k in ("value", "celsius", "temp", "weight_g", "grams", "qty") if _number(data.get(k))), 0)
    unit = data.get("unit") or {"temp": "C", "weight": "g"}.get(kind, "")
    location = data.get("location") or data.get("room") or ""
    facts = {"reading": {"device": device, "value": float(value), "unit": str(unit), "location": str(location)}}
    return Event("bus", kind, f"dev:{device}:{event_id}", at, facts, device)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def schedule_event(cron: str, fired_at: datetime, local_date: date, is_holiday: bool) -> Event:
    """A schedule that fired at `fired_at` (store time zone gives `local_date`)."""
    facts = {"schedule": {"date": local_date.isoformat(), "weekday": local_date.isoweekday(), "is_holiday": is_holiday}}
    minute = fired_at.replace(second=0, microsecond=0).isoformat()
    return Event("schedule", cron, f"schedule:{cron}:{minute}", fired_at, facts, local_date.isoformat())


def signal_event(
    name: str,
    key: str,
    at: datetime,
    facts: Mapping[str, Mapping[str, Any]],
    subject: str | None = None,
    depth: int = 0,
) -> Event:
    return Event("signal", name, f"signal:{name}:{key}", at, facts, subject, depth)


def _one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]
