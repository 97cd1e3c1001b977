"""The stock pages in a real browser against a real demo box: find an item by its pinyin initials, and watch an
item's on-hand change live, without a reload, when the simulated POS sells it over MQTT."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.edge.web.pages.browser import device, log_in
from tools.box_process import BoxProcess

pytestmark = pytest.mark.browser


NUMBER = "el => parseInt(el.textContent.replace(/[^0-9-]/g, ''), 10)"


def test_an_item_is_found_by_its_pinyin_initials(page: Any, demo_box: BoxProcess) -> None:
    log_in(page, demo_box, "clerk", path="/stock")
    box = page.get_by_label("搜索商品")
    box.fill("kkkl")  # 可口可乐, typed as the initials of its pinyin; the results follow the typing
    page.wait_for_url(re.compile(r"/stock\?q=kkkl$"))  # the search is in the address, to share or reload
    first = page.locator("#items tbody tr").first
    assert "可口可乐" in first.inner_text()
    assert "拼音" in first.inner_text()
    first.get_by_role("link").nth(1).click()
    page.wait_for_url(re.compile(r"/stock/[A-Z0-9]+$"))
    assert "可口可乐" in page.locator("h1").inner_text()
    assert page.locator("#on-hand-total[data-live-stock]").count() == 1


def test_the_on_hand_of_an_item_follows_a_pos_sale_without_a_reload(page: Any, demo_box: BoxProcess) -> None:
    item = demo_box.demo_json()["items"][1]
    log_in(page, demo_box, "manager", path=f"/stock/{quote(item['sku'])}")
    page.wait_for_selector("#live-state.on")
    total = page.locator("#on-hand-total")
    floor = page.locator('#by-location [data-live-location="floor"]')
    before = total.evaluate(NUMBER)
    floor_before = floor.evaluate(NUMBER)
    moves_before = page.locator("#moves tbody tr").count()
    page.evaluate("window.__marker = 1")  # gone if the page reloads
    pos = device(demo_box, "pos")
    try:
        sent = time.monotonic()
        pos.send("sale", {"lines": [{"code": item["barcode"], "qty": 2}], "payment": "wechat"})
        page.wait_for_function(
            f"n => ({NUMBER})(document.querySelector('#on-hand-total')) === n", arg=before - 2, timeout=10_000
        )
        took = time.monotonic() - sent
    finally:
        pos.stop()
    assert floor.evaluate(NUMBER) == floor_before - 2
    # The moves table refreshes too (htmx, on the same live event): the sale is its newest row.
    page.wait_for_function(
        "n => document.querySelectorAll('#moves tbody tr').length >= n && "
        "document.querySelector('#moves tbody tr').textContent.includes('-2')",
        arg=min(moves_before, 30),
    )
    assert page.evaluate("window.__marker") == 1
    print(f"sale to item page: {took:.3f} s")
