"""The sync loop of the box: upload the outbox in batches, heartbeat when idle, run the pullers (incoming
transfers, HQ packages) now and then.

Woken by every commit and every `sync_interval_seconds`. When the aggregator cannot be reached it backs off
exponentially with full jitter up to `sync_backoff_max_seconds`; nothing is lost meanwhile (the outbox keeps every
row until it is acknowledged), and a box offline for a week catches up batch after batch on its own. A refusal
(409 conflict, a bad key) is not retried in a tight loop: it is logged, counted, shown in `status()` and tried
again after the longest backoff, so that an operator who fixes the key sees sync resume by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.config import Settings
from edge.sync import outbox
from edge.sync.client import SyncClient
from edge.sync.errors import SyncError, SyncRefused, SyncUnavailable
from edge.sync.keys import load_key
from edge.sync.protocol import encode_body
from edge.sync.snapshots import snapshots_changed, write_snapshots

log = logging.getLogger("storebox.sync")
T = TypeVar("T")
Clock = Callable[[], datetime]
PULLERS = ("edge.sync.transfers", "edge.sync.packages", "edge.sync.module_kpis")
COMPACT_EVERY_S = 3600  # compaction runs at most hourly; the retention is counted in days
ACK_STATUSES = frozenset({"applied", "duplicate", "queued"})


@dataclass(frozen=True, slots=True)
class PullContext:
    """What a puller (edge.sync.transfers.pull, edge.sync.packages.pull) may use."""

    settings: Settings
    writer: Any
    open_reader: Callable[[], sqlite3.Connection]
    clock: Clock
    registry: CollectorRegistry


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batches = Counter(
            "storebox_sync_batches_total", "Batches acknowledged, by answer", ["status"], registry=registry
        )
        self.rows = Counter("storebox_sync_rows_total", "Outbox rows acknowledged by the aggregator", registry=registry)
        self.failures = Counter(
            "storebox_sync_failures_total", "Sync rounds that failed, by reason", ["reason"], registry=registry
        )
        self.pending = Gauge("storebox_sync_pending_rows", "Outbox rows not yet acknowledged", registry=registry)
        self.lag = Gauge("storebox_sync_lag_seconds", "Age of the oldest unacknowledged outbox row", registry=registry)
        self.last_success = Gauge(
            "storebox_sync_last_success_timestamp_seconds", "When the aggregator last answered", registry=registry
        )


class SyncService:
    def __init__(
        self,
        settings: Settings,
        writer: Any,
        open_reader: Callable[[], sqlite3.Connection],
        clock: Clock,
        registry: CollectorRegistry,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.open_reader = open_reader
        self.clock = clock
        self.client = SyncClient(settings, lambda: load_key(settings), clock, transport=transport)
        self.ctx = PullContext(settings, writer, open_reader, clock, registry)
        self.metrics = _Metrics(registry)
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self.failures = 0
        self.last_error: dict[str, Any] | None = None
        self.last_success_at: str | None = None
        self.refused = False
        self._last_contact = 0.0
        self._last_pull = 0.0
        self._last_compaction = -float(COMPACT_EVERY_S)
        writer.add_listener(self._on_commit)

    def _on_commit(self, _results: Any) -> None:
        if self._wake is not None:
            self._wake.set()

    def _now(self) -> str:
        return self.clock().isoformat()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            conn = self.open_reader()
            try:
                return fn(conn, *args)
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    # --- one round ---------------------------------------------------------------------------------------

    async def push_now(self) -> dict[str, Any]:
        """Upload everything pending now (one round); what was sent. Raises SyncError when it stopped short."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._round()

    async def _round(self) -> dict[str, Any]:
        store = self.settings.store_id
        if await self._read(snapshots_changed):
            await self.writer.execute(write_snapshots, self._now())
        sent = rows = 0
        applied_through: int | None = None
        statuses: dict[str, int] = {}
        batch = await self._read(outbox.next_batch, store, self.settings.sync_batch_rows)
        body = await asyncio.to_thread(encode_body, batch.body) if batch is not None else b""
        while batch is not None:
            await self.writer.execute(
                outbox.record_and_send,
                batch.seq,
                batch.first_row,
                batch.last_row,
                len(batch.rows),
                batch.digest,
                self._now(),
            )
            # What will still be pending once this batch is stored: the aggregator's lag figure for the store.
            head = await self._read(outbox.pending_after, batch.last_row)
            sending = asyncio.create_task(
                self.client.request(
                    "POST",
                    "/api/v1/sync/batches",
                    params=self._head_params(head),
                    content=body,
                    headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
                )
            )
            # While this batch is on the wire and being applied, read and compress the next one (when the answer
            # asks for batches again, the next one is chosen afresh instead).
            following = await self._read(
                outbox.batch_after, store, self.settings.sync_batch_rows, batch.seq, batch.last_row
            )
            following_body = await asyncio.to_thread(encode_body, following.body) if following is not None else b""
            try:
                answer = _json_answer(await sending)
            except SyncError as error:
                await self.writer.execute(outbox.mark_failed, batch.seq, error.message_en)
                raise
            status, applied_through, missing = _read_answer(answer, batch.seq)
            await self.writer.execute(outbox.mark_acked, batch.seq, status, applied_through, self._now())
            self._contact_ok()
            statuses[status] = statuses.get(status, 0) + 1
            self.metrics.batches.labels(status=status).inc()
            self.metrics.rows.inc(len(batch.rows))
            sent += 1
            rows += len(batch.rows)
            resend = [s for s in missing if s <= batch.seq]
            if resend:
                log.warning(
                    "aggregator is missing batches %s: sending them again / 汇总服务缺少批次，重发", resend[:10]
                )
                await self.writer.execute(outbox.unacknowledge, resend)
                batch = await self._read(outbox.next_batch, store, self.settings.sync_batch_rows)
                body = await asyncio.to_thread(encode_body, batch.body) if batch is not None else b""
            else:
                batch, body = following, following_body
        if sent == 0 and time.monotonic() - self._last_contact >= self.settings.sync_heartbeat_seconds:
            answer = await self.client.post_json(
                "/api/v1/sync/heartbeat", b"", gzip=False, params=self._head_params(await self._read(outbox.pending))
            )
            self._contact_ok()
            applied_through = int(answer.get("applied_through", 0)) if isinstance(answer, dict) else None
            missing = [s for s in answer.get("missing", []) if isinstance(s, int)] if isinstance(answer, dict) else []
            if applied_through is not None:
                await self.writer.execute(outbox.set_state, {"applied_through": str(applied_through)})
            if missing:
                await self.writer.execute(outbox.unacknowledge, missing[:1000])
        if time.monotonic() - self._last_compaction >= COMPACT_EVERY_S:
            self._last_compaction = time.monotonic()
            compacted = await self.writer.execute(outbox.compact, self.clock(), self.settings.outbox_retention_days)
            if compacted:
                log.info("compacted %d acknowledged outbox rows / 已压缩 %d 条已确认的发件箱记录", compacted, compacted)
        await self._update_gauges()
        return {"batches": sent, "rows": rows, "answers": statuses, "applied_through": applied_through}

    def _head_params(self, head: outbox.Pending) -> dict[str, Any]:
        oldest = None
        if head.oldest_at:
            with contextlib.suppress(ValueError):
                oldest = datetime.fromisoformat(head.oldest_at).isoformat()
        return {"head": head.head_seq, "pending": head.rows, "oldest": oldest, "sent_at": self._now()}

    def _contact_ok(self) -> None:
        self._last_contact = time.monotonic()
        self.failures = 0
        self.refused = False
        self.last_error = None
        self.last_success_at = self._now()
        self.metrics.last_success.set(self.clock().timestamp())

    async def _update_gauges(self) -> None:
        head = await self._read(outbox.pending)
        self.metrics.pending.set(head.rows)
        lag = 0.0
        if head.rows and head.oldest_at:
            with contextlib.suppress(ValueError):
                lag = max(0.0, (self.clock() - datetime.fromisoformat(head.oldest_at)).total_seconds())
        self.metrics.lag.set(lag)

    async def _pull(self) -> None:
        for name in PULLERS:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            pull = getattr(module, "pull", None)
            if pull is None:
                continue
            try:
                await pull(self.client, self.ctx)
            except SyncUnavailable:
                raise
            except Exception:  # a puller's failure never stops the upload; it is tried again next round
                log.exception("sync puller %s failed / 同步拉取失败", name)
                self.metrics.failures.labels(reason=f"pull:{name.rsplit('.', 1)[-1]}").inc()

    # --- the loop ----------------------------------------------------------------------------------------

    def backoff_seconds(self) -> float:
        """Full jitter: uniform in [0, min(max, 2^failures)], and the longest wait after a refusal."""
        if self.refused:
            return self.settings.sync_backoff_max_seconds
        return random.uniform(0, min(self.settings.sync_backoff_max_seconds, 2.0 ** min(self.failures, 30)))

    async def run(self) -> None:
        self._wake = asyncio.Event()
        self._lock = self._lock or asyncio.Lock()
        try:
            next_upload = 0.0  # while backing off: when the upload may be tried again
            while True:
                if time.monotonic() >= next_upload:
                    delay = 0.0
                    try:
                        async with self._lock:
                            await self._round()
                    except SyncUnavailable as error:
                        self.failures += 1
                        self.last_error = error.to_dict()
                        self.metrics.failures.labels(reason="unavailable").inc()
                        delay = self.backoff_seconds()
                        log.info(
                            "aggregator unavailable, retry in %.1f s / 汇总服务不可用: %s", delay, error.message_en
                        )
                    except SyncError as error:
                        self.failures += 1
                        self.refused = isinstance(error, SyncRefused)
                        self.last_error = error.to_dict()
                        self.metrics.failures.labels(reason=getattr(error, "remote_code", error.code)).inc()
                        delay = self.backoff_seconds()
                        log.error("sync refused: %s / 同步被拒绝: %s", error.message_en, error.message)
                    next_upload = time.monotonic() + delay
                # The pullers keep their own schedule: a refused or failing upload (a conflict after a restore, a
                # revoked key) must not stop incoming transfers, settlements and packages.
                if time.monotonic() - self._last_pull >= self.settings.sync_pull_interval_seconds:
                    self._last_pull = time.monotonic()
                    try:
                        async with self._lock:
                            await self._pull()
                    except SyncError as error:
                        self.metrics.failures.labels(reason="pull").inc()
                        log.info("sync pull failed / 同步拉取失败: %s", error.message_en)
                if self.failures:
                    # Backing off: a posting does not cut the wait short, or a busy store would knock once per sale
                    # on an aggregator that is coming back (and a refused box would resend on every posting).
                    next_pull = self._last_pull + self.settings.sync_pull_interval_seconds
                    await asyncio.sleep(max(0.0, min(next_upload, next_pull) - time.monotonic()))
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self.settings.sync_interval_seconds)
                self._wake.clear()
        finally:
            await self.client.aclose()

    async def status(self) -> dict[str, Any]:
        local = await self._read(local_status, self.clock())
        return {
            "configured": True,
            "url": self.settings.sync_url,
            **local,
            "last_success_at": self.last_success_at,
            "failures": self.failures,
            "refused": self.refused,
            "last_error": self.last_error,
            "clock_offset_s": round(self.client.offset_s, 3),
        }


