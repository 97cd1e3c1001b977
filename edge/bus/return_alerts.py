"""Return-spike alerts on MQTT: `storebox/<store>/alert/returns` (DESIGN.md "Bus contract", docs/signals.md).

Each run checks the customer returns as of today (edge.replenishment.returns.detect_return_spikes: each spike is
recorded once while it lasts), publishes every spike not yet published, then marks those as published; one whose
publish failed (broker down) goes out on the next run. The composition root starts `return_alerts_periodic`.

Payload (JSON, UTF-8), like every message of the box `{"id", "ts", "data"}`:

    {"id": "returns-7", "ts": "2026-12-05T10:00:00+08:00",
     "data": {"alert": 7, "kind": "return_spike", "scope": "item", "subject": "COLA", "reason": "damaged_packaging",
              "reason_name": "包装破损", "recent_count": 4, "recent_qty": 4, "ratio": 16.0, "skus": ["COLA"],
              "message": "退货激增: ...", "message_en": "return spike: ...", ...}}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from edge.bus.ingest import Publisher
from edge.bus.topics import alert_topic
from edge.config import Settings
from edge.replenishment import returns
from edge.replenishment.returns import ReturnSpike
from edge.writer import LedgerWriter

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
ALERT_KIND = "returns"
INTERVAL_SECONDS = 60.0


def alert_message(spike: ReturnSpike, ts: datetime) -> bytes:
    """The MQTT payload of one spike (see the module docstring)."""
    body = {"id": f"returns-{spike.id}", "ts": ts.isoformat(), "data": returns.spike_alert_data(spike)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def run_return_alerts(
    settings: Settings, writer: LedgerWriter, publisher: Publisher, clock: Clock
) -> list[ReturnSpike]:
    """Check for spikes as of today, publish every unpublished one, mark them; return the ones published."""
    today = settings.business_date(clock())
    policy = returns.ReturnSpikePolicy.from_settings(settings)
    await writer.execute(returns.detect_return_spikes, today, policy)
    pending: list[ReturnSpike] = await writer.execute(returns.unpublished_spikes)
    topic = alert_topic(settings.store_id, ALERT_KIND)
    tz = ZoneInfo(settings.timezone)
    published: list[ReturnSpike] = []
    for spike in pending:
        try:
            await publisher.publish(topic, alert_message(spike, clock().astimezone(tz)), retain=False, qos=1)
        except Exception:  # the broker is down: what was not published goes out on the next run
            log.warning("could not publish return spike %s; retried on the next run", spike.id, exc_info=True)
            break
        published.append(spike)
    if published:
        await writer.execute(returns.mark_spikes_published, [s.id for s in published], clock())
    return published


async def return_alerts_periodic(
    settings: Settings, writer: LedgerWriter, publisher: Publisher, clock: Clock, *, every: float = INTERVAL_SECONDS
) -> None:
    """Run at once, then every `every` seconds, until cancelled."""
    while True:
        try:
            published = await run_return_alerts(settings, writer, publisher, clock)
            if published:
                log.info("published %d return spike alerts", len(published))
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed run (writer closing, database busy) is retried on the next one
            log.exception("return spike alert run failed")
        await asyncio.sleep(every)
