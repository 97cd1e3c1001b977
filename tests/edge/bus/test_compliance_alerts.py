"""Expiry alerts on the real embedded broker: a real paho client subscribed to `alert/compliance` receives each
alert once, in Chinese and English; an alert whose publish failed goes out on the next run."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from edge.bus.compliance_alerts import ALERT_KIND, alert_message, run_compliance_alerts, seconds_until
from edge.bus.topics import alert_topic
from edge.finance import compliance as cab
from edge.finance.papers import PaperFields, PaperKind, Reading
from tests.edge.bus.conftest import STORE, Box

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
TOPIC = alert_topic(STORE, ALERT_KIND)


def clock() -> datetime:
    return NOW


def add_paper(box: Box, kind: PaperKind, valid_to: date) -> int:
    fields = PaperFields(
        name="供应商一",
        credit_code="91310115MA1K3YJ71K",
        address="上海市浦东新区张江路88号",
        valid_to=valid_to,
        licence_no="JY1",
        bank_name="b",
        bank_account="12345678",
    )
    upload = cab.PaperUpload(
        supplier="sup-1",
        kind=kind.value,
        sha256=hashlib.sha256(f"{kind}{valid_to}".encode()).hexdigest(),
        file_type="png",
        size_bytes=10,
        filename=None,
        ocr={"lines": [], "pages": 1, "seconds": 0.0},
        reading=Reading(fields, kind).to_json(),
    )
    paper = int(box.loop.run(box.writer.execute(cab.record_paper, upload, "purchaser", NOW)).id)
    box.loop.run(box.writer.execute(cab.confirm_paper, paper, None, "purchaser", NOW))
    return paper


class FailingBroker:
    """The broker as seen while it is down (the real one raises the same when stopped)."""

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        raise RuntimeError("the broker is not running")


def test_due_alerts_reach_a_subscriber_once(box: Box) -> None:
    paper = add_paper(box, PaperKind.FOOD_LICENCE, date(2026, 11, 30))
    add_paper(box, PaperKind.GENERAL_TAXPAYER, date(2030, 1, 1))  # far off: no alert
    listener = box.device("pos-1", subscribe=False)
    assert listener.subscribe(f"storebox/{STORE}/alert/#") == [1]

    published = box.loop.run(run_compliance_alerts(box.settings, box.writer, box.broker, clock))
    assert [(a.paper, a.threshold_days, a.days_left) for a in published] == [(paper, 7, 5)]
    message = listener.next_message(TOPIC)
    body = json.loads(message.payload.decode("utf-8"))
    assert body["id"] == f"compliance-{published[0].id}"
    assert body["ts"] == "2026-11-25T09:00:00+08:00"
    data = body["data"]
    assert (data["kind"], data["supplier"], data["paper_kind"]) == ("paper_expiring", "sup-1", "food_licence")
    assert (data["expires_on"], data["days_left"], data["threshold_days"]) == ("2026-11-30", 5, 7)
    assert "食品经营许可证" in data["message"] and "food business licence" in data["message_en"]
    assert not message.retain

    # A second run finds nothing new: the next message on the topic is the marker published after it.
    assert box.loop.run(run_compliance_alerts(box.settings, box.writer, box.broker, clock)) == []
    box.loop.run(box.broker.publish(TOPIC, b"marker"))
    assert listener.next_message(TOPIC).payload == b"marker"
    rows = box.sql("SELECT paper, threshold_days, published_at FROM compliance_alerts")
    assert [(r[0], r[1], r[2] is not None) for r in rows] == [(paper, 7, True)]


def test_an_alert_that_could_not_be_published_goes_out_next_time(box: Box) -> None:
    add_paper(box, PaperKind.BUSINESS_LICENCE, date(2026, 11, 20))  # already expired
    listener = box.device("pos-1", subscribe=False)
    assert listener.subscribe(TOPIC) == [1]
    assert box.loop.run(run_compliance_alerts(box.settings, box.writer, FailingBroker(), clock)) == []
    assert box.sql("SELECT COUNT(*) FROM compliance_alerts WHERE published_at IS NULL")[0][0] == 1
    (alert,) = box.loop.run(run_compliance_alerts(box.settings, box.writer, box.broker, clock))
    data = json.loads(listener.next_message(TOPIC).payload)["data"]
    assert (data["kind"], data["days_left"], data["threshold_days"]) == ("paper_expired", -5, 0)
    assert "过期" in data["message"] and alert.threshold_days == 0


def test_payload_is_compact_utf8_json() -> None:
    alert = cab.ComplianceAlert(
        id=1,
        paper=2,
        supplier="s",
        supplier_name="华润",
        kind=PaperKind.BANK_ACCOUNT,
        threshold_days=30,
        expires_on=date(2026, 12, 1),
        days_left=30,
        raised_on=date(2026, 11, 1),
        message="中文",
        message_en="en",
    )
    payload = alert_message(alert, NOW)
    assert "华润".encode() in payload and b" " not in payload
    assert json.loads(payload)["data"]["supplier_name"] == "华润"


@pytest.mark.parametrize(
    ("now", "seconds"),
    [
        (datetime(2026, 11, 25, 0, 0, tzinfo=UTC), 0),  # 08:00 in Shanghai: the next run is tomorrow
        (datetime(2026, 11, 24, 23, 0, tzinfo=UTC), 3600),  # 07:00 in Shanghai
        (datetime(2026, 11, 25, 1, 0, tzinfo=UTC), 23 * 3600),
    ],
)
def test_the_daily_run_waits_until_the_next_eight_oclock(now: datetime, seconds: int) -> None:
    wait = seconds_until(now, time(8, 0), ZoneInfo("Asia/Shanghai"))
    assert wait == (seconds or 24 * 3600)
    assert now + timedelta(seconds=wait) > now
