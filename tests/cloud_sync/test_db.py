"""The aggregator's database: migrations applied once, safely when replicas start together, and a database newer
than the code refused."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from cloud_sync.db import SchemaTooNew, create_engine, migrate, schema_version
from cloud_sync.migrations import MIGRATIONS
from cloud_sync.tables import CORE_TABLES, schema_versions

LATEST = max(v for v, _ in MIGRATIONS)


def test_migrate_creates_every_core_table_once(cloud_db_url: str) -> None:
    engine = create_engine(cloud_db_url)
    assert schema_version(engine) == 0
    assert migrate(engine) == [name for _, name in MIGRATIONS]
    assert migrate(engine) == []
    assert schema_version(engine) == LATEST
    names = set(sa.inspect(engine).get_table_names())
    assert {t.name for t in CORE_TABLES} <= names
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema_versions)).scalar_one() == len(MIGRATIONS)


def test_replicas_starting_together_migrate_once(cloud_db_url: str) -> None:
    engines = [create_engine(cloud_db_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results: list[Any] = []

    def start(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            results.append(migrate(engine))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 0, 0, len(MIGRATIONS)], results
    assert schema_version(engines[0]) == LATEST
    for e in engines:
        e.dispose()


def test_a_database_newer_than_the_code_is_refused(cloud_db_url: str) -> None:
    engine = create_engine(cloud_db_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(schema_versions.insert().values(version=LATEST + 1, name="m9999_future", applied_at="2030"))
    with pytest.raises(SchemaTooNew, match=f"newer than this aggregator \\({LATEST}\\)"):
        migrate(engine)


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'sub' / 'cloud.db'}")
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO store_keys (key_id, store, secret, created_at) VALUES ('k', 'nope', 's', 'x')"
        )
