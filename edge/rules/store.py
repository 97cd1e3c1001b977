"""Rules as stored (规则库): rules, their immutable versions, local overrides, and what the runtime loads.

A rule is saved as a draft version after `validate_rule` accepted it (a rule that would not run is refused at
save, never stored). A draft may be edited in place until it is submitted; a version that left draft never
changes: editing it writes a new draft version while the active one keeps acting (edge/rules/governance.py
moves versions through review). Rules from a pack (origin `pack:` or `builtin:`) change only with their pack
(edge/rules/packs.py); the store adjusts them with an override (enabled, params), which survives upgrades.

Plain functions over a connection; the caller's writer transaction is the commit point (each writing function
runs in a savepoint of its own, so a refusal keeps nothing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any

from edge.ledger.audit import append_audit
from edge.rules.errors import RuleError, RuleInvalid
from edge.rules.model import Rule, validate_rule

MAX_DOCUMENT_BYTES = 64_000
MAX_LIST = 1000
LOCAL = "local"
RULE_STATES = ("draft", "in_review", "active", "retired")
VERSION_STATES = ("draft", "in_review", "active", "superseded", "retired", "withdrawn")
# Ids the API's paths use for other things (GET /rules/facts, /rules/actions, POST /rules/validate).
RESERVED_IDS = frozenset({"facts", "actions", "validate"})
TRIGGER_KEYS = {"ledger": "doc_type", "bus": "event", "alert": "alert", "schedule": "cron", "signal": "name"}


class UnknownRule(RuleError):
    code = "unknown_rule"
    status = 404

    def __init__(self, rule_id: str, version: int | None = None) -> None:
        if version is None:
            super().__init__(f"规则 {rule_id} 不存在", f"no such rule: {rule_id}", rule_id=rule_id)
        else:
            super().__init__(
                f"规则 {rule_id} 没有第 {version} 版",
                f"rule {rule_id} has no version {version}",
                rule_id=rule_id,
                version=version,
            )


class RuleExists(RuleError):
    code = "rule_exists"
    status = 409

    def __init__(self, rule_id: str) -> None:
        super().__init__(
            f"规则 {rule_id} 已存在: 用 PUT /rules/{rule_id} 写新版本",
            f"rule {rule_id} exists already: write a new version with PUT /rules/{rule_id}",
            rule_id=rule_id,
        )


class RuleStateError(RuleError):
    """The rule is not in a state that allows this (editing a version under review, approving a draft, ...)."""

    code = "rule_state_invalid"
    status = 409


class RuleFromPack(RuleStateError):
    """A pack's rule changes only with its pack; the store adjusts it with an override."""

    code = "rule_from_pack"

    def __init__(self, rule_id: str, origin: str) -> None:
        super().__init__(
            f"规则 {rule_id} 来自规则包 ({origin})，只能随规则包变更；本店可用覆盖设置 (启用、参数) 调整",
            f"rule {rule_id} comes from a rule pack ({origin}) and changes only with it; adjust it here with an"
            " override (enabled, params)",
            rule_id=rule_id,
            origin=origin,
        )


class OverrideInvalid(RuleInvalid):
    code = "rule_override_invalid"


