"""Scenario modules in the database (场景模块): installed versions, the version in force and its state, decisions,
failures. Plain functions over a connection; the writing ones run in the box's one writer (`writer.execute(fn,
...)`), each inside its transaction, and audit what they change."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.ledger.audit import append_audit
from edge.modules.errors import (
    ModuleManagedByPackage,
    ModuleNoPreviousVersion,
    ModuleNotFound,
    ModuleStateConflict,
    ModuleVersionExists,
    ModuleVersionRolledBack,
)

STATES = ("enabled", "disabled", "failed", "removed")
FAILURE_KINDS = ("raised", "timeout", "died", "memory", "start", "proposal")
MAX_DECISIONS_PER_CALL = 1000


@dataclass(frozen=True, slots=True)
class ModuleInstall:
    """A version to put in force: where its files are and its checked manifest (JSON)."""

    name: str
    version: int
    source: str  # package, local, shipped
    directory: str
    manifest: str
    sha256: str
    actor: str


@dataclass(frozen=True, slots=True)
class InForce:
    """A module's version in force, as the host runs it."""

    name: str
    version: int
    state: str
    directory: str
    manifest: str
    source: str


def _audit(conn: sqlite3.Connection, now: str, actor: str, action: str, name: str, **detail: Any) -> None:
    append_audit(conn, ts=now, actor=actor, device=None, action=action, object=f"module:{name}", detail=detail)


def _history(
    conn: sqlite3.Connection,
    now: str,
    name: str,
    action: str,
    from_version: int | None,
    to_version: int | None,
    reason: str | None,
    actor: str,
) -> None:
    conn.execute(
        "INSERT INTO module_history (at, name, action, from_version, to_version, reason, actor)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now, name, action, from_version, to_version, reason, actor),
    )


def _current(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT name, version, install_id, state, reason, since, changed_by FROM modules WHERE name = ?", (name,)
    ).fetchone()
    return row


def install_version(conn: sqlite3.Connection, record: ModuleInstall, now: str) -> dict[str, Any]:
    """Put `record` in force (enabled): the commit point of an install, upgrade or re-install.

    The same version with the same files is a no-op while in force, and is reinstated after a removal; a version
    not newer than the one in force, or the same version with other files, is refused."""
    current = _current(conn, record.name)
    installed = int(current["version"]) if current is not None else 0
    existing = conn.execute(
        "SELECT id, sha256 FROM module_installs WHERE name = ? AND version = ?", (record.name, record.version)
    ).fetchone()
    if existing is not None:
        if existing["sha256"] != record.sha256:
            raise ModuleVersionExists(record.name, record.version)
        if current is not None and installed == record.version:
            return {"name": record.name, "version": record.version, "previous": installed, "changed": False}
        if current is not None and current["state"] == "removed":
            conn.execute(
                "UPDATE modules SET version = ?, install_id = ?, state = 'enabled', reason = NULL, since = ?,"
                " changed_by = ? WHERE name = ?",
                (record.version, int(existing["id"]), now, record.actor, record.name),
            )
            _history(conn, now, record.name, "reinstalled", 0, record.version, None, record.actor)
            _audit(conn, now, record.actor, "module.reinstall", record.name, version=record.version)
            return {"name": record.name, "version": record.version, "previous": 0, "changed": True}
        raise ModuleVersionRolledBack(record.name, record.version, installed)
    if record.version <= installed:
        raise ModuleStateConflict(
            f"场景模块 {record.name} 版本 {record.version} 不比在用的版本 {installed} 新",
            f"scenario module {record.name} version {record.version} is not newer than the one in force ({installed})",
            module=record.name,
            version=record.version,
            installed=installed,
        )
    state_before = current["state"] if current is not None and installed else None
    install_id = int(
        conn.execute(
            "INSERT INTO module_installs (name, version, previous, state_before, source, directory, manifest, sha256,"
            " installed_at, installed_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.name,
                record.version,
                installed,
                state_before,
                record.source,
                record.directory,
                record.manifest,
                record.sha256,
                now,
                record.actor,
            ),
        ).lastrowid
        or 0
    )
    conn.execute(
        "INSERT INTO modules (name, version, install_id, state, reason, since, changed_by)"
        " VALUES (?, ?, ?, 'enabled', NULL, ?, ?) ON CONFLICT (name) DO UPDATE SET version = excluded.version,"
        " install_id = excluded.install_id, state = 'enabled', reason = NULL, since = excluded.since,"
        " changed_by = excluded.changed_by",
        (record.name, record.version, install_id, now, record.actor),
    )
    _history(conn, now, record.name, "installed", installed, record.version, record.source, record.actor)
    _audit(
        conn,
        now,
        record.actor,
        "module.install",
        record.name,
        version=record.version,
        previous=installed,
        source=record.source,
        sha256=record.sha256,
    )
    return {"name": record.name, "version": record.version, "previous": installed, "changed": True}


