"""Purchasing pages over real HTTP: purchase orders and their approval, the three-way-match exception queue and
its five resolutions, with refusals shown on the page and garbage refused plainly."""

from __future__ import annotations

import re
from html import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.security.roles import Role
from edge.web.pages.i18n import load_catalog
from edge.web.pages.purchasing import ACTIONS, REASON_CODES
from tests.edge.web.pages.pagedata import api, exception_state, html, match_exception, ok, purchase_order, text_of
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|sqlite3\.|NameError|KeyError")
INVOICE_STATUSES = (
    "matched",
    "exception",
    "pending_approval",
    "awaiting_credit_note",
    "accepted",
    "credited",
    "rejected",
    "cancelled",
    "netted",
    "posted",
)


def action_forms(site: Site, client: object, exception_id: int) -> list[str]:
    page = client.get(f"/purchasing/exceptions/{exception_id}")  # type: ignore[attr-defined]
    assert page.status_code == 200, page.text
    return [str(a) for a in html(page).xpath("//form[@data-action]/@data-action")]


def resolve(
    site: Site, client: object, exception_id: int, action: str, note: str = "", *, page: str | None = None
) -> object:
    return site.post_form(
        client,  # type: ignore[arg-type]
        f"/purchasing/exceptions/{exception_id}/{action}",
        {"note": note, "_idem": f"idem{exception_id}{action}{len(note)}"},
        page=page or f"/purchasing/exceptions/{exception_id}",
    )


def test_every_status_reason_and_action_the_api_gives_has_its_label() -> None:
    catalog = load_catalog()
    for status in INVOICE_STATUSES:
        assert f"purchasing.status.{status}" in catalog
    for code in (*REASON_CODES, "other"):
        assert f"purchasing.reason.{code}" in catalog
    for action in ACTIONS:
        for key in (f"purchasing.action.{action}", f"purchasing.action.{action}_help", f"purchasing.done.{action}"):
            assert key in catalog, key


def test_the_queue_and_the_exception_say_why_in_words_in_both_languages(site: Site) -> None:
    exception_id = match_exception(site)
    (reason,) = exception_state(site, exception_id)["reasons"]
    with site.login(Role.PURCHASER) as client:
        queue = client.get("/purchasing/exceptions")
        assert queue.status_code == 200
        row = text_of(queue, f"//tr[@data-exception='{exception_id}']")
        assert "价格差异" in row and reason["message"] in row and "待处理" in row
        detail = client.get(f"/purchasing/exceptions/{exception_id}")
        reasons = text_of(detail, "//section[@id='reasons']")
        assert "价格差异" in reasons and "第 1 行" in reasons and reason["message"] in reasons
        assert "价差 150 分" in reasons
    with site.login(Role.PURCHASER, lang="en") as client:
        detail = client.get(f"/purchasing/exceptions/{exception_id}")
        reasons = text_of(detail, "//section[@id='reasons']")
        assert "Price difference" in reasons and reason["message_en"] in reasons
        assert reason["message"] not in detail.text
        assert escape(reason["message_en"], quote=False) in detail.text or reason["message_en"] in reasons


def test_a_purchaser_accepts_and_another_person_approves_from_the_page(site: Site) -> None:
    exception_id = match_exception(site)
    with site.login(Role.PURCHASER) as purchaser:
        assert action_forms(site, purchaser, exception_id) == ["accept", "request-credit-note", "reject", "recheck"]
        done = resolve(site, purchaser, exception_id, "accept", "供应商涨价，已与采购经理确认")
        assert done.status_code == 303 and done.headers["location"] == f"/purchasing/exceptions/{exception_id}"
        after = purchaser.get(done.headers["location"])
        assert f"异常 {exception_id}: 已接受差异，等待审批" in text_of(after, "//p[@class='flash']")
        assert "待审批" in text_of(after, "//*[@id='exception-status']")
        assert "供应商涨价，已与采购经理确认" in text_of(after, "//section[@id='history']")
        # the purchaser may resolve but not approve: what is left for them is reject and recheck
        assert action_forms(site, purchaser, exception_id) == ["reject", "recheck"]
    assert exception_state(site, exception_id)["invoice"]["status"] == "pending_approval"
    with site.login(Role.ACCOUNTANT) as accountant:
        assert action_forms(site, accountant, exception_id) == ["approve"]
        page = accountant.get(f"/purchasing/exceptions/{exception_id}")
        assert "差异由 purchaser 接受" in text_of(page, "//section[@id='resolve']")
        done = resolve(site, accountant, exception_id, "approve")
        assert done.status_code == 303
        closed = accountant.get(done.headers["location"])
        assert "已审批，应付已入账" in text_of(closed, "//p[@class='flash']")
        assert "此异常已关闭" in text_of(closed, "//section[@id='resolve']")
        assert not html(closed).xpath("//form[@data-action]")
    state = exception_state(site, exception_id)
    assert state["invoice"]["status"] == "accepted" and state["approved_by"] == "accountant"
    assert state["invoice"]["document_id"]  # the AP entry posted


