"""The dashboard in a real browser against a real demo box: it shows the store and follows it live."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.edge.web.pages.browser import device, log_in
from tools.box_process import BoxProcess

pytestmark = pytest.mark.browser


def test_the_dashboard_counts_a_sale_from_the_pos_without_a_reload(page: Any, demo_box: BoxProcess) -> None:
    log_in(page, demo_box, "manager")
    page.wait_for_selector("#live-state.on")
    count = page.locator("#sales-count")
    before = int(re.sub(r"\D", "", count.inner_text()) or 0)
    page.evaluate("window.__marker = 1")  # gone if the page reloads
    item = demo_box.demo_json()["items"][0]
    pos = device(demo_box, "pos")
    try:
        sent = time.monotonic()
        pos.send("sale", {"lines": [{"code": item["barcode"], "qty": 1}], "payment": "cash"})
        page.wait_for_function(
            "n => parseInt(document.querySelector('#sales-count').innerText.replace(/\\D/g, '')) === n",
            arg=before + 1,
            timeout=10_000,
        )
        took = time.monotonic() - sent
    finally:
        pos.stop()
    assert page.evaluate("window.__marker") == 1
    print(f"sale to dashboard: {took:.3f} s")  # measured properly by tools/bench/web.py


def test_the_dashboard_works_on_a_phone_screen_and_in_english(chromium: Any, demo_box: BoxProcess) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        log_in(phone, demo_box, "manager")
        nav = phone.locator("#nav")
        assert not nav.is_visible()  # folded away behind the menu button
        phone.get_by_role("button", name="菜单").click()
        assert nav.is_visible()
        phone.get_by_role("link", name="切换语言").click()
        phone.wait_for_selector("text=Store dashboard")
        phone.reload()
        assert phone.locator("h1").inner_text().startswith("Store dashboard")  # remembered
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width}px wide on a 390px phone"
        # Every main page fits the phone's width: wide tables scroll inside their own box.
        for path in PHONE_PAGES:
            phone.goto(f"{demo_box.url}{path}")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 400, f"{path} is {width}px wide on a 390px phone"
    finally:
        context.close()


PHONE_PAGES = (
    "/stock",
    "/documents",
    "/documents/new/receipt",
    "/documents/new/stocktake",
    "/replenishment",
    "/replenishment/emergency",
    "/receiving",
    "/transfers",
    "/suppliers",
    "/compliance",
    "/purchasing",
    "/purchasing/exceptions",
    "/finance/vouchers",
    "/finance/trial-balance",
    "/finance/ap-ageing",
    "/cold-rooms",
    "/devices",
)
