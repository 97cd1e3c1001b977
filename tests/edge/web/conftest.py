"""Fixtures of the API tests; the harness itself is in apibox.py."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from edge.web.api import create_api
from tests.edge.web.apibox import Box, Clock, ServedBox, build_deps, make_writer, seed


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated and seeded once; each test copies it (hashing six passwords per test would be slow)."""
    path = tmp_path_factory.mktemp("template") / "storebox.db"
    seed(path)
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(template_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "storebox.db"
    shutil.copyfile(template_db, path)
    return path


@pytest.fixture
async def box(db_path: Path) -> AsyncIterator[Box]:
    clock = Clock()
    writer = make_writer(db_path, clock)
    writer.start()
    deps = build_deps(db_path, clock, writer)
    app = create_api(deps)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://box") as client:
        yield Box(db_path, clock, writer, deps, app, client)
    await writer.close()


@pytest.fixture(scope="module")
def served_box(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[ServedBox]:
    path = tmp_path_factory.mktemp("served") / "storebox.db"
    shutil.copyfile(template_db, path)
    served = ServedBox(path)
    served.start()
    yield served
    served.stop()
