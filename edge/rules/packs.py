"""Rule packs (规则包): a bundle of rules HQ signs and ships through the sync channel, or one shipped with the box.

A pack is `{description?, state?: active|draft, rules: [<rule>...]}` (`rules.yaml` or `rules.json` in a signed
`rule_pack` package, docs/packages.md; a built-in pack in `edge/rules/data/packs/<name>.yaml` adds `name` and
`version`). Every rule is checked with `validate_rule` before anything is written.

Putting a pack version in force (install, upgrade, rollback, removal) is one function over the connection, run
in the package's commit transaction, so it is all or nothing:

- each rule of the version gets a rule version with origin `pack:<name>@<version>` (`builtin:` for built-in
  packs): the same document as a version it had before is reused (so a rollback restores that version exactly,
  with its number), anything else is a new version;
- the rules arrive active (HQ reviewed them: the package signature is recorded as the review) unless the pack
  says `state: draft`, in which case the new versions wait for a local review while the old ones keep acting;
- rules of the pack that the version no longer has are withdrawn;
- local overrides (enabled, params) are not touched: they survive upgrade and rollback.

A rule id the pack shares with a local rule or another pack's rule refuses the whole pack.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from edge.rules.actions import restore_parameter_changes
from edge.rules.errors import RuleError, RuleInvalid
from edge.rules.governance import activate
from edge.rules.model import Rule, validate_rule
from edge.rules.store import (
    atomic,
    canonical,
    insert_version,
    known_rules,
    refresh_state,
    review,
    sha256_of,
)

SOURCES = {"package": "pack", "builtin": "builtin"}
MAX_RULES = 1000
MAX_PROBLEMS = 50
PACK_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"

# The shape of a pack's file; each rule is then checked by validate_rule (edge/rules/model.py).
PACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["rules"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": PACK_NAME},
        "version": {"type": "integer", "minimum": 1},
        "description": {"type": "string", "maxLength": 2000},
        "state": {"enum": ["active", "draft"]},
        "rules": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_RULES,
            "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
        },
    },
}


class RulePackInvalid(RuleInvalid):
    """The pack's file or one of its rules is refused; `problems` lists each with the rule it is about."""

    code = "rule_pack_invalid"


class RulePackConflict(RuleError):
    code = "rule_pack_conflict"
    status = 409


class UnknownRulePack(RuleError):
    code = "unknown_rule_pack"
    status = 404


@dataclass(frozen=True, slots=True)
class PackContent:
    """A pack that passed every check."""

    description: str | None
    state: str
    rules: tuple[Mapping[str, Any], ...]
    name: str | None = None
    version: int | None = None

    @property
    def rule_ids(self) -> list[str]:
        return [str(r["id"]) for r in self.rules]