def test_approving_ones_own_acceptance_is_refused_on_the_page(site: Site) -> None:
    exception_id = match_exception(site)
    with site.login(Role.MANAGER) as manager:
        assert resolve(site, manager, exception_id, "accept").status_code == 303
        assert "approve" in action_forms(site, manager, exception_id)
        refused = resolve(site, manager, exception_id, "approve")
        assert refused.status_code == 409
        assert not TRACE.search(refused.text)
        message = text_of(refused, "//div[@role='alert']")
        assert "manager" in message and message  # the API's own words, in Chinese
    assert exception_state(site, exception_id)["invoice"]["status"] == "pending_approval"


def test_credit_note_request_reject_and_recheck_from_the_page(site: Site) -> None:
    waiting, rejected, rechecked = match_exception(site), match_exception(site), match_exception(site)
    with site.login(Role.PURCHASER, lang="en") as purchaser:
        done = resolve(site, purchaser, waiting, "request-credit-note", "asked by phone")
        assert "credit note requested" in text_of(purchaser.get(done.headers["location"]), "//p[@class='flash']")
        assert action_forms(site, purchaser, waiting) == ["accept", "reject", "recheck"]
        assert resolve(site, purchaser, rejected, "reject", "wrong price").status_code == 303
        assert resolve(site, purchaser, rechecked, "recheck").status_code == 303
        listed = purchaser.get("/purchasing/exceptions")
        ids = [int(i) for i in html(listed).xpath("//tr/@data-exception")]
        assert waiting in ids and rechecked in ids and rejected not in ids
        everything = purchaser.get("/purchasing/exceptions?show=all")
        assert rejected in [int(i) for i in html(everything).xpath("//tr/@data-exception")]
        assert "Rejected" in text_of(everything, f"//tr[@data-exception='{rejected}']")
    assert exception_state(site, waiting)["invoice"]["status"] == "awaiting_credit_note"
    assert exception_state(site, rejected)["invoice"]["status"] == "rejected"
    assert exception_state(site, rechecked)["invoice"]["status"] == "exception"  # still 1.50 over


def test_the_clerk_and_the_auditor_cannot_resolve(site: Site) -> None:
    exception_id = match_exception(site)
    with site.login(Role.CLERK) as clerk:
        page = clerk.get("/purchasing/exceptions")
        assert page.status_code == 403 and "没有权限" in page.text
        assert clerk.get(f"/purchasing/exceptions/{exception_id}").status_code == 403
        refused = resolve(site, clerk, exception_id, "reject", page="/")
        assert refused.status_code == 403  # type: ignore[attr-defined]
        assert 'href="/purchasing"' not in clerk.get("/").text  # not in the clerk's menu
    with site.login(Role.AUDITOR) as auditor:
        assert action_forms(site, auditor, exception_id) == []
        assert "您的角色不能处理此异常" in auditor.get(f"/purchasing/exceptions/{exception_id}").text
    assert exception_state(site, exception_id)["invoice"]["status"] == "exception"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(note=st.text(max_size=700))
def test_garbage_notes_are_refused_next_to_the_field_or_kept_as_written(site: Site, note: str) -> None:
    exception_id = GARBAGE_TARGET.setdefault("id", match_exception(site))
    with site.login(Role.PURCHASER) as client:
        response = resolve(site, client, exception_id, "recheck", note)
    assert response.status_code in (303, 422), response.text  # type: ignore[attr-defined]
    assert not TRACE.search(response.text)  # type: ignore[attr-defined]
    if response.status_code == 422:  # type: ignore[attr-defined]
        assert 'id="e-note-recheck"' in response.text  # type: ignore[attr-defined]
    assert exception_state(site, exception_id)["invoice"]["status"] == "exception"


