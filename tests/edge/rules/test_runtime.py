"""The rules runtime in a real box: the writer, the embedded broker on a free port, real paho clients, and a real
local SMTP server (aiosmtpd). Rules fire on posted documents, device events, alerts, schedules and signals; their
notices arrive on MQTT alert/rule, their e-mails at the SMTP server (retried with backoff while it is down); a rule
that raises is a failed firing and the box keeps posting. Waits poll with a deadline."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from edge.app import StoreBox
from edge.bus.topics import alert_topic
from edge.config import Settings
from edge.db import connect
from edge.ledger.commands import DocType, Line, PostDocument, PostResult
from edge.rules.engine import Event
from tests.edge.bus import conftest as bus
from tests.edge.rules.rulebox import IMPACT, activate_rule, lead_time_rule, return_routing, set_override

STORE = bus.STORE
WAIT = 20.0
json_bodies = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=10), st.integers(), st.none())},
    optional={
        "ok": st.booleans(),
        "data": st.dictionaries(
            st.sampled_from(["room", "level", "message", "value", "lines"]),
            st.one_of(st.text(max_size=10), st.floats(), st.integers(), st.none()),
        ),
    },
)


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@contextmanager
def smtp_server(port: int) -> Iterator[Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


class Clock:
    """The box's clock: real time plus an offset the test moves (e-mail backoff)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Running:
    def __init__(self, box: StoreBox, loop: bus.LoopThread, clock: Clock) -> None:
        self.box = box
        self.loop = loop
        self.clock = clock
        self.clients: list[bus.Device] = []

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        conn = connect(self.box.settings.db_path, readonly=True)
        try:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def metric(self, name: str, **labels: str) -> float:
        return self.box.registry.get_sample_value(name, labels) or 0.0

    def post(self, command: PostDocument) -> int:
        result = self.loop.run(self.box.writer.post(command))
        assert result.ok, result
        return int(result.document_id or 0)

    def listener(self) -> bus.Device:
        host: Any = type("Host", (), {"port": self.box.settings.mqtt_port})()
        device = bus.Device(host, "pos-2", bus.PASSWORDS["pos-2"], client_id="pos-2-listener")
        device.connect()
        assert device.subscribe(f"storebox/{STORE}/alert/#") == [1]
        self.clients.append(device)
        return device

    def device(self, device_id: str) -> bus.Device:
        host: Any = type("Host", (), {"port": self.box.settings.mqtt_port})()
        device = bus.Device(host, device_id, bus.PASSWORDS[device_id])
        device.connect()
        assert device.subscribe(f"storebox/{STORE}/dev/{device_id}/ack") == [1]
        self.clients.append(device)
        return device

    def activate(self, document: dict[str, Any], version: int = 1) -> None:
        conn = connect(self.box.settings.db_path)
        try:
            activate_rule(conn, document, version, self.clock())
        finally:
            conn.close()
        self.loop.run(self.box.rule_engine.reload())


@contextmanager
def running_box(tmp_path: Path, rules: list[dict[str, Any]], **overrides: Any) -> Iterator[Running]:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "store_id": STORE,
        "mqtt_port": bus.free_port(),
        "plan_interval_minutes": 0,
        "plan_trigger_check_seconds": 0,
        "forecast_model": "none",
        "rules_reload_seconds": 0.2,
        "rules_signal_check_seconds": 0.2,
        "rules_delivery_seconds": 0.1,
        "rule_email_routes": {"supplier_claims": ["claims@example.cn"]},
        **overrides,
    }
    settings = Settings(**values)
    bus.seed(settings.db_path)
    clock = Clock()
    conn = connect(settings.db_path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO item_suppliers (sku, supplier, unit, pack, lead_time_days, updated_at, updated_by)"
                " VALUES ('MILK-1L', 'sup-1', 'pcs', 1, 3, '2026-01-01', 'setup')"
            )
        for document in rules:
            activate_rule(conn, document, 1, clock())
    finally:
        conn.close()
    loop = bus.LoopThread()
    box = StoreBox(settings, clock=clock)
    running = Running(box, loop, clock)
    try:
        loop.run(box.start(), timeout=3 * WAIT)
        running.post(
            PostDocument("opening", DocType.RECEIPT, (Line("MILK-1L", 20), Line("BREAD", 10)), counterparty="sup-1")
        )
        yield running
    finally:
        for client in running.clients:
            client.close()
        loop.run(box.stop(), timeout=3 * WAIT)
        loop.close()