def parse_pack(doc: Any, where: str = "rules") -> PackContent:
    """Check a pack's parsed file: the shape, then every rule with `validate_rule` (the pack's rules together, for
    the loop check). Raises RulePackInvalid listing every problem."""
    problems = [
        f"{where}: {'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message[:200]}"
        for e in Draft202012Validator(PACK_SCHEMA).iter_errors(doc)
    ]
    if problems:
        raise _invalid(problems)
    rules: list[Mapping[str, Any]] = list(doc["rules"])
    ids = [str(r["id"]) for r in rules]
    problems = [f"{where}: rule id {i!r} appears twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        raise _invalid(problems)
    validated = _validate_all(rules, {}, where)
    normalised = tuple(validated[i].to_dict() for i in ids)
    return PackContent(
        doc.get("description"), doc.get("state", "active"), normalised, doc.get("name"), doc.get("version")
    )


def _invalid(problems: Sequence[str]) -> RulePackInvalid:
    first = problems[0]
    more = f" (+{len(problems) - 1})" if len(problems) > 1 else ""
    return RulePackInvalid(
        f"规则包无效: {first}{more}", f"rule pack refused: {first}{more}", problems=list(problems[:MAX_PROBLEMS])
    )


def _validate_all(rules: Sequence[Mapping[str, Any]], others: Mapping[str, Rule], where: str) -> dict[str, Rule]:
    """Each rule validated alone, then again with the pack's other rules and `others` (the loop check)."""
    problems: list[str] = []
    alone: dict[str, Rule] = {}
    for index, rule in enumerate(rules):
        try:
            alone[str(rule["id"])] = validate_rule(rule)
            canonical(rule)
        except RuleInvalid as error:
            problems.append(f"{where}: rules[{index}] ({rule.get('id')}): {error.code}: {error.message_en}")
    if problems:
        raise _invalid(problems)
    for index, rule in enumerate(rules):
        rule_id = str(rule["id"])
        known = {**others, **{k: v for k, v in alone.items() if k != rule_id}}
        known.pop(rule_id, None)
        try:
            validate_rule(rule, known_rules=known)
        except RuleInvalid as error:
            problems.append(f"{where}: rules[{index}] ({rule_id}): {error.code}: {error.message_en}")
    if problems:
        raise _invalid(problems)
    return alone


def load_pack_text(text: str | bytes, filename: str) -> PackContent:
    """Parse `rules.yaml` / `rules.json` (or a built-in pack file) and check it."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        doc = json.loads(text) if filename.endswith(".json") else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError, RecursionError) as exc:
        raise _invalid([f"{filename}: does not parse: {str(exc)[:200]}"]) from None
    return parse_pack(doc, filename)


# --- putting a pack version in force (runs in the caller's transaction) -------------------------------------


def _origin(source: str, name: str, version: int) -> str:
    return f"{SOURCES[source]}:{name}@{version}"


def _owned_by(row: sqlite3.Row, source: str, name: str) -> bool:
    return bool(row["pack"] == name and str(row["origin"]).startswith(f"{SOURCES[source]}:"))


def install_pack(
    conn: sqlite3.Connection,
    *,
    name: str,
    version: int,
    source: str,
    content: PackContent,
    actor: str,
    now: datetime,
    signature: str | None = None,
    install_id: int | None = None,
) -> dict[str, Any]:
    """Install or upgrade: record the pack version and put its rules in force (see the module docstring)."""
    with atomic(conn, "rule_pack"):
        text = canonical({"rules": list(content.rules)})
        conn.execute(
            "UPDATE rule_packs SET in_force = 0, removed_at = ? WHERE source = ? AND name = ? AND in_force = 1",
            (now.isoformat(), source, name),
        )
        conn.execute(
            "INSERT INTO rule_packs (name, version, source, description, rules, rule_ids, state, signature, sha256,"
            " install_id, in_force, installed_by, installed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (source, name, version) DO UPDATE SET description = excluded.description,"
            " rules = excluded.rules, rule_ids = excluded.rule_ids, state = excluded.state,"
            " signature = excluded.signature, sha256 = excluded.sha256, install_id = excluded.install_id,"
            " in_force = 1, installed_by = excluded.installed_by, installed_at = excluded.installed_at,"
            " removed_at = NULL",
            (
                name,
                version,
                source,
                content.description,
                json.dumps(list(content.rules), ensure_ascii=False),
                json.dumps(content.rule_ids),
                content.state,
                signature,
                sha256_of(text),
                install_id,
                actor,
                now.isoformat(),
            ),
        )
        result = _put_in_force(conn, source, name, version, content, actor, now, signature)
        audit_pack(conn, now, actor, "rule_pack.install", source, name, version=version, **result)
        return {"name": name, "version": version, "source": source, **result}


def remove_pack(
    conn: sqlite3.Connection, *, name: str, source: str, actor: str, now: datetime, to_version: int = 0
) -> dict[str, Any]:
    """Roll back to `to_version` of the pack (its rules exactly as that version had them), or remove the pack
    (`to_version` 0: its rules are withdrawn). Overrides stay."""
    with atomic(conn, "rule_pack"):
        current = conn.execute(
            "SELECT version FROM rule_packs WHERE source = ? AND name = ? AND in_force = 1", (source, name)
        ).fetchone()
        conn.execute(
            "UPDATE rule_packs SET in_force = 0, removed_at = ? WHERE source = ? AND name = ? AND in_force = 1",
            (now.isoformat(), source, name),
        )
        content = PackContent(None, "active", ())
        if to_version:
            row = conn.execute(
                "SELECT * FROM rule_packs WHERE source = ? AND name = ? AND version = ?", (source, name, to_version)
            ).fetchone()
            if row is None:
                raise UnknownRulePack(
                    f"本机没有规则包 {name} 第 {to_version} 版的规则，无法回滚到它",
                    f"this box does not hold the rules of pack {name} version {to_version}: cannot roll back to it",
                    name=name,
                    version=to_version,
                )
            conn.execute("UPDATE rule_packs SET in_force = 1, removed_at = NULL WHERE id = ?", (int(row["id"]),))
            content = PackContent(row["description"], row["state"], tuple(json.loads(row["rules"])))
            signature = row["signature"]
        else:
            signature = None
        before = _active_versions(conn, source, name)
        result: dict[str, Any] = dict(_put_in_force(conn, source, name, to_version, content, actor, now, signature))
        # What the withdrawn versions changed in the plan goes back too (a value changed since by someone else
        # stays, listed in parameters_kept): the previous behaviour, and its state, exactly.
        after = _active_versions(conn, source, name)
        kept: list[dict[str, Any]] = []
        restored = 0
        for rule_id, version in sorted(before.items()):
            if after.get(rule_id) != version:
                restored += len(
                    restore_parameter_changes(conn, actor, now, rule_id=rule_id, version=version, kept=kept)
                )
        result.update(parameters_restored=restored, parameters_kept=kept)
        audit_pack(
            conn,
            now,
            actor,
            "rule_pack.rollback",
            source,
            name,
            from_version=None if current is None else int(current[0]),
            to_version=to_version,
            **result,
        )
        return {
            "name": name,
            "source": source,
            "from_version": None if current is None else int(current[0]),
            "to_version": to_version,
            **result,
        }


def _active_versions(conn: sqlite3.Connection, source: str, name: str) -> dict[str, int]:
    """The version in force of each rule the pack owns."""
    return {
        str(row["id"]): int(row["active_version"])
        for row in conn.execute("SELECT * FROM rules WHERE pack = ? AND active_version IS NOT NULL", (name,))
        if _owned_by(row, source, name)
    }


def _put_in_force(
    conn: sqlite3.Connection,
    source: str,
    name: str,
    version: int,
    content: PackContent,
    actor: str,
    now: datetime,
    signature: str | None,
) -> dict[str, list[str]]:
    origin = _origin(source, name, version) if version else ""
    owned = {
        row["id"]: row
        for row in conn.execute("SELECT * FROM rules WHERE pack = ?", (name,)).fetchall()
        if _owned_by(row, source, name)
    }
    target_ids = set(content.rule_ids)
    conflicts = [
        f"{row['id']} ({row['origin']})"
        for row in conn.execute(
            f"SELECT id, origin, pack FROM rules WHERE id IN ({', '.join('?' * len(target_ids))})", tuple(target_ids)
        ).fetchall()
        if row["id"] not in owned
    ]
    if conflicts:
        raise RulePackConflict(
            f"规则包 {name} 的规则编号已被其他规则使用: {', '.join(conflicts)}",
            f"rule pack {name} uses rule ids other rules hold: {', '.join(conflicts)}",
            name=name,
            rules=conflicts,
        )
    if content.rules:  # the loop check against every rule in force outside the pack
        others = {k: v for k, v in known_rules(conn, active_only=True).items() if k not in owned}
        _validate_all(content.rules, others, f"{name}@{version}")
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    for document in content.rules:
        rule_id = str(document["id"])
        text = canonical(document)
        digest = sha256_of(text)
        at = now.isoformat()
        if rule_id not in owned:
            conn.execute(
                "INSERT INTO rules (id, state, latest_version, origin, pack, created_by, created_at, updated_at)"
                " VALUES (?, 'draft', 1, ?, ?, ?, ?, ?)",
                (rule_id, origin, name, actor, at, at),
            )
            added.append(rule_id)
        reuse = conn.execute(
            "SELECT version, state, approved_at FROM rule_versions WHERE rule_id = ? AND sha256 = ?"
            " AND origin LIKE ? ORDER BY version DESC LIMIT 1",
            (rule_id, digest, f"{SOURCES[source]}:{name}@%"),
        ).fetchone()
        if reuse is not None:
            number = int(reuse["version"])
            was = reuse["state"]
            if was == "active":
                unchanged.append(rule_id)
            elif rule_id not in added:
                updated.append(rule_id)
            conn.execute(
                "UPDATE rule_versions SET origin = ?, updated_at = ? WHERE rule_id = ? AND version = ?",
                (origin, at, rule_id, number),
            )
            reviewed = _arrives_active(document, content) or reuse["approved_at"] is not None or was == "active"
            if reviewed:
                activate(conn, rule_id, number, now)
            elif was != "draft":
                conn.execute(
                    "UPDATE rule_versions SET state = 'draft' WHERE rule_id = ? AND version = ?", (rule_id, number)
                )
        else:
            latest = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM rule_versions WHERE rule_id = ?", (rule_id,)
            ).fetchone()
            number = int(latest[0]) + 1
            # a pending draft of an earlier pack version gives way to this one
            conn.execute(
                "UPDATE rule_versions SET state = 'withdrawn', updated_at = ? WHERE rule_id = ?"
                " AND state IN ('draft', 'in_review')",
                (at, rule_id),
            )
            insert_version(conn, document, number, "draft", origin, actor, now)
            if _arrives_active(document, content):
                activate(conn, rule_id, number, now)
            if rule_id not in added:
                updated.append(rule_id)
        conn.execute("UPDATE rules SET origin = ?, pack = ? WHERE id = ?", (origin, name, rule_id))
        state = refresh_state(conn, rule_id, now)
        review(
            conn,
            rule_id,
            number,
            "pack_installed",
            None,
            state,
            actor,
            now,
            reason=f"{origin} ({content.state})",
            signature=signature,
        )
    withdrawn: list[str] = []
    for rule_id in sorted(set(owned) - target_ids):
        rows = conn.execute(
            "SELECT version, state FROM rule_versions WHERE rule_id = ? AND state IN ('active', 'draft', 'in_review')",
            (rule_id,),
        ).fetchall()
        conn.execute(
            "UPDATE rule_versions SET state = 'withdrawn', updated_at = ? WHERE rule_id = ?"
            " AND state IN ('active', 'draft', 'in_review')",
            (now.isoformat(), rule_id),
        )
        refresh_state(conn, rule_id, now)
        for row in rows:
            review(
                conn,
                rule_id,
                int(row["version"]),
                "pack_withdrawn",
                row["state"],
                "withdrawn",
                actor,
                now,
                reason=f"{SOURCES[source]}:{name}@{version}" if version else f"{SOURCES[source]}:{name} removed",
            )
        withdrawn.append(rule_id)
    return {"added": added, "updated": updated, "unchanged": unchanged, "withdrawn": withdrawn}


def _arrives_active(document: Mapping[str, Any], content: PackContent) -> bool:
    """A pack's rule arrives active unless the rule or the pack says `state: draft`."""
    return str(document.get("state") or content.state) == "active"


def audit_pack(
    conn: sqlite3.Connection, now: datetime, actor: str, action: str, source: str, name: str, **detail: Any
) -> None:
    from edge.ledger.audit import append_audit

    append_audit(
        conn,
        ts=now.isoformat(),
        actor=actor,
        device=None,
        action=action,
        object=f"rule_pack:{SOURCES[source]}:{name}",
        detail={"pack": name, "source": source, **detail},
    )


# --- built-in packs ------------------------------------------------------------------------------------


def builtin_packs() -> list[PackContent]:
    """The packs shipped in edge/rules/data/packs/, each checked (a broken one fails here, in the tests)."""
    folder = resources.files("edge.rules").joinpath("data", "packs")
    packs: list[PackContent] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            content = load_pack_text(entry.read_text(encoding="utf-8"), entry.name)
            if content.name != entry.name[: -len(".yaml")] or content.version is None:
                raise _invalid([f"{entry.name}: a built-in pack names itself (name: file name) and its version"])
            packs.append(content)
    return packs


def install_builtin(
    conn: sqlite3.Connection, actor: str, now: datetime, names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Install the built-in packs (all, or those named) whose shipped version is not the one in force."""
    results: list[dict[str, Any]] = []
    shipped = {str(p.name): p for p in builtin_packs()}
    unknown = sorted(set(names or ()) - set(shipped))
    if unknown:
        raise UnknownRulePack(
            f"没有这个内置规则包: {', '.join(unknown)} (有: {', '.join(sorted(shipped))})",
            f"no such built-in rule pack: {', '.join(unknown)} (there are: {', '.join(sorted(shipped))})",
            names=unknown,
        )
    for name, content in shipped.items():
        assert content.version is not None  # builtin_packs() checked it
        if names and name not in names:
            continue
        row = conn.execute(
            "SELECT version, sha256 FROM rule_packs WHERE source = 'builtin' AND name = ? AND in_force = 1", (name,)
        ).fetchone()
        if row is not None and int(row["version"]) == content.version:
            results.append({"name": name, "version": content.version, "source": "builtin", "installed": False})
            continue
        result = install_pack(
            conn, name=name, version=content.version, source="builtin", content=content, actor=actor, now=now
        )
        results.append({**result, "installed": True})
    return results


# --- reads ----------------------------------------------------------------------------------------------


def list_packs(conn: sqlite3.Connection, *, all_versions: bool = False) -> list[dict[str, Any]]:
    """The packs in force (or every version this box held), with their rules' ids and states."""
    where = "" if all_versions else " WHERE in_force = 1"
    out: list[dict[str, Any]] = []
    for row in conn.execute(f"SELECT * FROM rule_packs{where} ORDER BY source, name, version DESC").fetchall():
        ids = json.loads(row["rule_ids"])
        states = {
            r["id"]: r["state"]
            for r in conn.execute(
                f"SELECT id, state FROM rules WHERE id IN ({', '.join('?' * len(ids))})", tuple(ids)
            ).fetchall()
        }
        out.append(
            {
                "name": row["name"],
                "version": int(row["version"]),
                "source": row["source"],
                "origin": _origin(row["source"], row["name"], int(row["version"])),
                "description": row["description"],
                "state": row["state"],
                "in_force": bool(row["in_force"]),
                "signed": row["signature"] is not None,
                "sha256": row["sha256"],
                "install_id": row["install_id"],
                "installed_by": row["installed_by"],
                "installed_at": row["installed_at"],
                "removed_at": row["removed_at"],
                "rules": [{"id": i, "state": states.get(i)} for i in ids],
            }
        )
    return out
