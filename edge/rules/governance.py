"""Rule governance (规则审核): draft -> in_review -> active -> retired, each step by the right person, audited.

- submit: the author (or any writer) sends the newest draft to a named reviewer. The rule must name its owner and
  its business impact (what it changes, for whom, how much); the reviewer must be an active user holding
  `rules:review` who is not the version's author.
- approve: the named reviewer, or any other `rules:review` holder who is not the author, puts the version in
  force; the version it replaces becomes `superseded`. The loop check runs again against the rules in force.
- reject: back to draft with a reason (the author edits and submits again).
- retire: the rule stops acting; its active version and any pending version become `retired`.

Every transition is a row in `rule_reviews` and in the audit trail with the rule's id and version.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from edge.rules.errors import RuleError, RuleInvalid
from edge.rules.model import validate_rule
from edge.rules.store import (
    LOCAL,
    RuleFromPack,
    RuleStateError,
    atomic,
    audit,
    get_rule,
    known_rules,
    refresh_state,
    review,
    rule_row,
    version_row,
)
from edge.security.roles import has_permission
from edge.security.users import get_user

MAX_REASON = 1000
REVIEW_PERMISSION = "rules:review"
IMPACT_FIELDS = ("what", "who", "how_much")
IMPACT_NAMES = {
    "what": ("改变什么", "what it changes"),
    "who": ("影响谁", "for whom"),
    "how_much": ("影响多大", "how much"),
}


class ReviewRefused(RuleError):
    """The transition is not allowed to this person (the author approving their own rule, a reviewer who
    cannot review, ...)."""

    code = "rule_review_refused"
    status = 409


class RuleNotReady(RuleInvalid):
    """The rule lacks what a review needs: an owner, the business impact."""

    code = "rule_not_ready"


def _reason(value: Any, field: str = "reason") -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_REASON:
        raise RuleInvalid(
            f"须写明{'理由' if field == 'reason' else field} (1..{MAX_REASON} 字)",
            f"a {field} is required (1..{MAX_REASON} characters)",
            field=field,
        )
    return text


def readiness_problems(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(field, zh, en) of what a rule lacks before it can be submitted for review."""
    problems: list[tuple[str, str, str]] = []
    owner = document.get("owner")
    if not isinstance(owner, str) or not owner.strip():
        problems.append(("owner", "缺少负责人 (owner)", "the rule names no owner"))
    impact = document.get("impact")
    impact = impact if isinstance(impact, Mapping) else {}
    for field in IMPACT_FIELDS:
        value = impact.get(field)
        if not isinstance(value, str) or not value.strip():
            zh, en = IMPACT_NAMES[field]
            problems.append(
                (f"impact.{field}", f"缺少业务影响 impact.{field} ({zh})", f"the impact lacks {field} ({en})")
            )
    return problems


def _latest(conn: sqlite3.Connection, rule_id: str) -> tuple[sqlite3.Row, sqlite3.Row]:
    rule = rule_row(conn, rule_id)
    return rule, version_row(conn, rule_id, int(rule["latest_version"]))


def _wrong_state(rule_id: str, version: int, state: str, wanted: str, action_zh: str, action_en: str) -> RuleStateError:
    return RuleStateError(
        f"规则 {rule_id} 第 {version} 版的状态是 {state}，不能{action_zh} (须为 {wanted})",
        f"rule {rule_id} version {version} is {state}: it cannot be {action_en} (it must be {wanted})",
        rule_id=rule_id,
        version=version,
        state=state,
        expected=wanted,
    )


def writers_of(conn: sqlite3.Connection, rule_id: str, version: int, author: str) -> set[str]:
    """Everyone who wrote this version: its author and whoever edited it since (a second person may review only
    what they did not write themselves)."""
    rows = conn.execute(
        "SELECT DISTINCT actor FROM rule_reviews WHERE rule_id = ? AND version = ? AND action IN ('created', 'edited')",
        (rule_id, version),
    ).fetchall()
    return {author, *(str(r[0]) for r in rows)}


def submit(conn: sqlite3.Connection, rule_id: str, reviewer: str, actor: str, now: datetime) -> dict[str, Any]:
    """Send the newest draft to `reviewer`."""
    with atomic(conn):
        _, latest = _latest(conn, rule_id)
        version = int(latest["version"])
        if latest["state"] != "draft":
            raise _wrong_state(rule_id, version, latest["state"], "draft", "提交审核", "submitted")
        problems = readiness_problems(json.loads(latest["document"]))
        if problems:
            raise RuleNotReady(
                "提交审核前须写明: " + "; ".join(p[1] for p in problems),
                "before review the rule needs: " + "; ".join(p[2] for p in problems),
                fields=[p[0] for p in problems],
                rule_id=rule_id,
                version=version,
            )
        name = reviewer.strip() if isinstance(reviewer, str) else ""
        if not name:
            raise RuleInvalid("须指定审核人", "a reviewer must be named", field="reviewer")
        if name in writers_of(conn, rule_id, version, latest["author"]) | {actor}:
            raise ReviewRefused(
                f"审核人不能是规则的作者、修改人或提交人 ({name})",
                f"the reviewer cannot be one who wrote or edited this version, or who submits it ({name})",
                reviewer=name,
                author=latest["author"],
            )
        user = get_user(conn, name)
        if user is None or not user.active or not has_permission(user.role, REVIEW_PERMISSION):
            raise ReviewRefused(
                f"{name} 不是有 {REVIEW_PERMISSION} 权限的在用用户，不能审核规则",
                f"{name} is not an active user holding {REVIEW_PERMISSION}: they cannot review rules",
                reviewer=name,
            )
        at = now.isoformat()
        conn.execute(
            "UPDATE rule_versions SET state = 'in_review', reviewer = ?, submitted_by = ?, submitted_at = ?,"
            " updated_at = ? WHERE rule_id = ? AND version = ?",
            (name, actor, at, at, rule_id, version),
        )
        refresh_state(conn, rule_id, now)
        review(conn, rule_id, version, "submitted", "draft", "in_review", actor, now, reviewer=name)
        audit(conn, now, actor, "rule.submit", rule_id, version=version, reviewer=name)
        return get_rule(conn, rule_id)


