"""The box's totals follow the contract's sales rule and equal the aggregator's after sync; `differences` names
each disagreement."""

from __future__ import annotations

import pytest

from edge.sync.totals import differences
from tests.edge.sync.conftest import Aggregator, Box

pytestmark = pytest.mark.anyio


async def test_sales_count_sales_minus_returns_and_reversals_with_the_reversed_documents_sign(box: Box) -> None:
    await box.receive("COLA", 50, price_fen=200)
    await box.receive("RICE", 10, price_fen=3600)
    kept = await box.sell("COLA", 5)
    reversed_sale = await box.sell("COLA", 3)
    await box.reverse(reversed_sale)
    rice = await box.sell("RICE", 2)
    returned = await box.customer_return(rice, "RICE", 1)
    totals = box.totals()
    assert totals["sales"]["qty"] == 5 + 3 - 3 + 2 - 1
    taken = box.read("SELECT -SUM(value_fen) FROM stock_moves WHERE document_id IN (?, ?, ?)", kept, rice, returned)[0][
        0
    ]
    assert totals["sales"]["cost_fen"] == taken  # what the lines that still count took out of stock (net of VAT)
    assert totals["stock"]["qty"] == 50 - 5 + 10 - 1
    assert totals["documents"] == 7
    assert totals["stock_lines"]["COLA|floor|"][0] == 45
    assert all(debit or credit for debit, credit in totals["gl"].values())


async def test_totals_equal_the_aggregators_after_sync(box: Box, aggregator: Aggregator) -> None:
    await box.trade(12)
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport(), sync_batch_rows=7)
    await service.push_now()
    await service.client.aclose()
    assert box.totals() == aggregator.totals()


def test_differences_name_each_disagreement() -> None:
    box = {
        "documents": 3,
        "stock": {"qty": 5, "value_fen": 100},
        "stock_lines": {"COLA|floor|": [5, 100]},
        "sales": {"qty": 1, "gross_fen": 350, "tax_fen": 40, "cost_fen": 20},
        "gl": {"1001": [350, 0], "1405": [100, 20]},
    }
    same = {**box}
    assert differences(box, same) == []
    theirs = {
        **box,
        "documents": 2,
        "stock_lines": {"COLA|floor|": [5, 99], "RICE|floor|": [1, 1]},
        "gl": {"1001": [350, 0]},
    }
    found = differences(box, theirs)
    assert found[0] == "documents: box 3 != aggregator 2"
    assert "stock_lines COLA|floor|: box [5, 100] != aggregator [5, 99]" in found
    assert "stock_lines RICE|floor|: box None != aggregator [1, 1]" in found
    assert "gl 1405: box [100, 20] != aggregator None" in found
    assert len(found) == 4