# --- helpers ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic(conn: sqlite3.Connection, name: str = "rules") -> Iterator[None]:
    """All of a function's writes or none, inside or outside the caller's transaction."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


def canonical(document: Mapping[str, Any]) -> str:
    """The document as stored: JSON with sorted keys (what sha256 and equality are computed over)."""
    try:
        text = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RuleInvalid(
            f"规则含有无法保存的值: {exc}", f"the rule holds a value that cannot be stored: {exc}"
        ) from None
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise RuleInvalid(
            f"规则太大 (最多 {MAX_DOCUMENT_BYTES} 字节)",
            f"the rule is too large (at most {MAX_DOCUMENT_BYTES} bytes)",
            size=len(text.encode()),
        )
    return text


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def audit(conn: sqlite3.Connection, now: datetime, actor: str, action: str, rule_id: str, **detail: Any) -> None:
    append_audit(
        conn,
        ts=now.isoformat(),
        actor=actor,
        device=None,
        action=action,
        object=f"rule:{rule_id}",
        detail={"rule_id": rule_id, **detail},
    )


def review(
    conn: sqlite3.Connection,
    rule_id: str,
    version: int,
    action: str,
    from_state: str | None,
    to_state: str | None,
    actor: str,
    now: datetime,
    *,
    reviewer: str | None = None,
    reason: str | None = None,
    signature: str | None = None,
) -> None:
    """One row of the governance trail (`rule_reviews`)."""
    conn.execute(
        "INSERT INTO rule_reviews (rule_id, version, action, from_state, to_state, actor, reviewer, reason,"
        " signature, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rule_id, version, action, from_state, to_state, actor, reviewer, reason, signature, now.isoformat()),
    )


def _name(document: Mapping[str, Any]) -> tuple[str, str]:
    name = document.get("name")
    if isinstance(name, Mapping):
        zh, en = str(name.get("zh") or ""), str(name.get("en") or "")
        return zh or en or str(document.get("id")), en or zh or str(document.get("id"))
    if isinstance(name, str) and name:
        return name, name
    return str(document.get("id")), str(document.get("id"))


def trigger_of(document: Mapping[str, Any]) -> tuple[str, str]:
    """(trigger kind, the key the runtime indexes it by) of a validated document."""
    trigger = document.get("trigger") or {}
    kind = str(trigger.get("kind"))
    return kind, str(trigger.get(TRIGGER_KEYS.get(kind, "name"), ""))


def _refuse_non_mapping(document: Any) -> Mapping[str, Any]:
    if not isinstance(document, Mapping):
        raise RuleInvalid(
            "规则应为一个对象 (YAML 映射或 JSON 对象)", "a rule is an object (a YAML mapping or JSON object)"
        )
    return document


def _json(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


# --- validation ---------------------------------------------------------------------------------------


def known_rules(
    conn: sqlite3.Connection, *, exclude: str | None = None, active_only: bool = False, teams: Collection[str] = ()
) -> dict[str, Rule]:
    """The other rules a new version must not loop with: each rule's active version, and (unless `active_only`)
    its pending draft or version under review instead, which may become active."""
    rows = conn.execute(
        "SELECT v.rule_id, v.document, v.state FROM rule_versions v JOIN rules r ON r.id = v.rule_id"
        " WHERE v.state IN ('active', 'draft', 'in_review') ORDER BY v.rule_id, v.version"
    ).fetchall()
    found: dict[str, Rule] = {}
    for row in rows:
        if row["rule_id"] == exclude or (active_only and row["state"] != "active"):
            continue
        with contextlib.suppress(RuleInvalid):  # a stored rule the current catalogue no longer accepts
            found[row["rule_id"]] = validate_rule(json.loads(row["document"]), teams=teams)
    return found


def check_rule(conn: sqlite3.Connection, document: Any, teams: Collection[str] = ()) -> Rule:
    """`validate_rule` with the box's other rules (for the loop check); raises a RuleInvalid subclass."""
    document = _refuse_non_mapping(document)
    rule_id = document.get("id")
    others = known_rules(conn, exclude=rule_id if isinstance(rule_id, str) else None, teams=teams)
    return validate_rule(document, known_rules=others, teams=teams)


def problems_of(conn: sqlite3.Connection, document: Any, teams: Collection[str] = ()) -> list[dict[str, Any]]:
    """Every refusal `check_rule` would raise, as `{code, message, message_en, detail}` (empty: the rule is good).
    Never raises for bad input: this answers the editor's live validation."""
    try:
        check_rule(conn, document, teams)
        canonical(_refuse_non_mapping(document))
    except RuleError as error:
        return [error.to_dict()]
    except RecursionError:
        return [RuleInvalid("规则嵌套太深", "the rule is nested too deeply").to_dict()]
    except (TypeError, ValueError) as exc:  # a value the checks did not expect: still an answer, not a failure
        return [RuleInvalid(f"规则无法检查: {exc}", f"the rule cannot be checked: {exc}").to_dict()]
    return []


