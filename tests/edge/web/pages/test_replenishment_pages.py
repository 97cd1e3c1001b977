"""The replenishment pages over real HTTP against a served box: suggestions with their explanation, approving one
or several into purchase orders, rejecting with a reason, the emergency request box (the parse shown before
anything is created), permissions, and garbage in every form."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.security.roles import Role
from tests.edge.web.pages.pagedata import api, html, ok, text_of
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|\.py\", line")
SUGGESTIONS = "/api/v1/replenishment/suggestions"


def receive(site: Site, sku: str, qty: int) -> None:
    body = {"counterparty": "sup-1", "lines": [{"code": sku, "qty": qty, "price_fen": 226}]}
    ok(api(site, "POST", "/api/v1/documents/receipt", json=body), 201)


_reversed: set[int] = set()


def plan(site: Site) -> list[dict[str, Any]]:
    """COLA (by the case) and RICE bought from sup-1, stocked, with a month of sales: the plan orders both.
    Each call reverses the purchase orders earlier tests approved (so nothing is on order), runs the plan again
    (open suggestions are replaced) and answers the open suggestions."""
    for po in ok(api(site, "GET", "/api/v1/documents", params={"type": "purchase_order", "limit": 1000})):
        if po["id"] not in _reversed:
            response = api(site, "POST", f"/api/v1/documents/{po['id']}/reverse", json={})
            assert response.status_code in (201, 409), response.text
            _reversed.add(po["id"])
    for sku, unit in (("COLA", "case"), ("RICE", None)):
        body = {"supplier": "sup-1", "unit": unit, "moq": 1, "lead_time_days": 3}
        ok(api(site, "PUT", f"/api/v1/replenishment/items/{sku}/supplier", json=body))
    if not ok(api(site, "GET", "/api/v1/replenishment/runs")):
        receive(site, "COLA", 100)
        receive(site, "RICE", 20)
        rows = "".join(f"COLA,floor,2024-05-{d:02d},40\nRICE,floor,2024-05-{d:02d},6\n" for d in range(1, 32))
        history = ("sku,location,date,qty\n" + rows).encode()
        headers = {**site.box.auth(Role.MANAGER), "Idempotency-Key": "page-history", "Content-Type": "text/csv"}
        response = httpx.post(site.url + "/api/v1/replenishment/history", content=history, headers=headers)
        assert response.status_code in (200, 201), response.text
    site.box.clock.advance(timedelta(seconds=1))  # a decision at the run's start time counts as made during it
    ok(api(site, "POST", "/api/v1/replenishment/run", json={}))
    items: list[dict[str, Any]] = ok(api(site, "GET", SUGGESTIONS, Role.CLERK))["items"]
    assert {s["sku"] for s in items} == {"COLA", "RICE"}, items
    return items


def po_count(site: Site) -> int:
    return len(ok(api(site, "GET", "/api/v1/documents", params={"type": "purchase_order", "limit": 1000})))


def no_trace(response: Any) -> None:
    assert not TRACE.search(response.text), response.text[:2000]


@pytest.fixture(scope="module")
def suggestions(site: Site) -> list[dict[str, Any]]:
    return plan(site)


def test_suggestions_are_listed_with_their_explanation_in_both_languages(
    site: Site, suggestions: list[dict[str, Any]]
) -> None:
    with site.login(Role.MANAGER) as client:
        page = client.get("/replenishment")
        assert page.status_code == 200, page.text
        doc = html(page)
        cola = next(s for s in suggestions if s["sku"] == "COLA")
        row = doc.get_element_by_id(f"suggestion-{cola['id']}")
        assert cola["explanation"] in row.text_content()
        assert doc.xpath(f"//input[@name='qty-{cola['id']}']/@value") == [str(cola["qty"])]
        assert doc.xpath("//form[@action='/replenishment/approve']//input[@name='_csrf']")
    with site.login(Role.MANAGER, lang="en") as client:
        text = text_of(client.get(f"/replenishment/{cola['id']}"))
        assert cola["explanation_en"] in text and "Safety stock" in text


def test_a_clerk_reads_suggestions_but_gets_no_approval_forms(site: Site, suggestions: list[dict[str, Any]]) -> None:
    with site.login(Role.CLERK) as client:
        page = client.get("/replenishment")
        assert page.status_code == 200
        assert not html(page).xpath("//input[@name='id']")
        detail = client.get(f"/replenishment/{suggestions[0]['id']}")
        assert not html(detail).xpath("//form[contains(@action, '/approve')]")
        refused = site.post_form(client, f"/replenishment/{suggestions[0]['id']}/approve", {"qty": "1"})
        assert refused.status_code == 403
        no_trace(refused)
    assert ok(api(site, "GET", f"{SUGGESTIONS}/{suggestions[0]['id']}"))["state"] == "open"


def test_approving_one_with_another_quantity_makes_a_purchase_order(site: Site) -> None:
    cola = next(s for s in plan(site) if s["sku"] == "COLA")
    before = po_count(site)
    with site.login(Role.MANAGER) as client:
        done = site.post_form(client, f"/replenishment/{cola['id']}/approve", {"qty": "3", "note": "页面测试"})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/replenishment/{cola['id']}"
        page = client.get(done.headers["location"])
        assert "已批准" in text_of(page, "//p[@class='flash']")
    decided = ok(api(site, "GET", f"{SUGGESTIONS}/{cola['id']}"))
    assert (decided["state"], decided["approved_qty"]) == ("approved", 3)
    po = ok(api(site, "GET", f"/api/v1/documents/{decided['po_id']}"))
    assert po["type"] == "purchase_order" and [(li["sku"], li["qty"]) for li in po["lines"]] == [("COLA", 3)]
    assert html(page).xpath(f"//a[@data-po='{decided['po_id']}']/text()") == [decided["po_doc_no"]]
    with site.login(Role.MANAGER) as client:  # a second approval from a page opened before the first
        late = site.post_form(client, f"/replenishment/{cola['id']}/approve", {"qty": "4"})
        assert late.status_code == 409 and text_of(late, "//div[@id='e-closed']")
    assert po_count(site) == before + 1


def test_approving_several_makes_one_po_per_supplier(site: Site) -> None:
    items = plan(site)
    before = po_count(site)
    with site.login(Role.PURCHASER) as client:
        form = {"id": [str(s["id"]) for s in items], **{f"qty-{s['id']}": str(s["qty"]) for s in items}}
        csrf = site.csrf(client, "/replenishment")
        done = client.post("/replenishment/approve", data={"_csrf": csrf, "_idem": "batch0001", **form})
        assert done.status_code == 303, done.text
        flash = text_of(client.get("/replenishment"), "//p[@class='flash']")
    assert po_count(site) == before + 1
    states = {ok(api(site, "GET", f"{SUGGESTIONS}/{s['id']}"))["po_doc_no"] for s in items}
    assert len(states) == 1 and next(iter(states)) in flash
    # The same form sent again (a double click) is the same request: no second order.
    with site.login(Role.PURCHASER) as client:
        csrf = site.csrf(client, "/replenishment")
        again = client.post("/replenishment/approve", data={"_csrf": csrf, "_idem": "batch0001", **form})
        assert again.status_code == 303
    assert po_count(site) == before + 1


def test_a_frozen_supplier_is_refused_in_words_and_its_suggestions_stay_open(site: Site) -> None:
    items = plan(site)
    freeze = ok(api(site, "POST", "/api/v1/suppliers/sup-1/freezes", Role.ADMIN, json={"note": "核对资质"}), 201)
    try:
        with site.login(Role.MANAGER) as client:
            form = {"_csrf": site.csrf(client, "/replenishment"), "id": [str(s["id"]) for s in items]}
            shown = client.post("/replenishment/approve", data=form)
            assert shown.status_code == 200, shown.text
            refused = text_of(shown, "//section[@id='approve-result']")
            assert "sup-1" in refused and "冻结" in refused
            one = site.post_form(client, f"/replenishment/{items[0]['id']}/approve", {})
            assert one.status_code == 409
            assert html(one).xpath("//small[@id='e-qty']") and "冻结" in text_of(one, "//small[@id='e-qty']")
        assert {ok(api(site, "GET", f"{SUGGESTIONS}/{s['id']}"))["state"] for s in items} == {"open"}
    finally:
        ok(api(site, "POST", f"/api/v1/freezes/{freeze['id']}/lift", Role.MANAGER, json={"reason": "已核对"}))


def test_reject_needs_a_reason_and_shows_it_afterwards(site: Site) -> None:
    rice = next(s for s in plan(site) if s["sku"] == "RICE")
    with site.login(Role.MANAGER) as client:
        empty = site.post_form(client, f"/replenishment/{rice['id']}/reject", {"reason": "   "})
        assert empty.status_code == 422
        assert text_of(empty, "//small[@id='e-reason']")
        done = site.post_form(client, f"/replenishment/{rice['id']}/reject", {"reason": "门店下周装修"})
        assert done.status_code == 303
        assert "门店下周装修" in text_of(client.get(f"/replenishment/{rice['id']}"))
    assert ok(api(site, "GET", f"{SUGGESTIONS}/{rice['id']}"))["reject_reason"] == "门店下周装修"


def test_unknown_suggestions_and_odd_filters_are_pages_not_errors(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        assert client.get("/replenishment/999999").status_code == 404
        odd = client.get("/replenishment", params={"state": "<b>", "supplier": "x' or 1", "offset": "-5", "sku": "é"})
        assert odd.status_code == 200
        no_trace(odd)


def test_the_plan_runs_from_the_page(site: Site) -> None:
    with site.login(Role.PURCHASER) as client:
        done = site.post_form(client, "/replenishment/run", {})
        assert done.status_code == 303
        assert "补货计划已运行" in text_of(client.get("/replenishment"), "//p[@class='flash']")


not_a_count = st.one_of(
    st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and not re.fullmatch(r"\s*[0-9]+\s*", s)),
    st.integers(min_value=100_001, max_value=10**15).map(str),
    st.just("0"),
    st.just("-3"),
    st.just("1e3"),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(qty=not_a_count, note=st.text(max_size=600))
def test_garbage_quantities_are_refused_next_to_the_field_and_order_nothing(site: Site, qty: str, note: str) -> None:
    items = ok(api(site, "GET", SUGGESTIONS))["items"]
    if not items:
        items = plan(site)
    target = items[0]["id"]
    before = po_count(site)
    with site.login(Role.MANAGER) as client:
        csrf = site.csrf(client, "/replenishment")
        one = client.post(f"/replenishment/{target}/approve", data={"_csrf": csrf, "qty": qty, "note": note})
        many = client.post("/replenishment/approve", data={"_csrf": csrf, "id": str(target), f"qty-{target}": qty})
    for response in (one, many):
        no_trace(response)
        assert response.status_code == 422, response.text
    assert text_of(many, f"//small[@id='e-qty-{target}']"), many.text
    assert text_of(one, "//small[@id='e-qty']") or text_of(one, "//small[@id='e-note']")
    assert po_count(site) == before
    assert ok(api(site, "GET", f"{SUGGESTIONS}/{target}"))["state"] == "open"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.text(max_size=12), min_size=0, max_size=4))
def test_a_garbage_selection_orders_nothing(site: Site, ids: list[str]) -> None:
    before = po_count(site)
    with site.login(Role.MANAGER) as client:
        csrf = site.csrf(client, "/replenishment")
        response = client.post("/replenishment/approve", data={"_csrf": csrf, "id": ids})
    no_trace(response)
    assert response.status_code in (303, 404, 409, 422), response.text
    if response.status_code != 303:
        assert po_count(site) == before


# --- emergency requests -------------------------------------------------------------------------------------------


def emergencies(site: Site) -> int:
    return len(ok(api(site, "GET", "/api/v1/replenishment/emergency", params={"limit": 1000})))


def test_the_emergency_box_shows_the_parse_and_creates_only_on_confirm(site: Site) -> None:
    peers = {"store": "store-002", "rows": [{"sku": "COLA", "qty": 500, "eta_minutes": 30}]}
    ok(api(site, "POST", "/api/v1/replenishment/peer-stock", Role.PURCHASER, json=peers))
    before = emergencies(site)
    with site.login(Role.CLERK) as client:
        page = client.get("/replenishment/emergency")
        assert page.status_code == 200 and html(page).xpath("//textarea[@name='text']")
        shown = site.post_form(client, "/replenishment/emergency/parse", {"text": "明天上午急要可乐两箱"})
        assert shown.status_code == 200, shown.text
        doc = html(shown)
        assert "可乐" in text_of(shown, "//p[@data-summary]")
        assert doc.xpath("//p[@data-proposal='transfer']")
        assert emergencies(site) == before  # parsing wrote nothing
        create = doc.xpath("//form[@id='emergency-create']")[0]
        fields = {i.get("name"): i.get("value") for i in create.xpath(".//input")}
        assert fields["text"] == "明天上午急要可乐两箱"
        done = client.post("/replenishment/emergency/create", data=fields)
        assert done.status_code == 303, done.text
        assert "调拨申请" in text_of(client.get("/replenishment/emergency"), "//p[@class='flash']")
        again = client.post("/replenishment/emergency/create", data=fields)  # the same form twice: one request
        assert again.status_code == 303
    assert emergencies(site) == before + 1
    transfers = ok(api(site, "GET", "/api/v1/replenishment/transfer-requests"))
    assert transfers[0]["qty_base"] == 48 and transfers[0]["from_store"] == "store-002"


def test_corrections_complete_an_incomplete_request_before_it_is_created(site: Site) -> None:
    peers = {"store": "store-002", "rows": [{"sku": "RICE", "qty": 40}]}
    ok(api(site, "POST", "/api/v1/replenishment/peer-stock", Role.PURCHASER, json=peers))
    before = emergencies(site)
    with site.login(Role.MANAGER) as client:
        first = site.post_form(client, "/replenishment/emergency/parse", {"text": "大米 明天"})
        assert first.status_code == 200
        assert not html(first).xpath("//form[@id='emergency-create']")  # no quantity: nothing to create yet
        fixed = site.post_form(
            client, "/replenishment/emergency/parse", {"text": "大米 明天", "quantity": "3", "mode": "transfer"}
        )
        assert fixed.status_code == 200, fixed.text
        create = html(fixed).xpath("//form[@id='emergency-create']")[0]
        fields = {i.get("name"): i.get("value") for i in create.xpath(".//input")}
        assert (fields["quantity"], fields["mode"]) == ("3", "transfer")
        assert client.post("/replenishment/emergency/create", data=fields).status_code == 303
    assert emergencies(site) == before + 1
    assert ok(api(site, "GET", "/api/v1/replenishment/emergency"))[0]["qty_base"] == 3


def test_bad_corrections_are_shown_next_to_their_fields(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        bad = {"text": "大米 明天", "quantity": "three", "deadline": "tomorrow", "mode": "fly", "sku": "no such!"}
        shown = site.post_form(client, "/replenishment/emergency/parse", bad)
        assert shown.status_code == 422
        for name in ("quantity", "deadline", "mode", "sku"):
            assert text_of(shown, f"//*[@id='e-{name}']"), name
        no_trace(shown)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
        st.just("\x00\x01"),
        st.just("x" * 6000),
    ),
    create=st.booleans(),
)
def test_garbage_text_never_fails_and_creates_nothing_unconfirmed(site: Site, text: str, create: bool) -> None:
    before = emergencies(site)
    with site.login(Role.CLERK) as client:
        response = site.post_form(client, "/replenishment/emergency/parse", {"text": text})
        no_trace(response)
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            assert text_of(response, "//*[@id='e-text']")
        assert emergencies(site) == before
        if create:
            made = site.post_form(client, "/replenishment/emergency/create", {"text": text, "quantity": "1e999"})
            no_trace(made)
            assert made.status_code == 422
            assert emergencies(site) == before
