"""Module KPIs reported upstream: the sync service's puller sends the newest snapshot per module version to a real
aggregator (uvicorn on 127.0.0.1, SQLite and PostgreSQL) over the signed store channel, once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from cloud_sync.modules.tables import module_kpis
from edge.modules.kpis import Kpi, record_snapshot
from edge.sync import module_kpis as reporter
from edge.sync.client import SyncClient
from edge.sync.keys import load_key
from edge.sync.service import PULLERS, PullContext
from tests.edge.sync.conftest import (  # noqa: F401  (fixtures)
    STORE,
    Aggregator,
    Box,
    Served,
    aggregator,
    anyio_backend,
    box,
    served,
    sync_template_db,
)

pytestmark = pytest.mark.anyio


def test_the_sync_service_runs_the_kpi_reporter_after_the_package_pull() -> None:
    assert PULLERS.index("edge.sync.module_kpis") > PULLERS.index("edge.sync.packages")


async def test_the_newest_snapshot_per_module_version_reaches_the_aggregator_once(
    aggregator: Aggregator,  # noqa: F811
    served: Served,  # noqa: F811
    box: Box,  # noqa: F811
) -> None:
    box.set_key(aggregator.key)
    settings = box.settings(served.url)
    client = SyncClient(settings, lambda: load_key(settings), box.clock)
    ctx = PullContext(settings, box.writer, box.reader, box.clock, CollectorRegistry())
    at = box.clock().isoformat()
    await box.writer.execute(record_snapshot, "near-expiry", 2, Kpi(10, 9, 1, 0.9, 0.1, 200), at)
    await box.writer.execute(record_snapshot, "near-expiry", 2, Kpi(20, 19, 1, 0.95, 0.05, 200), at)
    await box.writer.execute(record_snapshot, "recipe-loss", 1, Kpi(0, 0, 0, None, None, 200), at)
    try:
        assert await reporter.report_kpis(client, ctx) == 2
        assert await reporter.report_kpis(client, ctx) == 0  # each snapshot once
    finally:
        await client.aclose()
    with aggregator.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                module_kpis.c.store,
                module_kpis.c.name,
                module_kpis.c.version,
                module_kpis.c.judged,
                module_kpis.c.precision_rate,
            ).order_by(module_kpis.c.name)
        ).all()
    assert [tuple(r) for r in rows] == [(STORE, "near-expiry", 2, 20, 0.95), (STORE, "recipe-loss", 1, 0, None)]
    assert box.read("SELECT COUNT(*) FROM module_kpi_reports WHERE reported_at IS NULL") == [(0,)]


def test_the_report_body_is_what_the_aggregator_reads() -> None:
    from cloud_sync.modules.kpis import parse_reports

    snapshot = {
        "module": "near-expiry",
        "version": 3,
        "judged": 60,
        "right": 57,
        "wrong": 3,
        "precision": 0.95,
        "false_positive_rate": 0.05,
        "window": 200,
        "at": "2026-12-06T08:00:00+08:00",
        "ids": [1, 2],
    }
    import json

    (report,) = parse_reports(json.dumps(reporter.report_body([snapshot])).encode())
    assert (report.module, report.version, report.judged, report.precision) == ("near-expiry", 3, 60, 0.95)
