"""The rules at run time (规则运行): the shell that feeds events to the engine and delivers what actions queue.

Events come in from
- the writer (`on_postings`, an after-commit listener): each posted document, once per line (`ledger`);
- the broker's taps (`on_bus`): every alert the box publishes on `storebox/<store>/alert/<kind>` (`alert`; the
  rules' own `alert/rule` excepted), and the acks of device events, which release the events `offer_device_event`
  kept (`bus`: only accepted events, once the ledger or the readings table has them);
- an APScheduler cron job per schedule in the active rules, in the store's time zone (`schedule`);
- the signal producers (edge/rules/signals.py) every `rules_signal_check_seconds`, and the signals rules raise.

Posted documents are read from the ledger itself, after a cursor (table rule_cursors) that moves in the same
transaction as the firings it caused: the after-commit listener only wakes the worker, so a busy box, a restart
or a crash never makes the rules skip or repeat a posting. The other events (alerts, device events, schedules,
signals) wait in a bounded queue (`rules_queue_max`; beyond it they are dropped and counted, never blocking
ingest). One worker evaluates each against the active rules (reloaded when a rule is approved, retired or
overridden) and runs the firings through the writer (edge/rules/actions.py). A rule that raises is a failed
firing, counted; nothing here stops the box. A delivery loop publishes queued notifications on
`storebox/<store>/alert/rule` and sends queued e-mails through SMTP (smtplib in a thread) with retries and
backoff; every row stays in the database until delivered, a failure is kept with its reason.

Scenario modules see the same events: `subscribe(callback)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import smtplib
import sqlite3
import ssl
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.bus.topics import ROOT, alert_topic
from edge.config import Settings
from edge.ledger.commands import PostResult
from edge.rules import actions, dryrun, engine, signals
from edge.rules.actions import ActionConfig, Email, FiringResult
from edge.rules.engine import Event, LoadedRule
from edge.writer import LedgerWriter

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
EventListener = Callable[[Event], Any]
RULE_ALERT_KIND = "rule"
PENDING_DEVICE_EVENTS = 4096  # device events waiting for their ack, at most (oldest forgotten first)
DOCUMENTS_PER_READ = 256  # posted documents read for the rules in one reader session at most


class RulesMetrics:
    """Prometheus metrics of the rules runtime."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "storebox_rules_events", "Events the rules saw, by trigger kind", ["kind"], registry=registry
        )
        self.dropped = Counter(
            "storebox_rules_events_dropped", "Events dropped because the rules' queue was full", registry=registry
        )
        self.firings = Counter(
            "storebox_rules_firings", "Rule firings, by outcome (done, partial, failed)", ["outcome"], registry=registry
        )
        self.errors = Counter(
            "storebox_rules_errors",
            "Events the runtime could not process (logged; the box keeps going)",
            registry=registry,
        )
        self.notifications = Counter(
            "storebox_rules_notifications",
            "Rule notifications published on MQTT, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.emails = Counter(
            "storebox_rules_emails", "Rule e-mails, by outcome (sent, retry, failed)", ["outcome"], registry=registry
        )
        self.active = Gauge("storebox_rules_active", "Active rule versions loaded", registry=registry)
        self.queue = Gauge("storebox_rules_queue", "Events waiting for the rules", registry=registry)


