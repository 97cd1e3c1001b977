"""Near-expiry clearance on a real store database: which lots it predicts will be wasted (sales velocity against the
days left, first expiry first, cold-room alarms), what it proposes (a markdown or a transfer, each passing the module
host's checks), that it decides once per lot, and how its judge tells waste from a sale."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ledger.commands import DocType, Line
from edge.replenishment.plan_data import epoch_day
from tests.edge.modules.shipped.shop import Shop, add_items, check_proposals, open_shop, schedule, shipped

MANIFEST, MODULE = shipped("near_expiry")
TICK = "0 7 * * *"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    s = open_shop(tmp_path)
    add_items(
        s,
        ("MILK", {"name": "鲜牛奶", "storage_class": "chilled", "shelf_life_days": 7, "price_fen": 1290,
                  "lot_tracked": True, "category": "fresh"}),
        ("TOFU", {"name": "豆腐", "storage_class": "chilled", "shelf_life_days": 3, "price_fen": 350,
                  "lot_tracked": True, "category": "fresh"}),
    )  # fmt: skip
    yield s
    s.close()


def sell_daily(shop: Shop, sku: str, qty: int, first: int, last: int, location: str = "cold") -> None:
    for n in range(first, last + 1):
        shop.post(n, DocType.SALE, [Line(sku, qty, location=location)], payment="cash")


def receive(shop: Shop, n: int, sku: str, qty: int, expiry_day: int, location: str = "cold") -> str:
    expiry = shop.day(expiry_day)
    lot = f"L{expiry:%Y%m%d}"
    shop.post(
        n,
        DocType.RECEIPT,
        [Line(sku, qty, price_fen=500, lot=lot, expiry=expiry)],
        location=location,
        counterparty="sup-1",
    )
    return lot


def slow_milk(shop: Shop) -> str:
    """MILK sells 4 a day for four weeks; 40 on hand in a lot that expires in two days (12 can sell)."""
    receive(shop, 0, "MILK", 200, 60)
    sell_daily(shop, "MILK", 4, 0, 27)
    shop.post(28, DocType.WRITE_OFF, [Line("MILK", 88, location="cold")], reason="damaged")
    return receive(shop, 28, "MILK", 40, 30)


def test_a_lot_that_cannot_sell_before_its_expiry_gets_a_markdown_and_a_decision(shop: Shop) -> None:
    lot = slow_milk(shop)
    event = schedule(TICK, 29)
    proposals = MODULE.handle(shop.ctx(MANIFEST, 29), event)
    assert [p["action"] for p in proposals] == ["notify", "create_draft"]
    notice, draft = proposals
    assert notice["role"] == "category_manager" and "MILK" in notice["message"]["en"]
    assert draft["draft"] == "markdown" and draft["sku"] == "MILK" and draft["discount_bp"] == 3000
    # Two sellable days (the 29th and its expiry day, the 30th) at 4 a day: about 32 of the 40 left over.
    assert 25 <= draft["qty"] <= 35
    decision = draft["decision"]
    assert decision["key"] == f"lot:MILK:{lot}"
    assert decision["check_on"] == shop.day(31).isoformat()
    assert decision["predicted"]["outcome"] == "waste" and decision["predicted"]["probability"] >= 0.95
    assert check_proposals(MANIFEST, event, proposals) == []


def test_the_documented_proposal_is_what_the_module_proposes(shop: Shop) -> None:
    slow_milk(shop)
    proposals = MODULE.handle(shop.ctx(MANIFEST, 29), schedule(TICK, 29))
    page = (Path(__file__).resolve().parents[4] / "docs" / "modules-shipped.md").read_text(encoding="utf-8")
    documented = json.loads(page.split("```json\n", 1)[1].split("```", 1)[0])
    assert proposals == documented


def test_a_lot_that_sells_in_time_gets_nothing(shop: Shop) -> None:
    receive(shop, 0, "MILK", 400, 60)
    sell_daily(shop, "MILK", 12, 0, 27)
    shop.post(28, DocType.WRITE_OFF, [Line("MILK", 64, location="cold")], reason="damaged")
    receive(shop, 28, "MILK", 20, 30)  # 36 can sell in the three days to its expiry
    assert MODULE.handle(shop.ctx(MANIFEST, 28), schedule(TICK, 28)) == []


def test_sales_imported_from_a_previous_system_count_as_velocity(shop: Shop) -> None:
    """No sale in the ledger yet, but 30 a day in the imported history: 40 expiring in two days sell."""
    receive(shop, 0, "MILK", 40, 2)
    shop.sql("INSERT INTO plan_series (sku, location) VALUES ('MILK', 'cold')")
    for n in range(-28, 0):
        shop.sql(
            "INSERT INTO sales_history (series, day, qty) SELECT id, ?, 30 FROM plan_series WHERE sku = 'MILK'",
            (epoch_day(shop.day(n)),),
        )
    assert MODULE.handle(shop.ctx(MANIFEST, 0), schedule(TICK, 0)) == []


def test_lots_expiring_first_are_sold_first(shop: Shop) -> None:
    """A later lot that alone would sell is left over behind an earlier one that takes the demand first."""
    receive(shop, 0, "MILK", 400, 60)
    sell_daily(shop, "MILK", 10, 0, 27)
    shop.post(28, DocType.WRITE_OFF, [Line("MILK", 120, location="cold")], reason="damaged")
    receive(shop, 28, "MILK", 30, 30)  # 30 of the ~30 sellable by the 30th
    late = receive(shop, 28, "MILK", 40, 31)  # alone it would sell in four days; behind the first, ~30 are left
    proposals = MODULE.handle(shop.ctx(MANIFEST, 28), schedule(TICK, 28))
    keys = [p["decision"]["key"] for p in proposals if "decision" in p]
    assert keys == [f"lot:MILK:{late}"]


def test_a_lot_is_decided_once(shop: Shop) -> None:
    slow_milk(shop)
    first = MODULE.handle(shop.ctx(MANIFEST, 29), schedule(TICK, 29))
    shop.decide("near-expiry", first[1]["decision"])
    assert MODULE.handle(shop.ctx(MANIFEST, 29), schedule(TICK, 29)) == []
    assert MODULE.handle(shop.ctx(MANIFEST, 30), schedule(TICK, 30)) == []


def test_out_of_time_the_module_leaves_the_rest_for_the_next_tick(shop: Shop) -> None:
    slow_milk(shop)
    ctx = shop.ctx(MANIFEST, 29, max_seconds=0)
    assert MODULE.handle(ctx, schedule(TICK, 29)) == []
    assert ctx.logs == ["time budget of 0 s reached: 1 items left for the next call"]


def test_a_neighbour_that_sells_the_item_gets_a_transfer_instead(shop: Shop) -> None:
    receive(shop, 0, "MILK", 200, 60)
    sell_daily(shop, "MILK", 4, 0, 27)
    shop.post(28, DocType.WRITE_OFF, [Line("MILK", 88, location="cold")], reason="damaged")
    receive(shop, 28, "MILK", 60, 31)  # three days left: worth the trip
    shop.sql(
        "INSERT INTO peer_stock (store, sku, qty, storage_class, cold_chain_capable, last_outbound_date, distance_km,"
        " updated_at) VALUES ('peer-1', 'MILK', 5, 'chilled', 1, '2026-03-29', 2.0, '2026-03-29T00:00:00+00:00')"
    )
    event = schedule(TICK, 29)
    proposals = MODULE.handle(shop.ctx(MANIFEST, 29), event)
    draft = proposals[1]
    assert draft["draft"] == "transfer_request" and draft["to_store"] == "peer-1"
    assert draft["decision"]["predicted"]["proposed"] == "transfer_request"
    assert check_proposals(MANIFEST, event, proposals) == []


def excursion(shop: Shop, n: int, peak_c: float) -> None:
    """The cold room out of band (0-4 ℃) from 13:00 with an alarm, the room's lots recorded as the cold chain does."""
    d = shop.day(n)
    started = datetime(d.year, d.month, d.day, 5, tzinfo=UTC)
    shop.conn.execute("BEGIN IMMEDIATE")
    cursor = shop.conn.execute(
        "INSERT INTO cold_excursions (location, device, storage_class, min_mc, max_mc, direction, started_at,"
        " alarmed_at, ended_at, peak_mc, last_mc, last_at, readings) VALUES ('cold', 'cold-1', 'chilled', 0, 4000,"
        " 'above', ?, ?, ?, ?, 3000, ?, 12)",
        (
            started.isoformat(),
            (started + timedelta(minutes=20)).isoformat(),
            (started + timedelta(hours=2)).isoformat(),
            int(peak_c * 1000),
            (started + timedelta(hours=2)).isoformat(),
        ),
    )
    shop.conn.execute(
        "INSERT INTO cold_excursion_lots (excursion_id, sku, lot, expiry, qty) SELECT ?, b.sku, b.lot, l.expiry, b.qty"
        " FROM balances b LEFT JOIN lots l ON l.sku = b.sku AND l.lot = b.lot WHERE b.location = 'cold' AND b.qty > 0",
        (cursor.lastrowid,),
    )
    shop.conn.execute("COMMIT")