def routing_with_email() -> dict[str, Any]:
    document = return_routing()
    document["then"].append(
        {
            "action": "send_email",
            "to": ["role:supplier_claims"],
            "subject": {"zh": "索赔: {document.no}", "en": "claim: {document.no}"},
            "body": {"zh": "{item.name} 包装破损 {line.qty} 件", "en": "{item.sku} damaged packaging: {line.qty}"},
        }
    )
    return document


def test_a_damaged_return_is_routed_and_its_notice_and_email_are_delivered(tmp_path: Path) -> None:
    port = bus.free_port()
    with (
        smtp_server(port) as inbox,
        running_box(tmp_path, [routing_with_email()], smtp_host="127.0.0.1", smtp_port=port) as box,
    ):
        listener = box.listener()
        doc = box.post(
            PostDocument("ret-1", DocType.CUSTOMER_RETURN, (Line("MILK-1L", 2),), reason="damaged_packaging")
        )
        message = listener.next_message(alert_topic(STORE, "rule"), timeout=WAIT)
        body = json.loads(message.payload)
        assert body["data"]["rule"] == "returns.supplier-claim" and body["data"]["version"] == 1
        assert body["data"]["role"] == "category_manager" and "包装破损退货 2 件" in body["data"]["message"]
        (flow,) = wait_for(lambda: box.rows("SELECT * FROM return_flows"), "the return flow")
        assert (flow["document_id"], flow["channel"]) == (doc, "supplier_claim")
        rcpt, mail = wait_for(lambda: inbox.messages and inbox.messages[0], "the e-mail")
        doc_no = box.rows("SELECT doc_no FROM documents WHERE id = ?", (doc,))[0]["doc_no"]
        assert rcpt == ["claims@example.cn"]
        assert str(make_header(decode_header(mail["Subject"]))) == f"索赔: {doc_no} / claim: {doc_no}"
        assert mail["X-StoreBox-Rule"] == "returns.supplier-claim@1"
        assert "包装破损 2 件" in mail.get_payload(decode=True).decode("utf-8")
        wait_for(lambda: box.rows("SELECT 1 FROM rule_emails WHERE state = 'sent'"), "the e-mail marked sent")
        wait_for(lambda: box.rows("SELECT 1 FROM rule_notifications WHERE published_at IS NOT NULL"), "published")
        assert box.metric("storebox_rules_firings_total", outcome="done") == 1
        assert box.metric("storebox_rules_emails_total", outcome="sent") == 1
        # Another return for another reason does not match; the rule's ticket for the supplier is not doubled.
        box.post(PostDocument("ret-2", DocType.CUSTOMER_RETURN, (Line("BREAD", 1),), reason="taste"))
        box.post(PostDocument("ret-3", DocType.CUSTOMER_RETURN, (Line("MILK-1L", 1),), reason="damaged_packaging"))
        wait_for(lambda: len(box.rows("SELECT 1 FROM return_flows")) == 2, "the second flow")
        assert len(box.rows("SELECT 1 FROM rule_tickets WHERE state = 'open'")) == 1
        assert len(box.rows("SELECT 1 FROM rule_firings")) == 2


def test_email_waits_while_the_smtp_server_is_down_and_goes_out_after_the_backoff(tmp_path: Path) -> None:
    port = bus.free_port()
    with running_box(tmp_path, [routing_with_email()], smtp_host="127.0.0.1", smtp_port=port) as box:
        box.post(PostDocument("ret-1", DocType.CUSTOMER_RETURN, (Line("MILK-1L", 1),), reason="damaged_packaging"))
        (failed,) = wait_for(lambda: box.rows("SELECT * FROM rule_emails WHERE attempts = 1"), "a failed attempt")
        assert failed["state"] == "queued" and failed["last_error"] and failed["next_attempt_at"]
        with smtp_server(port) as inbox:
            box.clock.offset = timedelta(seconds=31)  # the first retry is due 30 s after the failure
            wait_for(lambda: inbox.messages, "the e-mail after the backoff")
            (sent,) = wait_for(lambda: box.rows("SELECT * FROM rule_emails WHERE state = 'sent'"), "sent")
            assert sent["attempts"] == 2
        assert box.metric("storebox_rules_emails_total", outcome="retry") == 1


