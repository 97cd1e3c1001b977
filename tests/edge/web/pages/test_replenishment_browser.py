"""Approving a reorder suggestion into a purchase order in a real browser against a real demo box, and finding
the purchase order through the API afterwards."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.edge.web.pages.browser import log_in
from tests.edge.web.pages.test_receiving_browser import manager_api
from tools.box_process import BoxProcess

pytestmark = pytest.mark.browser

UNPAPERED = "sup-daily"  # the demo's supplier without papers: a large order to it is refused


def open_suggestion(client: httpx.Client, *, timeout: float = 60.0) -> dict[str, Any]:
    """An open suggestion of a supplier with papers, once the demo's first plan run has made them (it runs a few
    seconds after the start: the chilled and fresh goods that sell faster than they are stocked)."""
    deadline = time.monotonic() + timeout
    while True:
        found = client.get("/api/v1/replenishment/suggestions", params={"limit": 100}).json()
        usable = [s for s in found["items"] if s["supplier"] != UNPAPERED and s["qty"] >= 1]
        if usable:
            return dict(usable[0])
        assert time.monotonic() < deadline, "the demo's plan made no suggestion"
        time.sleep(0.5)


def test_a_suggestion_is_approved_into_a_purchase_order(page: Any, demo_box: BoxProcess) -> None:
    with manager_api(demo_box) as client:
        suggestion = open_suggestion(client)
    log_in(page, demo_box, "manager", path=f"/replenishment?supplier={suggestion['supplier']}")
    row = page.locator(f"#suggestion-{suggestion['id']}")
    assert suggestion["explanation"][:10] in row.inner_text()
    row.locator("a").first.click()
    page.wait_for_url(f"{demo_box.url}/replenishment/{suggestion['id']}")
    assert page.locator("#f-qty").input_value() == str(suggestion["qty"])
    page.locator("#approve-one button[type=submit]").click()
    page.wait_for_selector("a[data-po]")
    po_id = int(page.locator("a[data-po]").get_attribute("data-po"))
    po_no = page.locator("a[data-po]").inner_text()
    assert po_no in page.inner_text("p.flash")

    with manager_api(demo_box) as client:
        po = client.get(f"/api/v1/documents/{po_id}").json()
        decided = client.get(f"/api/v1/replenishment/suggestions/{suggestion['id']}").json()
    assert (po["type"], po["counterparty"], po["doc_no"]) == ("purchase_order", suggestion["supplier"], po_no)
    assert [(line["sku"], line["qty"]) for line in po["lines"]] == [(suggestion["sku"], suggestion["qty"])]
    assert (decided["state"], decided["po_id"]) == ("approved", po_id)