def alert_event() -> dict[str, Any]:
    from edge.rules.engine import alert_event as make

    body = {"id": "cold-room-1-alarm", "data": {"room": "cold", "message": "冷藏库温度过高"}}
    event = make("store-t", "cold-room", body, datetime(2026, 3, 30, 5, 20, tzinfo=UTC))
    assert event is not None
    return event.to_json()


def test_a_cold_room_alarm_far_past_the_band_leaves_its_lots_two_days(shop: Shop) -> None:
    receive(shop, 0, "MILK", 400, 80)
    sell_daily(shop, "MILK", 10, 0, 27)
    shop.post(28, DocType.WRITE_OFF, [Line("MILK", 120, location="cold")], reason="damaged")
    lot = receive(shop, 28, "MILK", 50, 34)  # five sellable days at 10 a day: fine by its label
    assert MODULE.handle(shop.ctx(MANIFEST, 28), schedule(TICK, 28)) == []
    excursion(shop, 28, peak_c=9.0)  # 5 ℃ above the band: sell by tomorrow evening, ~20 of 50
    event = alert_event()
    proposals = MODULE.handle(shop.ctx(MANIFEST, 28), event)
    decision = proposals[1]["decision"]
    assert decision["key"] == f"lot:MILK:{lot}" and decision["predicted"]["shortened"] is True
    assert "cold-room alarm" in proposals[0]["message"]["en"]
    assert check_proposals(MANIFEST, event, proposals) == []