def set_state(
    conn: sqlite3.Connection, name: str, state: str, actor: str, now: str, reason: str | None = None
) -> dict[str, Any]:
    """Enable or disable a module (a user), or mark it failed (the host). Removed modules cannot change state."""
    if state not in ("enabled", "disabled", "failed"):
        raise ValueError(state)
    current = _current(conn, name)
    if current is None:
        raise ModuleNotFound(name)
    if current["state"] == "removed":
        raise ModuleStateConflict(
            f"场景模块 {name} 已移除", f"scenario module {name} was removed", module=name, state="removed"
        )
    before = str(current["state"])
    if before != state:
        conn.execute(
            "UPDATE modules SET state = ?, reason = ?, since = ?, changed_by = ? WHERE name = ?",
            (state, reason, now, actor, name),
        )
        version = int(current["version"])
        _history(conn, now, name, state, version, version, reason, actor)
        verb = {"enabled": "enable", "disabled": "disable", "failed": "fail"}[state]
        _audit(conn, now, actor, f"module.{verb}", name, version=version, before=before, reason=reason)
    return {"name": name, "version": int(current["version"]), "state": state, "before": before}


def rollback(conn: sqlite3.Connection, name: str, actor: str, now: str, reason: str | None = None) -> dict[str, Any]:
    """Return to the version in force before the current one, with the state it had then (enabled, disabled)."""
    current = _current(conn, name)
    if current is None:
        raise ModuleNotFound(name)
    if current["state"] == "removed" or current["install_id"] is None:
        raise ModuleNoPreviousVersion(name)
    install = conn.execute(
        "SELECT previous, state_before FROM module_installs WHERE id = ?", (int(current["install_id"]),)
    ).fetchone()
    previous = int(install["previous"])
    if not previous:
        raise ModuleNoPreviousVersion(name)
    target = conn.execute("SELECT id FROM module_installs WHERE name = ? AND version = ?", (name, previous)).fetchone()
    if target is None:
        raise ModuleNoPreviousVersion(name)
    version = int(current["version"])
    # The state it had when it was replaced; a version that had failed comes back disabled (a user re-enables it).
    state = install["state_before"] if install["state_before"] in ("enabled", "disabled") else "disabled"
    conn.execute(
        "UPDATE modules SET version = ?, install_id = ?, state = ?, reason = ?, since = ?, changed_by = ?"
        " WHERE name = ?",
        (previous, int(target["id"]), state, reason, now, actor, name),
    )
    _history(conn, now, name, "rolled_back", version, previous, reason, actor)
    _audit(
        conn, now, actor, "module.rollback", name, **{"from": version, "to": previous, "state": state, "reason": reason}
    )
    return {"name": name, "from_version": version, "to_version": previous, "state": state}


def _install_of(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT i.version, i.previous, i.source FROM modules m JOIN module_installs i ON i.id = m.install_id"
        " WHERE m.name = ? AND m.state != 'removed'",
        (name,),
    ).fetchone()
    return row


