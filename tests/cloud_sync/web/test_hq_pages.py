"""The HQ pages over real HTTP: login with an HQ token, every page with the chain's figures in Chinese and English,
the remembered language, exports, CSRF, and error pages (never a stack trace) for bad links."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import lxml.html
import openpyxl  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.hq.auth import add_token, revoke_token
from tests.cloud_sync.web.served import ServedAggregator

LANGS = ["zh", "en"]


def html(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text
    return lxml.html.fromstring(response.text)


def text(node: Any) -> str:
    return " ".join(node.text_content().split())


def row(doc: Any, table: str, **data: str) -> Any:
    selector = "".join(f'[@data-{k}="{v}"]' for k, v in data.items())
    found = doc.xpath(f'//table[@id="{table}"]//tr{selector}')
    assert len(found) == 1, f"{table} {data}: {len(found)} rows"
    return found[0]


def cells(tr: Any) -> list[str]:
    return [text(c) for c in tr.xpath("./th|./td")]


# --- login ------------------------------------------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_login_and_back(hq_site: ServedAggregator) -> None:
    with hq_site.client() as client:
        response = client.get("/hq/stock?sku=COLA")
        assert response.status_code == 303
        assert response.headers["location"] == "/hq/login?next=%2Fhq%2Fstock%3Fsku%3DCOLA"
        doc = html(client.get(response.headers["location"]))
        assert doc.xpath('//input[@name="token"]/@type') == ["password"]
        assert doc.xpath('//input[@name="next"]/@value') == ["/hq/stock?sku=COLA"]
        logged = client.post("/hq/login", data={"token": hq_site.token, "next": "/hq/stock?sku=COLA"})
        assert logged.status_code == 303 and logged.headers["location"] == "/hq/stock?sku=COLA"
        assert client.get("/").headers["location"] == "/hq"


def test_login_with_a_good_token_keeps_it_in_an_httponly_strict_cookie(hq_site: ServedAggregator) -> None:
    with hq_site.client() as client:
        response = client.post("/hq/login", data={"token": f"  {hq_site.token}\n", "next": "https://evil.example/"})
        assert response.status_code == 303
        assert response.headers["location"] == "/hq"  # never off-site
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"sb_hq_session={hq_site.token};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        doc = html(client.get("/hq"))
        assert doc.xpath('//form[@action="/hq/logout"]')


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("token", ["sbhq_not-a-real-token", "", "x" * 300, "sbhq_ with space", "令牌"])
def test_login_with_a_bad_token_is_refused_next_to_the_field(hq_site: ServedAggregator, lang: str, token: str) -> None:
    with hq_site.client(lang) as client:
        response = client.post("/hq/login", data={"token": token})
        doc = html(response, 400)
        error = text(doc.get_element_by_id("e-token"))
        expected = {
            ("zh", True): "请粘贴总部令牌",
            ("en", True): "Paste your HQ token",
            ("zh", False): "令牌无效或已吊销",
            ("en", False): "This token is unknown or revoked",
        }[(lang, not token)]
        assert error == expected
        assert doc.xpath('//input[@name="token"]/@aria-invalid') == ["true"]
        assert doc.xpath('//input[@name="token"]/@value') == [""]  # never echoed back
        assert "sb_hq_session" not in response.headers.get("set-cookie", "")
        assert client.get("/hq").status_code == 303


def test_a_revoked_token_sends_the_user_back_to_login(hq_site: ServedAggregator) -> None:
    engine = hq_site.app.state.engine
    now = datetime.now(UTC)
    with engine.begin() as conn:
        token_id, token = add_token(conn, "soon revoked", now)
    with hq_site.client() as client:
        assert client.post("/hq/login", data={"token": token}).status_code == 303
        assert client.get("/hq/sales").status_code == 200
        with engine.begin() as conn:
            assert revoke_token(conn, token_id, now)
        response = client.get("/hq/sales")
        assert response.status_code == 303
        assert response.headers["location"] == "/hq/login?next=%2Fhq%2Fsales&expired=1"
        assert 'sb_hq_session=""' in response.headers["set-cookie"]
        doc = html(client.get(response.headers["location"]))
        assert "令牌已失效" in text(doc)


def test_logout_needs_the_sessions_csrf_token(hq_site: ServedAggregator) -> None:
    with hq_site.login() as client:
        doc = html(client.post("/hq/logout"), 403)
        assert "页面已过期" in text(doc)
        doc = html(client.post("/hq/logout", data={"_csrf": "0" * 40}), 403)
        assert client.get("/hq").status_code == 200  # still logged in
        response = client.post("/hq/logout", data={"_csrf": hq_site.csrf(client)})
        assert response.status_code == 303 and response.headers["location"] == "/hq/login"
        assert client.get("/hq").status_code == 303


# --- pages with the chain's figures -----------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_stores_page_shows_sync_lag_and_totals_and_highlights_stores_behind(
    hq_site: ServedAggregator, lang: str
) -> None:
    with hq_site.login(lang) as client:
        doc = html(client.get("/hq"))
    assert doc.xpath("//html/@lang") == ["zh-CN" if lang == "zh" else "en"]
    assert text(doc.xpath("//h1")[0]) == ("门店与同步延迟" if lang == "zh" else "Stores and sync lag")
    s1 = row(doc, "stores", store="s1")
    assert s1.get("class") is None
    c = cells(s1)
    # documents, stock value, sales to date: the store's totals at the aggregator (seed.py S1)
    assert c[-3:] == ["7", "¥629.00", "¥18.50"]
    assert ("已同步" if lang == "zh" else "Up to date") in c[2]
    assert cells(row(doc, "stores", store="s2"))[-3:] == ["2", "¥27.00", "¥12.00"]
    s9 = row(doc, "stores", store="s9")
    assert s9.get("class") == "alarm"
    assert ("长时间未联系" if lang == "zh" else "Not heard from") in cells(s9)[2]
    assert ("从未联系" if lang == "zh" else "never") in cells(s9)[3]
    summary = text(doc.get_element_by_id("chain-summary"))
    assert summary == ("共 4 家门店 · 1 家门店数据滞后" if lang == "zh" else "4 stores · 1 stores behind")
    nav = doc.xpath('//nav[@id="nav"]//a')
    assert [a.get("href") for a in nav] == [
        "/hq",
        "/hq/stock",
        "/hq/sales",
        "/hq/trial-balance",
        "/hq/compliance",
        "/hq/rollouts",
    ]
    assert nav[0].get("aria-current") == "page"


def test_stores_page_filters_by_company_and_stale(hq_site: ServedAggregator) -> None:
    with hq_site.login() as client:
        doc = html(client.get("/hq", params={"company": "co-2"}))
        assert doc.xpath('//table[@id="stores"]//tr/@data-store') == ["s3", "s9"]
        doc = html(client.get("/hq", params={"behind": "1"}))
        assert doc.xpath('//table[@id="stores"]//tr/@data-store') == ["s9"]


@pytest.mark.parametrize("lang", LANGS)
def test_stock_page_shows_a_skus_stock_by_store_with_transit_apart(hq_site: ServedAggregator, lang: str) -> None:
    with hq_site.login(lang) as client:
        doc = html(client.get("/hq/stock", params={"sku": "COLA"}))
    assert cells(row(doc, "stock", store="s1", sku="COLA")) == [
        "门店 s1 s1",
        "COLA",
        "可乐" if lang == "zh" else "Cola",
        "91",  # the seed's item master gives no base unit
        "¥364.00",
        "5",
        "¥20.00",
    ]
    assert cells(row(doc, "stock", store="s2", sku="COLA"))[3:] == ["6", "¥27.00", "", ""]
    total = cells(doc.xpath('//table[@id="stock"]/tfoot/tr')[0])
    assert total[1:] == ["96", "¥390.00", "5", "¥20.00"]
    headers = [text(h) for h in doc.xpath('//table[@id="stock"]/thead//th')]
    assert headers[-2] == ("在途数量" if lang == "zh" else "In transit")


def test_stock_page_without_a_sku_asks_for_one_and_an_unknown_one_says_so(hq_site: ServedAggregator) -> None:
    with hq_site.login("en") as client:
        doc = html(client.get("/hq/stock"))
        assert not doc.xpath('//table[@id="stock"]')
        assert "Enter a SKU" in text(doc)
        doc = html(client.get("/hq/stock", params={"sku": "NOPE"}))
        assert text(doc.get_element_by_id("stock-empty")) == "No store has NOPE on hand or in transit"


@pytest.mark.parametrize("lang", LANGS)
def test_sales_page_draws_sales_by_store_and_day_and_tables_them(hq_site: ServedAggregator, lang: str) -> None:
    with hq_site.login(lang) as client:
        doc = html(client.get("/hq/sales", params={"from": "2026-11-29", "to": "2026-12-02"}))
    chart = json.loads(doc.xpath('//div[@class="chart"]/@data-chart')[0])
    assert chart["kind"] == "line" and chart["unit"] == "¥"
    assert len(chart["x"]) == 4 and chart["x"][1] - chart["x"][0] == 86400
    labels = [s["label"] for s in chart["series"]]
    assert labels == ["全部门店" if lang == "zh" else "All stores", "门店 s1", "门店 s2", "门店 s3"]
    # 11-29 .. 12-02: nothing, s1 6.00, s1 15.50 + s2 12.00 + s3 5.00, s1's return -3.00
    assert chart["series"][0]["values"] == [0, 6.0, 32.5, -3.0]
    assert chart["series"][1]["values"] == [0, 6.0, 15.5, -3.0]
    assert len(doc.xpath('//ul[@id="legend"]/li')) == 4
    assert cells(row(doc, "sales-by-store", store="s1")) == [
        "门店 s1 s1",
        "5",
        "¥18.50",
        "¥2.13",
        "¥16.37",
        "¥21.00",
        "-¥4.63",
    ]
    assert cells(doc.xpath('//table[@id="sales-by-store"]/tfoot/tr')[0])[2] == "¥35.50"
    assert cells(row(doc, "sales-by-day", store="s1", day="2026-12-02"))[2:4] == ["-1", "-¥3.00"]
    assert len(doc.xpath('//table[@id="sales-by-day"]/tbody/tr')) == 5
    headers = [text(h) for h in doc.xpath('//table[@id="sales-by-store"]/thead//th')]
    assert headers[2] == ("含税销售额" if lang == "zh" else "Gross sales")


def test_sales_page_defaults_to_the_last_30_days_and_filters_by_company(hq_site: ServedAggregator) -> None:
    with hq_site.login() as client:
        doc = html(client.get("/hq/sales", params={"company": "co-2"}))
    # The seeded clock says 2026-12-05 (Beijing): 11-06 .. 12-05.
    assert doc.xpath('//input[@name="from"]/@value') == ["2026-11-06"]
    assert doc.xpath('//input[@name="to"]/@value') == ["2026-12-05"]
    assert doc.xpath('//table[@id="sales-by-store"]/tbody/tr/@data-store') == ["s3"]


@pytest.mark.parametrize("lang", LANGS)
def test_trial_balance_page_consolidates_a_companys_stores(hq_site: ServedAggregator, lang: str) -> None:
    with hq_site.login(lang) as client:
        doc = html(client.get("/hq/trial-balance", params={"company": "co-1", "period": "2026-12"}))
    assert text(doc.get_element_by_id("balanced")) == ("借贷平衡" if lang == "zh" else "Balanced")
    inventory = cells(row(doc, "trial-balance", account="1405"))
    assert inventory == [
        "1405",
        "库存商品" if lang == "zh" else "Merchandise inventory",
        "¥642.00",
        "",
        "¥49.00",
        "¥35.00",
        "¥656.00",
        "",
    ]
    totals = cells(doc.xpath('//table[@id="trial-balance"]/tfoot/tr')[0])
    assert totals[1:] == ["¥656.00", "¥656.00", "¥114.50", "¥114.50", "¥725.50", "¥725.50"]


def test_trial_balance_page_defaults_to_the_first_company_and_this_month(hq_site: ServedAggregator) -> None:
    with hq_site.login() as client:
        doc = html(client.get("/hq/trial-balance"))
    assert doc.xpath('//select[@name="company"]/option[@selected]/@value') == ["co-1"]
    assert doc.xpath('//input[@name="period"]/@value') == ["2026-12"]
    assert doc.xpath('//table[@id="trial-balance"]//tr[@data-account="1405"]')


@pytest.mark.parametrize("lang", LANGS)
def test_compliance_page_lists_freezes_and_papers_expiring(hq_site: ServedAggregator, lang: str) -> None:
    with hq_site.login(lang) as client:
        doc = html(client.get("/hq/compliance"))
        frozen = row(doc, "compliance", store="s1", supplier="sup-milk")
        assert frozen.get("class") == "alarm"
        state = cells(frozen)[2]
        assert ("已冻结" if lang == "zh" else "Frozen") in state and "证照过期" in state
        expiring = cells(row(doc, "compliance", store="s2", supplier="sup-milk"))
        assert ("证照即将到期" if lang == "zh" else "Papers expiring") in expiring[2]
        assert expiring[3] == ("2026-12-20 15 天后" if lang == "zh" else "2026-12-20 in 15 days")
        assert "食品经营许可证 JY1 2026-12-20" in expiring[4]
        assert not doc.xpath('//tr[@data-supplier="sup-bread"]')
        # Within a year the bread supplier's licence (2027-06-30) needs attention too; frozen only: just s1's.
        doc = html(client.get("/hq/compliance", params={"days": "365"}))
        assert doc.xpath('//tr[@data-supplier="sup-bread"]')
        doc = html(client.get("/hq/compliance", params={"frozen": "1"}))
        assert doc.xpath('//table[@id="compliance"]/tbody/tr/@data-store') == ["s1"]


# --- exports ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "header"),
    [
        ("/hq", {}, "门店 Store"),
        ("/hq/stock", {"sku": "COLA"}, "门店 Store"),
        ("/hq/sales", {"from": "2026-11-01", "to": "2026-12-05"}, "门店 Store"),
        ("/hq/trial-balance", {"company": "co-1", "period": "2026-12"}, "科目"),
        ("/hq/compliance", {}, "门店 Store"),
    ],
)
def test_export_links_hand_over_the_hq_apis_csv_and_xlsx(
    hq_site: ServedAggregator, path: str, params: dict[str, str], header: str
) -> None:
    with hq_site.login() as client:
        doc = html(client.get(path, params=params))
        links = doc.xpath('//span[@class="exports"]/a/@href')
        assert len(links) == 2 and links[0].endswith("format=csv") and links[1].endswith("format=xlsx")
        csv_answer = client.get(links[0])
        assert csv_answer.status_code == 200
        assert csv_answer.headers["content-type"].startswith("text/csv")
        assert 'filename="' in csv_answer.headers["content-disposition"]
        body = csv_answer.content.decode("utf-8")
        assert body.startswith("\ufeff") and header in body.splitlines()[0]
        assert len(body.splitlines()) >= 2
        xlsx_answer = client.get(links[1])
        assert xlsx_answer.status_code == 200
        book = openpyxl.load_workbook(io.BytesIO(xlsx_answer.content), read_only=True)
        first = next(book.worksheets[0].iter_rows(values_only=True))
        assert any(header in str(cell) for cell in first)


# --- language -----------------------------------------------------------------------------------------------------


def test_language_switch_is_remembered(hq_site: ServedAggregator) -> None:
    with hq_site.login() as client:
        doc = html(client.get("/hq/sales"))
        assert text(doc.xpath("//h1")[0]) == "各门店销售"
        switch = doc.xpath('//a[@class="lang"]/@href')[0]
        assert switch == "/lang/en?next=%2Fhq%2Fsales"
        response = client.get(switch)
        assert response.status_code == 303 and response.headers["location"] == "/hq/sales"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("sb_lang=en;") and "Max-Age=31536000" in cookie
        for path in ("/hq/sales", "/hq", "/hq/compliance"):
            doc = html(client.get(path))
            assert doc.xpath("//html/@lang") == ["en"]
            assert doc.xpath('//a[@class="lang"]')[0].text == "中文"
        assert text(html(client.get("/hq/nothing"), 404).xpath("//h1")[0]) == "Not found"
        assert client.get("/lang/fr?next=/hq").headers.get("set-cookie") is None
        assert client.get("/lang/zh?next=//evil.example").headers["location"] == "/hq"
        assert text(html(client.get("/hq/sales")).xpath("//h1")[0]) == "各门店销售"
    with hq_site.login("klingon") as client:  # a cookie with an unknown language: Chinese
        assert html(client.get("/hq")).xpath("//html/@lang") == ["zh-CN"]


# --- bad links and errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(
    ("path", "params", "status", "zh", "en"),
    [
        ("/hq/stock", {"sku": "A\x01B"}, 422, "参数 sku 无效", "invalid sku"),
        ("/hq/stock", {"sku": "COLA", "company": "Bad Co!"}, 422, "参数 company 无效", "invalid company"),
        ("/hq", {"company": "../etc"}, 422, "参数 company 无效", "invalid company"),
        ("/hq", {"offset": "-1"}, 422, "无效的参数: offset", "Invalid parameters: offset"),
        ("/hq/sales", {"offset": "lots"}, 422, "无效的参数: offset", "Invalid parameters: offset"),
        ("/hq/sales", {"from": "2026-02-30"}, 422, "请输入日期 YYYY-MM-DD", "Enter a date YYYY-MM-DD"),
        ("/hq/sales", {"from": "2026-12-05", "to": "2026-12-01"}, 422, "开始日期不能晚于", "must not be after"),
        ("/hq/sales", {"from": "2020-01-01", "to": "2026-12-01"}, 422, "最多查询 366 天", "At most 366 days"),
        ("/hq/trial-balance", {"period": "2026-13"}, 422, "请输入会计期间", "Enter a period"),
        ("/hq/trial-balance", {"company": "co-99"}, 422, "没有这家公司的门店", "No store belongs"),
        ("/hq/compliance", {"days": "-5"}, 422, "0 到 3650", "from 0 to 3650"),
        ("/hq/compliance", {"days": "9" * 50}, 422, "0 到 3650", "from 0 to 3650"),
        ("/hq/sales", {"format": "pdf"}, 422, "导出格式应为 csv 或 xlsx", "format must be csv or xlsx"),
        ("/hq/nothing/here", {}, 404, "找不到页面", "Not found"),
    ],
)
def test_garbage_query_parameters_give_a_clear_error_page(
    hq_site: ServedAggregator, lang: str, path: str, params: dict[str, str], status: int, zh: str, en: str
) -> None:
    with hq_site.login(lang) as client:
        doc = html(client.get(path, params=params), status)
    words = text(doc.xpath("//main")[0])
    assert (zh if lang == "zh" else en) in words
    assert doc.xpath("//html/@lang") == ["zh-CN" if lang == "zh" else "en"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/hq", "/hq/stock", "/hq/sales", "/hq/trial-balance", "/hq/compliance"]),
    params=st.dictionaries(
        st.sampled_from(["sku", "company", "from", "to", "period", "days", "frozen", "behind", "offset", "format"]),
        st.text(st.characters(codec="utf-8"), max_size=80),
        max_size=4,
    ),
)
def test_no_link_shows_a_stack_trace(hq_site: ServedAggregator, path: str, params: dict[str, str]) -> None:
    with hq_site.login() as client:
        response = client.get(path, params=params)
    assert response.status_code in (200, 422), response.text[:2000]
    if response.status_code == 422:
        doc = html(response, 422)
        assert doc.xpath('//*[@class="error"] | //*[contains(@class, "error-page")]')


def test_an_unexpected_failure_is_a_page_with_a_reference(
    hq_site: ServedAggregator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(page: Any) -> Any:
        raise RuntimeError("boom at HQ")

    monkeypatch.setattr("cloud_sync.web.routes.store_list", broken)
    with hq_site.login("en") as client:
        doc = html(client.get("/hq/sales"), 500)
    words = text(doc)
    assert "Something went wrong" in words and "Reference:" in words
    assert "boom" not in words and "RuntimeError" not in words


def test_the_api_keeps_its_json_errors(hq_site: ServedAggregator) -> None:
    with hq_site.login() as client:
        refused = client.get("/api/v1/hq/stores")  # the cookie is not a bearer token
        assert refused.status_code == 401 and refused.json()["code"] == "hq_auth_missing"
        missing = client.get("/api/v1/nowhere")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        assert client.get("/static/css/app.css").status_code == 200
        assert client.get("/static/vendor/vendor.json").status_code == 200