def broken_sale_rule() -> dict[str, Any]:
    return {
        "id": "broken-sale",
        "name": {"zh": "坏规则", "en": "broken rule"},
        "trigger": {"kind": "ledger", "doc_type": "sale"},
        "when": "line.qty / (line.qty - line.qty) > 1",
        "then": [{"action": "notify", "role": "manager", "message": {"zh": "x", "en": "x"}}],
        "owner": "o",
        "impact": IMPACT,
    }


def device_sale_rule() -> dict[str, Any]:
    return {
        "id": "device-sale",
        "name": {"zh": "收银机销售", "en": "till sale"},
        "trigger": {"kind": "bus", "event": "sale"},
        "when": 'reading.device == "pos-1"',
        "then": [{"action": "notify", "role": "manager", "message": {"zh": "{reading.device} 销售", "en": "sale"}}],
    }


def cold_room_rule() -> dict[str, Any]:
    return {
        "id": "cold-room-escalation",
        "name": {"zh": "冷库告警升级", "en": "cold room escalation"},
        "trigger": {"kind": "alert", "alert": "cold-room"},
        "when": 'alert.level == "critical"',
        "then": [
            {"action": "open_ticket", "queue": "quality", "title": {"zh": "冷库 {alert.subject}", "en": "cold room"}}
        ],
    }


def test_a_rule_that_raises_is_counted_and_the_box_keeps_posting_device_and_alert_rules_fire(tmp_path: Path) -> None:
    rules = [broken_sale_rule(), device_sale_rule(), cold_room_rule()]
    with running_box(tmp_path, rules) as box:
        pos = box.device("pos-1")
        for n in range(3):
            pos.send("sale", bus.sale(f"s-{n}", ("MILK-1L", 1)))
            assert pos.ack(f"s-{n}")["ok"] is True
        failed = wait_for(
            lambda: (
                len(box.rows("SELECT 1 FROM rule_firings WHERE rule_id = 'broken-sale'")) == 3
                and box.rows("SELECT state, error FROM rule_firings WHERE rule_id = 'broken-sale'")
            ),
            "three failed firings",
        )
        assert all(f["state"] == "failed" and "division by zero" in f["error"] for f in failed)
        assert box.metric("storebox_rules_firings_total", outcome="failed") == 3
        on_hand = box.rows("SELECT SUM(qty) AS q FROM stock_moves WHERE sku = 'MILK-1L'")[0]["q"]
        assert on_hand == 20 - 3  # every sale posted
        keys = wait_for(
            lambda: (
                len(box.rows("SELECT 1 FROM rule_firings WHERE rule_id = 'device-sale'")) == 3
                and box.rows("SELECT event_key FROM rule_firings WHERE rule_id = 'device-sale' ORDER BY id")
            ),
            "device firings",
        )
        assert [k["event_key"] for k in keys] == ["dev:pos-1:s-0", "dev:pos-1:s-1", "dev:pos-1:s-2"]
        # A resent event is answered again by the ledger and does not fire again.
        pos.send("sale", bus.sale("s-0", ("MILK-1L", 1)))
        assert pos.ack("s-0")["ok"] is True
        # Alerts the box publishes are events too (the rules' own alert/rule never is).
        alert = {"id": "cold-room-9", "ts": "x", "data": {"room": "cold-1", "level": "critical", "message": "超温"}}
        box.loop.run(box.box.broker.publish(alert_topic(STORE, "cold-room"), json.dumps(alert).encode()))
        (ticket,) = wait_for(lambda: box.rows("SELECT * FROM rule_tickets"), "the cold-room ticket")
        assert ticket["queue"] == "quality" and ticket["title"] == "冷库 cold-1"
        box.loop.run(box.box.rule_engine.wait_idle())
        assert len(box.rows("SELECT 1 FROM rule_firings WHERE rule_id = 'device-sale'")) == 3


