"""The HQ pages' tests: one seeded chain (tests/cloud_sync/hq/seed.py) served over real HTTP per test module.

The pages reach data only through the HQ API, which is tested on SQLite and PostgreSQL in tests/cloud_sync/hq/;
here the chain lives in a SQLite file. Store s9 is registered but has never called in: it is behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cloud_sync.aggregator import register_store
from tests.cloud_sync.hq.seed import build_chain
from tests.cloud_sync.web.served import ServedAggregator


@pytest.fixture(scope="module")
def hq_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedAggregator]:
    db = tmp_path_factory.mktemp("hq-pages") / "cloud.db"
    app, token = build_chain(f"sqlite:///{db}")
    register_store(app.state.engine, "s9", "co-2")
    site = ServedAggregator(app, token).start()
    yield site
    site.stop()
    app.state.engine.dispose()
