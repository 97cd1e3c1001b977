"""When the plan runs (补货计划调度): every `plan_interval_minutes` by APScheduler, and at once for the SKUs an event
touches: a sale far above its forecast, a changed outside signal (a supplier delay, a promotion), a cold-room
excursion that became an alarm (or ended) with lots of the SKU, a return spike.

One `Planner` per box. Runs never overlap: requests queue, a full run absorbs the partial ones waiting, partial
runs waiting merge into one. Reads run on a reader connection in a worker thread (the kernels release the GIL);
the write is one job of the ledger writer. The first run after start is in the background, so the box starts
at its usual speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge.forecast.runtime import DemandModel
from edge.ledger.commands import PostResult
from edge.replenishment.leadtime import LeadTimePolicy
from edge.replenishment.plan_data import epoch_day
from edge.replenishment.planner import DEFAULT_POOL, PlanContext, PlanRun, prepare_plan, write_plan
from edge.replenishment.signals import SignalPolicy

log = logging.getLogger("storebox.replenishment")

SALE_PREFIX = "SA"  # document numbers of sales (edge.ledger.posting.DOC_PREFIX)


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """The planner's settings (edge.config block "replenishment: planner")."""

    interval_minutes: int = 15  # 0: no scheduled runs
    first_run_delay_seconds: float = 5.0
    trigger_check_seconds: float = 5.0
    returns_check_seconds: float = 60.0  # return spikes are detected in the writer: not at every trigger check
    horizon_days: int = 14
    history_days: int = 91
    notice_days: float = 3.0
    open_po_days: int = 60
    pool: tuple[tuple[str, str], ...] = DEFAULT_POOL
    spike_factor: float = 3.0  # a day's sales so far above this x the day's forecast ...
    spike_min_units: float = 10.0  # ... and at least this many units: recompute the SKU at once
    use_signals: bool = True

    @staticmethod
    def from_settings(settings: Any) -> PlannerSettings:
        values: dict[str, Any] = {}
        for name in PlannerSettings.__dataclass_fields__:
            if hasattr(settings, f"plan_{name}"):
                values[name] = getattr(settings, f"plan_{name}")
        if "pool" in values:
            values["pool"] = tuple(sorted(dict(values["pool"]).items()))
        return PlannerSettings(**values)