def test_signals_schedules_and_reloads_while_running(tmp_path: Path) -> None:
    with running_box(tmp_path, [lead_time_rule(15)]) as box:
        listener = box.listener()
        today = box.clock().date()
        conn = connect(box.box.settings.db_path)
        try:
            with conn:
                for n in range(20):
                    ordered = today - timedelta(days=30 + n)
                    conn.execute(
                        "INSERT INTO lead_time_history (supplier, po_ref, ordered_on, received_on, qty, imported_at,"
                        " command_key) VALUES ('sup-1', ?, ?, ?, 5, ?, 'k')",
                        (f"PO-{n}", ordered.isoformat(), (ordered + timedelta(days=25)).isoformat(), today.isoformat()),
                    )
        finally:
            conn.close()
        message = json.loads(listener.next_message(alert_topic(STORE, "rule"), timeout=WAIT).payload)
        assert message["data"]["rule"] == "supplier-delay-response.lead-time-growth"
        assert "交期延长" in message["data"]["message"]
        (level,) = wait_for(lambda: box.rows("SELECT after FROM parameter_changes"), "the parameter change")
        assert level["after"] == pytest.approx(0.96)  # 0.95 + 0.02, held at the rule's max
        # A schedule rule approved while the box runs is picked up and gets its cron job.
        morning = {
            "id": "morning",
            "name": {"zh": "早报", "en": "morning"},
            "trigger": {"kind": "schedule", "cron": "0 8 * * *"},
            "when": "schedule.weekday >= 1",
            "then": [
                {"action": "notify", "role": "manager", "message": {"zh": "{schedule.date} 早报", "en": "morning"}}
            ],
        }
        box.activate(morning)
        engine = box.box.rule_engine
        assert [str(job.trigger) for job in engine.scheduler.get_jobs()] == [
            "cron[month='*', day='*', day_of_week='*', hour='8', minute='0']"
        ]
        box.loop.run(engine.fire_schedule("0 8 * * *"))
        wait_for(lambda: box.rows("SELECT 1 FROM rule_firings WHERE rule_id = 'morning'"), "the schedule's firing")
        # Disabled by an override: the next schedule does not fire it.
        conn = connect(box.box.settings.db_path)
        try:
            set_override(conn, "morning", enabled=False)
        finally:
            conn.close()
        wait_for(lambda: not any(r.rule_id == "morning" and r.enabled for r in engine.rules), "the reload")
        box.clock.offset = timedelta(days=1)
        box.loop.run(engine.fire_schedule("0 8 * * *"))
        box.loop.run(engine.wait_idle())
        assert len(box.rows("SELECT 1 FROM rule_firings WHERE rule_id = 'morning'")) == 1
        # The dry run the API serves: what the lead-time rule would have done over the last days.
        result = box.loop.run(engine.dry_run("supplier-delay-response.lead-time-growth", 40))
        assert result is not None and result["firings"] >= 1 and result["actions"]["notify"] >= 1
        assert box.box.api is not None and box.box.api.state.rules_runtime is engine
        assert box.loop.run(engine.dry_run("no-such-rule", 7)) is None


def test_a_rule_signal_reaches_the_rule_it_triggers_and_the_rules_notice_never_triggers_an_alert_rule(
    tmp_path: Path,
) -> None:
    echo = {
        "id": "echo",
        "name": {"zh": "回声", "en": "echo"},
        "trigger": {"kind": "alert", "alert": "rule"},
        "when": "alert.kind == 'rule'",
        "then": [{"action": "notify", "role": "manager", "message": {"zh": "again", "en": "again"}}],
    }
    raising = return_routing()
    raising["then"].append({"action": "emit_signal", "name": "rule.claim_opened", "subject": "{document.no}"})
    chained = {
        "id": "claim-follow-up",
        "name": {"zh": "索赔跟进", "en": "claim follow-up"},
        "trigger": {"kind": "signal", "name": "rule.claim_opened"},
        "when": 'signal.source_rule == "returns.supplier-claim"',
        "then": [
            {"action": "notify", "role": "supplier_claims", "message": {"zh": "跟进 {signal.subject}", "en": "x"}}
        ],
    }
    from edge.rules.errors import RuleInvalid
    from edge.rules.model import validate_rule

    with pytest.raises(RuleInvalid):  # a rule on the rules' own notices is refused at save: it could only loop
        validate_rule(echo)
    with running_box(tmp_path, [raising, chained]) as box:
        doc = box.post(
            PostDocument("ret-1", DocType.CUSTOMER_RETURN, (Line("MILK-1L", 1),), reason="damaged_packaging")
        )
        doc_no = box.rows("SELECT doc_no FROM documents WHERE id = ?", (doc,))[0]["doc_no"]
        (follow,) = wait_for(lambda: box.rows("SELECT * FROM rule_firings WHERE rule_id = 'claim-follow-up'"), "chain")
        assert follow["depth"] == 1 and follow["trigger_kind"] == "signal"
        wait_for(lambda: len(box.rows("SELECT 1 FROM rule_notifications WHERE published_at IS NOT NULL")) == 2, "both")
        assert box.rows("SELECT message FROM rule_notifications WHERE rule_id = 'claim-follow-up'") == [
            {"message": f"跟进 {doc_no}"}
        ]
        box.loop.run(box.box.rule_engine.wait_idle())
        assert box.rows("SELECT 1 FROM rule_firings WHERE rule_id = 'echo'") == []