def test_a_mild_cold_room_alarm_changes_nothing(shop: Shop) -> None:
    receive(shop, 0, "MILK", 400, 80)
    sell_daily(shop, "MILK", 10, 0, 27)
    shop.post(28, DocType.WRITE_OFF, [Line("MILK", 120, location="cold")], reason="damaged")
    receive(shop, 28, "MILK", 50, 34)
    excursion(shop, 28, peak_c=5.5)  # 1.5 ℃ above: under the 3 ℃ of excursion_min_celsius
    assert MODULE.handle(shop.ctx(MANIFEST, 28), alert_event()) == []


def decided_lot(shop: Shop) -> tuple[str, dict[str, Any]]:
    lot = slow_milk(shop)
    proposals = MODULE.handle(shop.ctx(MANIFEST, 29), schedule(TICK, 29))
    return lot, proposals[1]["decision"]


def test_judge_says_right_when_the_lot_was_written_off(shop: Shop) -> None:
    lot, decision = decided_lot(shop)
    sell_daily(shop, "MILK", 4, 29, 30)
    assert MODULE.judge(shop.ctx(MANIFEST, 30), decision) is None  # not before the day after the expiry
    shop.post(30, DocType.WRITE_OFF, [Line("MILK", 32, lot=lot, location="cold")], reason="expired")
    assert MODULE.judge(shop.ctx(MANIFEST, 31), decision) is True


