"""Paper expiry alerts on MQTT: `storebox/<store>/alert/compliance` (DESIGN.md "Bus contract").

Once a day the box records the alerts that are due (30 and 7 days before a supplier paper expires, and when it
has expired; each once, edge.finance.compliance.due_expiry_alerts) and publishes every alert not yet published,
then marks those as published. An alert whose publish failed (broker down) goes out on the next run. The
composition root calls `run_compliance_alerts` (one run) or starts `compliance_alerts_daily` (a loop).

Payload (JSON, UTF-8), like every message of the box `{"id", "ts", "data"}`:

    {"id": "compliance-12", "ts": "2026-11-25T08:00:00+08:00",
     "data": {"alert": 12, "kind": "paper_expiring", "supplier": "sup-1", "supplier_name": "...",
              "paper": 3, "paper_kind": "business_licence", "expires_on": "2026-12-25", "days_left": 30,
              "threshold_days": 30, "message": "供应商 ... 将于 2026-12-25 到期 ...", "message_en": "supplier ..."}}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from edge.bus.ingest import Publisher
from edge.bus.topics import alert_topic
from edge.config import Settings
from edge.finance import compliance
from edge.finance.compliance import ComplianceAlert
from edge.writer import LedgerWriter

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
ALERT_KIND = "compliance"
DAILY_AT = time(8, 0)  # local time of the daily run
CATCH_UP_SECONDS = 3600  # between daily runs, publish alerts raised meanwhile (a paper confirmed late) hourly


def alert_message(alert: ComplianceAlert, ts: datetime) -> bytes:
    """The MQTT payload of one alert (see the module docstring)."""
    data = {
        "alert": alert.id,
        "kind": "paper_expired" if alert.days_left < 0 else "paper_expiring",
        "supplier": alert.supplier,
        "supplier_name": alert.supplier_name,
        "paper": alert.paper,
        "paper_kind": alert.kind.value,
        "expires_on": alert.expires_on.isoformat(),
        "days_left": alert.days_left,
        "threshold_days": alert.threshold_days,
        "message": alert.message,
        "message_en": alert.message_en,
    }
    body = {"id": f"compliance-{alert.id}", "ts": ts.isoformat(), "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def business_date(settings: Settings, clock: Clock) -> date:
    return settings.business_date(clock())


async def run_compliance_alerts(
    settings: Settings, writer: LedgerWriter, publisher: Publisher, clock: Clock
) -> list[ComplianceAlert]:
    """Record the alerts due today, publish every unpublished one, mark them; return the ones published."""
    today = business_date(settings, clock)
    await writer.execute(compliance.due_expiry_alerts, today, tuple(settings.paper_expiry_warn_days))
    pending: list[ComplianceAlert] = await writer.execute(compliance.unpublished_alerts)
    topic = alert_topic(settings.store_id, ALERT_KIND)
    tz = ZoneInfo(settings.timezone)
    published: list[ComplianceAlert] = []
    for alert in pending:
        try:
            await publisher.publish(topic, alert_message(alert, clock().astimezone(tz)), retain=False, qos=1)
        except Exception:  # the broker is down: what was not published goes out on the next run
            log.warning("could not publish compliance alert %s; retried on the next run", alert.id, exc_info=True)
            break
        published.append(alert)
    if published:
        await writer.execute(compliance.mark_alerts_published, [a.id for a in published], clock())
    return published


def seconds_until(now: datetime, at: time, tz: ZoneInfo) -> float:
    """Seconds from `now` to the next `at` (local time in `tz`), always > 0."""
    local = now.astimezone(tz)
    target = datetime.combine(local.date(), at, tzinfo=tz)
    if target <= local:
        target = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return max((target - local).total_seconds(), 1.0)


async def compliance_alerts_daily(
    settings: Settings, writer: LedgerWriter, publisher: Publisher, clock: Clock, *, at: time = DAILY_AT
) -> None:
    """Run at once (catching up after a restart), then every day at `at` local time, until cancelled; in
    between, hourly, publish what was raised meanwhile (recording is idempotent: each alert goes out once)."""
    tz = ZoneInfo(settings.timezone)
    while True:
        try:
            published = await run_compliance_alerts(settings, writer, publisher, clock)
            if published:
                log.info("published %d compliance alerts", len(published))
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed run (writer closing, database busy) is retried tomorrow
            log.exception("compliance alert run failed")
        await asyncio.sleep(min(seconds_until(clock(), at, tz), CATCH_UP_SECONDS))
