"""The stock pages over real HTTP: search by name, pinyin initials, SKU and barcode; one item's stock by location
and lot, its moves, value (only for roles that see it) and daily sales; garbage in the search box."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import lxml.html
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.security.roles import Role
from tests.edge.web.apibox import COLA_CASE, MILK_BARCODE
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|sqlite3\.|NameError|KeyError|TypeError")


def html(response: httpx.Response) -> Any:
    assert not TRACE.search(response.text), response.text[:2000]
    return lxml.html.fromstring(response.text)


def post_api(site: Site, path: str, body: Any, key: str, role: Role = Role.MANAGER) -> dict[str, Any]:
    with httpx.Client(base_url=site.url, headers={**site.box.auth(role), "Idempotency-Key": key}, timeout=30) as http:
        response = http.post(path, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def stocked(site: Site) -> None:
    """Cola on the floor and in the back room, milk in two lots in the cold room (once per module)."""
    if getattr(site, "_stocked", False):
        return
    receipt = "/api/v1/documents/receipt"
    post_api(site, receipt, {"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": 48, "price_fen": 226}]}, "s-1")
    post_api(
        site,
        receipt,
        {"location": "backroom", "lines": [{"code": COLA_CASE, "qty": 2, "price_fen": 5424}]},
        "s-2",
    )
    post_api(
        site,
        receipt,
        {
            "location": "cold",
            "lines": [
                {"code": MILK_BARCODE, "qty": 6, "price_fen": 900, "lot": "M1", "expiry": "2024-06-05"},
                {"code": MILK_BARCODE, "qty": 4, "price_fen": 900, "lot": "M2", "expiry": "2024-06-09"},
            ],
        },
        "s-3",
    )
    post_api(site, "/api/v1/documents/sale", {"lines": [{"code": "COLA", "qty": 5}]}, "s-4")
    site._stocked = True  # type: ignore[attr-defined]


def test_search_finds_an_item_by_pinyin_initials_and_shows_its_live_on_hand(site: Site) -> None:
    stocked(site)
    with site.login(Role.CLERK) as client:
        page = html(client.get("/stock", params={"q": "kl"}))
        rows = page.xpath('//table[@id="items"]/tbody/tr')
        assert rows and rows[0].get("data-sku") == "COLA"
        assert rows[0].xpath(".//a/@href")[0] == "/stock/COLA"
        live = rows[0].xpath('.//*[@data-live-stock="COLA"]')[0]
        assert live.text_content().strip() == "91"  # 48 + 2 x 24 - 5
        assert "拼音" in rows[0].text_content()


def test_search_by_barcode_sku_and_english_name(site: Site) -> None:
    with site.login(Role.MANAGER, lang="en") as client:
        for query, sku in ((MILK_BARCODE, "MILK"), ("rice", "RICE"), ("Fresh milk", "MILK"), ("6901234", "COLA")):
            page = html(client.get("/stock", params={"q": query}))
            assert page.xpath('//table[@id="items"]/tbody/tr/@data-sku')[0] == sku, query
        none = html(client.get("/stock", params={"q": "zzzzqqq"}))
        assert not none.xpath('//table[@id="items"]') and "No item matches" in none.text_content()


def test_without_a_query_every_item_is_listed_with_its_stock(site: Site) -> None:
    stocked(site)
    with site.login(Role.AUDITOR) as client:
        page = html(client.get("/stock"))
        skus = page.xpath('//table[@id="items"]/tbody/tr/@data-sku')
        assert skus == ["COLA", "MILK", "RICE"]
        assert page.xpath('//*[@data-live-stock="MILK"]')[0].text_content().strip() == "10"


def test_an_htmx_search_answers_only_the_results(site: Site) -> None:
    with site.login(Role.CLERK) as client:
        response = client.get("/stock", params={"q": "kl"}, headers={"HX-Request": "true", "HX-Target": "results"})
        assert response.status_code == 200
        assert response.text.lstrip().startswith('<section id="results"') and "<html" not in response.text


def test_the_item_page_shows_stock_by_location_and_lot_moves_and_sales(site: Site) -> None:
    stocked(site)
    with site.login(Role.MANAGER) as client:
        page = html(client.get("/stock/COLA"))
        assert page.xpath('//*[@id="on-hand-total"]/@data-live-stock') == ["COLA"]
        assert page.xpath('//*[@id="on-hand-total"]')[0].text_content().strip() == "91"
        by_location = {
            cell.get("data-live-location"): cell.text_content().strip()
            for cell in page.xpath('//table[@id="by-location"]//*[@data-live-location]')
        }
        assert by_location == {"backroom": "48", "floor": "43"}
        assert "卖场" in page.xpath('//table[@id="by-location"]')[0].text_content()
        moves = page.xpath('//table[@id="moves"]/tbody/tr')
        assert len(moves) == 3 and "-5" in moves[0].text_content() and "销售单" in moves[0].text_content()
        assert page.xpath('//*[@id="item-value"]')  # the manager sees the value
        chart = json.loads(page.xpath('//div[@class="chart"]/@data-chart')[0])
        assert chart["kind"] == "line" and len(chart["x"]) == 90 and chart["series"][0]["values"][-1] == 5
        assert page.xpath('//*[@id="item-live"]/@hx-get') == ["/stock/COLA/live"]
        milk = html(client.get("/stock/MILK"))
        lots = [r.text_content() for r in milk.xpath('//table[@id="lots"]/tbody/tr')]
        assert len(lots) == 2 and "M1" in lots[0] and "2024-06-05" in lots[0] and "M2" in lots[1]


def test_a_clerk_sees_no_value(site: Site) -> None:
    stocked(site)
    with site.login(Role.CLERK) as client:
        page = html(client.get("/stock/COLA"))
        assert not page.xpath('//*[@id="item-value"]')
        assert "¥5" not in page.xpath('//table[@id="lots"]')[0].text_content()


def test_an_unknown_item_is_the_not_found_page(site: Site) -> None:
    with site.login(Role.CLERK) as client:
        for path in ("/stock/NOPE", "/stock/%2e%2e", "/stock/" + "x" * 300, "/stock/NOPE/live"):
            response = client.get(path)
            assert response.status_code in (404, 422), path
            html(response)


def test_the_live_fragment_answers_lots_and_moves(site: Site) -> None:
    stocked(site)
    with site.login(Role.CLERK) as client:
        response = client.get("/stock/COLA/live")
        assert response.status_code == 200 and "<html" not in response.text
        assert html(response).xpath('//table[@id="moves"]')


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(max_size=120), offset=st.text(max_size=12))
def test_garbage_searches_answer_a_page_never_a_trace(site: Site, q: str, offset: str) -> None:
    with site.login(Role.CLERK) as client:
        response = client.get("/stock", params={"q": q, "offset": offset})
    assert response.status_code in (200, 422), response.text[:500]
    page = html(response)
    if response.status_code == 422:
        assert page.xpath('//*[@id="e-q"]')


def test_the_item_page_speaks_english_when_switched(site: Site) -> None:
    stocked(site)
    with site.login(Role.ACCOUNTANT, lang="en") as client:
        page = html(client.get("/stock/MILK"))
        text = page.text_content()
        assert "Fresh milk 1L" in page.xpath("//h1")[0].text_content()
        for words in ("Total on hand", "Lots and expiry", "Recent stock moves", "Daily sales, last 90 days", "Chilled"):
            assert words in text, words
        assert "cold room" in page.xpath('//table[@id="by-location"]')[0].text_content()