def idle_runtime(tmp_path: Path, registry: CollectorRegistry | None = None, **overrides: Any) -> Any:
    """A runtime that is not running: what the broker's tap and the writer's listener call into."""
    from edge.rules.runtime import RulesRuntime

    settings = Settings(data_dir=tmp_path, store_id=STORE, **overrides)
    registry = registry or CollectorRegistry()
    return RulesRuntime(settings, None, None, lambda: connect(settings.db_path), datetime.now, registry)  # type: ignore[arg-type]


topics = st.one_of(
    st.sampled_from(
        [f"storebox/{STORE}/alert/cold-room", f"storebox/{STORE}/alert/rule", f"storebox/{STORE}/dev/pos-1/ack"]
    ),
    st.text(max_size=60),
)


@given(topic=topics, payload=st.binary(max_size=200) | st.builds(lambda d: json.dumps(d).encode(), json_bodies))
def test_the_broker_tap_never_raises_and_queues_only_events(topic: str, payload: bytes) -> None:
    runtime = idle_runtime(Path("/nonexistent"))
    runtime.offer_device_event("pos-1", "sale", payload)
    runtime.on_bus(topic, payload)
    assert all(isinstance(item, Event) for item in runtime._queue)
    assert not any(item.name == "rule" for item in runtime._queue)


def test_a_full_queue_drops_and_counts_instead_of_blocking_and_postings_are_never_queued(tmp_path: Path) -> None:
    from edge.rules.engine import signal_event

    registry = CollectorRegistry()
    runtime = idle_runtime(tmp_path, registry, rules_queue_max=10)
    for n in range(15):
        runtime.submit(signal_event("rule.x", str(n), datetime.now(UTC), {"signal": {"name": "rule.x"}}))
    assert len(runtime._queue) == 10
    assert registry.get_sample_value("storebox_rules_events_dropped_total") == 5
    # postings only wake the worker, which reads them from the ledger after its cursor: none can be dropped
    runtime.on_postings([PostResult(f"k{n}", True, "ok", "", "", document_id=n) for n in range(50)])
    assert len(runtime._queue) == 10 and runtime._ledger_pending
    assert registry.get_sample_value("storebox_rules_events_dropped_total") == 5


def test_postings_made_while_the_rules_were_not_running_are_evaluated_once_when_they_run_again(
    tmp_path: Path,
) -> None:
    import asyncio

    from edge.rules.runtime import build_rules_runtime

    with running_box(tmp_path, [return_routing()]) as box:
        engine = box.box.rule_engine
        task = next(t for t in box.box._background if t.get_name() == "rules")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        box.loop.run(stop())
        for n in range(3):  # posted while the rules are down (a kill, a burst they could not keep up with)
            box.post(PostDocument(f"ret-{n}", DocType.CUSTOMER_RETURN, (Line("MILK-1L", 1),), reason="包装破损"))
        assert box.rows("SELECT 1 FROM rule_firings") == []
        settings, box_ = box.box.settings, box.box
        again = build_rules_runtime(
            settings, box_.writer, box_.broker, box_.open_reader, box_.clock, CollectorRegistry()
        )

        async def run_once() -> None:
            running = asyncio.create_task(again.run())
            await asyncio.sleep(0)
            await again.wait_idle()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

        box.loop.run(run_once(), timeout=WAIT)
        firings = box.rows("SELECT event_key FROM rule_firings WHERE rule_id = 'returns.supplier-claim'")
        assert len(firings) == 3 and len({f["event_key"] for f in firings}) == 3
        assert engine is not again
        box.loop.run(run_once(), timeout=WAIT)  # read again: the cursor moved with the firings, nothing repeats
        assert len(box.rows("SELECT 1 FROM rule_firings")) == 3