def rollback_module(
    conn: sqlite3.Connection, name: str, actor: str, now: str, reason: str | None = None
) -> dict[str, Any]:
    """Roll a module back (API, CLI, broken KPIs). A version that came in a signed package is rolled back as a
    package too (recorded in the package history and reported to HQ); the module follows in the same transaction."""
    install = _install_of(conn, name)
    if install is None:
        raise ModuleNotFound(name) if _current(conn, name) is None else ModuleNoPreviousVersion(name)
    if not int(install["previous"]):
        raise ModuleNoPreviousVersion(name)
    if install["source"] == "package":
        from edge.sync.packages import commit_rollback, current_version

        if current_version(conn, "module", name) == int(install["version"]):
            commit_rollback(conn, "module", name, actor, "modules", now)
            row = _current(conn, name)
            assert row is not None
            if reason:
                conn.execute("UPDATE modules SET reason = ? WHERE name = ?", (reason, name))
            return {
                "name": name,
                "from_version": int(install["version"]),
                "to_version": int(row["version"]),
                "state": row["state"],
            }
    return rollback(conn, name, actor, now, reason)


def package_rolled_back(conn: sqlite3.Connection, name: str, version: int, actor: str, now: str) -> dict[str, Any]:
    """A module package was rolled back (HQ's canary, `storebox packages rollback`, or `rollback_module`): the
    module returns to its previous version; a first version rolled back is taken out of force."""
    install = _install_of(conn, name)
    if install is None or install["source"] != "package" or int(install["version"]) != version:
        return {"name": name, "action": "none"}
    if int(install["previous"]):
        return {**rollback(conn, name, actor, now, "package rolled back"), "action": "rolled_back"}
    return {**remove(conn, name, actor, now), "action": "removed"}


def rollback_or_disable(
    conn: sqlite3.Connection, name: str, version: int, actor: str, now: str, reason: str
) -> dict[str, Any]:
    """The automatic response to broken KPIs: roll back when there is a previous version, else disable. Does
    nothing when `version` is no longer the one in force (a user acted first)."""
    current = _current(conn, name)
    if current is None or int(current["version"]) != version or current["state"] != "enabled":
        return {"name": name, "action": "none"}
    try:
        result = rollback_module(conn, name, actor, now, reason)
        return {**result, "action": "rolled_back"}
    except ModuleNoPreviousVersion:
        result = set_state(conn, name, "disabled", actor, now, reason)
        return {**result, "action": "disabled"}


def remove_by_user(conn: sqlite3.Connection, name: str, actor: str, now: str) -> dict[str, Any]:
    """A user's removal (API, CLI): refused for a module in force from an HQ package (roll the package back)."""
    install = _install_of(conn, name)
    current = _current(conn, name)
    if install is not None and install["source"] == "package" and current is not None and current["state"] != "removed":
        raise ModuleManagedByPackage(name, int(install["version"]))
    return remove(conn, name, actor, now)


def remove(conn: sqlite3.Connection, name: str, actor: str, now: str) -> dict[str, Any]:
    """Take the module out of force (its worker stops); its installed versions and decisions stay on record."""
    current = _current(conn, name)
    if current is None or current["state"] == "removed":
        raise ModuleNotFound(name)
    version = int(current["version"])
    conn.execute(
        "UPDATE modules SET version = 0, install_id = NULL, state = 'removed', reason = NULL, since = ?,"
        " changed_by = ? WHERE name = ?",
        (now, actor, name),
    )
    _history(conn, now, name, "removed", version, 0, None, actor)
    _audit(conn, now, actor, "module.remove", name, version=version)
    return {"name": name, "from_version": version, "state": "removed"}


def record_failure(
    conn: sqlite3.Connection,
    name: str,
    version: int,
    kind: str,
    message: str,
    detail: Mapping[str, Any],
    now: str,
    disable: bool = False,
) -> bool:
    """Keep a failed call; with `disable`, mark the module failed when that version is still enabled. True when
    the state changed (the caller then alerts)."""
    conn.execute(
        "INSERT INTO module_failures (module, version, at, kind, message, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (name, version, now, kind, message[:2000], json.dumps(dict(detail), ensure_ascii=False, default=str)[:8000]),
    )
    if not disable:
        return False
    current = _current(conn, name)
    if current is None or int(current["version"]) != version or current["state"] != "enabled":
        return False
    reason = f"{kind}: {message}"[:500]
    conn.execute(
        "UPDATE modules SET state = 'failed', reason = ?, since = ?, changed_by = 'module-host' WHERE name = ?",
        (reason, now, name),
    )
    _history(conn, now, name, "failed", version, version, reason, "module-host")
    _audit(conn, now, "module-host", "module.fail", name, version=version, kind=kind, message=message[:500])
    return True


