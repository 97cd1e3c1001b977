"""Voucher rule versions (凭证规则版本): shipped tables, installing a company's new version, listing them.

A version takes effect from a date and never rewrites vouchers already posted: it must start after the
last voucher date and not before today, and once installed it is never changed (a correction is a new
version). Each voucher records the version that produced it (`vouchers.rule_version`).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime
from importlib import resources
from typing import Any

from edge.finance.errors import RuleTableError
from edge.ledger.audit import append_audit
from edge.ledger.vouchers import RuleBook, VoucherRuleError, VoucherRules, chart_leaves, load_rules


def shipped_tables(standard: str) -> list[dict[str, Any]]:
    """The rule tables shipped for a chart standard (small_enterprise or enterprise), oldest first."""
    folder = resources.files("edge.finance").joinpath("data", "voucher_rules")
    tables = [
        json.loads(entry.read_text("utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json") and entry.name.startswith(f"{standard}-")
    ]
    return sorted(tables, key=lambda t: str(t["effective_from"]))


def validate_table(conn: sqlite3.Connection, data: Any) -> VoucherRules:
    """Parse a rule table against the installed chart; a clear error names what is wrong."""
    try:
        return load_rules(data, chart_leaves(conn))
    except VoucherRuleError as exc:
        raise RuleTableError(f"凭证规则表无效: {exc.zh}", f"invalid voucher rule table: {exc.en}") from exc


def install_shipped(conn: sqlite3.Connection, standard: str, now: datetime) -> int:
    """Install the shipped versions not yet installed (at set-up); return how many were added."""
    installed = {str(r[0]) for r in conn.execute("SELECT version FROM voucher_rule_versions")}
    added = 0
    for table in shipped_tables(standard):
        rules = validate_table(conn, table)
        if rules.version in installed:
            continue
        _insert(conn, rules, now, "system", audit=False)  # part of set-up, like the chart
        added += 1
    return added


def install_version(conn: sqlite3.Connection, data: Any, *, actor: str, now: datetime, today: date) -> VoucherRules:
    """Install a company's new rule version, effective from its `effective_from` date."""
    rules = validate_table(conn, data)
    if conn.execute("SELECT 1 FROM voucher_rule_versions WHERE version = ?", (rules.version,)).fetchone():
        raise RuleTableError(
            f"凭证规则版本 {rules.version} 已安装，版本一经安装不可修改，请使用新版本号",
            f"voucher rule version {rules.version} is installed already and is never changed; use a new version",
            version=rules.version,
        )
    last = conn.execute("SELECT MAX(date) FROM vouchers").fetchone()[0]
    earliest = today if last is None else max(today, date.fromisoformat(last))
    if rules.effective_from < earliest or (last is not None and rules.effective_from <= date.fromisoformat(last)):
        raise RuleTableError(
            f"生效日期 {rules.effective_from} 过早: 须晚于最后一张凭证日期 {last} 且不早于今天 {today}，"
            "已记账的凭证不会被改写",
            f"effective date {rules.effective_from} is too early: it must be after the last voucher date {last}"
            f" and not before today {today}; posted vouchers are never rewritten",
            effective_from=rules.effective_from.isoformat(),
            last_voucher_date=last,
        )
    if conn.execute(
        "SELECT 1 FROM voucher_rule_versions WHERE effective_from = ?", (rules.effective_from.isoformat(),)
    ).fetchone():
        raise RuleTableError(
            f"已有版本自 {rules.effective_from} 生效", f"another version takes effect on {rules.effective_from}"
        )
    _insert(conn, rules, now, actor)
    return rules


def _insert(conn: sqlite3.Connection, rules: VoucherRules, now: datetime, actor: str, *, audit: bool = True) -> None:
    conn.execute(
        "INSERT INTO voucher_rule_versions (version, effective_from, chart, body, installed_at, installed_by)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (rules.version, rules.effective_from.isoformat(), rules.chart, rules.body, now.isoformat(), actor),
    )
    if not audit:
        return
    append_audit(
        conn,
        ts=now.isoformat(),
        actor=actor,
        device=None,
        action="rules.install",
        object=f"voucher_rules:{rules.version}",
        detail={"version": rules.version, "effective_from": rules.effective_from.isoformat(), "chart": rules.chart},
    )


def list_versions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT version, effective_from, chart, installed_at, installed_by,"
        " (SELECT COUNT(*) FROM vouchers v WHERE v.rule_version = r.version) AS vouchers"
        " FROM voucher_rule_versions r ORDER BY effective_from"
    ).fetchall()
    return [dict(row) for row in rows]


def get_version(conn: sqlite3.Connection, version: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM voucher_rule_versions WHERE version = ?", (version,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def rule_book() -> RuleBook:
    """The company's rule book as the database holds it (re-read when a version is installed)."""
    return RuleBook(from_db=True)