# --- writes -------------------------------------------------------------------------------------------


def rule_row(conn: sqlite3.Connection, rule_id: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM rules WHERE id = ?", (rule_id,)).fetchone()
    if row is None:
        raise UnknownRule(rule_id)
    row_: sqlite3.Row = row
    return row_


def version_row(conn: sqlite3.Connection, rule_id: str, version: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM rule_versions WHERE rule_id = ? AND version = ?", (rule_id, version)).fetchone()
    if row is None:
        raise UnknownRule(rule_id, version)
    row_: sqlite3.Row = row
    return row_


def insert_version(
    conn: sqlite3.Connection,
    document: Mapping[str, Any],
    version: int,
    state: str,
    origin: str,
    author: str,
    now: datetime,
) -> None:
    """Write one version row (the caller validated the document)."""
    text = canonical(document)
    kind, key = trigger_of(document)
    zh, en = _name(document)
    owner = document.get("owner")
    at = now.isoformat()
    conn.execute(
        "INSERT INTO rule_versions (rule_id, version, state, document, sha256, trigger_kind, trigger_key, name,"
        " name_en, owner, origin, author, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            document["id"],
            version,
            state,
            text,
            sha256_of(text),
            kind,
            key,
            zh,
            en,
            None if owner is None else str(owner),
            origin,
            author,
            at,
            at,
        ),
    )


def refresh_state(conn: sqlite3.Connection, rule_id: str, now: datetime) -> str:
    """Recompute the rule's state from its versions: active while a version is active, else the newest
    version's (draft, in_review) or retired."""
    active = conn.execute(
        "SELECT version FROM rule_versions WHERE rule_id = ? AND state = 'active'", (rule_id,)
    ).fetchone()
    latest = conn.execute(
        "SELECT version, state FROM rule_versions WHERE rule_id = ? ORDER BY version DESC LIMIT 1", (rule_id,)
    ).fetchone()
    if active is not None:
        state = "active"
    elif latest is not None and latest["state"] in ("draft", "in_review"):
        state = latest["state"]
    else:
        state = "retired"
    conn.execute(
        "UPDATE rules SET state = ?, active_version = ?, latest_version = ?, updated_at = ? WHERE id = ?",
        (state, None if active is None else int(active[0]), int(latest[0]) if latest else 1, now.isoformat(), rule_id),
    )
    return state


def create_rule(
    conn: sqlite3.Connection, document: Any, actor: str, now: datetime, teams: Collection[str] = ()
) -> dict[str, Any]:
    """A new rule as draft version 1 (refused when the id exists or the rule does not validate)."""
    with atomic(conn):
        document = check_rule(conn, document, teams).to_dict()
        rule_id = str(document["id"])
        if rule_id in RESERVED_IDS:
            raise RuleInvalid(
                f"规则编号 {rule_id} 保留给接口使用，请换一个",
                f"the rule id {rule_id} is reserved: choose another",
                field="id",
            )
        if conn.execute("SELECT 1 FROM rules WHERE id = ?", (rule_id,)).fetchone() is not None:
            raise RuleExists(rule_id)
        at = now.isoformat()
        conn.execute(
            "INSERT INTO rules (id, state, latest_version, origin, created_by, created_at, updated_at)"
            " VALUES (?, 'draft', 1, ?, ?, ?, ?)",
            (rule_id, LOCAL, actor, at, at),
        )
        insert_version(conn, document, 1, "draft", LOCAL, actor, now)
        review(conn, rule_id, 1, "created", None, "draft", actor, now)
        audit(conn, now, actor, "rule.create", rule_id, version=1, sha256=sha256_of(canonical(document)))
        return get_rule(conn, rule_id)


def update_rule(
    conn: sqlite3.Connection, rule_id: str, document: Any, actor: str, now: datetime, teams: Collection[str] = ()
) -> dict[str, Any]:
    """Edit a rule: its draft is rewritten in place; a version that left draft stays as it is and a new draft
    version is written (the active version keeps acting until the new one is approved). A version under review
    is frozen: reject it first."""
    with atomic(conn):
        document = _refuse_non_mapping(document)
        rule = rule_row(conn, rule_id)
        if rule["origin"] != LOCAL:
            raise RuleFromPack(rule_id, rule["origin"])
        if document.get("id") != rule_id:
            raise RuleInvalid(
                f"规则编号不能改: 应为 {rule_id}",
                f"the rule's id cannot change: it must be {rule_id}",
                field="id",
                rule_id=rule_id,
            )
        document = check_rule(conn, document, teams).to_dict()
        latest = version_row(conn, rule_id, int(rule["latest_version"]))
        text = canonical(document)
        if latest["state"] == "in_review":
            raise RuleStateError(
                f"规则 {rule_id} 第 {latest['version']} 版正在审核，不能修改；请审核人先驳回",
                f"rule {rule_id} version {latest['version']} is under review and cannot change; the reviewer"
                " rejects it first",
                rule_id=rule_id,
                version=int(latest["version"]),
                state="in_review",
            )
        if latest["state"] == "draft":
            version = int(latest["version"])
            kind, key = trigger_of(document)
            zh, en = _name(document)
            conn.execute(
                "UPDATE rule_versions SET document = ?, sha256 = ?, trigger_kind = ?, trigger_key = ?, name = ?,"
                " name_en = ?, owner = ?, updated_at = ? WHERE rule_id = ? AND version = ? AND state = 'draft'",
                (
                    text,
                    sha256_of(text),
                    kind,
                    key,
                    zh,
                    en,
                    None if document.get("owner") is None else str(document["owner"]),
                    now.isoformat(),
                    rule_id,
                    version,
                ),
            )
        else:
            version = int(latest["version"]) + 1
            insert_version(conn, document, version, "draft", LOCAL, actor, now)
        refresh_state(conn, rule_id, now)
        review(conn, rule_id, version, "edited", latest["state"], "draft", actor, now)
        audit(conn, now, actor, "rule.edit", rule_id, version=version, sha256=sha256_of(text))
        return get_rule(conn, rule_id)


def set_override(
    conn: sqlite3.Connection,
    rule_id: str,
    actor: str,
    now: datetime,
    *,
    enabled: bool | None = None,
    params: Mapping[str, Any] | None = None,
    clear: bool = False,
    teams: Collection[str] = (),
) -> dict[str, Any]:
    """Set the store's override of a rule: `enabled` (None: as the rule says) and `params` (merged over those
    already overridden; a null value drops one). Each param must be one the rule declares, and the rule must
    still validate with the new values. `clear` drops the override."""
    with atomic(conn):
        rule = rule_row(conn, rule_id)
        current = conn.execute("SELECT * FROM rule_overrides WHERE rule_id = ?", (rule_id,)).fetchone()
        if clear:
            conn.execute("DELETE FROM rule_overrides WHERE rule_id = ?", (rule_id,))
            review(conn, rule_id, int(rule["latest_version"]), "overridden", None, None, actor, now, reason="cleared")
            audit(conn, now, actor, "rule.override", rule_id, cleared=True)
            return get_override(conn, rule_id)
        merged: dict[str, Any] = dict(_json(current["params"], {}) if current else {})
        if params is not None and not isinstance(params, Mapping):
            raise OverrideInvalid("params 应为一个对象", "params must be an object", field="params")
        version = int(rule["active_version"] or rule["latest_version"])
        document = dict(json.loads(version_row(conn, rule_id, version)["document"]))
        declared = dict(document.get("params") or {})
        for name, value in (params or {}).items():
            if name not in declared:
                raise OverrideInvalid(
                    f"规则 {rule_id} 没有参数 {name} (有: {', '.join(sorted(declared)) or '无'})",
                    f"rule {rule_id} has no param {name} (it has: {', '.join(sorted(declared)) or 'none'})",
                    field=f"params.{name}",
                    params=sorted(declared),
                )
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        try:
            validate_rule({**document, "params": {**declared, **merged}}, teams=teams)
        except RuleInvalid as error:
            raise OverrideInvalid(
                f"覆盖后的参数使规则无效: {error.message}",
                f"the overridden params make the rule invalid: {error.message_en}",
                field="params",
                cause=error.to_dict(),
            ) from None
        new_enabled = None if enabled is None and current is None else enabled
        if enabled is None and current is not None:
            new_enabled = None if current["enabled"] is None else bool(current["enabled"])
        params_text = canonical(merged)
        conn.execute(
            "INSERT INTO rule_overrides (rule_id, enabled, params, updated_by, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (rule_id) DO UPDATE SET enabled = excluded.enabled, params = excluded.params,"
            " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            (rule_id, None if new_enabled is None else int(new_enabled), params_text, actor, now.isoformat()),
        )
        review(conn, rule_id, version, "overridden", None, None, actor, now, reason=params_text)
        audit(conn, now, actor, "rule.override", rule_id, version=version, enabled=new_enabled, params=merged)
        return get_override(conn, rule_id)


def apply_override(
    conn: sqlite3.Connection,
    rule_id: str,
    actor: str,
    now: datetime,
    enabled: bool | None,
    params: Mapping[str, Any] | None,
    clear: bool,
    teams: Collection[str] = (),
) -> dict[str, Any]:
    """`set_override` with positional arguments (for the writer's `execute`)."""
    return set_override(conn, rule_id, actor, now, enabled=enabled, params=params, clear=clear, teams=teams)


# --- reads --------------------------------------------------------------------------------------------


def get_override(conn: sqlite3.Connection, rule_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM rule_overrides WHERE rule_id = ?", (rule_id,)).fetchone()
    if row is None:
        return {"rule_id": rule_id, "enabled": None, "params": {}, "updated_by": None, "updated_at": None}
    return {
        "rule_id": rule_id,
        "enabled": None if row["enabled"] is None else bool(row["enabled"]),
        "params": _json(row["params"], {}),
        "updated_by": row["updated_by"],
        "updated_at": row["updated_at"],
    }


def _version_out(row: sqlite3.Row, *, with_document: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: row[key]
        for key in (
            "version",
            "state",
            "sha256",
            "trigger_kind",
            "trigger_key",
            "name",
            "name_en",
            "owner",
            "origin",
            "author",
            "created_at",
            "updated_at",
            "reviewer",
            "submitted_by",
            "submitted_at",
            "approved_by",
            "approved_at",
            "rejected_by",
            "rejected_at",
            "reject_reason",
            "retired_by",
            "retired_at",
        )
    }
    if with_document:
        out["document"] = json.loads(row["document"])
    return out


def _summary(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "state": row["state"],
        "active_version": row["active_version"],
        "latest_version": row["latest_version"],
        "latest_state": row["latest_state"],
        "name": row["name"],
        "name_en": row["name_en"],
        "trigger_kind": row["trigger_kind"],
        "trigger_key": row["trigger_key"],
        "owner": row["owner"],
        "reviewer": row["reviewer"],
        "origin": row["origin"],
        "pack": row["pack"],
        "enabled": _enabled(row),
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _enabled(row: sqlite3.Row) -> bool:
    if row["override_enabled"] is not None:
        return bool(row["override_enabled"])
    document = json.loads(row["document"])
    return bool(document.get("enabled", True))


_SUMMARY_SQL = (
    "SELECT r.*, v.state AS latest_state, v.name, v.name_en, v.trigger_kind, v.trigger_key, v.owner, v.reviewer,"
    " COALESCE(a.document, v.document) AS document, o.enabled AS override_enabled"
    " FROM rules r JOIN rule_versions v ON v.rule_id = r.id AND v.version = r.latest_version"
    " LEFT JOIN rule_versions a ON a.rule_id = r.id AND a.version = r.active_version"
    " LEFT JOIN rule_overrides o ON o.rule_id = r.id"
)


def list_rules(
    conn: sqlite3.Connection,
    *,
    state: str | None = None,
    trigger_kind: str | None = None,
    pack: str | None = None,
    reviewer: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Rules by id with their state, versions, trigger and origin. `reviewer` lists the rules waiting for that
    person's review."""
    where: list[str] = []
    args: list[Any] = []
    if state is not None:
        where.append("r.state = ?")
        args.append(state)
    if trigger_kind is not None:
        where.append("v.trigger_kind = ?")
        args.append(trigger_kind)
    if pack is not None:
        where.append("r.pack = ?")
        args.append(pack)
    if reviewer is not None:
        where.append("v.state = 'in_review' AND v.reviewer = ?")
        args.append(reviewer)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"{_SUMMARY_SQL}{clause} ORDER BY r.id LIMIT ? OFFSET ?", (*args, min(limit, MAX_LIST), offset)
    ).fetchall()
    return [_summary(r) for r in rows]


def get_rule(conn: sqlite3.Connection, rule_id: str) -> dict[str, Any]:
    """One rule with every version (newest first), its review trail, override and lineage: where it came from
    and what its firings acted on."""
    row = conn.execute(f"{_SUMMARY_SQL} WHERE r.id = ?", (rule_id,)).fetchone()
    if row is None:
        raise UnknownRule(rule_id)
    out = _summary(row)
    versions = conn.execute(
        "SELECT * FROM rule_versions WHERE rule_id = ? ORDER BY version DESC", (rule_id,)
    ).fetchall()
    out["versions"] = [_version_out(v) for v in versions]
    out["reviews"] = [
        dict(r)
        for r in conn.execute(
            "SELECT id, version, action, from_state, to_state, actor, reviewer, reason, signature, at"
            " FROM rule_reviews WHERE rule_id = ? ORDER BY id DESC LIMIT 200",
            (rule_id,),
        )
    ]
    out["override"] = get_override(conn, rule_id)
    out["lineage"] = lineage(conn, rule_id)
    return out


def get_version(conn: sqlite3.Connection, rule_id: str, version: int) -> dict[str, Any]:
    return _version_out(version_row(conn, rule_id, version))


def lineage(conn: sqlite3.Connection, rule_id: str) -> dict[str, Any]:
    """Where the rule came from (local, or the pack and its version) and the objects its firings acted on."""
    rule = rule_row(conn, rule_id)
    pack = None
    if rule["pack"] is not None:
        found = conn.execute(
            "SELECT name, version, source, sha256, installed_at FROM rule_packs WHERE name = ? AND in_force = 1",
            (rule["pack"],),
        ).fetchone()
        pack = None if found is None else dict(found)
    firings = conn.execute("SELECT COUNT(*), MAX(fired_at) FROM rule_firings WHERE rule_id = ?", (rule_id,)).fetchone()
    acted = conn.execute(
        "SELECT a.object_kind, a.object_id, a.action, f.version, f.id AS firing_id, a.at FROM rule_actions a"
        " JOIN rule_firings f ON f.id = a.firing_id WHERE f.rule_id = ? AND a.object_kind IS NOT NULL"
        " ORDER BY a.id DESC LIMIT 50",
        (rule_id,),
    ).fetchall()
    return {
        "origin": rule["origin"],
        "pack": pack,
        "versions_by_origin": [
            dict(r)
            for r in conn.execute(
                "SELECT version, origin, state FROM rule_versions WHERE rule_id = ? ORDER BY version", (rule_id,)
            )
        ],
        "firings": int(firings[0]),
        "last_fired_at": firings[1],
        "acted_on": [dict(r) for r in acted],
    }


def stale_rules(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Active rule versions the current fact and action catalogue refuses (after an upgrade of the box)."""
    stale: list[dict[str, Any]] = []
    for row in conn.execute("SELECT rule_id, version, document FROM rule_versions WHERE state = 'active'"):
        try:
            validate_rule(json.loads(row["document"]))
        except RuleInvalid as error:
            stale.append({"rule_id": row["rule_id"], "version": int(row["version"]), "problem": error.to_dict()})
    return stale


# --- firings, tickets (what rules did) -------------------------------------------------------------------


def newest_rows(
    conn: sqlite3.Connection, table: str, equal: Mapping[str, Any], limit: int, offset: int
) -> list[sqlite3.Row]:
    """Rows of one of the rules' tables, newest first, where each column given (not None) equals its value.
    `table` and the column names are the caller's constants, never user input."""
    given = {column: value for column, value in equal.items() if value is not None}
    clause = " WHERE " + " AND ".join(f"{column} = ?" for column in given) if given else ""
    rows: list[sqlite3.Row] = conn.execute(
        f"SELECT * FROM {table}{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*given.values(), min(limit, MAX_LIST), offset),
    ).fetchall()
    return rows


def list_firings(
    conn: sqlite3.Connection,
    *,
    rule_id: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Firings newest first, each with its actions and the objects they acted on (the lineage to documents)."""
    rows = newest_rows(conn, "rule_firings", {"rule_id": rule_id, "state": state}, limit, offset)
    out: list[dict[str, Any]] = []
    for row in rows:
        firing = dict(row)
        firing["facts"] = _json(row["facts"], {})
        firing["actions"] = [
            {**dict(a), "spec": _json(a["spec"], {}), "result": _json(a["result"], {})}
            for a in conn.execute(
                "SELECT id, action_index, action, spec, state, result, object_kind, object_id, error, at"
                " FROM rule_actions WHERE firing_id = ? ORDER BY action_index",
                (int(row["id"]),),
            )
        ]
        out.append(firing)
    return out


class UnknownTicket(RuleError):
    code = "unknown_rule_ticket"
    status = 404


class TicketClosed(RuleStateError):
    code = "rule_ticket_closed"


MAX_RESOLUTION = 1000


def _ticket(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "detail": _json(row["detail"], {})}


def list_tickets(
    conn: sqlite3.Connection,
    *,
    state: str | None = None,
    queue: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Tickets rules opened, newest first."""
    rows = newest_rows(conn, "rule_tickets", {"state": state, "queue": queue}, limit, offset)
    return [_ticket(r) for r in rows]


def get_ticket(conn: sqlite3.Connection, ticket_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM rule_tickets WHERE id = ?", (ticket_id,)).fetchone()
    if row is None:
        raise UnknownTicket(f"规则工单 {ticket_id} 不存在", f"no such rule ticket: {ticket_id}", ticket=ticket_id)
    return _ticket(row)


def close_ticket(
    conn: sqlite3.Connection, ticket_id: int, resolution: str, actor: str, now: datetime
) -> dict[str, Any]:
    """Close an open ticket with a resolution (the caller checked `rules:act`). Audited with the rule's id."""
    with atomic(conn):
        text = resolution.strip() if isinstance(resolution, str) else ""
        if not text or len(text) > MAX_RESOLUTION:
            raise RuleInvalid(
                f"关闭工单须写明处理结果 (1..{MAX_RESOLUTION} 字)",
                f"closing a ticket needs a resolution (1..{MAX_RESOLUTION} characters)",
                field="resolution",
            )
        ticket = get_ticket(conn, ticket_id)
        if ticket["state"] != "open":
            raise TicketClosed(
                f"规则工单 {ticket_id} 已由 {ticket['closed_by']} 关闭",
                f"rule ticket {ticket_id} was closed already by {ticket['closed_by']}",
                ticket=ticket_id,
                closed_by=ticket["closed_by"],
            )
        at = now.isoformat()
        conn.execute(
            "UPDATE rule_tickets SET state = 'closed', closed_by = ?, closed_at = ?, resolution = ?"
            " WHERE id = ? AND state = 'open'",
            (actor, at, text, ticket_id),
        )
        append_audit(
            conn,
            ts=at,
            actor=actor,
            device=None,
            action="rule_ticket.close",
            object=f"rule_ticket:{ticket_id}",
            detail={
                "ticket": ticket_id,
                "rule_id": ticket["rule_id"],
                "version": ticket["version"],
                "resolution": text,
            },
        )
        return get_ticket(conn, ticket_id)