def _state_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    row = conn.execute(
        "SELECT MAX(seq), MAX(CASE WHEN acked_at IS NOT NULL THEN seq END), MAX(acked_at) FROM sync_batches"
    ).fetchone()
    error = conn.execute(
        "SELECT seq, last_error FROM sync_batches WHERE last_error IS NOT NULL ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return {
        "last_batch": row[0],
        "last_acked_batch": row[1],
        "last_ack_at": row[2],
        "applied_through": int(outbox.get_state(conn, "applied_through") or 0),
        "compacted_through_row": int(outbox.get_state(conn, "compacted_through_row") or 0),
        "last_batch_error": None if error is None else {"batch": int(error[0]), "error": str(error[1])},
    }


def local_status(conn: sqlite3.Connection, now: datetime) -> dict[str, Any]:
    """What the database knows of sync (no aggregator asked): pending rows, batches, acknowledgement, lag."""
    head = outbox.pending(conn)
    lag = 0.0
    if head.rows and head.oldest_at:
        with contextlib.suppress(ValueError):
            lag = max(0.0, (now - datetime.fromisoformat(head.oldest_at)).total_seconds())
    return {
        "pending_rows": head.rows,
        "oldest_pending_at": head.oldest_at,
        "head_seq": head.head_seq,
        "lag_seconds": round(lag, 3),
        **_state_summary(conn),
    }


