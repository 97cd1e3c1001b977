"""The fleet on the bus: device status, offline alerts, per-device metrics and the cold-room alarms.

- `FleetMonitor.on_status(device, payload)` takes every message on a device's `storebox/<store>/dev/<id>/status`
  topic: the embedded broker's tap calls it (also with the last will of a lost connection), and so does the
  external broker's client. Thread-safe, never blocks, never raises; the reports are recorded in order
  through the writer (edge/devices/fleet.py).
- `FleetMonitor.check()` runs every `fleet_check_seconds`, and at once when a device comes back online: it
  raises the device alerts due, takes new temperature readings into rollups and excursions
  (edge/devices/cold_chain.py), publishes what was not yet published on `alert/device-offline` and
  `alert/cold-room`, closes the connections of devices whose credentials were rotated or that were disabled
  (from the API or the command line), and once an hour drops history past its keeping time.
- `AckCounter` counts each device's acks by outcome on their way out; `FleetCollector` exposes per-device
  gauges (online, age of last seen) on /metrics. Devices are few, so a device label is fine.

Alert payloads, like every message of the box, are `{"id", "ts", "data"}` (docs/fleet.md, docs/cold-chain.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.bus.ingest import Publisher
from edge.bus.topics import alert_topic
from edge.config import Settings
from edge.devices import cold_chain, fleet
from edge.devices.cold_chain import ColdAlert, ColdChainPolicy
from edge.devices.fleet import DeviceAlert, DeviceState, FleetPolicy, StatusRecord
from edge.security.devices import verify_device
from edge.writer import LedgerWriter

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
DEVICE_ALERT = "device-offline"
COLD_ROOM_ALERT = "cold-room"
PRUNE_SECONDS = 3600.0
MAX_PENDING_STATUS = 10_000  # status messages waiting for the writer; beyond that the oldest are dropped


class DeviceSessions(Protocol):
    """What the embedded broker knows of connections: who is connected, and closing a device's connections."""

    def connected_devices(self) -> set[str]: ...

    async def disconnect_device(self, device: str, keep: Callable[[str], bool] | None = None) -> int: ...


class FleetMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.acks = Counter(
            "storebox_device_acks",
            "Acks sent to each device, by outcome: ok, refused (final), retry (the box could not write)",
            ["device", "outcome"],
            registry=registry,
        )
        self.status = Counter(
            "storebox_device_status_messages",
            "Status messages from each device, by state (online, offline, invalid)",
            ["device", "state"],
            registry=registry,
        )
        self.alerts = Counter(
            "storebox_fleet_alerts", "Alerts published, by topic kind and state", ["alert", "state"], registry=registry
        )
        self.kicked = Counter(
            "storebox_device_disconnects",
            "Connections closed because the device's credentials changed or it was disabled",
            ["device"],
            registry=registry,
        )


def fleet_check(
    conn: sqlite3.Connection, now: datetime, policy: FleetPolicy, cold_policy: ColdChainPolicy
) -> tuple[list[DeviceAlert], list[ColdAlert]]:
    """One check in the writer: raise device alerts due, take new readings; return everything unpublished."""
    fleet.raise_due_alerts(conn, now, policy)
    while cold_chain.process_readings(conn, cold_policy, now) >= cold_chain.BATCH_READINGS:
        pass
    return fleet.unpublished_alerts(conn), cold_chain.unpublished_cold_alerts(conn)


def mark_published(
    conn: sqlite3.Connection, device_alerts: Sequence[int], cold_alerts: Sequence[tuple[int, str]], now: datetime
) -> None:
    fleet.mark_alerts_published(conn, device_alerts, now)
    cold_chain.mark_cold_alerts_published(conn, cold_alerts, now)


def prune(conn: sqlite3.Connection, now: datetime, raw_days: int, minute_days: int) -> tuple[int, int]:
    return cold_chain.prune_history(conn, now, raw_days, minute_days)


