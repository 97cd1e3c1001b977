"""Chart of accounts (科目表): shipped templates as data files a company can replace.

`small_enterprise` follows 小企业会计准则 (5001, 5401, 5711, ...), `enterprise` follows 企业会计准则 (6001,
6401, 6711, ...). A chart is a JSON file `{"name", "standard", "accounts": [{"code", "name", "name_en",
"kind"}]}`; an account's parent is the longest other code that is a prefix of its own, and only leaf
accounts take postings.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edge.finance.errors import ChartError

TEMPLATES = ("small_enterprise", "enterprise")
KINDS = ("asset", "liability", "equity", "income", "expense", "cost")


@dataclass(frozen=True, slots=True)
class Account:
    code: str
    name: str
    name_en: str
    kind: str
    parent: str | None
    leaf: bool


@dataclass(frozen=True, slots=True)
class Chart:
    name: str
    standard: str
    accounts: tuple[Account, ...]

    def leaves(self) -> dict[str, bool]:
        return {a.code: a.leaf for a in self.accounts}


def load_chart(template_or_path: str) -> Chart:
    """A shipped template by name, or a company's own chart from a JSON file."""
    if template_or_path in TEMPLATES:
        text = resources.files("edge.finance").joinpath("data", f"chart_{template_or_path}.json").read_text("utf-8")
        where = template_or_path
    else:
        path = Path(template_or_path)
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChartError(
                f"科目表文件无法读取: {path}", f"cannot read the chart file {path}: {exc}", file=str(path)
            ) from exc
        where = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChartError(
            f"科目表不是有效的 JSON ({where}, 第 {exc.lineno} 行)",
            f"the chart is not valid JSON ({where}, line {exc.lineno}): {exc.msg}",
            file=where,
            line=exc.lineno,
        ) from exc
    return parse_chart(data, where)


def parse_chart(data: Any, where: str = "chart") -> Chart:
    if not isinstance(data, dict) or not isinstance(data.get("accounts"), list) or not data["accounts"]:
        raise ChartError("科目表须含非空的 accounts 列表", f"{where}: a chart needs a non-empty `accounts` list")
    seen: dict[str, dict[str, str]] = {}
    for i, raw in enumerate(data["accounts"], start=1):
        if not isinstance(raw, dict):
            raise ChartError(f"第 {i} 个科目格式错误", f"{where}: account {i} is not an object", index=i)
        fields = {k: raw.get(k) for k in ("code", "name", "name_en", "kind")}
        code = fields["code"]
        if not isinstance(code, str) or not code.isdigit() or not 4 <= len(code) <= 12:
            raise ChartError(
                f"第 {i} 个科目代码无效: {code!r} (应为 4 到 12 位数字)",
                f"{where}: account {i} code {code!r} must be 4..12 digits",
                index=i,
            )
        for key in ("name", "name_en"):
            value = fields[key]
            if not isinstance(value, str) or not 1 <= len(value) <= 100:
                raise ChartError(
                    f"科目 {code} 的 {key} 无效", f"{where}: account {code}: {key} must be 1..100 characters"
                )
        if fields["kind"] not in KINDS:
            raise ChartError(
                f"科目 {code} 的类别无效: {fields['kind']!r}",
                f"{where}: account {code}: kind must be one of {', '.join(KINDS)}",
                allowed=list(KINDS),
            )
        if code in seen:
            raise ChartError(f"科目代码重复: {code}", f"{where}: account code {code} appears twice", code=code)
        seen[code] = {k: str(v) for k, v in fields.items()}
    codes = sorted(seen)
    accounts = []
    for code in codes:
        parents = [c for c in codes if c != code and code.startswith(c)]
        parent = max(parents, key=len) if parents else None
        leaf = not any(c != code and c.startswith(code) for c in codes)
        f = seen[code]
        accounts.append(Account(code, f["name"], f["name_en"], f["kind"], parent, leaf))
    return Chart(str(data.get("name", where)), str(data.get("standard", "")), tuple(accounts))


def install_chart(conn: sqlite3.Connection, chart: Chart) -> int:
    """Install or update the chart in the database; return the accounts added.

    Accounts already posted to are never removed or turned into parents (their postings would then sit
    on a non-leaf account); names may change.
    """
    posted = {str(row[0]) for row in conn.execute("SELECT DISTINCT account FROM voucher_lines")}
    by_code = {a.code: a for a in chart.accounts}
    for code in sorted(posted):
        account = by_code.get(code)
        if account is None or not account.leaf:
            raise ChartError(
                f"科目 {code} 已有凭证，新科目表中不能删除或增设下级",
                f"account {code} has postings; the new chart may not drop it or give it sub-accounts",
                account=code,
            )
    before = conn.total_changes
    conn.executemany(
        "INSERT INTO accounts (code, name, name_en, kind, parent, leaf) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (code) DO UPDATE SET name = excluded.name, name_en = excluded.name_en, kind = excluded.kind,"
        " parent = excluded.parent, leaf = excluded.leaf",
        [(a.code, a.name, a.name_en, a.kind, a.parent, int(a.leaf)) for a in chart.accounts],
    )
    added = conn.total_changes - before
    # Accounts of an earlier chart that the new one drops (and that have no postings) are removed.
    conn.executemany("DELETE FROM accounts WHERE code = ?", [(c,) for c in installed_codes(conn) - set(by_code)])
    return added


def installed_codes(conn: sqlite3.Connection) -> set[str]:
    return {str(row[0]) for row in conn.execute("SELECT code FROM accounts")}
