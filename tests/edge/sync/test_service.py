"""The box's upload loop against a real aggregator (create_app over SQLite and PostgreSQL): a backlog catches up,
a batch sent again after a crash is a duplicate, an aggregator that is down is waited out with backoff, a refusal
stops the loop and shows in the status, snapshots go up when they change, compaction keeps `ledger verify` true."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edge.ledger.verify import verify_ledger
from edge.sync import outbox
from edge.sync.client import SyncClient
from edge.sync.errors import SyncRefused, SyncUnavailable
from edge.sync.keys import load_key
from edge.sync.protocol import generate_store_key
from edge.sync.service import SyncService
from edge.sync.totals import differences
from tests.cloud_sync.aggregator import StoreSession, rows_of, sale
from tests.edge.sync.conftest import STORE, Aggregator, Box, Served, until

pytestmark = pytest.mark.anyio


def metric(service: SyncService, name: str, **labels: str) -> float:
    registry: CollectorRegistry = service.ctx.registry
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_backlog_of_a_week_offline_catches_up_in_batches_and_totals_agree(
    box: Box, aggregator: Aggregator
) -> None:
    await box.trade(40)  # > 200 documents posted while the aggregator was out of reach
    documents = box.read("SELECT COUNT(*) FROM documents")[0][0]
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport(), sync_batch_rows=25)
    sent = await service.push_now()
    await service.client.aclose()
    assert sent["batches"] >= documents // 25
    assert sent["rows"] >= documents
    assert sent["answers"] == {"applied": sent["batches"]}
    assert box.read("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL")[0][0] == 0
    assert box.read("SELECT COUNT(*) FROM sync_batches WHERE acked_at IS NULL")[0][0] == 0
    assert differences(box.totals(), aggregator.totals()) == []
    assert metric(service, "storebox_sync_rows_total") == sent["rows"]
    assert metric(service, "storebox_sync_pending_rows") == 0


async def test_batch_resent_after_a_crash_between_send_and_ack_is_a_duplicate(box: Box, aggregator: Aggregator) -> None:
    await box.trade(3)
    box.set_key(aggregator.key)
    first = box.service(transport=aggregator.transport())
    # The box records and sends batch 1, and dies before it marks it acknowledged.
    batch = await first._read(outbox.next_batch, STORE, 50)
    assert batch is not None
    await box.writer.execute(
        outbox.record_batch, batch.seq, batch.first_row, batch.last_row, len(batch.rows), batch.digest, "t"
    )
    answer = await first.client.post_json("/api/v1/sync/batches", batch.body)
    assert answer["status"] == "applied"
    await first.client.aclose()
    before = aggregator.totals()
    # After the restart the very same bytes go again: the aggregator recognises them and changes nothing.
    again = box.service(transport=aggregator.transport())
    rebuilt = await again._read(outbox.recorded_batch, STORE, batch.seq)
    assert rebuilt is not None and rebuilt.body == batch.body
    sent = await again.push_now()
    await again.client.aclose()
    assert sent["answers"]["duplicate"] == 1  # then the snapshots of items and suppliers, in a new batch
    assert aggregator.totals() == before
    assert differences(box.totals(), aggregator.totals()) == []


async def test_aggregator_down_is_waited_out_with_backoff_and_the_box_catches_up_when_it_returns(
    box: Box, aggregator: Aggregator
) -> None:
    await box.trade(5)
    box.set_key(aggregator.key)
    server = Served(aggregator.app)  # its port is chosen, nothing listens there yet
    service = box.service(server.url, sync_backoff_max_seconds=1.0)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: service.failures >= 3, what="three failed rounds")
        assert 0 <= service.backoff_seconds() <= 1.0
        assert metric(service, "storebox_sync_failures_total", reason="unavailable") >= 3
        status = await service.status()
        assert status["refused"] is False
        assert status["last_error"]["code"] == "sync_unavailable"
        assert status["pending_rows"] > 0
        server.start()
        await until(lambda: box.read("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL")[0][0] == 0, 30)
        await until(lambda: service.failures == 0, what="the loop reset its failures")
        # A commit wakes the loop: a new sale goes up without waiting for a timer.
        await box.sell("COLA", 1)
        await until(lambda: box.read("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL")[0][0] == 0, 30)
        assert differences(box.totals(), aggregator.totals()) == []
        assert metric(service, "storebox_sync_last_success_timestamp_seconds") > 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.stop()


async def test_a_conflicting_batch_is_refused_stops_the_loop_and_shows_in_status(
    box: Box, aggregator: Aggregator
) -> None:
    # The aggregator already holds another batch 1 of this store (a box restored from an old backup, say).
    other = await StoreSession(aggregator.app, STORE, aggregator.key).send_batch(1, rows_of([sale(999)]))
    assert other.status_code == 200, other.text
    await box.trade(2)
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport(), sync_backoff_max_seconds=3600)
    with pytest.raises(SyncRefused) as refused:
        await service.push_now()
    assert refused.value.remote_code == "batch_conflict"
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: service.refused, what="the refusal")
        status = await service.status()
        assert status["refused"] is True
        assert status["last_error"]["detail"]["remote_code"] == "batch_conflict"
        assert status["last_batch_error"]["batch"] == 1
        assert metric(service, "storebox_sync_failures_total", reason="batch_conflict") == 1
        await asyncio.sleep(0)  # the loop now waits the longest backoff instead of trying again at once
        attempts = box.read("SELECT attempts FROM sync_batches WHERE seq = 1")[0][0]
        assert attempts == 2  # push_now once, the loop once: no tight loop
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await service.client.aclose()
    assert box.read("SELECT COUNT(*) FROM outbox WHERE acked_at IS NOT NULL AND document_id IS NOT NULL")[0][0] == 0


async def test_an_unknown_key_is_refused_and_nothing_is_acknowledged(box: Box, aggregator: Aggregator) -> None:
    await box.trade(1)
    box.set_key(generate_store_key())
    service = box.service(transport=aggregator.transport())
    with pytest.raises(SyncRefused) as refused:
        await service.push_now()
    await service.client.aclose()
    assert refused.value.remote_code == "auth_unknown_key"
    assert refused.value.http_status == 401
    assert box.read("SELECT COUNT(*) FROM outbox WHERE acked_at IS NOT NULL")[0][0] == 0


async def test_rotated_key_is_written_and_used_and_the_old_one_keeps_working_for_the_grace(
    box: Box, aggregator: Aggregator
) -> None:
    from edge.sync.keys import write_key
    from edge.sync.protocol import parse_store_key

    await box.trade(1)
    box.set_key(aggregator.key)
    settings = box.settings()
    client = SyncClient(settings, lambda: load_key(settings), box.clock, transport=aggregator.transport())
    answer = await client.post_json("/api/v1/sync/keys/rotate", b"{}", gzip=False)
    new = parse_store_key(answer["key"])
    assert new.key_id != aggregator.key.key_id and answer["old_key_id"] == aggregator.key.key_id
    write_key(settings.sync_key_path, new)
    assert settings.sync_key_path.stat().st_mode & 0o777 == 0o600
    assert load_key(settings) == new
    await client.aclose()
    service = box.service(transport=aggregator.transport())
    sent = await service.push_now()
    await service.client.aclose()
    assert sent["rows"] > 0
    old = StoreSession(aggregator.app, STORE, aggregator.key)
    assert (await old.get("/api/v1/sync/state")).status_code == 200  # still within the grace period
    assert differences(box.totals(), aggregator.totals()) == []


async def test_box_clock_hours_off_follows_the_aggregators_clock(box: Box, aggregator: Aggregator) -> None:
    await box.trade(1)
    box.set_key(aggregator.key)
    box.clock.offset_s = -3 * 3600
    service = box.service(transport=aggregator.transport())
    sent = await service.push_now()
    await service.client.aclose()
    assert sent["rows"] > 0
    assert abs(service.client.offset_s - 3 * 3600) < 120


async def test_snapshots_of_items_and_compliance_go_up_once_and_again_when_they_change(
    box: Box, aggregator: Aggregator
) -> None:
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport())
    await service.push_now()
    kinds = [r[0] for r in box.read("SELECT kind FROM outbox WHERE document_id IS NULL ORDER BY seq")]
    assert kinds == ["state.items", "state.compliance"]
    await service.push_now()
    assert box.read("SELECT COUNT(*) FROM outbox WHERE document_id IS NULL")[0][0] == 2
    await box.writer.execute(_rename_cola)
    await service.push_now()
    await service.client.aclose()
    kinds = [r[0] for r in box.read("SELECT kind FROM outbox WHERE document_id IS NULL ORDER BY seq")]
    assert kinds == ["state.items", "state.compliance", "state.items"]
    import sqlalchemy as sa

    from cloud_sync.tables import items

    with aggregator.engine.connect() as conn:
        names = dict(conn.execute(sa.select(items.c.sku, items.c.name).where(items.c.store == STORE)).all())
    assert names["COLA"] == "可乐 500ml"


def _rename_cola(conn: object) -> None:
    conn.execute("UPDATE items SET name = '可乐 500ml' WHERE sku = 'COLA'")  # type: ignore[attr-defined]


async def test_compaction_deletes_only_applied_rows_past_retention_and_ledger_verify_stays_true(
    box: Box, aggregator: Aggregator
) -> None:
    await box.trade(6)
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport(), sync_batch_rows=20)
    await service.push_now()  # compacts nothing: acknowledged just now
    await service.client.aclose()
    rows = box.read("SELECT COUNT(*) FROM outbox")[0][0]
    assert box.read("SELECT value FROM sync_state WHERE key = 'compacted_through_row'") == []
    await box.sell("COLA", 1)  # posted after the last batch: not acknowledged, must stay
    later = box.clock() + timedelta(days=box.settings().outbox_retention_days + 1)
    deleted = await box.writer.execute(outbox.compact, later, box.settings().outbox_retention_days)
    assert deleted == rows
    assert box.read("SELECT COUNT(*) FROM outbox")[0][0] == 1
    conn = box.reader()
    try:
        report = verify_ledger(conn)
        assert report["ok"], report
        assert outbox.next_batch(conn, STORE, 50) is not None
    finally:
        conn.close()
    # Upload resumes after the compacted rows, and the totals still agree.
    again = box.service(transport=aggregator.transport())
    sent = await again.push_now()
    await again.client.aclose()
    assert sent["rows"] == 1
    assert differences(box.totals(), aggregator.totals()) == []


async def test_missing_batches_named_by_the_aggregator_are_sent_again(box: Box, aggregator: Aggregator) -> None:
    await box.trade(4)
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport(), sync_batch_rows=10)
    await service.push_now()
    # The box believes batch 1 lost (as when the aggregator answers `missing: [1]`): it is rebuilt and resent.
    await box.writer.execute(outbox.unacknowledge, [1])
    sent = await service.push_now()
    await service.client.aclose()
    assert sent["answers"] == {"duplicate": 1}
    assert differences(box.totals(), aggregator.totals()) == []


async def test_unreachable_aggregator_raises_unavailable_from_push_now(box: Box, aggregator: Aggregator) -> None:
    await box.trade(1)
    box.set_key(aggregator.key)
    service = box.service(Served(aggregator.app).url)
    with pytest.raises(SyncUnavailable):
        await service.push_now()
    await service.client.aclose()
    assert box.read("SELECT last_error FROM sync_batches WHERE seq = 1")[0][0]


async def test_api_status_and_push_with_their_permissions(
    tmp_path: Path, sync_template_db: Path, aggregator: Aggregator
) -> None:
    import httpx

    from edge.security.roles import Role
    from edge.web.api import create_api
    from tests.edge.web.apibox import Box as ApiBox
    from tests.edge.web.apibox import Clock, assert_error_shape, build_deps, seed

    del sync_template_db
    made = Box(tmp_path / "box", tmp_path / "none", template_seed=seed)
    made.writer.start()
    try:
        await made.trade(2)
        made.set_key(aggregator.key)
        service = made.service(transport=aggregator.transport())
        app = create_api(build_deps(made.db_path, Clock(), made.writer, settings=made.settings()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://box") as client:
            api = ApiBox(made.db_path, Clock(), made.writer, app.state.deps, app, client)
            # Without a sync service (no sync_url): the local facts, configured false; push is 409.
            answer = await client.get("/api/v1/sync/status", headers=api.auth(Role.AUDITOR))
            assert answer.status_code == 200, answer.text
            assert answer.json()["configured"] is False and answer.json()["pending_rows"] > 0
            refused = await client.post("/api/v1/sync/push", headers=api.auth(Role.MANAGER))
            assert refused.status_code == 409
            assert assert_error_shape(refused)["code"] == "sync_not_configured"
            app.state.sync = service
            assert (await client.post("/api/v1/sync/push", headers=api.auth(Role.CLERK))).status_code == 403
            assert (await client.get("/api/v1/sync/status", headers=api.auth(Role.CLERK))).status_code == 403
            pushed = await client.post("/api/v1/sync/push", headers=api.auth(Role.MANAGER))
            assert pushed.status_code == 200, pushed.text
            assert pushed.json()["rows"] > 0
            status = (await client.get("/api/v1/sync/status", headers=api.auth(Role.ACCOUNTANT))).json()
            assert status["configured"] is True and status["pending_rows"] == 0
            assert status["last_acked_batch"] == status["last_batch"] >= 1
        await service.client.aclose()
    finally:
        await made.writer.close()


async def test_an_idle_box_sends_a_heartbeat_with_its_outbox_head(box: Box, aggregator: Aggregator) -> None:
    import sqlalchemy as sa

    from cloud_sync.tables import sync_state

    await box.trade(1)
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport())
    await service.push_now()
    service._last_contact = float("-inf")  # as if sync_heartbeat_seconds had passed since the last answer
    idle = await service.push_now()
    await service.client.aclose()
    assert idle["batches"] == 0 and idle["applied_through"] == 1
    head = box.read("SELECT MAX(seq) FROM outbox")[0][0]
    with aggregator.engine.connect() as conn:
        state = conn.execute(sa.select(sync_state).where(sync_state.c.store == STORE)).one()
    assert state.head_seq == head and state.pending_rows == 0 and state.last_contact_at


async def test_a_failing_puller_is_counted_and_never_stops_the_upload(
    box: Box, aggregator: Aggregator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    from edge.sync import service as service_module

    calls: list[str] = []

    async def broken(client: SyncClient, ctx: object) -> None:
        calls.append(client.store)
        raise RuntimeError("puller bug")

    module = types.ModuleType("tests_broken_puller")
    module.pull = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_broken_puller", module)
    monkeypatch.setattr(service_module, "PULLERS", ("tests_broken_puller", "no.such.module"))
    await box.trade(2)
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport(), sync_pull_interval_seconds=1)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: calls, what="the puller called")
        await box.sell("COLA", 1)
        await until(lambda: box.read("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL")[0][0] == 0, 30)
        assert metric(service, "storebox_sync_failures_total", reason="pull:tests_broken_puller") >= 1
        assert service.failures == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert differences(box.totals(), aggregator.totals()) == []