class SmtpMailer:
    """Sends one e-mail through the configured server (blocking: called in a thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def configured(self) -> bool:
        return self.settings.smtp_host is not None

    def message(self, email: Email, ts: datetime) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = ", ".join(email.recipients)
        message["Subject"] = actions.one_line(email.bilingual_subject)  # rows queued before the fold, too
        message["Date"] = formatdate(ts.timestamp(), localtime=False)
        message["Message-ID"] = make_msgid(f"rule-{email.id}")
        message["X-StoreBox-Rule"] = f"{email.rule_id}@{email.version}"
        message["X-StoreBox-Store"] = self.settings.store_id
        message.set_content(email.bilingual_body)
        return message

    def send(self, email: Email, ts: datetime) -> None:
        s = self.settings
        assert s.smtp_host is not None
        timeout = s.smtp_timeout_seconds
        client: smtplib.SMTP
        if s.smtp_ssl:
            client = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)
        with client:
            if s.smtp_starttls and not s.smtp_ssl:
                client.starttls(context=ssl.create_default_context())
            if s.smtp_user:
                password = s.smtp_password.get_secret_value() if s.smtp_password is not None else ""
                client.login(s.smtp_user, password)
            client.send_message(self.message(email, ts), from_addr=s.smtp_from, to_addrs=list(email.recipients))


class RulesRuntime:
    """See the module docstring. Build with `build_rules_runtime`; run `run()` as a background task."""

    def __init__(
        self,
        settings: Settings,
        writer: LedgerWriter,
        publisher: Any,
        open_reader: Callable[[], sqlite3.Connection],
        clock: Clock,
        registry: CollectorRegistry,
        *,
        mailer: SmtpMailer | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.publisher = publisher
        self.open_reader = open_reader
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.metrics = RulesMetrics(registry)
        self.mailer = mailer or SmtpMailer(settings)
        self.config = ActionConfig.from_settings(settings)
        self.policy = signals.SignalPolicy.from_settings(settings)
        self.rules: list[LoadedRule] = []
        self.fingerprint: str | None = None
        self.listeners: list[EventListener] = []
        self.scheduler: Any = None
        self._crons: tuple[str, ...] = ()
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._deliver = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pending_devices: OrderedDict[tuple[str, str], tuple[str, dict[str, Any]]] = OrderedDict()
        self._alert_prefix = f"{ROOT}/{settings.store_id}/alert/"
        self._device_prefix = f"{ROOT}/{settings.store_id}/dev/"
        self._tasks: list[asyncio.Task[Any]] = []
        self._ledger_pending = True  # read the ledger after the cursor at start: what was posted while down
        self._idle.clear()
        self.processed = 0

    # --- inputs (thin: they only queue) -----------------------------------------------------------------------

    def subscribe(self, listener: EventListener) -> None:
        """Call `listener(event)` for every event the rules see (scenario modules); it must not block."""
        self.listeners.append(listener)

    def submit(self, event: Event) -> bool:
        """Queue an event; False when the queue is full and it was dropped."""
        if len(self._queue) >= self.settings.rules_queue_max:
            self.metrics.dropped.inc()
            return False
        self._queue.append(event)
        self.metrics.queue.set(len(self._queue))
        self._idle.clear()
        self._wake.set()
        return True

    def on_postings(self, results: list[PostResult]) -> None:
        """Writer after-commit listener: documents were posted; the worker reads them from the ledger (each line
        a ledger event) after the rules' cursor. Nothing is queued here, so nothing can be dropped."""
        if any(r.ok and r.document_id is not None and not r.replayed for r in results):
            self._ledger_pending = True
            self._idle.clear()
            self._wake.set()

    def offer_device_event(self, device: str, kind: str, payload: bytes) -> None:
        """Keep a device event until its ack says the box accepted it (`on_bus`). Never raises."""
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(body, dict) or not isinstance(body.get("id"), str | int):
            return
        self._pending_devices[(device, str(body["id"]))] = (kind, body)
        while len(self._pending_devices) > PENDING_DEVICE_EVENTS:
            self._pending_devices.popitem(last=False)

    def on_bus(self, topic: str, payload: bytes) -> None:
        """Broker tap (what the box publishes): alerts become `alert` events, acks release device events."""
        try:
            if topic.startswith(self._alert_prefix):
                self._on_alert(topic[len(self._alert_prefix) :], payload)
            elif topic.startswith(self._device_prefix) and topic.endswith("/ack"):
                self._on_ack(topic[len(self._device_prefix) : -len("/ack")], payload)
        except Exception:  # a tap must never raise into the broker
            self.metrics.errors.inc()
            log.exception("rules: could not take %s", topic)

    def _on_alert(self, kind: str, payload: bytes) -> None:
        if kind == RULE_ALERT_KIND or "/" in kind:
            return  # the rules' own notices never trigger rules (no loop through alert/rule)
        body = json.loads(payload)
        if isinstance(body, dict):
            event = engine.alert_event(self.settings.store_id, kind, body, self.clock())
            if event is not None:
                self.submit(event)

    def _on_ack(self, device: str, payload: bytes) -> None:
        if "/" in device or not self._pending_devices:
            return
        body = json.loads(payload)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str | int):
            return
        pending = self._pending_devices.pop((device, str(body["id"])), None)
        if pending is None or not body.get("ok"):
            return
        kind, event_body = pending
        event = engine.bus_event(device, kind, event_body, self.clock())
        if event is not None:
            self.submit(event)

    # --- running -----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Load the rules, then work until cancelled: the queue, reloads, signals, schedules, delivery."""
        try:
            await self.reload()
        except Exception:
            log.exception("rules: first load failed; retried")
        self._tasks = [
            asyncio.create_task(self._work(), name="rules-worker"),
            asyncio.create_task(self._every(self.settings.rules_reload_seconds, self.reload), name="rules-reload"),
            asyncio.create_task(
                self._every(self.settings.rules_signal_check_seconds, self.check_signals), name="rules-signals"
            ),
            asyncio.create_task(self._delivery(), name="rules-delivery"),
        ]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=False)
                self.scheduler = None

    async def _every(self, seconds: float, fn: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:  # the writer closing, a busy database: the next round tries again
                self.metrics.errors.inc()
                log.exception("rules: %s failed", getattr(fn, "__name__", fn))

    async def reload(self) -> bool:
        """Load the active rules when they changed (approved, retired, overridden); True when reloaded."""

        def read() -> tuple[str, list[LoadedRule] | None]:
            conn = self.open_reader()
            try:
                fingerprint = engine.rules_fingerprint(conn)
                if fingerprint == self.fingerprint:
                    return fingerprint, None
                return fingerprint, engine.load_active_rules(conn, self.settings.rule_teams)
            finally:
                conn.close()

        fingerprint, rules = await asyncio.to_thread(read)
        if rules is None:
            return False
        self.rules, self.fingerprint = rules, fingerprint
        self.metrics.active.set(len(rules))
        for rule in rules:
            if rule.error:
                log.warning("rules: %s@%d does not load: %s", rule.rule_id, rule.version, rule.error)
        self._schedule()
        log.info("rules: %d active rule versions loaded", len(rules))
        return True

    def _schedule(self) -> None:
        """One cron job per distinct schedule among the active, enabled rules (store time zone)."""
        crons = tuple(sorted({r.trigger_key for r in self.rules if r.trigger_kind == "schedule" and r.enabled}))
        if crons == self._crons:
            return
        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
        from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self._crons = crons
        if not crons:
            return
        scheduler_log = logging.getLogger("apscheduler")
        if scheduler_log.level == logging.NOTSET:
            scheduler_log.setLevel(logging.WARNING)
        self.scheduler = AsyncIOScheduler(timezone=self.tz)
        for cron in crons:
            try:
                trigger = CronTrigger.from_crontab(cron, timezone=self.tz)
            except ValueError:
                log.warning("rules: schedule %r does not parse; skipped", cron)
                continue
            self.scheduler.add_job(
                self.fire_schedule, trigger, args=[cron], max_instances=1, coalesce=True, misfire_grace_time=300
            )
        self.scheduler.start()

    async def fire_schedule(self, cron: str) -> None:
        """A schedule's time came: a `schedule` event for the rules on it."""
        from edge.forecast.calendar import day_facts

        now = self.clock()
        local = now.astimezone(self.tz).date()
        try:
            holiday = bool(day_facts([local]).is_holiday[0])
        except Exception:
            holiday = False
        self.submit(engine.schedule_event(cron, now, local, holiday))

    async def check_signals(self) -> list[Event]:
        """Run the signal producers in the writer (they record what they raised) and queue the signals."""
        now = self.clock()
        found: list[Event] = await self.writer.execute(
            signals.detect_signals, self.settings.business_date(now), now, self.policy
        )
        for event in found:
            self.submit(event)
        return found

    async def _work(self) -> None:
        while True:
            if self._ledger_pending:
                self._ledger_pending = False
                try:
                    if await self.catch_up_ledger():
                        self._ledger_pending = True  # more than one batch waits
                except asyncio.CancelledError:
                    raise
                except Exception:  # the writer busy or closing: the cursor did not move, so try again shortly
                    self.metrics.errors.inc()
                    log.exception("rules: reading the ledger failed; retried")
                    self._ledger_pending = True
                    await asyncio.sleep(1.0)
                continue
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue.popleft()
            self.metrics.queue.set(len(self._queue))
            try:
                await self._one(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, the writer gone: this event only; the box keeps posting
                self.metrics.errors.inc()
                log.exception("rules: processing an event failed")
            self.processed += 1

    async def wait_idle(self) -> None:
        """Until the ledger is read, the queue is empty and the worker is between events (tests, the dry run)."""
        while self._queue or self._ledger_pending or not self._idle.is_set():
            if self._idle.is_set():  # work is waiting but the worker has not taken it yet: let it run
                await asyncio.sleep(0.01)
            else:
                await self._idle.wait()

    async def catch_up_ledger(self) -> bool:
        """Read up to DOCUMENTS_PER_READ posted documents after the cursor, evaluate their lines, and record the
        firings with the cursor moved past them in one writer job. True when more documents wait."""
        doc_types: set[str] | None = None
        if not self.listeners:  # only the types some rule is triggered by, unless a module listens to all
            doc_types = {r.trigger_key for r in self.rules if r.trigger_kind == "ledger" and r.enabled}
            if not self.settings.rules_enabled:
                doc_types = set()
        now = self.clock()

        def read(conn: sqlite3.Connection) -> tuple[int | None, list[int], list[Event]]:
            cursor = actions.ledger_cursor(conn)
            if cursor is None:
                return None, [], []
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM documents WHERE id > ? ORDER BY id LIMIT ?", (cursor, DOCUMENTS_PER_READ)
                )
            ]
            if doc_types is not None and not doc_types:
                return cursor, ids, []
            return cursor, ids, [e for d in ids for e in engine.ledger_events(conn, d, doc_types)]

        cursor, ids, events = await asyncio.to_thread(self._read, read)
        if cursor is None:
            await self.writer.execute(actions.start_ledger_cursor, now)
            return False
        if not ids:
            return False
        firings = []
        for event in events:
            firings.extend(await self._evaluate(event))
        results: list[FiringResult] = await self.writer.execute(
            actions.execute_ledger_batch, firings, self.clock(), self.config, ids[-1]
        )
        self._after(results)
        self.processed += len(ids)
        return len(ids) == DOCUMENTS_PER_READ

    async def process(self, event: Event) -> list[FiringResult]:
        """Evaluate one event and run its firings; the signals they raise are queued (depth-limited)."""
        return await self._one(event)

    def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        conn = self.open_reader()
        try:
            return fn(conn, *args)
        finally:
            conn.close()

    async def _evaluate(self, event: Event) -> list[engine.Firing]:
        """Hand the event to the listeners (scenario modules), then the firings it causes among the rules."""
        self.metrics.events.labels(kind=event.kind).inc()
        for listener in self.listeners:
            try:
                outcome = listener(event)
                if asyncio.iscoroutine(outcome):
                    await outcome
            except Exception:
                log.exception("rules: an event listener failed")
        if not self.settings.rules_enabled:
            return []
        return engine.evaluate(self.rules, event, self.settings.store_id)

    async def _one(self, event: Event) -> list[FiringResult]:
        firings = await self._evaluate(event)
        if not firings:
            return []
        results: list[FiringResult] = await self.writer.execute(
            actions.execute_firings, firings, self.clock(), self.config
        )
        self._after(results)
        return results

    def _after(self, results: Sequence[FiringResult]) -> None:
        """Count the firings, wake the delivery for what they queued, queue the signals they raised."""
        for result in results:
            if result.replayed:
                continue
            self.metrics.firings.labels(outcome=result.state).inc()
            if result.queued:
                self._deliver.set()
            for signal in result.signals:
                self.submit(signal)

    # --- delivery: notifications on MQTT, e-mails by SMTP ------------------------------------------------------

    async def _delivery(self) -> None:
        while True:
            try:
                await self.deliver()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.errors.inc()
                log.exception("rules: delivery failed; retried")
            self._deliver.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deliver.wait(), self.settings.rules_delivery_seconds)

    async def deliver(self) -> tuple[int, int]:
        """Publish what notifications wait, send the e-mails due; return (published, sent)."""
        return await self.publish_notifications(), await self.send_emails()

    async def publish_notifications(self) -> int:
        pending = await asyncio.to_thread(self._read, actions.unpublished_notifications, 100)
        if not pending:
            return 0
        topic = alert_topic(self.settings.store_id, RULE_ALERT_KIND)
        done: list[int] = []
        try:
            for notification in pending:
                try:
                    await self.publisher.publish(topic, notification.payload(self.clock().astimezone(self.tz)), qos=1)
                except Exception as exc:  # broker down: this one and the rest wait for the next round
                    self.metrics.notifications.labels(outcome="retry").inc()
                    await self.writer.execute(actions.note_notification_failure, notification.id, str(exc))
                    break
                done.append(notification.id)
                self.metrics.notifications.labels(outcome="published").inc()
        finally:
            if done:
                await self.writer.execute(actions.mark_notifications_published, done, self.clock())
        return len(done)

    async def send_emails(self) -> int:
        if not self.mailer.configured:
            return 0  # they wait, queued and visible, until an SMTP server is configured
        due: list[Email] = await asyncio.to_thread(self._read, actions.due_emails, self.clock(), 20)
        sent = 0
        for email in due:
            try:
                await asyncio.to_thread(self.mailer.send, email, self.clock())
            except Exception as exc:
                state = await self.writer.execute(
                    actions.note_email_failure,
                    email.id,
                    f"{type(exc).__name__}: {exc}",
                    self.clock(),
                    self.settings.smtp_max_attempts,
                    self.settings.smtp_backoff_max_seconds,
                )
                self.metrics.emails.labels(outcome="failed" if state == "failed" else "retry").inc()
                log.warning("rules: e-mail %d not sent (%s): %s", email.id, state, exc)
                continue
            await self.writer.execute(actions.mark_email_sent, email.id, self.clock())
            self.metrics.emails.labels(outcome="sent").inc()
            sent += 1
        return sent

    # --- dry run ------------------------------------------------------------------------------------------------

    async def dry_run(self, rule_id: str, days: int, version: int | None = None) -> dict[str, Any] | None:
        """What a stored rule version (default: the active one, else the newest) would have done over the last
        `days` days; None when there is no such rule or version. Reads only (edge/rules/dryrun.py)."""

        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            rule = engine.load_rule_version(conn, rule_id, version, self.settings.rule_teams)
            if rule is None:
                return None
            return dryrun.dry_run(
                conn,
                rule,
                days=days,
                now=self.clock(),
                timezone=self.settings.timezone,
                store_id=self.settings.store_id,
                teams=self.settings.rule_teams,
                email_routes=self.settings.rule_email_routes,
                policy=self.policy,
            ).to_json()

        result: dict[str, Any] | None = await asyncio.to_thread(self._read, run)
        return result


