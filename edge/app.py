"""Composition root: builds every part of the box from its settings and wires them. Nothing else wires.

Start order: schema migrations -> demo seed (if asked, on an empty database) -> the one writer ->
the embedded broker (or the client of an external one) with the ingest consumer -> the HTTP API. Stop order
is the reverse; the writer finishes the posting in flight before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge

from edge.config import Settings
from edge.db import connect, migrate
from edge.finance.compliance import make_purchase_order_guard
from edge.finance.errors import FinanceError
from edge.finance.rulebook import rule_book
from edge.finance.setup import prepare_books
from edge.ledger.posting import PostingContext
from edge.ledger.vouchers import RuleBook
from edge.writer import LedgerWriter

log = logging.getLogger("storebox")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoreBox:
    """One store's appliance, built from settings; `start()` and `stop()` run it inside an event loop."""

    def __init__(self, settings: Settings, *, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.rules: RuleBook = rule_book()
        # Compliance at the point of purchase: frozen suppliers and large POs without valid papers are refused.
        self.guards = (make_purchase_order_guard(settings.po_papers_required_above_yuan * 100),)
        self.registry = CollectorRegistry()
        self.started_at: float | None = None
        self.writer = LedgerWriter(
            settings.db_path,
            context=self.posting_context,
            synchronous=settings.sqlite_synchronous,
            batch_max=settings.ingest_batch_max,
        )
        self.broker: Any = None
        self.ingest: Any = None
        self._background: list[asyncio.Task[None]] = []
        self.api: FastAPI | None = None
        self.live: Any = None  # the live page's hub (edge/web/pages/live.py), made in start()
        self._readers: list[sqlite3.Connection] = []

    def posting_context(self) -> PostingContext:
        now = self.clock()
        return PostingContext(
            now=now,
            business_date=now.astimezone(self.tz).date(),
            rules=self.rules,
            default_location="floor",
            allow_negative=self.settings.allow_negative_stock,
            guards=self.guards,
        )

    def open_reader(self) -> sqlite3.Connection:
        return connect(self.settings.db_path, readonly=True)

    def prepare_database(self, *, demo: bool) -> dict[str, Any] | None:
        """Migrate, install the chart of accounts, seed the demo store if asked; before the writer starts."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        conn = connect(self.settings.db_path, synchronous=self.settings.sqlite_synchronous)
        try:
            applied = migrate(conn)
            if applied:
                log.info("schema migrations applied: %s", ", ".join(applied))
            conn.execute("BEGIN IMMEDIATE")
            try:
                prepare_books(conn, self.settings.chart, self.clock())
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if demo:
                from edge.demo.seed import demo_needed, refresh_demo_json, seed_demo

                path = self.settings.data_dir / "demo.json"
                if demo_needed(conn):
                    seed_demo(conn, self.settings, self.posting_context())
                    log.info("demo store seeded; credentials in %s", path)
                else:
                    refresh_demo_json(path, self.settings)
                return {"demo_json": str(path)}
            return None
        finally:
            conn.close()

    async def start(self, *, demo: bool = False) -> None:
        self.started_at = time.monotonic()
        await asyncio.to_thread(self.prepare_database, demo=demo)
        self.writer.start()
        from edge.rules.actions import start_ledger_cursor

        # The rules read the ledger from here on (a new box: after the last posted document); postings from now are
        # evaluated once each, also those made before the rules runtime runs (docs/rules-runtime.md).
        await self.writer.execute(start_ledger_cursor, self.clock())
        from edge.bus.broker import EmbeddedBroker
        from edge.bus.ingest import IngestConsumer, make_stock_publisher

        self.ingest = IngestConsumer(
            settings=self.settings, writer=self.writer, registry=self.registry, clock=self.clock
        )
        # --- external MQTT broker: with mqtt_url the box is an MQTT 5 client of it instead (docs/mqtt5.md) ---
        if self.settings.mqtt_url is not None:
            from edge.bus.external import ExternalBroker

            self.broker = ExternalBroker(self.settings, ingest=self.ingest, registry=self.registry)
        else:
            self.broker = EmbeddedBroker(
                self.settings, open_reader=self.open_reader, ingest=self.ingest, registry=self.registry
            )
        await self.broker.start()
        self.ingest.attach(self.broker)
        await self.ingest.start()
        self.writer.add_listener(make_stock_publisher(self.broker, self.settings.store_id, self.clock))
        from edge.bus.compliance_alerts import compliance_alerts_daily

        # Supplier papers expiring in 30 and 7 days: on MQTT alert/compliance, at start and daily.
        self._background.append(
            asyncio.create_task(
                compliance_alerts_daily(self.settings, self.writer, self.broker, self.clock), name="compliance-alerts"
            )
        )
        # --- issue 4: devices. Each part starts here in its own block and stops in stop(). ---
        # --- serial adapters (firmware profiles) ---
        if self.settings.serial_devices:
            from edge.devices.serial_adapter import run_serial_adapters

            # Each serial device on the bus as an MQTT client with its own credentials; cancelled (and its
            # adapters stopped) first thing in stop(), like every background task.
            self._background.append(
                asyncio.create_task(
                    run_serial_adapters(self.settings, registry=self.registry, clock=self.clock), name="serial"
                )
            )
        # --- fleet: device status, offline alerts, cold chain ---
        from edge.bus.status import AckCounter, FleetMonitor

        # Status messages (and last wills) from the broker; alerts on alert/device-offline and alert/cold-room;
        # connections of rotated or disabled devices closed; acks counted per device.
        self.fleet = FleetMonitor(
            self.settings,
            self.writer,
            self.broker,
            self.open_reader,
            self.registry,
            self.clock,
            sessions=self.broker if hasattr(self.broker, "disconnect_device") else None,
        )
        self.broker.on_status = self.fleet.on_status
        self.ingest.attach(AckCounter(self.broker, self.settings.store_id, self.fleet.metrics))
        self._background.append(self.fleet.start())
        # --- attachments ---
        from edge.devices.attachments import attachment_limits, sweep_periodically

        # Unlinked files a crash left, temp files, uploads whose chunks never all came: at start and hourly.
        self._background.append(
            asyncio.create_task(
                sweep_periodically(self.writer, attachment_limits(self.settings), self.clock), name="attachments-sweep"
            )
        )
        # --- replenishment planner ---
        from edge.replenishment.triggers import build_planner, serve_planner

        # The plan every plan_interval_minutes and at once on events (docs/replenishment.md). The first run and
        # the demand model's loading happen in the background, so the box starts at its usual speed; the API
        # answers plan requests with the same planner (POST /api/v1/replenishment/run); stop() stops it.
        self.planner = build_planner(self.settings, self.writer, self.open_reader, self.clock, self.registry)
        self._background.append(asyncio.create_task(serve_planner(self.planner), name="replenishment-planner"))
        # --- return-reason spikes: alerts on MQTT alert/returns (docs/signals.md) ---
        from edge.bus.return_alerts import return_alerts_periodic

        self._background.append(
            asyncio.create_task(
                return_alerts_periodic(self.settings, self.writer, self.broker, self.clock), name="return-alerts"
            )
        )
        # --- issue 8: low-code rules (docs/rules.md); the rules helper fills this block ---
        from edge.rules.runtime import build_rules_runtime, wire_ingest

        # Active rules on posted documents, device events, alerts, schedules and signals; their notifications on
        # MQTT alert/rule and e-mails by SMTP (docs/rules-runtime.md). Cancelled in stop() before the writer closes.
        self.rule_engine = build_rules_runtime(
            self.settings, self.writer, self.broker, self.open_reader, self.clock, self.registry
        )
        if demo:  # the demo store runs the built-in rule packs (docs/rules.md "Built-in packs")
            from edge.rules.packs import install_builtin

            await self.writer.execute(install_builtin, "demo", self.clock())
        self.writer.add_listener(self.rule_engine.on_postings)
        self.broker.taps.append(self.rule_engine.on_bus)
        wire_ingest(self.ingest, self.rule_engine)
        self._background.append(asyncio.create_task(self.rule_engine.run(), name="rules"))
        # --- issue 8: scenario modules (docs/modules.md); the module-host helper fills this block ---
        # Each enabled module in its own worker process with its budgets; postings and the box's alerts reach it
        # through a bounded queue (a full queue drops, never blocks ingest). The host follows the `modules` table,
        # so installs, upgrades, rollbacks and switches (API, CLI, signed packages) apply without a restart.
        self.modules: Any = None
        if self.settings.modules_enabled:
            from edge.modules.host import build_module_host, install_shipped, modules_dir_of

            if demo:
                now = self.clock().isoformat()

                def demo_transact(fn: Callable[..., Any], *args: Any) -> Any:
                    assert loop is not None
                    return asyncio.run_coroutine_threadsafe(self.writer.execute(fn, *args), loop).result()

                loop = asyncio.get_running_loop()
                await asyncio.to_thread(
                    install_shipped, modules_dir_of(self.settings), demo_transact, now, actor="demo"
                )
            self.modules = build_module_host(
                self.settings, self.writer, self.broker, self.open_reader, self.clock, self.registry
            )
            rule_engine = getattr(self, "rule_engine", None)
            if rule_engine is not None:  # the same events the rules see (ledger, bus, alert, signal)
                rule_engine.subscribe(self.modules.on_event)
                self.modules.signal_sink = rule_engine.submit  # signals a module's emit_signal raises
            else:
                self.writer.add_listener(self.modules.on_postings)
                self.broker.taps.append(self.modules.on_bus)
            self._background.append(asyncio.create_task(self.modules.run(), name="modules"))
        # --- issue 6: sync with the aggregator: outbox upload, transfers and packages pulled (docs/sync.md) ---
        self.sync: Any = None
        if self.settings.sync_url is not None:
            from edge.sync.service import build_sync

            self.sync = build_sync(self.settings, self.writer, self.open_reader, self.clock, self.registry)
            self._background.append(asyncio.create_task(self.sync.run(), name="sync"))
        self.api = self.build_api()
        self.api.state.planner = self.planner
        self.api.state.sync = self.sync
        self.api.state.rules_runtime = self.rule_engine  # issue 8: the rules' dry run (docs/rules.md)
        self.api.state.modules = self.modules  # issue 8: the module host, for /api/v1/modules (docs/modules.md)
        # --- issue 7: the live page. Postings and what the box publishes on its bus reach open pages (docs/web.md).
        from edge.web.pages.live import LiveHub, status_state

        self.live = LiveHub(self.settings.store_id)
        self.writer.add_listener(self.live.on_postings)
        self.broker.taps.append(self.live.on_bus)
        fleet_status = self.broker.on_status

        def on_status(device: str, payload: bytes) -> None:
            if fleet_status is not None:
                fleet_status(device, payload)
            self.live.on_device_status(device, status_state(payload))

        self.broker.on_status = on_status
        self.api.state.live = self.live

    def build_api(self) -> FastAPI:
        from edge.security.tokens import load_or_create_secret
        from edge.web.api import create_api
        from edge.web.deps import ApiDeps

        Gauge("storebox_info", "Build and store facts", ["store_id", "version"], registry=self.registry).labels(
            store_id=self.settings.store_id, version=_version()
        ).set(1)
        deps = ApiDeps(
            settings=self.settings,
            writer=self.writer,
            open_reader=self.open_reader,
            token_secret=load_or_create_secret(self.settings.data_dir / "secret.key"),
            metrics_registry=self.registry,
            clock=self.clock,
            health=self.health,
        )
        return create_api(deps)

    def health(self) -> dict[str, Any]:
        return {
            "store_id": self.settings.store_id,
            "broker": bool(self.broker is not None and self.broker.running),
            "writer": self.writer.running,
            "uptime_s": round(time.monotonic() - self.started_at, 3) if self.started_at else 0,
        }

    async def stop(self) -> None:
        """Stop taking events, let the writer finish what is in flight, then close the broker."""
        if self.live is not None:
            self.live.close()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.ingest is not None:
            await self.ingest.stop()
        await self.writer.close()
        if self.broker is not None:
            await self.broker.stop()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("storebox")
    except PackageNotFoundError:
        return "dev"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the box decides how to shut down."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_box(settings: Settings, *, demo: bool = False) -> int:
    """Run the box until SIGTERM or SIGINT; finish the posting in flight; return the exit code.

    Under systemd (Type=notify, systemd/storebox.service): READY=1 once the HTTP server serves, WATCHDOG=1 while
    the writer and the embedded broker are alive (no pings otherwise, so systemd restarts the box), STATUS= lines
    and STOPPING=1. The data dir is locked (`storebox.lock`) for as long as the box runs: a second box on the same
    data dir and `storebox backup restore` into it are refused.
    """
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level != "DEBUG":
        # amqtt and its state machine narrate every connection at INFO, httpx every request to the aggregator; the
        # box logs what matters itself.
        for noisy in ("transitions", "amqtt", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # The writer thread and the event loop share the GIL: hand it over sooner than the 5 ms default so
    # that acks and socket reads do not queue behind a posting batch.
    sys.setswitchinterval(0.001)
    if demo and settings.company_credit_code is None:
        from edge.demo.finance import BUYER_CREDIT_CODE

        # The demo company's invoices name it as the buyer: check them like a configured box would.
        settings = settings.model_copy(update={"company_credit_code": BUYER_CREDIT_CODE})
    from edge.backup import DataDirInUse, lock_data_dir
    from edge.service_notify import ServiceNotifier

    notifier = ServiceNotifier()
    try:
        lock = lock_data_dir(settings.data_dir)
    except DataDirInUse as err:
        log.error("cannot start: %s / %s", err.message_en, err.message)
        notifier.status(f"cannot start: {err.message_en}")
        return 1
    try:
        notifier.status("starting: migrations, writer, broker / 正在启动")
        box = StoreBox(settings)
        try:
            await box.start(demo=demo)
        except FinanceError as err:  # a company chart or rule table that does not load
            log.error("cannot start: %s / %s", err.message_en, err.message)
            notifier.status(f"cannot start: {err.message_en}")
            await box.stop()
            return 2
        except OSError as err:
            log.error(
                "cannot start: %s (MQTT %s:%s, data %s) / 无法启动",
                err,
                settings.mqtt_host,
                settings.mqtt_port,
                settings.data_dir,
            )
            notifier.status(f"cannot start: {err}")
            await box.stop()
            return 1
        assert box.api is not None
        server = _Server(
            uvicorn.Config(
                box.api,
                host=settings.http_host,
                port=settings.http_port,
                log_level=settings.log_level.lower(),
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=10,  # a client that keeps a request open does not hold the box up
            )
        )
        loop = asyncio.get_running_loop()

        def request_exit() -> None:
            log.info("shutting down / 正在关机")
            notifier.stopping()
            if box.live is not None:
                box.live.close()  # open pages' event streams end, so the HTTP server can finish
            server.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, request_exit)

        def healthy() -> bool:
            # An external broker reconnects on its own (paho backs off): restarting the box would not bring it back,
            # so only the embedded broker counts here; the writer always does.
            broker_ok = settings.mqtt_url is not None or bool(box.broker is not None and box.broker.running)
            return bool(box.writer.running) and broker_ok

        serving = asyncio.create_task(server.serve(), name="http")
        watchdog: asyncio.Task[None] | None = None
        try:
            # uvicorn sets `started` once its sockets listen; READY=1 only then (systemd orders dependants after it).
            while not server.started and not serving.done():
                await asyncio.sleep(0.02)
            if server.started:
                notifier.ready(f"serving on {settings.http_url}, MQTT {settings.mqtt_host}:{settings.mqtt_port}")
                watchdog = asyncio.create_task(notifier.watchdog(healthy), name="watchdog")
            await serving
        finally:
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            notifier.stopping()
            await box.stop()
        log.info("stopped cleanly / 已正常关闭")
        return 0 if server.started or server.should_exit else 1
    finally:
        lock.release()