GARBAGE_TARGET: dict[str, int] = {}


def test_bad_addresses_get_the_not_found_page(site: Site) -> None:
    exception_id = match_exception(site)
    with site.login(Role.MANAGER) as client:
        for path in ("/purchasing/exceptions/999999", "/purchasing/999999", "/purchasing/exceptions/abc"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "找不到页面" in response.text and not TRACE.search(response.text)
        explode = resolve(site, client, exception_id, "explode")
        assert explode.status_code == 404  # type: ignore[attr-defined]
        huge = client.get("/purchasing/exceptions/99999999999999999999999")
        assert huge.status_code in (404, 422) and not TRACE.search(huge.text)
        assert client.get("/purchasing?page=0").status_code == 422
        assert client.get("/purchasing?show=<script>").status_code == 200


def test_purchase_orders_list_and_approve_where_allowed(site: Site) -> None:
    po_id = purchase_order(site, supplier="sup-1")
    document = ok(api(site, "GET", f"/api/v1/purchase-orders/{po_id}"))
    with site.login(Role.AUDITOR) as auditor:
        listed = auditor.get("/purchasing")
        row = text_of(listed, f"//tr[@data-po='{po_id}']")
        assert document["doc_no"] in row and "待审批" in row and "¥108.48" in row
        assert not html(listed).xpath(f"//tr[@data-po='{po_id}']//form")  # the auditor approves nothing
    with site.login(Role.MANAGER) as manager:
        listed = manager.get("/purchasing?show=pending")
        assert html(listed).xpath(f"//tr[@data-po='{po_id}']//form[@action='/purchasing/{po_id}/approve']")
        detail = manager.get(f"/purchasing/{po_id}")
        assert "可乐 330ml" in text_of(detail, "//table[@id='po-lines']")
        done = site.post_form(manager, f"/purchasing/{po_id}/approve", {"back": "list"}, page="/purchasing")
        assert done.status_code == 303 and done.headers["location"] == "/purchasing"
        after = manager.get("/purchasing")
        assert f"采购订单 {document['doc_no']} 已审批" in text_of(after, "//p[@class='flash']")
        assert "已审批 (manager)" in text_of(after, f"//tr[@data-po='{po_id}']")
        approved_only = manager.get("/purchasing?show=approved")
        assert po_id in [int(i) for i in html(approved_only).xpath("//tr/@data-po")]
        again = site.post_form(manager, f"/purchasing/{po_id}/approve", {}, page="/purchasing")
        assert again.status_code == 409 and "已由 manager 审批" in text_of(again, "//div[@role='alert']")
        assert not TRACE.search(again.text)
    with site.login(Role.MANAGER, lang="en") as manager:
        detail = manager.get(f"/purchasing/{po_id}")
        assert "Approved by manager" in text_of(detail, "//section[@id='approval']")


def test_approving_a_po_of_a_frozen_supplier_is_refused_with_the_reason(site: Site) -> None:
    ok(api(site, "POST", "/api/v1/suppliers", Role.PURCHASER, json={"id": "sup-frz", "name": "冻结测试供应商"}), 201)
    po_id = purchase_order(site, supplier="sup-frz")
    freeze = {"note": "涉嫌虚开发票"}
    ok(api(site, "POST", "/api/v1/suppliers/sup-frz/freezes", Role.MANAGER, json=freeze), 201)
    with site.login(Role.PURCHASER) as purchaser:
        refused = site.post_form(purchaser, f"/purchasing/{po_id}/approve", {}, page=f"/purchasing/{po_id}")
        assert refused.status_code == 409 and not TRACE.search(refused.text)
        message = text_of(refused, "//div[@role='alert']")
        assert "sup-frz 已冻结" in message and "冻结单" in message
        assert "尚未审批" in text_of(refused, "//section[@id='approval']")  # the order's page, unchanged
    assert ok(api(site, "GET", f"/api/v1/purchase-orders/{po_id}"))["approval"] is None
