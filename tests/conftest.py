"""Settings for the whole suite.

Hypothesis's per-example deadline is a timed assertion, and the machines that run the suite are shared and
noisy: a slow example is not a failure here (speed is measured in tools/bench/, not asserted in tests).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.edge.web.pages.browser import chromium  # noqa: F401  (one browser per test process, box and HQ pages)
from tools.pgserver import PostgresServer, postgres_server

settings.register_profile("storebox", deadline=None)
settings.load_profile("storebox")


# The aggregator's database: `cloud_db_url` runs a test on SQLite and on a real PostgreSQL (marker `postgres`): one
# throwaway server per test worker (tools/pgserver.py, installed by `make postgres`), a fresh database per test.


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last (on each xdist worker too): Playwright's sync API keeps an event loop running in the
    worker's main thread while the browser is open, and an async test after it could not start its own."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
