"""A module's cron subscriptions fire in the store's time zone, once per due time, on the host's clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.db import connect, migrate
from edge.finance.rulebook import rule_book
from edge.ledger.posting import PostingContext
from edge.modules.host import Limits, ModuleHost
from edge.writer import LedgerWriter
from tests.edge.bus.conftest import LoopThread
from tests.edge.modules.modkit import wait_for, write_module

CODE = """
def handle(ctx, event):
    return [{"decision": {"key": event["key"], "subject": event["facts"]["schedule"]["date"], "predicted": None,
                          "check_on": str(ctx.today)}}]

def judge(ctx, decision):
    return None
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_daily_schedule_fires_at_its_local_time_once(tmp_path: Path) -> None:
    db = tmp_path / "storebox.db"
    conn = connect(db)
    migrate(conn)
    conn.close()
    clock = Clock(datetime(2026, 12, 5, 22, 59, 50, tzinfo=UTC))  # 06:59:50 in Shanghai
    loop = LoopThread()
    writer = LedgerWriter(
        db, context=lambda: PostingContext(now=clock(), business_date=clock().date(), rules=rule_book())
    )
    host = ModuleHost(
        db_path=db,
        modules_dir=tmp_path / "modules",
        store_id="store-t",
        timezone="Asia/Shanghai",
        writer=writer,
        open_reader=lambda: connect(db, readonly=True),
        clock=clock,
        limits=Limits(refresh_seconds=0.05),
    )

    async def start() -> None:
        writer.start()

    loop.run(start())
    runner_task = None
    try:
        source = write_module(
            tmp_path / "src", "morning", 1, CODE, subscribes=[{"kind": "schedule", "cron": "0 7 * * *"}]
        )
        loop.run(host.install_dir(source, actor="test"), timeout=60)

        runner_task = asyncio.run_coroutine_threadsafe(host.run(), loop.loop)

        def decisions() -> list[tuple[str, str]]:
            reader = connect(db, readonly=True)
            try:
                return [tuple(r) for r in reader.execute("SELECT key, subject FROM module_decisions ORDER BY id")]
            finally:
                reader.close()

        wait_for(lambda: host.runners.get("morning") and host.runners["morning"].schedules, "the schedule armed")
        assert decisions() == []
        clock.now += timedelta(seconds=15)  # 07:00:05 local
        rows = wait_for(decisions, "the 07:00 run")
        assert rows == [("schedule:0 7 * * *:2026-12-06T07:00:00+08:00", "2026-12-06")]
        clock.now += timedelta(hours=1)
        loop.run(asyncio.sleep(0.3))  # several schedule passes: nothing new is due
        assert decisions() == rows
        clock.now += timedelta(days=1)
        wait_for(lambda: len(decisions()) == 2, "the next morning's run")
    finally:
        if runner_task is not None:
            runner_task.cancel()
        loop.run(host.close(), timeout=30)
        loop.run(writer.close(), timeout=30)
        loop.close()
