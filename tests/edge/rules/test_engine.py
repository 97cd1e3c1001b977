"""The engine: which active rules an event fires, with what facts; events built from the ledger; outside input
(alerts, device events) turned into events without ever raising."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ledger.commands import DocType, Line
from edge.rules import engine
from edge.rules.engine import Event, Origin, evaluate, load_document
from tests.edge.rules.rulebox import STORE, RulesDB, lead_time_rule, open_rules_db, return_routing, set_override

AT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RulesDB]:
    opened = open_rules_db(tmp_path / "rules.db")
    yield opened
    opened.conn.close()


def lead_time_event(change: float, supplier: str = "sup-1") -> Event:
    facts = {
        "supplier": {"id": supplier, "name": "华润饮料"},
        "lead_time": {"days": 3 + change, "previous_days": 3.0, "change_days": change, "deliveries": 4},
    }
    return engine.signal_event("supplier.lead_time_changed", f"{supplier}:{change}", AT, facts, supplier)


def test_a_rule_fires_only_when_its_trigger_matches_and_its_condition_holds() -> None:
    rule = load_document("supplier-delay-response.lead-time-growth", 3, lead_time_rule(15))
    assert rule.error is None
    assert evaluate([rule], lead_time_event(10), STORE) == []
    (firing,) = evaluate([rule], lead_time_event(16.5), STORE)
    assert firing.origin == Origin.rule("supplier-delay-response.lead-time-growth", 3)
    assert firing.origin.actor == "rule:supplier-delay-response.lead-time-growth@3"
    assert [a["action"] for a in firing.actions] == ["notify", "adjust_parameter"]
    assert firing.facts["lead_time"]["change_days"] == 16.5
    assert firing.facts["params"] == {"threshold_days": 15}
    assert firing.facts["store"] == {"id": STORE}
    assert firing.subject == "sup-1" and not firing.failed
    other = engine.signal_event("invoice.registered", "1", AT, {"invoice": {"id": 1}})
    assert evaluate([rule], other, STORE) == []


def test_an_override_changes_params_and_can_disable_a_rule(db: RulesDB) -> None:
    db.activate(lead_time_rule(15))
    (loaded,) = engine.load_active_rules(db.conn)
    assert loaded.params == {"threshold_days": 15} and loaded.enabled
    set_override(db.conn, loaded.rule_id, params={"threshold_days": 5, "unknown": 1})
    (loaded,) = engine.load_active_rules(db.conn)
    assert loaded.params == {"threshold_days": 5}  # an override of a param the rule does not declare is not used
    assert len(evaluate([loaded], lead_time_event(6), STORE)) == 1
    set_override(db.conn, loaded.rule_id, enabled=False, params={"threshold_days": 5})
    (loaded,) = engine.load_active_rules(db.conn)
    assert not loaded.enabled and evaluate([loaded], lead_time_event(60), STORE) == []


def test_the_fingerprint_changes_when_a_rule_version_or_an_override_changes(db: RulesDB) -> None:
    empty = engine.rules_fingerprint(db.conn)
    db.activate(lead_time_rule(15))
    first = engine.rules_fingerprint(db.conn)
    db.activate(lead_time_rule(10), version=2)
    second = engine.rules_fingerprint(db.conn)
    set_override(db.conn, "supplier-delay-response.lead-time-growth", enabled=False)
    assert len({empty, first, second, engine.rules_fingerprint(db.conn)}) == 4
    (loaded,) = engine.load_active_rules(db.conn)
    assert loaded.version == 2 and loaded.params == {"threshold_days": 10}


def test_a_condition_that_raises_is_a_failed_firing_and_the_others_still_fire() -> None:
    broken = {**lead_time_rule(), "id": "broken", "when": "lead_time.change_days / lead_time.previous_days > 1"}
    good = load_document("good", 1, lead_time_rule(1))
    bad = load_document("broken", 1, broken)
    event = engine.signal_event(
        "supplier.lead_time_changed",
        "x",
        AT,
        {"supplier": {"id": "sup-1"}, "lead_time": {"change_days": 5.0, "previous_days": 0.0}},
    )
    firings = {f.origin.name: f for f in evaluate([bad, good], event, STORE)}
    assert firings["broken"].failed and "division by zero" in (firings["broken"].error or "")
    assert firings["broken"].actions == ()
    assert not firings["good"].failed and len(firings["good"].actions) == 2


def test_a_stored_rule_the_catalogue_no_longer_accepts_loads_with_its_error_and_fails_visibly() -> None:
    stale = {**lead_time_rule(), "when": "lead_time.no_such_fact > 1"}
    loaded = load_document("stale", 1, stale)
    assert loaded.condition is None and "no_such_fact" in (loaded.error or "")
    (firing,) = evaluate([loaded], lead_time_event(20), STORE)
    assert firing.failed and firing.actions == ()


def test_a_posted_return_is_one_ledger_event_per_line_with_documented_facts(db: RulesDB) -> None:
    db.document(DocType.RECEIPT, Line("COLA", 10, price_fen=226), Line("CHIPS", 5, price_fen=500), counterparty="sup-1")
    doc = db.document(
        DocType.CUSTOMER_RETURN, Line("COLA", 2), Line("CHIPS", 1), reason="damaged_packaging", payment="cash"
    )
    events = engine.ledger_events(db.conn, doc)
    assert [e.key for e in events] == [f"doc:{doc}:1", f"doc:{doc}:2"]
    first = events[0]
    assert (first.kind, first.name) == ("ledger", "customer_return")
    assert first.facts["document"]["type"] == "customer_return" and first.facts["document"]["line_count"] == 2
    assert first.facts["line"]["sku"] == "COLA" and first.facts["line"]["qty"] == 2
    assert first.facts["line"]["amount_fen"] == 700 and first.facts["line"]["price_fen"] == 350
    assert first.facts["line"]["reason"] == "包装破损" and first.facts["line"]["reason_code"] == "damaged_packaging"
    assert first.facts["return"] == {"reason": "包装破损", "channel": "store"}
    assert first.facts["item"]["name"] == "可乐 330ml" and first.facts["item"]["supplier"] == "sup-1"
    assert first.facts["supplier"]["id"] == "sup-1" and first.facts["supplier"]["lead_time_days"] == 3.0
    rule = load_document("returns", 1, return_routing())
    assert [f.event_key for f in evaluate([rule], first, STORE)] == [f"doc:{doc}:1"]
    other = db.document(DocType.CUSTOMER_RETURN, Line("COLA", 1), reason="taste")
    assert evaluate([rule], engine.ledger_events(db.conn, other)[0], STORE) == []


def test_events_are_json_for_modules() -> None:
    body = lead_time_event(3).to_json()
    assert body["kind"] == "signal" and body["name"] == "supplier.lead_time_changed"
    assert body["at"] == AT.isoformat() and body["facts"]["lead_time"]["change_days"] == 3


def test_a_published_alert_becomes_an_alert_event() -> None:
    payload = {"id": "cold-room-4", "ts": "x", "data": {"room": "cold-1", "level": "critical", "message": "超温"}}
    event = engine.alert_event(STORE, "cold-room", payload, AT)
    assert event is not None and event.key == "alert:cold-room:cold-room-4"
    assert event.facts["alert"] == {"kind": "cold-room", "level": "critical", "subject": "cold-1", "message": "超温"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(payload=st.dictionaries(st.sampled_from(["id", "ts", "data", "x"]), json_values, max_size=4))
def test_alert_and_device_payloads_never_raise(payload: dict[str, Any]) -> None:
    alert = engine.alert_event(STORE, "returns", payload, AT)
    device = engine.bus_event("cold-1", "temp", payload, AT)
    for event in (alert, device):
        assert event is None or (isinstance(event, Event) and event.key)
    if device is not None:
        assert isinstance(device.facts["reading"]["value"], float)


@given(data=st.dictionaries(st.sampled_from(["value", "celsius", "unit", "location", "room"]), json_values, max_size=5))
def test_a_device_reading_takes_only_numbers_as_its_value(data: dict[str, Any]) -> None:
    event = engine.bus_event("cold-1", "temp", {"id": "e1", "data": data}, AT)
    assert event is not None
    value = event.facts["reading"]["value"]
    assert value == value or isinstance(value, float)  # NaN passes through as a float, never as text
