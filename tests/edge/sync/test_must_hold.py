"""What must hold whatever happens between a box and the aggregator (issue 6): the aggregator killed mid-batch,
the network cut for a long backlog, duplicated and reordered batches, a tampered batch, a store key rotated,
clocks skewed by hours — at the end the aggregator's totals per store equal the box's, to the piece and the fen.

Real parts only: the aggregator as its own process on SQLite and on PostgreSQL, a TCP proxy whose wire is cut,
the box's real writer and sync service over its own SQLite file.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cloud_sync.db import create_engine
from cloud_sync.facts import store_totals
from cloud_sync.tables import rejections
from edge.db import connect
from edge.sync.outbox import recorded_batch
from edge.sync.protocol import parse_store_key, sign_request
from edge.sync.totals import differences
from tests.edge.sync.harness import AggregatorProcess, CuttableProxy, SyncedBox

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def aggregator_totals(db_url: str, store: str) -> dict[str, Any]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return store_totals(conn, store)
    finally:
        engine.dispose()


async def until(check: Any, timeout: float = 60.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check() if asyncio.iscoroutinefunction(check) else not check():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.05)


async def post_mixed(box: SyncedBox, rounds: int) -> None:
    """Receipts, sales and reversals of both: stock, value, sales and vouchers all move."""
    for n in range(rounds):
        receipt = await box.receive("COLA", 24 + n % 5, price_fen=226 + n % 3)
        await box.receive("RICE", 3, price_fen=3600)
        sale = await box.sell("COLA", 5 + n % 4)
        await box.sell("RICE", 1)
        if n % 7 == 3:
            await box.reverse(sale)
        if n % 11 == 5:
            await box.reverse(receipt)


async def test_totals_agree_after_kill_cut_duplicates_tampering_rotation_and_skew(
    cloud_db_url: str, tmp_path: Path
) -> None:
    aggregator = AggregatorProcess(cloud_db_url, tmp_path)
    aggregator.cli("migrate")
    registered = aggregator.cli("stores", "add", "store-001", "--name", "一号店", "--company", "co-1")
    aggregator.start()
    proxy = CuttableProxy(aggregator.port)
    await proxy.start()
    box = SyncedBox(tmp_path / "box", proxy.url, registered["key"], sync_batch_rows=50)
    await box.start()
    try:
        # 1. Online: postings flow up within moments.
        await post_mixed(box, 10)
        await until(lambda: box.pending() == 0, what="first postings acknowledged")

        # 2. The wire is cut for a long backlog; the box keeps posting and keeps every row.
        await proxy.cut()
        await post_mixed(box, 60)
        assert box.pending() >= 240
        # 3. The box's clock goes three hours fast meanwhile (a dead RTC battery): its signatures must still pass.
        box.clock.offset = timedelta(hours=3)
        # 4. HQ rotates the store's key while the box is offline; the old key works through the grace period.
        rotated = aggregator.cli("stores", "rotate-key", "store-001")
        assert rotated["old_key_ids"] == [registered["key_id"]]

        # 5. The wire comes back; the aggregator is killed in the middle of the catch-up and started again.
        await proxy.restore()
        await until(lambda: proxy.bytes_up > 20_000, what="upload under way")
        aggregator.kill()
        aggregator.start()
        await proxy.cut()
        await proxy.restore()
        proxy.target_port = aggregator.port
        await until(lambda: box.pending() == 0, timeout=120, what="backlog caught up")

        # 6. Batches sent again, and out of order, change nothing; a tampered one is refused and logged.
        key = parse_store_key(registered["key"])
        conn = connect(box.db_path, readonly=True)
        try:
            batches = [recorded_batch(conn, "store-001", seq) for seq in (3, 1, 2)]
        finally:
            conn.close()
        async with httpx.AsyncClient(base_url=aggregator.url) as client:
            now = int(box.clock().timestamp()) - 3 * 3600
            for batch in batches:
                assert batch is not None
                body = gzip.compress(batch.body)
                target = "/api/v1/sync/batches"
                headers = {**sign_request(key, "store-001", "POST", target, body, now), "Content-Encoding": "gzip"}
                answer = await client.post(target, content=body, headers=headers)
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "duplicate"
            assert batches[0] is not None
            tampered_raw = batches[0].body.replace(b'"qty":', b'"qty":1', 1)
            assert tampered_raw != batches[0].body
            original = gzip.compress(batches[0].body)
            headers = {**sign_request(key, "store-001", "POST", target, original, now), "Content-Encoding": "gzip"}
            answer = await client.post(target, content=gzip.compress(tampered_raw), headers=headers)
            assert answer.status_code == 401
            assert answer.json()["code"] == "auth_bad_signature"

        # 7. The box rotates to the new key and goes on posting under it.
        from edge.sync.keys import write_key

        write_key(box.settings.sync_key_path, parse_store_key(rotated["key"]))
        await post_mixed(box, 5)
        await until(lambda: box.pending() == 0, what="postings under the new key acknowledged")

        # At the end: equal to the piece and the fen.
        theirs = aggregator_totals(cloud_db_url, "store-001")
        mine = box.totals()
        assert differences(mine, theirs) == []
        assert mine["documents"] > 300 and mine["sales"]["gross_fen"] > 0 and len(mine["gl"]) >= 5
        engine = create_engine(cloud_db_url)
        with engine.connect() as c:
            codes = [r.code for r in c.execute(sa.select(rejections.c.code))]
        engine.dispose()
        assert "auth_bad_signature" in codes
        log = json.dumps(codes)
        assert "batch_conflict" not in log
    finally:
        await box.stop()
        await proxy.close()
        aggregator.stop()


async def test_postings_during_a_backoff_do_not_cut_it_short(tmp_path: Path) -> None:
    """A busy store must not knock once per sale on an aggregator that is down: the backoff holds."""
    aggregator = AggregatorProcess(f"sqlite:///{tmp_path / 'cloud.db'}", tmp_path)
    registered = aggregator.cli("stores", "add", "store-001", "--name", "一号店", "--company", "co-1")
    aggregator.start()
    proxy = CuttableProxy(aggregator.port)
    await proxy.start()
    box = SyncedBox(tmp_path / "box", proxy.url, registered["key"], sync_backoff_max_seconds=2.0)
    await box.start()
    try:
        await proxy.cut()
        for _ in range(30):  # a sale every 0.1 s for 3 s, each one a commit that wakes the sync loop
            await box.receive("COLA", 1)
            await asyncio.sleep(0.1)
        # Without the backoff every commit would try: 30 and more. With it: a handful (waits up to 2 s each).
        assert 1 <= proxy.refused <= 12, proxy.refused
        await proxy.restore()
        await until(lambda: box.pending() == 0, what="caught up after the outage")
        assert differences(box.totals(), aggregator_totals(f"sqlite:///{tmp_path / 'cloud.db'}", "store-001")) == []
    finally:
        await box.stop()
        await proxy.close()
        aggregator.stop()