def test_judge_counts_a_lot_left_on_the_shelf_past_its_expiry_as_waste(shop: Shop) -> None:
    _, decision = decided_lot(shop)
    sell_daily(shop, "MILK", 4, 29, 30)
    assert MODULE.judge(shop.ctx(MANIFEST, 32), decision) is True


def test_judge_says_wrong_when_the_lot_sold_at_full_price(shop: Shop) -> None:
    lot, decision = decided_lot(shop)
    shop.post(29, DocType.SALE, [Line("MILK", 40, lot=lot, location="cold")], payment="cash")
    assert MODULE.judge(shop.ctx(MANIFEST, 31), decision) is False


def test_judge_cannot_tell_when_the_store_marked_the_lot_down(shop: Shop) -> None:
    lot, decision = decided_lot(shop)
    shop.post(29, DocType.SALE, [Line("MILK", 40, lot=lot, location="cold", price_fen=900)], payment="cash")
    assert MODULE.judge(shop.ctx(MANIFEST, 31), decision) == "void"  # closed, never counted


def test_judge_reads_a_decision_as_the_host_stores_it(shop: Shop) -> None:
    """The host hands `predicted` back parsed; a JSON text (or garbage) is taken too."""
    lot, decision = decided_lot(shop)
    shop.post(29, DocType.SALE, [Line("MILK", 40, lot=lot, location="cold")], payment="cash")
    as_text = {**decision, "predicted": json.dumps(decision["predicted"])}
    assert MODULE.judge(shop.ctx(MANIFEST, 31), as_text) is False
    assert MODULE.judge(shop.ctx(MANIFEST, 31), {**decision, "predicted": "not json"}) is None


def test_a_lot_behind_one_that_expires_first_gets_the_days_after_it() -> None:
    """20 expiring today take today's demand only; tomorrow's 9 go to the 6 expiring tomorrow, which sell."""
    rng = random.Random(1)
    (first, _), (second, _) = MODULE.leftovers([(20, 1), (6, 2)], (9.0, 9.0, 28), [1.0, 1.0], 2000, 1, rng)
    assert first > 0.99
    assert second < 0.2  # P(Poisson(9) < 6) = 0.12; pooled over both days it would look certain (18 < 26)


def test_one_lot_is_left_over_as_the_poisson_tail_says() -> None:
    mean, qty, days = 3.0, 10, 2  # P(Poisson(6) < 10)
    exact = sum(math.exp(-mean * days) * (mean * days) ** k / math.factorial(k) for k in range(qty))
    rng = random.Random(2)
    ((chance, left),) = MODULE.leftovers([(qty, days)], (mean, mean, 10_000), [1.0] * days, 4000, 1, rng)
    assert chance == pytest.approx(exact, abs=0.03)
    assert 0 < left < qty


@given(
    lots=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 6)), min_size=1, max_size=4),
    mean=st.floats(0, 300, allow_nan=False),
    extra=st.floats(0, 3000, allow_nan=False),
    n_days=st.integers(0, 60),
)
def test_leftovers_are_chances_and_quantities_of_the_lots(
    lots: list[tuple[int, int]], mean: float, extra: float, n_days: int
) -> None:
    found = MODULE.leftovers(lots, (mean, mean + extra, n_days), [1.0] * 6, 50, 1, random.Random(0))
    assert len(found) == len(lots)
    for (qty, _), (chance, left) in zip(lots, found, strict=True):
        assert 0.0 <= chance <= 1.0 and 0.0 <= left <= qty
