"""New-product burst on a real store database: a launch selling steadily far above what a typical item of its category
sells (or above the plan's forecast) and about to run out gets an early reorder; a launch-week spike that fades, a
normal launch and one with plenty of stock do not; the judge checks the sell-through a week later."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.ledger.commands import DocType, Line
from tests.edge.modules.shipped.shop import Shop, add_items, check_proposals, open_shop, schedule, shipped

MANIFEST, MODULE = shipped("new_product_burst")
TICK = "0 7 * * *"
PEERS = ("SNACK-A", "SNACK-B", "SNACK-C", "SNACK-D")
LAUNCH = 28  # the new item's first receipt
TODAY = 35  # a week of its sales in


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    s = open_shop(tmp_path)
    add_items(s, *((sku, {"category": "snacks", "price_fen": 500}) for sku in (*PEERS, "NEW")))
    s.post(
        0, DocType.RECEIPT, [Line(sku, 1000, price_fen=300) for sku in PEERS], location="floor", counterparty="sup-1"
    )
    s.sql(
        "INSERT INTO item_suppliers (sku, supplier, unit, pack, lead_time_days, review_days, updated_at, updated_by)"
        " VALUES ('NEW', 'sup-1', 'piece', 12, 2, 1, '2026-03-01T00:00:00+00:00', 'test')"
    )
    yield s
    s.close()


def launch(shop: Shop, received: int, daily: list[int]) -> None:
    """Peers sell 5 a day from day 0; NEW is received on LAUNCH and sells `daily` from then on."""
    shop.post(LAUNCH, DocType.RECEIPT, [Line("NEW", received, price_fen=300)], location="floor", counterparty="sup-1")
    for n in range(TODAY):
        lines = [Line(sku, 5, location="floor") for sku in PEERS]
        k = n - LAUNCH
        if 0 <= k < len(daily) and daily[k] > 0:
            lines.append(Line("NEW", daily[k], location="floor"))
        shop.post(n, DocType.SALE, lines, payment="cash")


def test_a_steady_burst_about_to_run_out_gets_an_early_reorder(shop: Shop) -> None:
    launch(shop, 150, [20] * 7)  # four times a typical snack; 10 left
    event = schedule(TICK, TODAY)
    proposals = MODULE.handle(shop.ctx(MANIFEST, TODAY), event)
    assert [p["action"] for p in proposals] == ["create_draft", "notify"]
    draft, notice = proposals
    assert draft["draft"] == "purchase_order" and draft["sku"] == "NEW"
    assert draft["qty_days"] == 10  # lead time 2 + review 1 + cover 7
    decision = draft["decision"]
    assert decision["key"] == "launch:NEW" and decision["check_on"] == shop.day(TODAY + 7).isoformat()
    predicted = decision["predicted"]
    assert predicted["on_hand"] == 10 and predicted["source"] == "category"
    assert predicted["forecast"] == pytest.approx(5.0, rel=0.05) and predicted["rate"] == pytest.approx(20, rel=0.05)
    assert "typical items of its category" in notice["message"]["en"]
    assert check_proposals(MANIFEST, event, proposals) == []


def test_a_launch_week_spike_that_fades_is_not_a_burst(shop: Shop) -> None:
    launch(shop, 150, [25, 25, 25, 25, 3, 3, 2])
    assert MODULE.handle(shop.ctx(MANIFEST, TODAY), schedule(TICK, TODAY)) == []


def test_one_bulk_buyer_is_not_a_burst(shop: Shop) -> None:
    launch(shop, 150, [5, 5, 5, 5, 5, 80, 5])  # a high average over the last three days, but one day makes it
    assert MODULE.handle(shop.ctx(MANIFEST, TODAY), schedule(TICK, TODAY)) == []


def test_a_normal_launch_is_not_a_burst(shop: Shop) -> None:
    launch(shop, 60, [6] * 7)
    assert MODULE.handle(shop.ctx(MANIFEST, TODAY), schedule(TICK, TODAY)) == []


def test_a_burst_with_stock_for_weeks_needs_no_early_reorder(shop: Shop) -> None:
    launch(shop, 1000, [20] * 7)
    assert MODULE.handle(shop.ctx(MANIFEST, TODAY), schedule(TICK, TODAY)) == []


def test_the_plans_forecast_comes_before_the_category(shop: Shop) -> None:
    """The plan expected 25 a day before the first sale: 20 a day is no burst."""
    launch(shop, 150, [20] * 7)
    shop.sql(
        "INSERT INTO plan_runs (id, trigger, business_date, started_at, finished_at, series, rows, superseded,"
        " duration_ms, methods, errors) VALUES (1, 'manual', ?, ?, ?, 1, 1, 0, 1, '{}', '[]')",
        (shop.day(LAUNCH).isoformat(), f"{shop.day(LAUNCH)}T01:00:00+00:00", f"{shop.day(LAUNCH)}T01:00:01+00:00"),
    )
    shop.sql(
        "INSERT INTO suggestions (run_id, sku, location, supplier, qty, unit, pack, base_qty, order_by, explanation,"
        " explanation_en, inputs, created_at) VALUES (1, 'NEW', 'floor', 'sup-1', 1, 'piece', 12, 12, ?, '', '', ?, ?)",
        (shop.day(LAUNCH).isoformat(), json.dumps({"daily": [25.0] * 7}), f"{shop.day(LAUNCH)}T01:00:01+00:00"),
    )
    assert MODULE.handle(shop.ctx(MANIFEST, TODAY), schedule(TICK, TODAY)) == []
    forecast, source = MODULE.forecast_for(
        shop.conn,
        "NEW",
        "snacks",
        shop.day(LAUNCH),
        shop.day(TODAY),
        {"NEW": ()},
        MODULE.params_of(shop.ctx(MANIFEST, TODAY)),
    )
    assert (forecast, source) == (25.0, "plan")


def test_an_old_item_is_not_new(shop: Shop) -> None:
    launch(shop, 150, [20] * 7)
    assert MODULE.handle(shop.ctx(MANIFEST, LAUNCH + 29), schedule(TICK, LAUNCH + 29)) == []


def decision(shop: Shop, on_hand: int) -> dict[str, Any]:
    return {
        "key": "launch:NEW",
        "check_on": shop.day(TODAY + 7).isoformat(),
        "predicted": {
            "outcome": "sell_through",
            "sku": "NEW",
            "on_hand": on_hand,
            "decided_on": shop.day(TODAY).isoformat(),
            "check_days": 7,
        },
    }


def sell_week(shop: Shop, qty: int) -> None:
    shop.post(TODAY, DocType.RECEIPT, [Line("NEW", 500, price_fen=300)], location="floor", counterparty="sup-1")
    for n in range(TODAY, TODAY + 8):
        shop.post(n, DocType.SALE, [Line("NEW", qty, location="floor")], payment="cash")


def test_judge_says_right_when_the_launch_sold_through(shop: Shop) -> None:
    launch(shop, 150, [20] * 7)
    sell_week(shop, 15)  # 105 in the week after the decision; 100 was on hand
    assert MODULE.judge(shop.ctx(MANIFEST, TODAY + 6), decision(shop, 100)) is None
    assert MODULE.judge(shop.ctx(MANIFEST, TODAY + 7), decision(shop, 100)) is True


def test_judge_says_wrong_when_the_launch_did_not_sell_through(shop: Shop) -> None:
    launch(shop, 150, [20] * 7)
    sell_week(shop, 5)  # 35 of 100
    assert MODULE.judge(shop.ctx(MANIFEST, TODAY + 7), decision(shop, 100)) is False