class PlanMetrics:
    """Prometheus metrics of the planner, on the registry given."""

    def __init__(self, registry: CollectorRegistry, open_reader: Callable[[], sqlite3.Connection]) -> None:
        self.duration = Histogram(
            "storebox_plan_run_seconds",
            "Duration of a replenishment plan run (read, forecast, kernels, write)",
            ["kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=registry,
        )
        self.runs = Counter(
            "storebox_plan_runs", "Replenishment plan runs by what started them", ["trigger"], registry=registry
        )
        self.failures = Counter("storebox_plan_run_failures", "Plan runs that failed", registry=registry)
        self.open = Gauge(
            "storebox_plan_suggestions_open", "Reorder suggestions waiting for a decision", registry=registry
        )
        self.open.set_function(lambda: float(_count_open(open_reader)))


def _count_open(open_reader: Callable[[], sqlite3.Connection]) -> int:
    try:
        conn = open_reader()
    except sqlite3.Error:
        return 0
    try:
        return int(conn.execute("SELECT COUNT(*) FROM suggestions WHERE state = 'open'").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


@dataclass
class _Cursors:
    """How far the trigger check has read each feed."""

    signals: int = 0
    excursions: str = ""
    return_spikes: int = 0


def _return_spikes(conn: sqlite3.Connection, cursor: int, today: date, policy: Any) -> tuple[int, list[str]]:
    """Writer job: detect return spikes (recorded in the writer's transaction) and the SKUs of those after cursor."""
    from edge.replenishment.returns import spikes_since

    new_cursor, spikes = spikes_since(conn, cursor, today, policy)
    return new_cursor, sorted({sku for spike in spikes for sku in spike.skus})


class Planner:
    """Runs the plan on schedule and on events; see the module docstring."""

    def __init__(
        self,
        config: PlannerSettings,
        *,
        writer: Any,  # edge.writer.LedgerWriter: execute(fn, *args), add_listener(fn)
        open_reader: Callable[[], sqlite3.Connection],
        clock: Callable[[], datetime],
        business_date: Callable[[datetime], date],
        registry: CollectorRegistry | None = None,
        model: DemandModel | None = None,
        load_model: Callable[[], DemandModel | None] | None = None,
        model_source: Callable[[], object] | None = None,
        signal_policy: SignalPolicy | None = None,
        lead_time_policy: LeadTimePolicy | None = None,
        return_policy: Any = None,
    ) -> None:
        self.config = config
        self.writer = writer
        self.open_reader = open_reader
        self.clock = clock
        self.business_date = business_date
        self.model = model
        self._load_model = load_model
        self._model_source = model_source  # where the model comes from now: a change reloads it at the next run
        self._model_from: object = None
        self._model_loaded = False
        self.signal_policy = signal_policy
        self.lead_time_policy = lead_time_policy
        self.return_policy = return_policy
        self.metrics = PlanMetrics(registry, open_reader) if registry is not None else None
        self.scheduler: Any = None
        self.last_run: PlanRun | None = None
        self._full: str | None = None  # trigger of a pending full run
        self._partial: dict[str, set[str]] = {}  # pending SKU -> triggers
        self._waiters: list[asyncio.Future[PlanRun]] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._checking = False
        self._returns_checked = -math.inf
        self._check_task: asyncio.Task[set[str]] | None = None
        self._dirty: set[str] = set()
        self._cursors: _Cursors | None = None
        self._forecast_day: date | None = None
        self._expected: dict[tuple[str, str], float] = {}  # series -> forecast demand of the day
        self._spiked: set[tuple[str, str]] = set()  # series already recomputed for a spike that day

    # --- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker, the schedule and the commit listener (inside the running event loop)."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

        self._wake = asyncio.Event()
        self._worker = asyncio.create_task(self._work(), name="replenishment-planner")
        self.writer.add_listener(self.on_commit)
        scheduler_log = logging.getLogger("apscheduler")
        if scheduler_log.level == logging.NOTSET:  # it narrates every job at INFO: every few seconds here
            scheduler_log.setLevel(logging.WARNING)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        first = self.clock() + timedelta(seconds=self.config.first_run_delay_seconds)
        if self.config.interval_minutes > 0:
            self.scheduler.add_job(
                self._scheduled,
                "interval",
                minutes=self.config.interval_minutes,
                next_run_time=first,
                id="plan",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        if self.config.trigger_check_seconds > 0:
            self.scheduler.add_job(
                self.check_triggers,
                "interval",
                seconds=self.config.trigger_check_seconds,
                id="plan-triggers",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        for task in (self._worker, self._check_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._worker = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()

    async def _scheduled(self) -> None:
        trigger = "schedule" if self.last_run is not None else "start"
        with contextlib.suppress(asyncio.CancelledError):
            await self.run(trigger)

    # --- requests -------------------------------------------------------------------------------------------

    def request(self, trigger: str, skus: Collection[str] | None = None) -> asyncio.Future[PlanRun]:
        """Queue a run (all SKUs when `skus` is None); the future resolves with the run that covered it."""
        if self._wake is None:
            raise RuntimeError("the planner is not started")
        if skus is None:
            self._full = self._full or trigger
        else:
            for sku in skus:
                self._partial.setdefault(sku, set()).add(trigger)
        future: asyncio.Future[PlanRun] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._wake.set()
        return future

    async def run(self, trigger: str, skus: Collection[str] | None = None) -> PlanRun:
        """Run the plan (queued behind a run in progress) and return the run that covered the request."""
        if self._wake is None:  # not started (a CLI, a test): run inline
            return await self._run_once(trigger, None if skus is None else sorted(set(skus)))
        return await self.request(trigger, skus)

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._full is not None or self._partial:
                full, partial, waiters = self._full, self._partial, self._waiters
                self._full, self._partial, self._waiters = None, {}, []
                if full is not None:
                    trigger, skus = full, None
                else:
                    trigger = "+".join(sorted({t for ts in partial.values() for t in ts}))
                    skus = sorted(partial)
                try:
                    result = await self._run_once(trigger, skus)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("replenishment plan run failed / 补货计划运行失败 (%s)", trigger)
                    if self.metrics is not None:
                        self.metrics.failures.inc()
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(result)

    def context(self, trigger: str) -> PlanContext:
        now = self.clock()
        return PlanContext(
            now=now,
            today=self.business_date(now),
            trigger=trigger,
            horizon=self.config.horizon_days,
            history_days=self.config.history_days,
            notice_days=self.config.notice_days,
            open_po_days=self.config.open_po_days,
            pool=self.config.pool,
            model=self.model,
            use_signals=self.config.use_signals,
            signal_policy=self.signal_policy,
            lead_time_policy=self.lead_time_policy,
        )

    def _prepare(self, ctx: PlanContext, skus: list[str] | None) -> Any:
        if self._load_model is not None:  # loaded on the first run, in this worker thread, not at start
            source = self._model_source() if self._model_source is not None else None
            if self._model_loaded is False or source != self._model_from:  # first run, or HQ installed another
                self._model_from, self._model_loaded = source, True
                self.model = self._load_model()
            ctx = replace(ctx, model=self.model)
        conn = self.open_reader()
        try:
            return prepare_plan(conn, ctx, skus)
        finally:
            conn.close()

    async def _run_once(self, trigger: str, skus: list[str] | None) -> PlanRun:
        ctx = self.context(trigger)
        started = time.perf_counter()
        prepared = await asyncio.to_thread(self._prepare, ctx, skus)
        finished = self.clock()
        record = replace(
            prepared.record,
            finished_at=finished.isoformat(),
            duration_ms=round((time.perf_counter() - started) * 1000),
        )
        run: PlanRun = await self.writer.execute(write_plan, record)
        seconds = time.perf_counter() - started
        self._remember_forecast(ctx.today, prepared)
        self.last_run = run
        if self.metrics is not None:
            self.metrics.duration.labels(kind="partial" if skus is not None else "full").observe(seconds)
            self.metrics.runs.labels(trigger=trigger.split("+")[0]).inc()
        log.info(
            "replenishment plan run %d (%s): %d SKU-locations, %d suggestions, %d superseded, %.2f s",
            run.id,
            trigger,
            run.series,
            run.rows,
            run.superseded,
            seconds,
        )
        for error in run.errors:
            log.warning("plan run %d: %s / %s", run.id, error["message_en"], error["message"])
        return run

    def _remember_forecast(self, today: date, prepared: Any) -> None:
        """Keep the forecast of today per series, for the sale-spike check."""
        if self._forecast_day != today:
            self._forecast_day = today
            self._expected = {}
            self._spiked = set()
        universe = prepared.universe
        if universe.n == 0:
            return
        today_demand = prepared.outputs.demand[:, 0].tolist()
        keys = zip(universe.sku.tolist(), universe.location.tolist(), strict=True)
        self._expected.update(zip(keys, today_demand, strict=True))

    # --- triggers -------------------------------------------------------------------------------------------

    def on_commit(self, results: list[PostResult]) -> None:
        """Writer listener: the SKUs of new sales are checked against their forecast (soon, off the loop)."""
        sold = {change.sku for r in results if (r.doc_no or "").startswith(SALE_PREFIX) for change in r.stock}
        if not sold:
            return
        self._dirty |= sold
        if not self._checking and self._wake is not None:
            self._check_task = asyncio.ensure_future(self.check_triggers())

    async def check_triggers(self) -> set[str]:
        """Look at every trigger feed and queue a partial run for the SKUs touched; returns them. Sales committed
        while a check reads are checked right after it."""
        if self._checking:
            return set()
        self._checking = True
        found: set[str] = set()
        try:
            while True:
                found |= await self._check_once()
                if not self._dirty:
                    return found
        finally:
            self._checking = False

    async def _check_once(self) -> set[str]:
        dirty, self._dirty = self._dirty, set()
        now = self.clock()
        today = self.business_date(now)
        touched = await asyncio.to_thread(self._read_triggers, dirty, today)
        cursors = self._cursors
        due = time.monotonic() - self._returns_checked >= self.config.returns_check_seconds
        if cursors is not None and due:
            self._returns_checked = time.monotonic()
            try:
                cursor, skus = await self.writer.execute(
                    _return_spikes, cursors.return_spikes, today, self.return_policy
                )
            except Exception:  # return spikes are one feed of several: the others still count
                log.exception("return spike check failed")
            else:
                for sku in skus:
                    touched.setdefault(sku, "return_spike")
                cursors.return_spikes = cursor
        by_trigger: dict[str, list[str]] = {}
        for sku, trigger in touched.items():
            by_trigger.setdefault(trigger, []).append(sku)
        if self._wake is not None:
            for trigger, skus in by_trigger.items():
                self.request(trigger, skus).add_done_callback(_consumed)
        return set(touched)

    def _read_triggers(self, dirty: set[str], today: date) -> dict[str, str]:
        conn = self.open_reader()
        try:
            if self._cursors is None:
                self._cursors = _initial_cursors(conn)
                touched: dict[str, str] = {}
            else:
                touched = self._feeds(conn, self._cursors)
            for sku in self._sale_spikes(conn, dirty, today):
                touched[sku] = "sale_spike"
            return touched
        finally:
            conn.close()

    def _feeds(self, conn: sqlite3.Connection, cursors: _Cursors) -> dict[str, str]:
        touched: dict[str, str] = {}
        try:
            from edge.replenishment.signals import touched_since

            cursors.signals, skus = touched_since(conn, cursors.signals)
            touched.update(dict.fromkeys(skus, "signal"))
        except sqlite3.Error:
            log.exception("signal trigger check failed")
        rows = conn.execute(
            "SELECT DISTINCT x.sku, MAX(COALESCE(e.ended_at, ''), e.alarmed_at) AS changed"
            " FROM cold_excursions e JOIN cold_excursion_lots x ON x.excursion_id = e.id"
            " WHERE e.alarmed_at IS NOT NULL AND (e.alarmed_at > ? OR COALESCE(e.ended_at, '') > ?)",
            (cursors.excursions, cursors.excursions),
        ).fetchall()
        for row in rows:
            touched.setdefault(row[0], "cold_excursion")
            cursors.excursions = max(cursors.excursions, row[1])
        return touched

    def _sale_spikes(self, conn: sqlite3.Connection, skus: Iterable[str], today: date) -> list[str]:
        wanted = sorted(set(skus))
        if not wanted or self._forecast_day != today:
            return []
        pool = dict(self.config.pool)
        sold: dict[tuple[str, str], float] = {}
        for sku, location, qty in conn.execute(
            "SELECT ps.sku, ps.location, d.qty FROM sales_daily d JOIN plan_series ps ON ps.id = d.series"
            " WHERE d.day = ? AND ps.sku IN (SELECT value FROM json_each(?))",
            (epoch_day(today), json.dumps(wanted)),
        ):
            key = (sku, pool.get(location, location))
            sold[key] = sold.get(key, 0.0) + float(qty)
        spiked: list[str] = []
        for key, qty in sold.items():
            expected = self._expected.get(key, 0.0)
            if key in self._spiked or qty < self.config.spike_min_units:
                continue
            if qty > self.config.spike_factor * expected:
                self._spiked.add(key)
                spiked.append(key[0])
        return sorted(set(spiked))


def _consumed(future: asyncio.Future[PlanRun]) -> None:
    """Nobody waits for a triggered run: its failure is logged by the worker, not left unretrieved."""
    if not future.cancelled():
        future.exception()


def _initial_cursors(conn: sqlite3.Connection) -> _Cursors:
    """Start after everything already there: the first full run covers it."""
    cursors = _Cursors()
    with contextlib.suppress(sqlite3.Error):
        cursors.signals = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM signal_batches").fetchone()[0])
    row = conn.execute(
        "SELECT MAX(MAX(COALESCE(ended_at, ''), COALESCE(alarmed_at, ''))) FROM cold_excursions"
    ).fetchone()
    cursors.excursions = str(row[0] or "")
    with contextlib.suppress(sqlite3.Error):
        cursors.return_spikes = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM return_spikes").fetchone()[0])
    return cursors


def build_planner(
    settings: Any,
    writer: Any,
    open_reader: Callable[[], sqlite3.Connection],
    clock: Callable[[], datetime],
    registry: CollectorRegistry,
) -> Planner:
    """The box's planner from its settings (edge/app.py calls this); the demand model loads on the first run."""
    from edge.forecast.runtime import ForecastMetrics, load_demand_model, shipped_models_dir
    from edge.replenishment.returns import ReturnSpikePolicy

    metrics = ForecastMetrics(registry)

    def model_folder() -> Any:
        """HQ's model package `demand` when one is installed (docs/packages.md), else the configured or shipped."""
        installed = settings.packages_dir / "model" / "demand" / "current"
        if installed.is_dir():
            return installed.resolve()  # resolved: a new version is a new folder, and the planner reloads
        return getattr(settings, "models_dir", None) or shipped_models_dir()

    def load_model() -> DemandModel | None:
        kind = getattr(settings, "forecast_model", "none")
        return load_demand_model(model_folder(), kind, metrics=metrics)

    return Planner(
        PlannerSettings.from_settings(settings),
        writer=writer,
        open_reader=open_reader,
        clock=clock,
        business_date=settings.business_date,
        registry=registry,
        load_model=load_model,
        model_source=model_folder,
        signal_policy=SignalPolicy.from_settings(settings),
        lead_time_policy=LeadTimePolicy.from_settings(settings),
        return_policy=ReturnSpikePolicy.from_settings(settings),
    )


async def serve_planner(planner: Planner) -> None:
    """Run the planner until cancelled (the box's stop())."""
    planner.start()
    try:
        await asyncio.Event().wait()
    finally:
        await planner.stop()
