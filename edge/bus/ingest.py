"""The ingest consumer: the one place that turns device events into ledger commands.

The broker's tap `offer`s every event published under `storebox/<store>/dev/+/evt/#` into an in-memory
inbox. One loop takes everything waiting (up to `ingest_batch_max`), validates it, and submits the whole
batch to the one writer at once, so that postings, sensor readings and dead letters share a group
commit; each command still succeeds or fails on its own. Only after the commit does it publish each
event's ack on `storebox/<store>/dev/<device>/ack`, or on the MQTT 5 response topic the event named, with its
correlation data (edge/bus/external.py). A resent id gets the first result again (the
ledger's idempotency key `dev:<device>:<id>`). Nothing that arrives can stop the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from edge.bus.event_kinds import decode_options, device_event_kinds
from edge.bus.payloads import (
    Ack,
    DecodedEvent,
    JobOutcome,
    RejectCode,
    Rejection,
    TemperatureReading,
    decode_event,
    event_key,
)
from edge.bus.storage import DeadLetter, insert_dead_letters, insert_readings, run_event_job
from edge.bus.topics import ack_topic, stock_topic
from edge.config import Settings
from edge.ledger.commands import Command, PostResult
from edge.ledger.errors import UnknownLocation
from edge.security.devices import touch_device
from edge.writer import LedgerWriter

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]

# Ledger refusals that mean the event can never post as sent (the device sent an unknown code, a bad
# location, an id reused for other content): answered like any refusal, and also kept as dead letters.
# Business refusals (insufficient_stock, lot_expired, ...) are answers, not garbage.
DEAD_LETTER_LEDGER_CODES = frozenset(
    {"unknown_item", "unknown_unit", "unknown_location", "invalid_command", "idempotency_key_reused"}
)
INBOX_BATCHES = 64  # inbox holds this many full batches; beyond that events are dropped unanswered
# While one batch commits, the next is validated and queued to the writer, which keeps the writer busy.
# The writer commits in order, so a resent id in the later batch still sees the first posting.
BATCHES_IN_FLIGHT = 2
TOUCH_SECONDS = 30.0  # how often a device's last_seen is written at most


class Publisher(Protocol):
    """The broker the box publishes through (embedded or external). `correlation` is MQTT 5 correlation
    data for a response; a 3.1.1 broker drops it."""

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1, correlation: bytes | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One raw event as the tap handed it over."""

    device: str
    kind: str
    topic: str
    payload: bytes
    received: float  # monotonic seconds
    response_topic: str | None = None  # MQTT 5: where the ack goes instead of the ack topic (checked by the client)
    correlation: bytes | None = None  # MQTT 5: echoed with the ack


