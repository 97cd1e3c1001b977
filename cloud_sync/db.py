"""The aggregator's database: one engine per process, the same code on SQLite and PostgreSQL.

SQLite (a pilot): WAL, foreign keys, a busy timeout, `BEGIN IMMEDIATE` for writes so that concurrent writers
queue instead of failing on lock upgrade. PostgreSQL (a chain): a pooled engine; replicas serialise migrations
with an advisory lock and per-store ingest with a row lock on the store's sync state.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cloud_sync.config import sqlite_path
from cloud_sync.migrations import MIGRATIONS
from cloud_sync.tables import schema_versions

MIGRATION_LOCK = 0x53424358  # "SBCX": the advisory lock id replicas take while migrating


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer aggregator than this one."""


def create_engine(url: str) -> sa.Engine:
    """An engine for `url` with the settings the aggregator relies on."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # it holds every store's HMAC secret: readable by the service user only
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            # Switching a new file to WAL needs it to itself, and SQLite does not wait for that (no busy handler):
            # replicas opening a fresh database together retry for a while instead of failing.
            for attempt in range(200):
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:
                    if attempt == 199:
                        raise
                    time.sleep(0.05)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def is_postgres(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def schema_version(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_versions"):
            return 0
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(schema_versions.c.version), 0))).scalar_one())


def migrate(engine: sa.Engine) -> list[str]:
    """Apply the pending migrations in one transaction; return their names. Safe when replicas start at once."""
    applied: list[str] = []
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
        schema_versions.create(conn, checkfirst=True)
        current = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(schema_versions.c.version), 0))).scalar_one())
        known = max(v for v, _ in MIGRATIONS)
        if current > known:
            raise SchemaTooNew(
                f"数据库结构版本 {current} 比本程序 ({known}) 新，请升级聚合服务"
                f" / database schema version {current} is newer than this aggregator ({known}); upgrade it"
            )
        for version, name in MIGRATIONS:
            if version <= current:
                continue
            module = importlib.import_module(f"cloud_sync.migrations.{name}")
            module.upgrade(conn)
            conn.execute(
                schema_versions.insert().values(version=version, name=name, applied_at=datetime.now(UTC).isoformat())
            )
            applied.append(name)
    return applied