def message(alert_id: str, ts: datetime, data: dict[str, Any]) -> bytes:
    body = {"id": alert_id, "ts": ts.isoformat(), "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class FleetMonitor:
    """See the module docstring. `start()` inside the box's event loop; cancel the task (or `stop()`) to end."""

    def __init__(
        self,
        settings: Settings,
        writer: LedgerWriter,
        publisher: Publisher,
        open_reader: Callable[[], sqlite3.Connection],
        registry: CollectorRegistry,
        clock: Clock,
        *,
        sessions: DeviceSessions | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._writer = writer
        self._publisher = publisher
        self._open_reader = open_reader
        self._clock = clock
        self._sessions = sessions
        self._monotonic = monotonic
        self.policy = FleetPolicy(
            offline_after=timedelta(seconds=settings.device_offline_alert_seconds),
            silent_after={k: timedelta(seconds=v) for k, v in settings.device_silent_alert_seconds.items()},
        )
        self.cold_policy = ColdChainPolicy(
            bands=cold_chain.parse_bands(settings.cold_chain_bands),
            alarm_after=timedelta(seconds=settings.cold_chain_alarm_seconds),
        )
        self._tz = ZoneInfo(settings.timezone)
        self.metrics = FleetMetrics(registry)
        self._collector = FleetCollector(self)
        registry.register(self._collector)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[StatusRecord] = []
        self._status_ready = asyncio.Event()
        self._check_now = asyncio.Event()
        self._check_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stamps: dict[str, str | None] | None = None
        self._pruned_at: float | None = None
        self._missing: dict[str, datetime] = {}  # recorded online but not connected, since
        # Per-device facts for the gauges: kind, online, last seen; refreshed each check and on each status.
        self.snapshot: dict[str, tuple[str, bool, datetime | None]] = {}
        self.checks = 0

    # --- status messages ----------------------------------------------------------------------------

    def on_status(self, device: str, payload: bytes) -> None:
        """A message on `device`'s status topic (any thread). Garbage is counted and logged, never raised."""
        try:
            report = fleet.parse_status(payload)
        except ValueError as exc:
            self.metrics.status.labels(device=device, state="invalid").inc()
            log.info("status of device %s refused / 状态消息无效: %s", device, exc)
            return
        if report is None:  # an empty retained message clears the topic: nothing to record
            return
        self.metrics.status.labels(device=device, state=report.state.value).inc()
        record = StatusRecord(device, report.state, self._clock(), report.detail)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is stopping
            loop.call_soon_threadsafe(self._take, record)

    def _take(self, record: StatusRecord) -> None:
        if len(self._pending) >= MAX_PENDING_STATUS:
            del self._pending[0]
        self._pending.append(record)
        kind, _, seen = self.snapshot.get(record.device, ("other", False, None))
        online = record.state is DeviceState.ONLINE
        self.snapshot[record.device] = (kind, online, record.at if online else seen)
        self._status_ready.set()

    async def flush_statuses(self) -> None:
        """Record the status messages taken so far (in order)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            changed: list[tuple[str, DeviceState]] = await self._writer.execute(fleet.record_statuses, batch)
        except Exception:
            log.exception("recording %d device status messages failed", len(batch))
            return
        if any(state is DeviceState.ONLINE for _, state in changed):
            self._check_now.set()  # a device back online: say so now, not at the next check

    async def _record_statuses(self) -> None:
        while True:
            await self._status_ready.wait()
            self._status_ready.clear()
            await self.flush_statuses()

    # --- the check loop -----------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run the status recorder and the check loop as one task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self.run(), name="fleet")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        recorder = asyncio.create_task(self._record_statuses(), name="fleet-status")
        try:
            while True:
                try:
                    await self.check()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the writer closing, the database busy: the next check tries again
                    log.exception("fleet check failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._check_now.wait(), timeout=self._settings.fleet_check_seconds)
                self._check_now.clear()
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder

    async def check(self) -> tuple[list[DeviceAlert], list[ColdAlert]]:
        """One check (see the module docstring); returns the alerts published."""
        async with self._check_lock:
            self.checks += 1
            await self.flush_statuses()
            now = self._clock()
            device_alerts, cold_alerts = await self._writer.execute(fleet_check, now, self.policy, self.cold_policy)
            published = await self._publish(device_alerts, cold_alerts)
            await self._watch_credentials()
            await asyncio.to_thread(self._refresh_snapshot)
            self._notice_gone(now)
            if self._pruned_at is None or self._monotonic() - self._pruned_at >= PRUNE_SECONDS:
                self._pruned_at = self._monotonic()
                s = self._settings
                await self._writer.execute(prune, now, s.cold_chain_raw_days, s.cold_chain_minute_days)
            return published

    async def _publish(
        self, device_alerts: list[DeviceAlert], cold_alerts: list[ColdAlert]
    ) -> tuple[list[DeviceAlert], list[ColdAlert]]:
        store = self._settings.store_id
        sent_devices: list[DeviceAlert] = []
        sent_cold: list[ColdAlert] = []
        try:
            for alert in device_alerts:
                payload = message(f"{DEVICE_ALERT}-{alert.id}", self._local_now(), alert.to_json())
                await self._publisher.publish(alert_topic(store, DEVICE_ALERT), payload, retain=False, qos=1)
                sent_devices.append(alert)
                self.metrics.alerts.labels(alert=DEVICE_ALERT, state=alert.state.value).inc()
            for cold in cold_alerts:
                payload = message(cold.key, self._local_now(), cold.to_json())
                await self._publisher.publish(alert_topic(store, COLD_ROOM_ALERT), payload, retain=False, qos=1)
                sent_cold.append(cold)
                self.metrics.alerts.labels(alert=COLD_ROOM_ALERT, state=cold.state).inc()
        except Exception:  # the broker is down: what was not published goes out at the next check
            log.warning("could not publish fleet alerts; retried at the next check", exc_info=True)
        if sent_devices or sent_cold:
            await self._writer.execute(
                mark_published,
                [a.id for a in sent_devices],
                [(c.excursion, c.state) for c in sent_cold],
                self._clock(),
            )
        return sent_devices, sent_cold

    def _notice_gone(self, now: datetime) -> None:
        """A device recorded online with no connection for `fleet_check_seconds` is offline: it left without a
        will on its status topic, or did not come back after the box restarted. (The grace lets a device
        reconnecting right after a restart leave no trace.)"""
        if self._sessions is None:
            return
        connected = self._sessions.connected_devices()
        grace = timedelta(seconds=self._settings.fleet_check_seconds)
        missing = {device for device, (_, online, _) in self.snapshot.items() if online and device not in connected}
        self._missing = {device: self._missing.get(device, now) for device in missing}
        for device, since in sorted(self._missing.items()):
            if now - since >= grace:
                log.info("device %s is recorded online but not connected: offline / 设备未连接, 记为离线", device)
                self._take(StatusRecord(device, DeviceState.OFFLINE, now))
                del self._missing[device]

    # --- credentials --------------------------------------------------------------------------------

    def _read_stamps(self) -> dict[str, str | None]:
        conn = self._open_reader()
        try:
            rows = conn.execute("SELECT id, CASE WHEN enabled = 1 THEN password_hash END AS stamp FROM devices")
            return {row["id"]: row["stamp"] for row in rows}
        finally:
            conn.close()

    def _still_valid(self, device: str, password: str) -> bool:
        conn = self._open_reader()
        try:
            return verify_device(conn, device, password) == device
        finally:
            conn.close()

    async def _watch_credentials(self) -> None:
        """Close the connections of devices disabled or given new credentials since the last check; a connection
        that already uses the new password stays."""
        stamps = await asyncio.to_thread(self._read_stamps)
        previous, self._stamps = self._stamps, stamps
        if previous is None or self._sessions is None:
            return
        for device, stamp in stamps.items():
            if device not in previous or previous[device] == stamp:
                continue
            keep = None if stamp is None else partial(self._still_valid, device)
            closed = await self._sessions.disconnect_device(device, keep)
            if closed:
                self.metrics.kicked.labels(device=device).inc(closed)
                log.info(
                    "closed %d connection(s) of device %s: credentials changed / 凭证已变更, 断开连接", closed, device
                )

    # --- gauges -------------------------------------------------------------------------------------

    def _refresh_snapshot(self) -> None:
        conn = self._open_reader()
        try:
            rows = conn.execute(
                "SELECT d.id, d.kind, d.last_seen, s.state, s.updated_at FROM devices d"
                " LEFT JOIN device_status s ON s.device = d.id WHERE d.enabled = 1"
            ).fetchall()
        finally:
            conn.close()
        snapshot = {}
        for row in rows:
            seen = [
                fleet.parse_time(v) for v in (row["last_seen"], row["updated_at"] if row["state"] == "online" else None)
            ]
            known = [t for t in seen if t is not None]
            snapshot[row["id"]] = (row["kind"], row["state"] == DeviceState.ONLINE, max(known) if known else None)
        self.snapshot = snapshot

    def now(self) -> datetime:
        return self._clock()

    def _local_now(self) -> datetime:
        return self._clock().astimezone(self._tz)


class FleetCollector(Collector):
    """Per-device gauges from the monitor's snapshot, computed at scrape time."""

    def __init__(self, monitor: FleetMonitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        online = GaugeMetricFamily(
            "storebox_device_online", "1 while the device's last status says online", labels=["device", "kind"]
        )
        age = GaugeMetricFamily(
            "storebox_device_last_seen_age_seconds",
            "Seconds since the device was last heard from (event or online status)",
            labels=["device", "kind"],
        )
        now = self._monitor.now()
        for device, (kind, is_online, seen) in sorted(self._monitor.snapshot.items()):
            online.add_metric([device, kind], 1.0 if is_online else 0.0)
            if seen is not None:
                age.add_metric([device, kind], max((now - seen).total_seconds(), 0.0))
        yield online
        yield age


class AckCounter:
    """A Publisher that counts each device's acks by outcome on their way to the broker."""

    def __init__(self, inner: Publisher, store_id: str, metrics: FleetMetrics) -> None:
        self._inner = inner
        self._head = f"storebox/{store_id}/dev/"
        self._metrics = metrics

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1, correlation: bytes | None = None
    ) -> None:
        self._count(topic, payload)
        if correlation is None:
            await self._inner.publish(topic, payload, retain=retain, qos=qos)
        else:
            await self._inner.publish(topic, payload, retain=retain, qos=qos, correlation=correlation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _count(self, topic: str, payload: bytes) -> None:
        # An ack goes to the device's `ack` topic, or to an MQTT 5 response topic in the device's own tree.
        if not topic.startswith(self._head) or "/cmd/" in topic or topic.endswith("/status"):
            return
        device = topic[len(self._head) :].partition("/")[0]
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            return
        outcome = "ok" if body["ok"] else ("retry" if body.get("retry") else "refused")
        self._metrics.acks.labels(device=device, outcome=outcome).inc()