def approve(
    conn: sqlite3.Connection,
    rule_id: str,
    actor: str,
    now: datetime,
    note: str | None = None,
    teams: Collection[str] = (),
) -> dict[str, Any]:
    """Put the version under review in force (the caller checked `rules:review`); never by its author."""
    with atomic(conn):
        _, latest = _latest(conn, rule_id)
        version = int(latest["version"])
        if latest["state"] != "in_review":
            raise _wrong_state(rule_id, version, latest["state"], "in_review", "批准", "approved")
        if actor in writers_of(conn, rule_id, version, latest["author"]) | {latest["submitted_by"]}:
            raise ReviewRefused(
                f"{actor} 写过、改过或提交了这一版规则，不能批准: 须由其他审核人批准",
                f"{actor} wrote, edited or submitted this version of the rule and cannot approve it: another "
                "reviewer must",
                author=latest["author"],
                actor=actor,
                reviewer=latest["reviewer"],
            )
        document = json.loads(latest["document"])
        others = known_rules(conn, exclude=rule_id, active_only=True, teams=teams)
        validate_rule(document, known_rules=others, teams=teams)
        activate(conn, rule_id, version, now)
        conn.execute(
            "UPDATE rule_versions SET approved_by = ?, approved_at = ? WHERE rule_id = ? AND version = ?",
            (actor, now.isoformat(), rule_id, version),
        )
        refresh_state(conn, rule_id, now)
        review(
            conn,
            rule_id,
            version,
            "approved",
            "in_review",
            "active",
            actor,
            now,
            reviewer=latest["reviewer"],
            reason=note,
        )
        audit(conn, now, actor, "rule.approve", rule_id, version=version, reviewer=latest["reviewer"])
        return get_rule(conn, rule_id)


def activate(conn: sqlite3.Connection, rule_id: str, version: int, now: datetime) -> int | None:
    """Make `version` the active one; the version it replaces is superseded. Returns the replaced version."""
    previous = conn.execute(
        "SELECT version FROM rule_versions WHERE rule_id = ? AND state = 'active'", (rule_id,)
    ).fetchone()
    at = now.isoformat()
    if previous is not None and int(previous[0]) != version:
        conn.execute(
            "UPDATE rule_versions SET state = 'superseded', updated_at = ? WHERE rule_id = ? AND version = ?",
            (at, rule_id, int(previous[0])),
        )
    conn.execute(
        "UPDATE rule_versions SET state = 'active', updated_at = ? WHERE rule_id = ? AND version = ?",
        (at, rule_id, version),
    )
    return None if previous is None else int(previous[0])


def reject(conn: sqlite3.Connection, rule_id: str, reason: str, actor: str, now: datetime) -> dict[str, Any]:
    """Send the version under review back to draft with the reviewer's reason."""
    with atomic(conn):
        text = _reason(reason)
        _, latest = _latest(conn, rule_id)
        version = int(latest["version"])
        if latest["state"] != "in_review":
            raise _wrong_state(rule_id, version, latest["state"], "in_review", "驳回", "rejected")
        at = now.isoformat()
        conn.execute(
            "UPDATE rule_versions SET state = 'draft', rejected_by = ?, rejected_at = ?, reject_reason = ?,"
            " updated_at = ? WHERE rule_id = ? AND version = ?",
            (actor, at, text, at, rule_id, version),
        )
        refresh_state(conn, rule_id, now)
        review(conn, rule_id, version, "rejected", "in_review", "draft", actor, now, reason=text)
        audit(conn, now, actor, "rule.reject", rule_id, version=version, reason=text)
        return get_rule(conn, rule_id)


def retire(
    conn: sqlite3.Connection, rule_id: str, actor: str, now: datetime, reason: str | None = None
) -> dict[str, Any]:
    """Stop the rule: its active version and any pending draft or version under review are retired."""
    with atomic(conn):
        rule = rule_row(conn, rule_id)
        if rule["origin"] != LOCAL:
            raise RuleFromPack(rule_id, rule["origin"])
        if rule["state"] == "retired":
            raise RuleStateError(
                f"规则 {rule_id} 已停用", f"rule {rule_id} is retired already", rule_id=rule_id, state="retired"
            )
        at = now.isoformat()
        rows = conn.execute(
            "SELECT version, state FROM rule_versions WHERE rule_id = ? AND state IN ('active', 'draft', 'in_review')"
            " ORDER BY version",
            (rule_id,),
        ).fetchall()
        for row in rows:
            conn.execute(
                "UPDATE rule_versions SET state = 'retired', retired_by = ?, retired_at = ?, updated_at = ?"
                " WHERE rule_id = ? AND version = ?",
                (actor, at, at, rule_id, int(row["version"])),
            )
            review(conn, rule_id, int(row["version"]), "retired", row["state"], "retired", actor, now, reason=reason)
        refresh_state(conn, rule_id, now)
        audit(
            conn,
            now,
            actor,
            "rule.retire",
            rule_id,
            version=rule["active_version"],
            versions=[int(r["version"]) for r in rows],
            reason=reason,
        )
        return get_rule(conn, rule_id)
