"""Dry run: the last N days replayed through a rule, what it would have done, and nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.db import connect
from edge.ledger.commands import DocType, Line
from edge.rules import dryrun
from edge.rules.engine import load_document, load_rule_version
from tests.edge.rules.rulebox import STORE, RulesDB, lead_time_rule, open_rules_db, return_routing

TZ = "Asia/Shanghai"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RulesDB]:
    opened = open_rules_db(tmp_path / "rules.db")
    yield opened
    opened.conn.close()


def run(db: RulesDB, document: dict[str, Any], days: int, **kw: Any) -> dryrun.DryRun:
    rule = load_document(document["id"], 1, document)
    reader = connect(db.conn.execute("PRAGMA database_list").fetchone()[2], readonly=True)
    try:
        return dryrun.dry_run(reader, rule, days=days, now=db.now, timezone=TZ, store_id=STORE, **kw)
    finally:
        reader.close()


def counts(db: RulesDB) -> dict[str, int]:
    tables = ("rule_firings", "rule_actions", "rule_notifications", "rule_tickets", "return_flows", "audit")
    return {t: int(db.value(f"SELECT COUNT(*) FROM {t}")) for t in tables}


def test_a_dry_run_replays_the_returns_of_the_window_and_changes_nothing(db: RulesDB) -> None:
    now = db.now
    db.document(DocType.RECEIPT, Line("COLA", 50, price_fen=226), counterparty="sup-1")
    for days_ago, reason in (
        (12, "damaged_packaging"),
        (5, "damaged_packaging"),
        (3, "taste"),
        (0, "damaged_packaging"),
    ):
        db.now = now - timedelta(days=days_ago)
        db.document(DocType.CUSTOMER_RETURN, Line("COLA", 1), Line("CHIPS", 2), reason=reason)
    db.now = now
    before = counts(db)
    result = run(db, return_routing(), 7, email_routes={})
    assert (result.since.isoformat(), result.until.isoformat()) == ("2026-11-14", "2026-11-20")
    assert result.replayable and result.events == 6  # three returns of two lines in the window
    assert result.firings == 4 and result.failed == 0  # the taste return does not match
    assert result.actions == {"tag_return": 4, "open_ticket": 4, "notify": 4}
    first = result.samples[0]
    assert [a["action"] for a in first["actions"]] == ["tag_return", "open_ticket", "notify"]
    assert first["actions"][0]["channel"] == "supplier_claim"
    assert first["actions"][2]["message"] == "可乐 330ml 因包装破损退货 1 件"
    assert first["actions"][1]["subject"] == "sup-1"
    assert counts(db) == before
    assert result.to_json()["actions"]["notify"] == 4


def test_a_disabled_rule_is_dry_run_all_the_same(db: RulesDB) -> None:
    db.document(DocType.RECEIPT, Line("COLA", 5, price_fen=226), counterparty="sup-1")
    db.document(DocType.CUSTOMER_RETURN, Line("COLA", 1), reason="damaged_packaging")
    result = run(db, {**return_routing(), "enabled": False}, 1)
    assert result.firings == 1


def test_a_dry_run_replays_lead_time_changes_day_by_day(db: RulesDB) -> None:
    today = db.now.date()
    with db.conn:
        for n in range(20):  # slow deliveries that arrived over the last five days
            received = today - timedelta(days=n % 5)
            db.conn.execute(
                "INSERT INTO lead_time_history (supplier, po_ref, ordered_on, received_on, qty, imported_at,"
                " command_key) VALUES ('sup-1', ?, ?, ?, 10, ?, 'k')",
                (f"PO-{n}", (received - timedelta(days=30)).isoformat(), received.isoformat(), db.now.isoformat()),
            )
    result = run(db, lead_time_rule(15), 30)
    assert result.events >= 1 and result.firings >= 1
    would = result.samples[0]["actions"][1]
    assert would["action"] == "adjust_parameter" and {c["sku"] for c in would["changes"]} == {"COLA", "CHIPS"}
    assert db.value("SELECT service_level FROM item_suppliers WHERE sku = 'COLA'") == 0.95  # unchanged


def test_a_schedule_is_replayed_each_time_it_fired(db: RulesDB) -> None:
    document = {
        "id": "morning-check",
        "name": {"zh": "早检", "en": "morning check"},
        "trigger": {"kind": "schedule", "cron": "0 8 * * *"},
        "when": "schedule.weekday <= 7",
        "then": [{"action": "notify", "role": "manager", "message": {"zh": "{schedule.date} 早检", "en": "check"}}],
    }
    result = run(db, document, 3)  # now is 10:00 in Shanghai: 08:00 of each of the three days has passed
    assert result.events == 3 and result.firings == 3
    assert [s["actions"][0]["message"] for s in result.samples] == [
        "2026-11-18 早检",
        "2026-11-19 早检",
        "2026-11-20 早检",
    ]


def test_triggers_without_history_say_they_cannot_be_replayed(db: RulesDB) -> None:
    document = {
        "id": "cold",
        "name": {"zh": "冷库", "en": "cold"},
        "trigger": {"kind": "alert", "alert": "cold-room"},
        "when": 'alert.level == "critical"',
        "then": [{"action": "notify", "role": "manager", "message": {"zh": "冷库告警", "en": "cold room"}}],
    }
    result = run(db, document, 7)
    assert not result.replayable and result.events == 0 and "cannot be replayed" in result.note_en


@pytest.mark.parametrize("days", [0, -1, 367, 2.5, True])
def test_days_out_of_range_are_refused(db: RulesDB, days: Any) -> None:
    with pytest.raises(dryrun.DryRunInvalid):
        run(db, return_routing(), days)


def test_a_stored_version_loads_for_a_dry_run(db: RulesDB) -> None:
    db.activate(return_routing())
    loaded = load_rule_version(db.conn, "returns.supplier-claim")
    assert loaded is not None and loaded.version == 1 and loaded.trigger_key == "customer_return"
    assert load_rule_version(db.conn, "no-such-rule") is None
    assert load_rule_version(db.conn, "returns.supplier-claim", 9) is None


def test_a_dry_run_replays_the_forecasts_pushed_in_the_window(db: RulesDB) -> None:
    from edge.replenishment.signal_formats import validate_records
    from edge.replenishment.signals import record_signals, to_domain

    def push(key: str, pushed_days_ago: int, low: float) -> None:
        at = db.now - timedelta(days=pushed_days_ago)
        day = (at + timedelta(days=1)).date().isoformat()
        records = to_domain(
            "weather", validate_records("weather", [{"date": day, "temp_max_c": 9, "temp_min_c": low, "rain_mm": 0}])
        )
        db.run(record_signals, "weather", records, key, "tester", at, at.date())

    push("old", 20, -5.0)  # outside the window
    push("mild", 3, 2.0)
    push("frost", 1, -4.0)
    document = {
        "id": "frost",
        "name": {"zh": "霜冻", "en": "frost"},
        "trigger": {"kind": "signal", "name": "weather.forecast"},
        "when": "weather.temp_min_c < 0 and weather.days_ahead <= 2",
        "then": [{"action": "notify", "role": "manager", "message": {"zh": "{weather.date} 霜冻", "en": "frost"}}],
    }
    result = run(db, document, 7)
    assert result.replayable and result.events == 2 and result.firings == 1
    assert result.samples[0]["facts"]["weather"]["days_ahead"] == 1
    assert result.samples[0]["actions"][0]["message"].endswith("霜冻")


def test_an_email_to_a_team_without_an_address_is_a_failed_action_in_the_dry_run_as_it_is_live(db: RulesDB) -> None:
    db.document(DocType.RECEIPT, Line("COLA", 50, price_fen=226), counterparty="sup-1")
    db.document(DocType.CUSTOMER_RETURN, Line("COLA", 1), reason="damaged_packaging")
    document = return_routing()
    document["then"] = [
        {
            "action": "send_email",
            "to": ["role:finance"],
            "subject": {"zh": "退货 {document.no}", "en": "return {document.no}"},
            "body": {"zh": "见附件", "en": "see attached"},
        }
    ]
    result = run(db, document, 7, email_routes={})
    assert result.firings == 1 and result.failed_actions == 1
    assert "no recipient" in result.samples[0]["actions"][0]["error"] and "finance" in result.errors[0]
    routed = run(db, document, 7, email_routes={"finance": ("ap@example.cn",)})
    assert routed.failed_actions == 0 and routed.samples[0]["actions"][0]["to"] == ["ap@example.cn"]