class IngestMetrics:
    """Prometheus metrics of the consumer, registered on the registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "storebox_ingest_events", "Device events received, by kind", ["kind"], registry=registry
        )
        self.acks = Counter(
            "storebox_ingest_acks", "Acks published, by outcome and code", ["ok", "code"], registry=registry
        )
        self.dead_letters = Counter(
            "storebox_ingest_dead_letters", "Events kept as dead letters, by reason", ["reason"], registry=registry
        )
        self.dropped = Counter(
            "storebox_ingest_dropped", "Events dropped unanswered because the inbox was full", registry=registry
        )
        self.errors = Counter(
            "storebox_ingest_errors", "Batches that failed unexpectedly (logged; devices resend)", registry=registry
        )
        self.batch_size = Histogram(
            "storebox_ingest_batch_size",
            "Events per ingest batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.latency = Histogram(
            "storebox_ingest_latency_seconds",
            "From the broker taking a publish to its commit",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )


class IngestConsumer:
    """See the module docstring. `attach(broker)`, then `start()`; the broker calls `offer`."""

    def __init__(
        self,
        *,
        settings: Settings,
        writer: LedgerWriter,
        registry: CollectorRegistry,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store_id = settings.store_id
        self._kinds = device_event_kinds()
        self._options = decode_options(settings)
        self._batch_max = settings.ingest_batch_max
        self._inbox_max = settings.ingest_batch_max * INBOX_BATCHES
        self._writer = writer
        self._clock = clock
        self._monotonic = monotonic
        self.metrics = IngestMetrics(registry)
        self._inbox: deque[DeviceEvent] = deque()
        self._wake = asyncio.Event()
        self._publisher: Publisher | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._touched: dict[str, float] = {}
        self.batches = 0
        self.events = 0

    def attach(self, publisher: Publisher) -> None:
        """Where acks go (the broker: embedded, or the client of an external one)."""
        self._publisher = publisher

    def offer(
        self,
        device: str,
        kind: str,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """Take one event from the broker's tap; never blocks, never raises. An MQTT 5 client passes the
        event's response topic (already checked to lie in the device's own tree) and correlation data."""
        if self._stopping:
            return  # unanswered: the device resends to the next run of the box
        if len(self._inbox) >= self._inbox_max:
            # Unanswered: the device resends after its ack timeout (delivery contract).
            self.metrics.dropped.inc()
            return
        self._inbox.append(DeviceEvent(device, kind, topic, payload, self._monotonic(), response_topic, correlation))
        self._wake.set()

    async def start(self) -> None:
        if self._publisher is None:
            raise RuntimeError("attach the broker before starting the ingest consumer")
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="ingest-consumer")

    async def stop(self) -> None:
        """Finish the batch in flight (posting and acks), then stop; events still waiting get no ack."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._inbox:
            log.info("ingest stopped with %d events unanswered; devices resend them", len(self._inbox))
            self._inbox.clear()

    @property
    def pending(self) -> int:
        return len(self._inbox)

    async def _run(self) -> None:
        in_flight = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        running: set[asyncio.Task[None]] = set()
        while not self._stopping:
            if not self._inbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            await in_flight.acquire()
            if self._stopping:
                in_flight.release()
                break
            take = min(len(self._inbox), self._batch_max)
            batch = [self._inbox.popleft() for _ in range(take)]
            task = asyncio.create_task(self._guarded(batch, in_flight))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def _guarded(self, batch: list[DeviceEvent], in_flight: asyncio.Semaphore) -> None:
        try:
            await self._process(batch)
        except Exception:  # a bug or the writer gone: log it, keep consuming; devices resend
            self.metrics.errors.inc()
            log.exception("ingest batch of %d events failed", len(batch))
        finally:
            in_flight.release()

    # --- one batch ------------------------------------------------------------------------------

    async def _process(self, batch: list[DeviceEvent]) -> None:
        received_at = self._clock()
        self.batches += 1
        self.events += len(batch)
        self.metrics.batch_size.observe(len(batch))
        outcomes = [self._decode(event) for event in batch]

        posting = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, DecodedEvent) and o.command]
        readings = [o.reading for o in outcomes if isinstance(o, DecodedEvent) and o.reading]
        jobs = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, DecodedEvent) and o.job]
        letters = [_dead_letter(batch[i], o, received_at) for i, o in enumerate(outcomes) if isinstance(o, Rejection)]

        # Submitted together, so postings, readings, dead letters and last-seen share one group commit.
        posted, job_outcomes, refused_readings, _, _ = await asyncio.gather(
            self._post([o.command for _, o in posting if o.command]),
            self._run_jobs([o for _, o in jobs]),
            self._store_readings(readings, received_at),
            self._write(insert_dead_letters, letters) if letters else _nothing(),
            self._touch(batch),
        )
        committed = self._monotonic()

        acks: list[Ack | None] = [None] * len(batch)
        later: list[DeadLetter] = []
        for (i, decoded), result in zip(posting, posted, strict=True):
            if isinstance(result, PostResult):
                acks[i] = Ack.for_result(decoded.event_id, result)
                if not result.ok and not result.replayed and result.code in DEAD_LETTER_LEDGER_CODES:
                    later.append(_ledger_dead_letter(batch[i], decoded.event_id, result, received_at))
            else:
                acks[i] = Ack.unavailable(decoded.event_id)
        for (i, decoded), done in zip(jobs, job_outcomes, strict=True):
            acks[i] = Ack.for_outcome(decoded.event_id, done) if done is not None else Ack.unavailable(decoded.event_id)
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, Rejection):
                acks[i] = Ack.for_rejection(outcome)
            elif outcome.reading is not None and acks[i] is None:
                if refused_readings is None:
                    acks[i] = Ack.unavailable(outcome.event_id)
                elif outcome.reading in refused_readings:
                    # Names a room the box does not know: stored it would belong to no room and raise no alarm.
                    refusal = UnknownLocation(outcome.reading.location or "")
                    refused = Ack(outcome.event_id, False, refusal.code, refusal.message, refusal.message_en)
                    acks[i] = refused
                    later.append(_reading_dead_letter(batch[i], refused, received_at))
                else:
                    acks[i] = Ack.stored(outcome.event_id)
        if later:
            # Kept before the ack goes out, so whoever sees the failed ack also finds the dead letter.
            await self._write(insert_dead_letters, later)

        for letter in [*letters, *later]:
            self.metrics.dead_letters.labels(reason=letter.reason_code).inc()
        for event, ack in zip(batch, acks, strict=True):
            assert ack is not None
            self.metrics.latency.observe(committed - event.received)
            self.metrics.acks.labels(ok=str(ack.ok).lower(), code=ack.code).inc()
            reply_to = event.response_topic or ack_topic(self._store_id, event.device)
            await self._publish(reply_to, ack.to_json(), event.correlation)

    def _decode(self, event: DeviceEvent) -> DecodedEvent | Rejection:
        self.metrics.received.labels(kind=event.kind if event.kind in self._kinds else "other").inc()
        try:
            return decode_event(event.device, event.kind, event.payload, kinds=self._kinds, options=self._options)
        except Exception:  # decode_event never raises by contract; a bug here is dead-lettered
            log.exception("decoding a device event failed")
            return Rejection(RejectCode.INTERNAL_ERROR, "内部错误, 事件未处理", "internal error; event not processed")

    async def _post(self, commands: Sequence[Command]) -> list[PostResult | BaseException]:
        if not commands:
            return []
        try:
            return list(await self._writer.post_many(commands))
        except Exception:
            # One job failed outside the ledger's own refusals (a bug, a database error) and took the
            # batch's answers with it. Ask again one by one: what did post is replayed by its key.
            log.exception("posting a batch of %d device events failed; retrying one by one", len(commands))
            return list(await asyncio.gather(*(self._writer.post(c) for c in commands), return_exceptions=True))

    async def _run_jobs(self, decoded: Sequence[DecodedEvent]) -> list[JobOutcome | None]:
        """Each event's writer job, once per (device, event id); None where the writer could not run it."""

        async def one(event: DecodedEvent) -> JobOutcome | None:
            assert event.job is not None
            key = event_key(event.device, event.event_id)
            try:
                return await self._writer.execute_posting(run_event_job, key, event.kind, event.job.fn, event.job.args)
            except Exception:
                log.exception("device event job %s (%s) failed", key, event.kind)
                return None

        return list(await asyncio.gather(*(one(e) for e in decoded)))

    async def _store_readings(
        self, readings: Sequence[TemperatureReading], received_at: datetime
    ) -> set[TemperatureReading] | None:
        """Store the batch's readings; the ones refused (unknown location), or None when the write failed."""
        if not readings:
            return set()
        try:
            return set(await self._writer.execute(insert_readings, readings, received_at))
        except Exception:
            log.exception("ingest write insert_readings failed")
            return None

    async def _write(self, fn: Callable[..., object], *args: object) -> bool:
        try:
            await self._writer.execute(fn, *args)
            return True
        except Exception:
            log.exception("ingest write %s failed", getattr(fn, "__name__", fn))
            return False

    async def _touch(self, batch: list[DeviceEvent]) -> None:
        now = self._monotonic()
        stale = {e.device for e in batch if self._touched.get(e.device, 0.0) <= now}
        if not stale:
            return
        for device in stale:
            self._touched[device] = now + TOUCH_SECONDS
        await self._write(touch_devices, sorted(stale), self._clock())

    async def _publish(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        assert self._publisher is not None
        try:
            if correlation is None:
                await self._publisher.publish(topic, payload, qos=1)
            else:
                await self._publisher.publish(topic, payload, qos=1, correlation=correlation)
        except Exception:  # the broker is stopping: the device resends and gets the same answer
            log.warning("could not publish on %s", topic, exc_info=True)


def touch_devices(conn: sqlite3.Connection, devices: list[str], seen_at: datetime) -> None:
    """Record when devices were last heard from (runs in the writer)."""
    for device in devices:
        touch_device(conn, device, seen_at)


async def _nothing() -> bool:
    return True


def _dead_letter(event: DeviceEvent, rejection: Rejection, received_at: datetime) -> DeadLetter:
    return DeadLetter(
        received_at=received_at,
        device=event.device,
        topic=event.topic,
        event_id=rejection.event_id,
        payload=event.payload,
        reason_code=rejection.code,
        reason=rejection.message,
        reason_en=rejection.message_en,
    )


def _reading_dead_letter(event: DeviceEvent, ack: Ack, received_at: datetime) -> DeadLetter:
    return DeadLetter(
        received_at=received_at,
        device=event.device,
        topic=event.topic,
        event_id=ack.id,
        payload=event.payload,
        reason_code=ack.code,
        reason=ack.message,
        reason_en=ack.message_en,
    )


def _ledger_dead_letter(event: DeviceEvent, event_id: str, result: PostResult, received_at: datetime) -> DeadLetter:
    return DeadLetter(
        received_at=received_at,
        device=event.device,
        topic=event.topic,
        event_id=event_id,
        payload=event.payload,
        reason_code=result.code,
        reason=result.message,
        reason_en=result.message_en,
    )


# --- the retained stock topic ---------------------------------------------------------------------


def stock_message(sku: str, on_hand: dict[str, int], ts: datetime) -> bytes:
    """The retained `storebox/<store>/stock/<sku>` payload."""
    body = {"sku": sku, "on_hand": on_hand, "ts": ts.isoformat()}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def make_stock_publisher(
    publisher: Publisher, store_id: str, clock: Clock
) -> Callable[[list[PostResult]], Awaitable[None]]:
    """A writer after-commit listener that publishes the retained stock topic of every item posted.

    Wired with `writer.add_listener(...)`, so postings from any source (devices, HTTP API, CLI through
    the writer) update the topic. Within one commit the last on-hand of an item wins.
    """

    async def publish_stock(results: list[PostResult]) -> None:
        latest: dict[str, dict[str, int]] = {}
        for result in results:
            for change in result.stock:
                latest[change.sku] = change.on_hand
        if not latest:
            return
        ts = clock()
        for sku, on_hand in latest.items():
            try:
                topic = stock_topic(store_id, sku)
            except ValueError:
                log.warning("item %r cannot be a topic level; stock not published", sku)
                continue
            try:
                await publisher.publish(topic, stock_message(sku, on_hand, ts), retain=True, qos=1)
            except Exception:  # broker stopped: the next posting publishes again
                log.warning("could not publish stock of %s", sku, exc_info=True)
                return

    return publish_stock
