"""Numbered schema migrations of the aggregator, the same for SQLite and PostgreSQL (SQLAlchemy Core DDL).

Each module has `upgrade(conn)`; `cloud_sync.db.migrate` applies the pending ones in order in one transaction and
records each in `schema_versions`.
"""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, "m0001_core"),
    (2, "m0002_transfers"),
    (3, "m0003_packages"),
    (4, "m0004_modules"),
)
