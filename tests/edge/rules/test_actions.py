"""Actions in the writer's transaction against a real ledger: each effect, lineage and audit with the rule's id and
version, once per event, failures kept per action, parameters clamped and restored exactly, modules as origins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.ledger.audit import verify_chain
from edge.ledger.commands import DocType, Line
from edge.rules import actions, engine
from edge.rules.actions import ActionConfig, execute_firing, execute_firings
from edge.rules.engine import Event, Firing, Origin, evaluate, load_document
from tests.edge.rules.rulebox import STORE, RulesDB, lead_time_rule, open_rules_db, return_routing

CONFIG = ActionConfig(store_id=STORE, email_routes={"supplier_claims": ("claims@example.cn",)})


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RulesDB]:
    opened = open_rules_db(tmp_path / "rules.db")
    yield opened
    opened.conn.close()


def returned(db: RulesDB, reason: str = "damaged_packaging") -> list[Event]:
    db.document(DocType.RECEIPT, Line("COLA", 10, price_fen=226), counterparty="sup-1")
    doc = db.document(DocType.CUSTOMER_RETURN, Line("COLA", 2), reason=reason)
    return engine.ledger_events(db.conn, doc)


def fire(db: RulesDB, document: dict[str, Any], event: Event, version: int = 1) -> list[actions.FiringResult]:
    rule = load_document(document["id"], version, document)
    return db.run(execute_firings, evaluate([rule], event, STORE), db.now, CONFIG)


def lead_time_event(supplier: str, change: float, key: str) -> Event:
    facts = {
        "supplier": {"id": supplier, "name": supplier},
        "lead_time": {"days": 3 + change, "previous_days": 3.0, "change_days": change, "deliveries": 3},
    }
    return engine.signal_event("supplier.lead_time_changed", key, db_now(), facts, supplier)


def db_now() -> Any:
    from tests.edge.rules.rulebox import T0

    return T0


def test_a_return_is_routed_ticketed_and_notified_with_lineage_and_audit(db: RulesDB) -> None:
    (event,) = returned(db)
    (result,) = fire(db, return_routing(), event)
    assert result.state == "done" and not result.replayed and result.queued
    rule_id = "returns.supplier-claim"
    document_id = event.facts["document"]["id"]
    flows = db.rows("SELECT document_id, line_no, channel, rule_id, version FROM return_flows")
    assert flows == [
        {"document_id": document_id, "line_no": 1, "channel": "supplier_claim", "rule_id": rule_id, "version": 1}
    ]
    (ticket,) = db.rows("SELECT * FROM rule_tickets")
    assert (ticket["queue"], ticket["subject_kind"], ticket["subject"], ticket["state"]) == (
        "supplier_claims",
        "supplier",
        "sup-1",
        "open",
    )
    assert ticket["title"] == f"退货 {event.facts['document']['no']}: 可乐 330ml"
    (notice,) = db.rows("SELECT * FROM rule_notifications")
    assert notice["role"] == "category_manager" and notice["message"] == "可乐 330ml 因包装破损退货 2 件"
    assert notice["message_en"] == "COLA returned: 2" and notice["published_at"] is None
    firing = db.rows("SELECT * FROM rule_firings")[0]
    assert (firing["rule_id"], firing["version"], firing["event_key"], firing["state"]) == (
        rule_id,
        1,
        f"doc:{document_id}:1",
        "done",
    )
    assert json.loads(firing["facts"])["return"]["reason"] == "包装破损"
    lineage = db.rows(
        "SELECT action_index, action, state, object_kind, object_id FROM rule_actions ORDER BY action_index"
    )
    assert [(r["action"], r["object_kind"]) for r in lineage] == [
        ("tag_return", "return_flow"),
        ("open_ticket", "ticket"),
        ("notify", "notification"),
    ]
    audit = db.rows("SELECT actor, action, detail FROM audit WHERE actor LIKE 'rule:%' ORDER BY seq")
    assert [a["action"] for a in audit] == ["rule.tag_return", "rule.open_ticket", "rule.notify"]
    for row in audit:
        detail = json.loads(row["detail"])
        assert row["actor"] == f"rule:{rule_id}@1" and detail["rule_id"] == rule_id and detail["version"] == 1
    assert verify_chain(db.conn) == []


def test_replaying_the_same_event_never_acts_twice(db: RulesDB) -> None:
    (event,) = returned(db)
    fire(db, return_routing(), event)
    (again,) = fire(db, return_routing(), event)
    assert again.replayed and again.state == "done" and again.actions == ()
    assert db.value("SELECT COUNT(*) FROM rule_notifications") == 1
    assert db.value("SELECT COUNT(*) FROM rule_firings") == 1
    # A new version of the rule is another rule version: it acts on the event once too.
    (v2,) = fire(db, return_routing(), event, version=2)
    assert not v2.replayed and db.value("SELECT COUNT(*) FROM rule_firings") == 2
    assert db.value("SELECT COUNT(*) FROM return_flows") == 1  # the line is tagged to the channel once
    assert db.value("SELECT COUNT(*) FROM rule_tickets") == 1  # and the supplier's open ticket is not doubled


def test_a_failing_action_is_kept_with_its_reason_and_the_others_still_act(db: RulesDB) -> None:
    (event,) = returned(db)
    document = return_routing()
    document["then"] = [
        {
            "action": "send_email",
            "to": ["role:finance"],
            "subject": {"zh": "退货", "en": "return"},
            "body": {"zh": "b", "en": "b"},
        },
        {"action": "tag_return", "channel": "supplier_claim"},
    ]
    (result,) = fire(db, document, event)
    assert result.state == "partial"
    failed, done = result.actions
    assert failed.state == "failed" and "rule_email_routes" in (failed.error or "")
    assert done.state == "done"
    assert db.value("SELECT COUNT(*) FROM rule_emails") == 0 and db.value("SELECT COUNT(*) FROM return_flows") == 1
    (firing,) = db.rows("SELECT state, error FROM rule_firings")
    assert firing["state"] == "partial" and "send_email" in firing["error"]
    assert db.value("SELECT COUNT(*) FROM audit WHERE action = 'rule.send_email_failed'") == 1


def test_an_email_is_queued_to_the_routed_addresses(db: RulesDB) -> None:
    (event,) = returned(db)
    document = return_routing()
    document["then"] = [
        {
            "action": "send_email",
            "to": ["role:supplier_claims", "buyer@example.cn", "role:finance"],
            "subject": {"zh": "退货 {document.no}", "en": "return {document.no}"},
            "body": {"zh": "{item.name} 退货", "en": "{item.sku} returned"},
        }
    ]
    (result,) = fire(db, document, event)
    assert result.state == "done"
    (email,) = db.rows("SELECT * FROM rule_emails")
    assert json.loads(email["recipients"]) == ["claims@example.cn", "buyer@example.cn"]
    assert email["state"] == "queued" and email["subject"] == f"退货 {event.facts['document']['no']}"
    assert result.actions[0].result["teams_without_address"] == ["finance"]


def test_parameters_move_within_bounds_and_a_restore_puts_back_exactly_what_was_there(db: RulesDB) -> None:
    before = {r["sku"]: r["service_level"] for r in db.rows("SELECT sku, service_level FROM item_suppliers")}
    document = lead_time_rule(15)
    fire(db, document, lead_time_event("sup-1", 20, "a"))
    after = {r["sku"]: r["service_level"] for r in db.rows("SELECT sku, service_level FROM item_suppliers")}
    assert after == {"COLA": 0.96, "CHIPS": pytest.approx(0.92), "MILK": 0.95}  # COLA clamped at max 0.96
    fire(db, document, lead_time_event("sup-1", 25, "b"))
    again = {r["sku"]: r["service_level"] for r in db.rows("SELECT sku, service_level FROM item_suppliers")}
    assert again["COLA"] == 0.96 and again["CHIPS"] == pytest.approx(0.94)
    changes = db.rows("SELECT sku, before, after FROM parameter_changes ORDER BY id")
    assert [(c["sku"], c["after"]) for c in changes] == [
        ("CHIPS", pytest.approx(0.92)),
        ("COLA", 0.96),
        ("CHIPS", pytest.approx(0.94)),
    ]
    later = db.now + timedelta(hours=1)
    restored = db.run(lambda conn: actions.restore_parameter_changes(conn, "manager", later, rule_id=document["id"]))
    assert len(restored) == 3
    assert {r["sku"]: r["service_level"] for r in db.rows("SELECT sku, service_level FROM item_suppliers")} == before
    assert db.value("SELECT COUNT(*) FROM parameter_changes WHERE restored_at IS NULL") == 0
    assert db.value("SELECT COUNT(*) FROM audit WHERE action = 'rule.parameter_restore'") == 3


def test_a_module_proposal_runs_through_the_same_actions_as_the_module(db: RulesDB) -> None:
    origin = Origin.module("near-expiry", 3)
    facts = {"item": {"sku": "MILK", "name": "鲜牛奶 1L"}}
    spec = {
        "action": "create_draft",
        "draft": "markdown",
        "discount_bp": 3000,
        "note": {"zh": "临期 {item.name}", "en": "near expiry"},
    }
    firing = Firing(origin, "schedule:x:MILK", "schedule", "MILK", facts, (spec,))
    result = db.run(execute_firing, firing, db.now, CONFIG)
    assert result.state == "done"
    (draft,) = db.rows("SELECT * FROM rule_drafts")
    assert (draft["kind"], draft["rule_id"], draft["version"], draft["subject"]) == (
        "markdown",
        "module:near-expiry",
        3,
        "MILK",
    )
    assert json.loads(draft["payload"])["note"] == "临期 鲜牛奶 1L"
    (row,) = db.rows("SELECT actor, detail FROM audit WHERE action = 'rule.create_draft'")
    assert row["actor"] == "module:near-expiry@3"
    assert json.loads(row["detail"])["module"] == "near-expiry"


def test_a_purchase_order_draft_takes_the_days_of_cover_from_recent_sales(db: RulesDB) -> None:
    db.document(DocType.RECEIPT, Line("COLA", 100, price_fen=226), counterparty="sup-1")
    db.document(DocType.SALE, Line("COLA", 56))
    spec = {"action": "create_draft", "draft": "purchase_order", "sku": "{item.sku}", "qty_days": 5}
    firing = Firing(Origin.rule("reorder", 1), "k", "schedule", None, {"item": {"sku": "COLA"}}, (spec,))
    db.run(execute_firing, firing, db.now, CONFIG)
    payload = json.loads(db.value("SELECT payload FROM rule_drafts"))
    assert payload["supplier"] == "sup-1" and payload["daily_sales"] == 2.0 and payload["base_qty"] == 10


def test_a_raised_signal_carries_its_depth_and_stops_at_the_limit(db: RulesDB) -> None:
    spec = {"action": "emit_signal", "name": "rule.supplier_slow", "subject": "{supplier.id}"}
    facts = {"supplier": {"id": "sup-1"}}
    firing = Firing(Origin.rule("a", 1), "e1", "signal", "sup-1", facts, (spec,), depth=0)
    result = db.run(execute_firing, firing, db.now, CONFIG)
    (signal,) = result.signals
    assert (signal.kind, signal.name, signal.depth, signal.subject) == ("signal", "rule.supplier_slow", 1, "sup-1")
    assert signal.facts["signal"] == {"name": "rule.supplier_slow", "subject": "sup-1", "source_rule": "a"}
    deep = Firing(Origin.rule("a", 1), "e2", "signal", "sup-1", facts, (spec,), depth=CONFIG.signal_depth_max)
    stopped = db.run(execute_firing, deep, db.now, CONFIG)
    assert stopped.signals == () and stopped.actions[0].state == "skipped"


def test_a_hold_is_placed_once_per_invoice(db: RulesDB) -> None:
    spec = {"action": "hold_document", "reason": {"zh": "价差 {invoice.price_diff_bp} 基点", "en": "price difference"}}
    facts = {"invoice": {"id": 7, "price_diff_bp": 250}}
    first = db.run(execute_firing, Firing(Origin.rule("h", 1), "i7", "signal", None, facts, (spec,)), db.now, CONFIG)
    second = db.run(execute_firing, Firing(Origin.rule("h", 2), "i7", "signal", None, facts, (spec,)), db.now, CONFIG)
    assert first.actions[0].state == "done" and second.actions[0].state == "skipped"
    (hold,) = db.rows("SELECT object_kind, object_id, reason, state, version FROM holds")
    assert hold == {"object_kind": "invoice", "object_id": 7, "reason": "价差 250 基点", "state": "open", "version": 1}


def test_a_failed_evaluation_is_recorded_as_a_failed_firing(db: RulesDB) -> None:
    firing = Firing(Origin.rule("broken", 1), "e", "ledger", None, {}, (), error="ArithmeticError: division by zero")
    result = db.run(execute_firing, firing, db.now, CONFIG)
    assert result.state == "failed"
    (row,) = db.rows("SELECT state, error, finished_at FROM rule_firings")
    assert row["state"] == "failed" and "division" in row["error"] and row["finished_at"]


def test_the_outbox_backs_off_and_keeps_a_failed_email_visible(db: RulesDB) -> None:
    (event,) = returned(db)
    document = return_routing()
    document["then"] = [
        {
            "action": "send_email",
            "to": ["a@example.cn"],
            "subject": {"zh": "主题", "en": "subject"},
            "body": {"zh": "正文", "en": "body"},
        }
    ]
    fire(db, document, event)
    (email,) = db.run(actions.due_emails, db.now)
    assert email.recipients == ("a@example.cn",) and email.bilingual_subject == "主题 / subject"
    assert db.run(actions.note_email_failure, email.id, "refused", db.now, 3, 3600) == "queued"
    assert db.run(actions.due_emails, db.now) == []  # waits for its backoff
    later = db.now + timedelta(seconds=actions.backoff_seconds(1, 3600))
    assert [e.id for e in db.run(actions.due_emails, later)] == [email.id]
    assert db.run(actions.note_email_failure, email.id, "refused", later, 3, 3600) == "queued"
    assert db.run(actions.note_email_failure, email.id, "refused again", later, 3, 3600) == "failed"
    (row,) = db.rows("SELECT state, attempts, last_error FROM rule_emails")
    assert row == {"state": "failed", "attempts": 3, "last_error": "refused again"}
    db.run(actions.resend_email, email.id, "manager", later)
    db.run(actions.mark_email_sent, email.id, later)
    assert db.value("SELECT state FROM rule_emails") == "sent"


def test_a_notification_payload_follows_the_bus_contract(db: RulesDB) -> None:
    (event,) = returned(db)
    fire(db, return_routing(), event)
    (notice,) = db.run(actions.unpublished_notifications)
    body = json.loads(notice.payload(db.now))
    assert body["id"] == f"rule-{notice.id}" and body["ts"] == db.now.isoformat()
    assert body["data"]["rule"] == "returns.supplier-claim" and body["data"]["version"] == 1
    assert body["data"]["role"] == "category_manager" and body["data"]["message_en"] == "COLA returned: 2"
    assert db.run(actions.mark_notifications_published, [notice.id], db.now) == 1
    assert db.run(actions.unpublished_notifications) == []


def test_a_fact_with_a_line_break_is_folded_out_of_an_email_subject() -> None:
    from edge.rules.actions import one_line

    assert one_line("退货 坏了\r\nBcc: x@y.z") == "退货 坏了 Bcc: x@y.z"
    assert "\n" not in one_line("a\nb\rc\td")
