"""In Debian's Chromium (Playwright's sync API): an HQ user logs in with a token and sees the stores page, the store
that is behind highlighted; the sales chart is drawn by the vendored uPlot; English is remembered."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cloud_sync.web.served import ServedAggregator

pytestmark = pytest.mark.browser


@pytest.fixture
def tab(chromium: Any) -> Iterator[Any]:
    """A fresh context and page of the session's browser (tests/conftest.py: one Playwright per test process)."""
    context = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    outside: list[str] = []
    page.on(
        "request",
        lambda request: None if request.url.startswith("http://127.0.0.1") else outside.append(request.url),
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not outside, f"requests left the machine: {outside}"


def test_hq_user_logs_in_with_a_token_and_sees_the_stores(hq_site: ServedAggregator, tab: Any) -> None:
    from playwright.sync_api import expect

    tab.goto(f"{hq_site.url}/hq")
    tab.wait_for_url(re.compile(r"/hq/login\?next="))
    tab.get_by_label("总部令牌").fill("sbhq_wrong")
    tab.get_by_role("button", name="登录").click()
    expect(tab.locator("#e-token")).to_have_text("令牌无效或已吊销")

    tab.get_by_label("总部令牌").fill(hq_site.token)
    tab.get_by_role("button", name="登录").click()
    tab.wait_for_url(f"{hq_site.url}/hq")
    expect(tab.get_by_role("heading", level=1)).to_have_text("门店与同步延迟")
    expect(tab.locator('#stores tr[data-store="s1"]')).to_contain_text("¥629.00")
    expect(tab.locator('#stores tr[data-store="s9"]')).to_have_class("alarm")
    assert tab.context.cookies()[0]["httpOnly"] is True

    tab.get_by_role("link", name="销售").click()
    tab.wait_for_url(re.compile(r"/hq/sales$"))
    expect(tab.locator(".chart canvas").first).to_be_visible()

    tab.get_by_role("link", name="切换语言").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Sales by store")
    tab.get_by_role("link", name="Stores and sync").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Stores and sync lag")