def record_decisions(
    conn: sqlite3.Connection,
    name: str,
    version: int,
    decisions: Sequence[Mapping[str, Any]],
    event_key: str | None,
    now: str,
) -> int:
    """Store the decisions of one call (a decision already stored under its key is kept as it was)."""
    added = 0
    for d in decisions[:MAX_DECISIONS_PER_CALL]:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO module_decisions (module, version, key, subject, predicted, check_on, event_key,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                version,
                str(d["key"]),
                None if d.get("subject") is None else str(d["subject"]),
                json.dumps(d.get("predicted"), ensure_ascii=False, default=str),
                str(d["check_on"]),
                event_key,
                now,
            ),
        )
        added += cursor.rowcount
    return added


def record_outcomes(conn: sqlite3.Connection, outcomes: Iterable[tuple[int, bool | None]], now: str) -> int:
    """Set the outcome of judged decisions (right = True; None = void: closed without an outcome, never counted in
    the KPIs); each decision is judged once."""
    done = 0
    for decision_id, right in outcomes:
        cursor = conn.execute(
            "UPDATE module_decisions SET outcome = ?, judged_at = ? WHERE id = ? AND judged_at IS NULL",
            (None if right is None else int(right), now, decision_id),
        )
        done += cursor.rowcount
    return done


# --- reads ----------------------------------------------------------------------------------------------------


def in_force(conn: sqlite3.Connection) -> list[InForce]:
    """Every module with a version in force (any state but removed)."""
    rows = conn.execute(
        "SELECT m.name, m.version, m.state, i.directory, i.manifest, i.source FROM modules m"
        " JOIN module_installs i ON i.id = m.install_id WHERE m.state != 'removed' ORDER BY m.name"
    ).fetchall()
    return [InForce(r[0], int(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


def module_row(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT m.name, m.version, m.state, m.reason, m.since, m.changed_by, i.source, i.previous, i.manifest,"
        " i.installed_at, i.installed_by, i.directory FROM modules m LEFT JOIN module_installs i ON i.id = m.install_id"
        " WHERE m.name = ?",
        (name,),
    ).fetchone()
    if row is None:
        raise ModuleNotFound(name)
    out = dict(row)
    out["manifest"] = json.loads(out["manifest"]) if out["manifest"] else None
    out["versions"] = [
        dict(r)
        for r in conn.execute(
            "SELECT version, previous, source, installed_at, installed_by FROM module_installs WHERE name = ?"
            " ORDER BY version",
            (name,),
        ).fetchall()
    ]
    return out


def list_modules(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    names = [r[0] for r in conn.execute("SELECT name FROM modules ORDER BY name").fetchall()]
    return [module_row(conn, n) for n in names]


def due_decisions(
    conn: sqlite3.Connection, name: str, version: int, today: str, limit: int = 200
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, key, subject, predicted, check_on, created_at FROM module_decisions"
        " WHERE module = ? AND version = ? AND judged_at IS NULL AND check_on <= ? ORDER BY check_on, id LIMIT ?",
        (name, version, today, limit),
    ).fetchall()
    return [{**dict(r), "predicted": json.loads(r["predicted"])} for r in rows]


def recent_decisions(conn: sqlite3.Connection, name: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, version, key, subject, predicted, check_on, event_key, created_at, outcome, judged_at"
        " FROM module_decisions WHERE module = ? ORDER BY id DESC LIMIT ?",
        (name, limit),
    ).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["predicted"] = json.loads(d["predicted"])
        d["outcome"] = None if d["outcome"] is None else bool(d["outcome"])
        out.append(d)
    return out


def recent_failures(conn: sqlite3.Connection, name: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, version, at, kind, message, detail FROM module_failures WHERE module = ? ORDER BY id DESC LIMIT ?",
        (name, limit),
    ).fetchall()
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def history(conn: sqlite3.Connection, name: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, at, action, from_version, to_version, reason, actor FROM module_history WHERE name = ?"
        " ORDER BY id DESC LIMIT ?",
        (name, limit),
    ).fetchall()
    return [dict(r) for r in rows]
