"""Fixtures of the aggregator's tests: a database URL for each backend the aggregator supports.

`cloud_db_url` runs a test on SQLite and on a real PostgreSQL (marker `postgres`): one throwaway server per test
worker (tools/pgserver.py, installed by `make postgres`), a fresh database per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.pgserver import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLAlchemy URL of an empty aggregator database on SQLite (a temp file) or PostgreSQL (a new database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cloud.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database()
