"""The lead-time rule written from the page in a real browser: the purchaser picks the trigger's facts from the fact
picker into the condition, sees a wrong fact named live next to the condition, fills in the actions from the
catalogue, saves the draft, sees the dry run and submits it to the manager; the manager approves it and it is
active."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.edge.web.pages.browser import log_in
from tools.box_process import BoxProcess

pytestmark = pytest.mark.browser
RULE = "purchasing.lead-time-watch"


def test_a_purchaser_writes_the_lead_time_rule_and_the_manager_approves_it(
    page: Any, chromium: Any, demo_box: BoxProcess
) -> None:
    log_in(page, demo_box, "purchaser", path="/rule-editor")
    page.get_by_label("规则编号").fill(RULE)
    page.get_by_label("中文名称").fill("供应商交期延长超过阈值")
    page.get_by_label("英文名称").fill("Supplier lead time grows past a threshold")
    assert page.get_by_label("触发方式").input_value() == "signal"
    assert page.get_by_label("信号名称").input_value() == "supplier.lead_time_changed"

    # Another trigger, another set of facts: a posted document's line offers the return reason, not the lead time.
    page.get_by_label("触发方式").select_option("ledger")
    page.wait_for_selector("#fact-picker button[data-fact='return.reason']")
    assert page.locator("#fact-picker button[data-fact='lead_time.change_days']").count() == 0
    page.get_by_label("触发方式").select_option("signal")
    page.get_by_label("信号名称").fill("supplier.lead_time_changed")
    page.get_by_label("信号名称").press("Tab")
    page.wait_for_selector("#fact-picker button[data-fact='lead_time.change_days']")

    # The fact picker shows the trigger's facts by their Chinese and English names; a click puts one in.
    picker = page.locator("#fact-picker")
    fact = picker.locator("button[data-fact='lead_time.change_days']")
    assert "变化(天)" in fact.inner_text() and "change (days)" in fact.inner_text()
    condition = page.get_by_label("条件")
    fact.click()
    condition.press_sequentially(" > params.threshold_dayz")
    # The live check names the unknown name next to the condition.
    page.wait_for_selector("#e-when:has-text('params.threshold_dayz')")
    page.get_by_label("参数", exact=True).fill("threshold_days: 15")
    condition.fill("")
    fact.click()
    condition.press_sequentially(" > params.threshold_days")
    assert condition.input_value() == "lead_time.change_days > params.threshold_days"

    # The actions, as forms from the catalogue: notify the category manager, then raise the service level.
    slot = page.locator("fieldset[data-action='notify']")
    slot.get_by_label("通知谁（角色或团队）").fill("category_manager")
    slot.locator("input[name$='-message-zh']").fill("{supplier.name} 交货期延长 {lead_time.change_days} 天")
    slot.locator("input[name$='-message-en']").fill("{supplier.name}: lead time up {lead_time.change_days} days")
    page.get_by_label("要添加的动作").select_option("adjust_parameter")
    page.get_by_role("button", name="添加动作").click()
    adjust = page.locator("fieldset[data-action='adjust_parameter']")
    adjust.get_by_label("调整哪个参数").select_option("service_level")
    adjust.get_by_label("范围").select_option("supplier")
    adjust.get_by_label("增减量").fill("0.02")
    adjust.get_by_label("下限").fill("0.5")
    adjust.get_by_label("上限").fill("0.99")
    assert page.get_by_label("条件").input_value() == "lead_time.change_days > params.threshold_days"
    page.get_by_label("负责人").fill("purchasing-lead")
    page.get_by_label("改变什么").fill("提高该供应商商品的服务水平")
    page.get_by_label("影响谁").fill("品类经理、该供应商的商品")
    page.get_by_label("影响多大").fill("每次最多 +0.02，不超过 0.99")
    page.wait_for_selector("#rule-check[data-ok='true']")
    page.get_by_role("button", name="保存草稿").click()
    page.wait_for_url(f"{demo_box.url}/rules/{RULE}")
    page.wait_for_selector(f"p.flash:has-text('规则 {RULE} 已保存为草稿')")

    # The dry run: what it would have done, nothing done.
    page.locator("#dry-run").get_by_label("天数").fill("30")
    page.get_by_role("button", name="试运行", exact=True).click()
    page.wait_for_selector("#dry-run-counts")
    assert "仅为模拟" in page.locator("#dry-run-result").inner_text()

    manager = demo_box.demo_json()["users"]["manager"]["username"]
    page.get_by_label("审核人").fill(manager)
    page.get_by_role("button", name="提交审核").click()
    page.wait_for_selector(f"p.flash:has-text('规则 {RULE} 已提交审核')")
    assert page.locator("#approve-form").count() == 0  # never by its author

    context = chromium.new_context(locale="zh-CN")
    other = context.new_page()
    try:
        log_in(other, demo_box, "manager", path="/rule-reviews")
        card = other.locator(f"article[data-rule='{RULE}']")
        assert "等待您审核" in card.inner_text() and "每次最多 +0.02" in card.inner_text()
        card.get_by_role("link", name="供应商交期延长超过阈值").click()
        other.wait_for_url(re.compile(rf"/rules/{re.escape(RULE)}$"))
        other.get_by_role("button", name="审核通过并生效").click()
        other.wait_for_selector(f"p.flash:has-text('规则 {RULE} 已审核通过并生效')")
        assert other.locator("h1 [data-state]").get_attribute("data-state") == "active"
    finally:
        context.close()


def test_the_rule_and_module_pages_fit_a_phone(chromium: Any, demo_box: BoxProcess) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        log_in(phone, demo_box, "manager", path="/rules")
        paths = ["/rules", "/rule-editor", "/rule-reviews", "/rule-firings", "/holds", "/rule-tickets", "/modules"]
        paths += [
            href for href in phone.locator("#rules th a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        ][:2]
        phone.goto(f"{demo_box.url}/modules")
        paths += phone.locator("article.module h2 a").evaluate_all("els => els.map(e => e.getAttribute('href'))")[:1]
        for path in paths:
            phone.goto(f"{demo_box.url}{path}")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 400, f"{path} is {width}px wide on a 390px phone"
    finally:
        context.close()