def _json_answer(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SyncUnavailable("汇总服务的应答不是 JSON", "the aggregator's answer is not JSON") from None


def _read_answer(answer: Any, seq: int) -> tuple[str, int, list[int]]:
    if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
        raise SyncUnavailable("汇总服务的应答无法识别", f"unrecognised answer from the aggregator: {str(answer)[:200]}")
    if answer["status"] not in ACK_STATUSES or answer.get("seq") != seq:
        raise SyncUnavailable("汇总服务的应答无法识别", f"unrecognised answer from the aggregator: {str(answer)[:200]}")
    applied = answer.get("applied_through")
    missing = answer.get("missing") or []
    if not isinstance(applied, int) or isinstance(applied, bool) or not isinstance(missing, list):
        raise SyncUnavailable("汇总服务的应答无法识别", "unrecognised answer from the aggregator")
    return str(answer["status"]), applied, [m for m in missing if type(m) is int and m > 0]


def build_sync(
    settings: Settings,
    writer: Any,
    open_reader: Callable[[], sqlite3.Connection],
    clock: Clock,
    registry: CollectorRegistry,
) -> SyncService:
    return SyncService(settings, writer, open_reader, clock, registry)


__all__ = ["PullContext", "SyncService", "build_sync", "encode_body", "local_status"]
