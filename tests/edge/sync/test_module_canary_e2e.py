"""Module canary end to end (docs/canary.md): a real box (its database, the ledger writer, the signed sync client)
and a real aggregator under uvicorn on 127.0.0.1 (SQLite and PostgreSQL). HQ publishes a module, rolls it out to
the box's store, the box installs it and reports KPIs, HQ promotes; the next version breaks its KPIs at the pilot,
the aggregator rolls it back, and the box's running sync service rolls back to the promoted version on its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud_sync.hq.auth import add_token
from cloud_sync.packages import store as package_store
from cloud_sync.packages.format import public_key_hex
from edge.sync import packages as pk
from edge.sync.client import SyncClient
from edge.sync.keys import load_key
from edge.sync.service import PullContext
from tests.edge.sync.conftest import STORE, Aggregator, Box, Served, until
from tests.edge.sync.packaging import HQ_KEY, package

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
MODULE = "near-expiry"


def module_package(version: int) -> bytes:
    manifest = f"""name: {MODULE}
version: {version}
title: {{zh: 临期商品清货, en: Near-expiry clearance}}
entry: module.py
subscribes: [{{kind: schedule, cron: "0 * * * *"}}]
may: [notify]
kpis: {{window: 200, precision_min: 0.9, false_positive_max: 0.05, min_decisions: 20}}
budget: {{timeout_seconds: 10, memory_mb: 256, cpu_seconds: 20}}
params: {{}}
"""
    module_py = b"def handle(ctx, event):\n    return []\n\n\ndef judge(ctx, decision):\n    return None\n"
    return package("module", MODULE, version, {"manifest.yaml": manifest.encode(), "module.py": module_py})


class Hq:
    def __init__(self, aggregator: Aggregator, served: Served) -> None:
        self.url = served.url
        with aggregator.engine.begin() as conn:
            self.token = add_token(conn, "modules-lead", datetime.now(UTC))[1]

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}) as http:
            return await http.request(method, path, **kw)

    async def publish(self, data: bytes) -> None:
        answer = await self.call(
            "POST", "/api/v1/hq/packages", content=data, headers={"Content-Type": "application/zip"}
        )
        assert answer.status_code == 201, answer.text

    async def roll_out(self, version: int) -> int:
        answer = await self.call(
            "POST", "/api/v1/hq/modules/rollouts", json={"name": MODULE, "version": version, "stores": [STORE]}
        )
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    async def rollout(self, rollout_id: int) -> dict[str, Any]:
        answer = await self.call("GET", f"/api/v1/hq/modules/rollouts/{rollout_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


class BoxSide:
    """The box's signed client and pull context against the served aggregator."""

    def __init__(self, box: Box, served: Served) -> None:
        self.box = box
        self.settings = box.settings(served.url, hq_public_key=public_key_hex(HQ_KEY))
        self.client = SyncClient(self.settings, lambda: load_key(self.settings), box.clock)
        self.ctx = PullContext(self.settings, box.writer, box.reader, box.clock, CollectorRegistry())

    async def pull(self) -> None:
        await pk.pull(self.client, self.ctx)

    async def report(self, version: int, judged: int, right: int, wrong: int) -> Any:
        report = {
            "module": MODULE,
            "version": version,
            "judged": judged,
            "right": right,
            "wrong": wrong,
            "precision": right / judged,
            "false_positive_rate": wrong / judged,
            "window": 200,
            "at": self.box.clock().isoformat(),
        }
        return await self.client.post_json("/api/v1/sync/modules/kpis", {"reports": [report]})  # gzip, as boxes send

    def in_force(self) -> int:
        rows = self.box.read("SELECT version FROM package_current WHERE kind = 'module' AND name = ?", MODULE)
        return int(rows[0][0]) if rows else 0


def statuses(aggregator: Aggregator) -> list[tuple[str, int | None]]:
    with aggregator.engine.connect() as conn:
        return [(s["status"], s["in_force"]) for s in package_store.store_status(conn) if s["kind"] == "module"]


async def test_a_pilot_installs_reports_is_promoted_and_rolls_back_what_its_kpis_broke(
    aggregator: Aggregator, served: Served, box: Box
) -> None:
    box.set_key(aggregator.key)
    hq, side = Hq(aggregator, served), BoxSide(box, served)
    try:
        await hq.publish(module_package(1))
        await side.pull()
        assert side.in_force() == 0  # published is not rolled out: the box is not offered it

        first = await hq.roll_out(1)
        await side.pull()
        assert side.in_force() == 1 and statuses(aggregator) == [("installed", 1)]
        assert (await side.report(1, judged=25, right=24, wrong=1))["rolled_back"] == []
        promoted = await hq.call("POST", f"/api/v1/hq/modules/rollouts/{first}/promote")
        assert promoted.status_code == 200, promoted.text

        await hq.publish(module_package(2))
        second = await hq.roll_out(2)
        await side.pull()
        assert side.in_force() == 2
        answer = await side.report(2, judged=20, right=15, wrong=5)
        assert answer["rolled_back"] == [second]
        shown = await hq.rollout(second)
        assert shown["state"] == "rolled_back" and shown["rolled_back_by"] == f"kpis:{STORE}"
    finally:
        await side.client.aclose()

    # the box's own sync service, running as in a store, follows the aggregator's rollback
    service = box.service(served.url, hq_public_key=public_key_hex(HQ_KEY), sync_pull_interval_seconds=1)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: side.in_force() == 1, what="the box rolled back to version 1")
        await until(lambda: statuses(aggregator) == [("rolled_back", 1)], what="the rollback reported upstream")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await service.client.aclose()
    history = box.read(
        "SELECT action, version, to_version, actor FROM package_history WHERE kind = 'module' ORDER BY id"
    )
    assert history == [("installed", 1, 1, "sync"), ("installed", 2, 2, "sync"), ("rolled_back", 2, 1, "hq")]
    assert side.in_force() == 1  # and version 2 is not installed again
