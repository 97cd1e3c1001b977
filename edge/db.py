"""SQLite connections and numbered schema migrations.

Each package that owns tables keeps its SQL in `<package>/migrations/NNNN_name.sql`. All pending files
are applied at start-up in one transaction, and `schema_migrations` records each (package, version).
WAL mode: one writer connection, any number of reader connections.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

# Packages that own tables, in dependency order.
MIGRATION_PACKAGES: tuple[str, ...] = (
    "edge.ledger",
    "edge.security",
    "edge.bus",
    "edge.finance",
    "edge.devices",
    "edge.replenishment",
    "edge.sync",
    "edge.rules",
    "edge.modules",
)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """A migration file is malformed or the database is newer than this code."""


def connect(path: Path | str, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    """Open a connection with the pragmas the box relies on.

    `synchronous=FULL` in WAL mode fsyncs the WAL on every commit, so an acknowledged posting survives
    a power cut; NORMAL survives a process crash but may lose the last commits on power loss.
    """
    if synchronous not in {"FULL", "NORMAL"}:
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if readonly:
        conn = sqlite3.connect(
            f"file:{Path(path).resolve()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _migration_files(package: str) -> list[tuple[int, str, str]]:
    folder = resources.files(package).joinpath("migrations")
    found: list[tuple[int, str, str]] = []
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
        elif entry.name.endswith(".sql"):
            raise MigrationError(f"{package}: migration file {entry.name} must be named NNNN_name.sql")
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"{package}: migrations must be numbered 0001, 0002, ... without gaps: {versions}")
    return found


def migrate(conn: sqlite3.Connection, packages: tuple[str, ...] = MIGRATION_PACKAGES) -> list[str]:
    """Apply every pending migration of `packages` in one transaction; return the names applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " package TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,"
        " PRIMARY KEY (package, version))"
    )
    applied: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for package in packages:
            row = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE package = ?", (package,)
            ).fetchone()
            current = int(row[0])
            files = _migration_files(package)
            if current > len(files):
                raise MigrationError(
                    f"database schema of {package} is version {current}, newer than this code ({len(files)})"
                )
            for version, name, sql in files[current:]:
                for statement in _split_statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (package, version, name, applied_at) VALUES (?, ?, ?, ?)",
                    (package, version, name, datetime.now(UTC).isoformat()),
                )
                applied.append(f"{package}/{name}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


def _split_statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not buffer.strip().startswith("--"):
        statements.append(buffer.strip())
    return statements
