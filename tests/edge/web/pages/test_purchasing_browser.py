"""A three-way-match exception resolved from the page in a real browser: the purchaser accepts the difference
with a note, the accountant approves it (the demo store holds one open exception: edge/demo/finance.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.edge.web.pages.browser import log_in
from tools.box_process import BoxProcess

pytestmark = pytest.mark.browser


def test_a_purchaser_accepts_a_match_exception_and_the_accountant_approves_it(
    page: Any, chromium: Any, demo_box: BoxProcess
) -> None:
    log_in(page, demo_box, "purchaser", path="/purchasing/exceptions")
    row = page.locator("#match-exceptions tr", has_text="杭州丰禾食品")
    assert "价格差异" in row.inner_text()  # the reason in words, right in the queue
    row.get_by_role("link").first.click()
    page.wait_for_url(re.compile(r"/purchasing/exceptions/\d+$"))
    url = page.url
    reasons = page.locator("#reasons").inner_text()
    assert "价格差异" in reasons and "价差 150 分" in reasons
    accept = page.locator("form[data-action=accept]")
    accept.get_by_label("处理说明").fill("供应商通知涨价，已核实")
    accept.get_by_role("button", name="接受差异").click()
    page.wait_for_selector("p.flash:has-text('已接受差异，等待审批')")
    assert page.locator("#exception-status").inner_text() == "待审批"
    assert "供应商通知涨价，已核实" in page.locator("#history").inner_text()
    assert page.locator("form[data-action=approve]").count() == 0  # not by the one who accepted

    context = chromium.new_context(locale="zh-CN")
    other = context.new_page()
    try:
        log_in(other, demo_box, "accountant", path=url.removeprefix(demo_box.url))
        assert "差异由 purchaser 接受" in other.locator("#resolve").inner_text()
        other.locator("form[data-action=approve]").get_by_role("button", name="审批差异").click()
        other.wait_for_selector("p.flash:has-text('已审批，应付已入账')")
        assert other.locator("#exception-status").inner_text() == "已接受"
        assert "此异常已关闭" in other.locator("#resolve").inner_text()
    finally:
        context.close()