def build_rules_runtime(
    settings: Settings,
    writer: LedgerWriter,
    broker: Any,
    open_reader: Callable[[], sqlite3.Connection],
    clock: Clock,
    registry: CollectorRegistry,
) -> RulesRuntime:
    """The runtime, not yet wired: the composition root adds `on_postings` as a writer listener, `on_bus` as a
    broker tap, `wire_ingest(ingest, runtime)`, and runs `run()` as a background task."""
    return RulesRuntime(settings, writer, broker, open_reader, clock, registry)


def wire_ingest(ingest: Any, runtime: RulesRuntime) -> None:
    """Let the runtime see each device event the broker hands the ingest consumer (kept until its ack)."""
    offer = ingest.offer

    def offer_and_keep(device: str, kind: str, topic: str, payload: bytes, **options: Any) -> None:
        offer(device, kind, topic, payload, **options)
        try:
            runtime.offer_device_event(device, kind, payload)
        except Exception:  # never into the broker's tap
            log.exception("rules: could not keep a device event")

    ingest.offer = offer_and_keep


def describe(results: Sequence[FiringResult]) -> list[dict[str, Any]]:
    """Firing results as JSON (logs, tests)."""
    return [
        {
            "rule": r.origin.rule_id,
            "version": r.origin.version,
            "event_key": r.event_key,
            "state": r.state,
            "replayed": r.replayed,
            "actions": [{"action": a.action, "state": a.state, "object": a.object_id} for a in r.actions],
        }
        for r in results
    ]
