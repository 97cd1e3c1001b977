"""Signal producers against a real ledger: a lead-time estimate that moved, a registered invoice with its price
difference, an expiring paper; each raised once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from edge.finance import compliance as cab
from edge.finance.papers import PaperFields, PaperKind, Reading
from edge.rules import signals
from edge.rules.engine import evaluate, load_document
from edge.rules.signals import SignalPolicy, detect_signals
from tests.edge.finance.test_ap import Store, cola, cola_line, invoice, open_store
from tests.edge.rules.rulebox import STORE, RulesDB, lead_time_rule, open_rules_db

POLICY = SignalPolicy()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RulesDB]:
    opened = open_rules_db(tmp_path / "rules.db")
    yield opened
    opened.conn.close()


def deliveries(db: RulesDB, supplier: str, days: int, count: int) -> None:
    """`count` imported deliveries of `supplier` that each took `days` days, in the last months."""
    today = db.now.date()
    with db.conn:
        for n in range(count):
            ordered = today - timedelta(days=days + 2 * n + 1)
            db.conn.execute(
                "INSERT INTO lead_time_history (supplier, po_ref, ordered_on, received_on, qty, imported_at,"
                " command_key) VALUES (?, ?, ?, ?, 10, ?, 'import')",
                (
                    supplier,
                    f"PO-{supplier}-{days}-{n}",
                    ordered.isoformat(),
                    (ordered + timedelta(days=days)).isoformat(),
                    db.now.isoformat(),
                ),
            )


def detect(db: RulesDB) -> list[signals.Event]:
    return db.run(detect_signals, db.now.date(), db.now, POLICY)


def test_a_lead_time_that_grows_raises_one_signal_from_the_entered_lead_time(db: RulesDB) -> None:
    assert detect(db) == []  # first look: estimates equal what the purchaser entered; marks set
    assert {r["supplier"] for r in db.rows("SELECT supplier FROM rule_lead_time_marks")} == {"sup-1", "sup-2"}
    deliveries(db, "sup-1", 25, 20)
    (signal,) = detect(db)
    assert (signal.kind, signal.name, signal.subject) == ("signal", "supplier.lead_time_changed", "sup-1")
    lead = signal.facts["lead_time"]
    assert lead["previous_days"] == 3.0 and lead["deliveries"] == 20
    assert lead["days"] == pytest.approx((20 * 25 + 5 * 3) / 25, abs=0.01)
    assert lead["change_days"] == pytest.approx(lead["days"] - 3.0)
    assert signal.facts["supplier"]["name"] == "华润饮料"
    assert detect(db) == []  # raised once: the mark moved with it
    rule = load_document("supplier-delay-response.lead-time-growth", 1, lead_time_rule(15))
    assert len(evaluate([rule], signal, STORE)) == 1
    # The supplier facts of later events carry the new estimate.
    assert db.value("SELECT days FROM rule_lead_time_marks WHERE supplier = 'sup-1'") == pytest.approx(lead["days"])


def test_history_present_at_the_first_look_is_measured_against_the_entered_lead_time(db: RulesDB) -> None:
    deliveries(db, "sup-2", 9, 15)
    (signal,) = detect(db)
    assert signal.subject == "sup-2" and signal.facts["lead_time"]["previous_days"] == 1.0


def test_a_change_below_the_step_raises_nothing(db: RulesDB) -> None:
    detect(db)
    deliveries(db, "sup-1", 3, 10)  # as entered: the estimate does not move
    assert detect(db) == []


@pytest.fixture
def books(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "books.db")
    yield opened
    opened.conn.close()


def invoice_signals(books: Store) -> list[signals.Event]:
    books.conn.execute("BEGIN IMMEDIATE")
    try:
        return signals.invoice_signals(books.conn, books.now)
    finally:
        books.conn.execute("COMMIT")


def test_each_registered_invoice_is_signalled_once_with_its_price_difference(books: Store) -> None:
    po = books.order(cola(10))
    books.receive(po, cola(10))
    entered = books.one(invoice(cola_line(10, extra_fen=250)))
    (signal,) = invoice_signals(books)
    assert (signal.name, signal.subject) == ("invoice.registered", entered["invoice_no"])
    facts = signal.facts["invoice"]
    assert facts["id"] == entered["id"] and facts["supplier"] == "sup-1" and facts["matched"] is False
    assert facts["price_diff_fen"] == 250 and facts["price_diff_bp"] == round(250 * 10_000 / 48_000)
    assert signal.facts["supplier"]["id"] == "sup-1"
    assert invoice_signals(books) == []
    po2 = books.order(cola(5))
    books.receive(po2, cola(5))
    matched = books.one(invoice(cola_line(5), number="24312000000012345679"))
    (second,) = invoice_signals(books)
    assert second.facts["invoice"]["id"] == matched["id"]
    assert second.facts["invoice"]["matched"] is True and second.facts["invoice"]["price_diff_bp"] == 0


def paper(db: RulesDB, kind: PaperKind, valid_to: date) -> int:
    fields = PaperFields(
        name="华润饮料",
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
    paper_id = int(db.run(cab.record_paper, upload, "purchaser", db.now).id)
    db.run(cab.confirm_paper, paper_id, None, "purchaser", db.now)
    return paper_id


def test_an_expiring_paper_is_signalled_once_per_alert(db: RulesDB) -> None:
    today = db.now.date()
    paper_id = paper(db, PaperKind.FOOD_LICENCE, today + timedelta(days=5))
    db.run(cab.due_expiry_alerts, today, (30, 7))
    found = db.run(signals.paper_signals, today, db.now)
    (signal,) = found
    assert signal.name == "paper.expiring" and signal.subject == "sup-1"
    assert signal.facts["paper"] == {
        "id": paper_id,
        "kind": "food_licence",
        "kind_name": "食品经营许可证",
        "kind_name_en": "food business licence",
        "valid_to": (today + timedelta(days=5)).isoformat(),
        "days_left": 5,
    }
    assert db.run(signals.paper_signals, today, db.now) == []


def push_weather(db: RulesDB, key: str, days: list[tuple[str, float]]) -> None:
    from edge.replenishment.signal_formats import validate_records
    from edge.replenishment.signals import record_signals, to_domain

    raw = [{"date": day, "temp_max_c": low + 8, "temp_min_c": low, "rain_mm": 0} for day, low in days]
    records = to_domain("weather", validate_records("weather", raw))
    db.run(record_signals, "weather", records, key, "tester", db.now, db.now.date())


def test_each_weather_forecast_pushed_for_today_or_later_is_signalled_once(db: RulesDB) -> None:
    today = db.now.date()
    day = (today + timedelta(days=1)).isoformat()
    push_weather(db, "w0", [(today.isoformat(), 4.0)])
    first = [e for e in detect(db) if e.name == signals.WEATHER_FORECAST]
    assert [e.facts["weather"]["days_ahead"] for e in first] == [0]  # the first look takes what is still ahead
    push_weather(db, "w1", [(day, -3.0), ((today + timedelta(days=2)).isoformat(), 1.0)])
    found = [e for e in detect(db) if e.name == signals.WEATHER_FORECAST]
    assert [(e.facts["weather"]["days_ahead"], e.facts["weather"]["temp_min_c"]) for e in found] == [
        (1, -3.0),
        (2, 1.0),
    ]
    assert found[0].subject == day
    assert [e for e in detect(db) if e.name == signals.WEATHER_FORECAST] == []  # once each
