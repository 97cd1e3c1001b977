"""The planner service: scheduled runs, a sale far above its forecast and a cold-room alarm recompute only their
SKUs, runs never overlap and partial requests merge. A real writer process over a real SQLite file."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.db import connect
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.posting import PostingContext
from edge.replenishment.triggers import Planner, PlannerSettings
from edge.writer import LedgerWriter
from tests.edge.replenishment.test_planner import GUARDS, NOW, RULES, TODAY, store_with_documents, template

__all__ = ["template"]  # fixture

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Running:
    path: Path
    writer: LedgerWriter
    planner: Planner

    def reader(self) -> sqlite3.Connection:
        return connect(self.path, readonly=True)

    def runs(self) -> list[sqlite3.Row]:
        conn = self.reader()
        try:
            return conn.execute("SELECT * FROM plan_runs ORDER BY id").fetchall()
        finally:
            conn.close()

    async def wait_for_run(self, trigger: str, deadline_s: float = 60.0) -> sqlite3.Row:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for run in self.runs():
                if run["trigger"] == trigger:
                    return run
            await asyncio.sleep(0.05)
        raise AssertionError(f"no run with trigger {trigger}: {[dict(r) for r in self.runs()]}")


async def running_planner(template: Path, tmp_path: Path, config: PlannerSettings) -> AsyncIterator[Running]:
    path = tmp_path / "storebox.db"
    shutil.copyfile(template, path)
    conn = connect(path)
    store_with_documents(conn)
    conn.close()
    writer = LedgerWriter(
        path,
        context=lambda: PostingContext(now=NOW, business_date=TODAY, rules=RULES, guards=GUARDS),
        batch_max=16,
    )
    writer.start()
    planner = Planner(
        config,
        writer=writer,
        open_reader=lambda: connect(path, readonly=True),
        clock=lambda: NOW,
        business_date=lambda now: TODAY,
    )
    planner.start()
    try:
        yield Running(path, writer, planner)
    finally:
        await planner.stop()
        await writer.close()


@pytest.fixture
async def box(template: Path, tmp_path: Path) -> AsyncIterator[Running]:
    config = PlannerSettings(
        interval_minutes=0, trigger_check_seconds=0, returns_check_seconds=0, spike_factor=3.0, spike_min_units=10
    )
    async for running in running_planner(template, tmp_path, config):
        yield running


async def test_a_sale_far_above_forecast_recomputes_only_that_sku(box: Running) -> None:
    full = await box.planner.run("test")
    assert full.series == 2 and not full.partial
    # MILK sells about 5 a day; 30 at once is a spike. COLA selling its usual 20 is not.
    await box.writer.post(PostDocument(key="usual", type=DocType.SALE, lines=(Line("COLA", 20),), payment="cash"))
    await box.writer.post(
        PostDocument(key="big", type=DocType.SALE, lines=(Line("MILK", 30, location="cold"),), payment="cash")
    )
    run = await box.wait_for_run("sale_spike")
    assert run["partial"] == 1 and run["series"] == 1
    conn = box.reader()
    try:
        skus = {r[0] for r in conn.execute("SELECT sku FROM suggestions WHERE run_id = ?", (run["id"],))}
    finally:
        conn.close()
    assert skus <= {"MILK"}
    assert all(r["trigger"] != "sale_spike" or r["series"] == 1 for r in box.runs())


def _alarm(conn: sqlite3.Connection, now: str) -> None:
    cursor = conn.execute(
        "INSERT INTO cold_excursions (location, device, storage_class, direction, started_at, alarmed_at, peak_mc,"
        " last_mc, last_at, readings) VALUES ('cold', 'cold-2', 'chilled', 'above', ?, ?, 9000, 9000, ?, 5)",
        (now, now, now),
    )
    conn.execute(
        "INSERT INTO cold_excursion_lots (excursion_id, sku, lot, expiry, qty) VALUES (?, 'MILK', 'A', NULL, 60)",
        (cursor.lastrowid,),
    )


async def test_a_cold_room_alarm_recomputes_the_skus_of_its_lots(box: Running) -> None:
    await box.planner.run("test")
    assert await box.planner.check_triggers() == set()  # the first check only notes where each feed is
    await box.writer.execute(_alarm, "2024-06-01T02:30:00Z")
    assert await box.planner.check_triggers() == {"MILK"}
    run = await box.wait_for_run("cold_excursion")
    assert run["partial"] == 1 and run["series"] == 1
    assert await box.planner.check_triggers() == set()  # seen once


async def test_waiting_partial_requests_merge_and_a_full_run_absorbs_them(box: Running) -> None:
    first = box.planner.request("a", ["COLA"])
    second = box.planner.request("b", ["MILK"])
    full = box.planner.request("c")
    runs = await asyncio.gather(first, second, full)
    # The worker took them together: one full run covered all three requests.
    assert {r.id for r in runs} == {runs[0].id}
    assert not runs[0].partial and runs[0].trigger == "c"
    merged = await asyncio.gather(box.planner.request("x", ["COLA"]), box.planner.request("y", ["MILK"]))
    assert merged[0].id == merged[1].id and merged[0].partial and merged[0].trigger == "x+y"
    assert merged[0].series == 2


async def test_the_scheduler_runs_the_plan_after_start(template: Path, tmp_path: Path) -> None:
    config = PlannerSettings(interval_minutes=15, first_run_delay_seconds=0, trigger_check_seconds=0)
    async for running in running_planner(template, tmp_path, config):
        run = await running.wait_for_run("start")
        assert run["series"] == 2 and run["rows"] >= 1


def _delay(conn: sqlite3.Connection) -> None:
    from edge.replenishment.signals import SupplierDelay, record_signals

    record_signals(
        conn,
        "supplier_delay",
        [SupplierDelay(supplier="sup-1", delay_days=3, from_date=TODAY, reason="暴雪 snowstorm")],
        "delay-1",
        "tester",
        NOW,
        TODAY,
    )


async def test_a_supplier_delay_recomputes_its_items_with_the_longer_lead_time(box: Running) -> None:
    await box.planner.run("test")
    await box.planner.check_triggers()  # the first check only notes where each feed is
    await box.writer.execute(_delay)
    assert await box.planner.check_triggers() == {"COLA", "MILK"}
    run = await box.wait_for_run("signal")
    assert run["partial"] == 1 and run["series"] == 2
    conn = box.reader()
    try:
        texts = [r[0] for r in conn.execute("SELECT explanation FROM suggestions WHERE run_id = ?", (run["id"],))]
    finally:
        conn.close()
    assert texts and all("供应商延误 +3 天" in t and "到货周期按" in t for t in texts)


async def test_a_return_spike_recomputes_the_items_it_touches(box: Running) -> None:
    await box.planner.run("test")
    await box.planner.check_triggers()
    for k in range(3):
        result = await box.writer.post(
            PostDocument(
                key=f"return-{k}",
                type=DocType.CUSTOMER_RETURN,
                lines=(Line("MILK", 1, location="cold"),),
                reason="damaged_packaging",
            )
        )
        assert result.ok, result.message_en
    assert "MILK" in await box.planner.check_triggers()
    run = await box.wait_for_run("return_spike")
    assert run["partial"] == 1
