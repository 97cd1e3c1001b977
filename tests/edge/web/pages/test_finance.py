"""Finance pages over real HTTP: vouchers, trial balance and AP ageing on the page and as CSV/XLSX downloads read
back; date and period garbage shown next to the field; the clerk does not see the books."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from edge.security.roles import Role
from tests.edge.web.pages.pagedata import api, enter_invoice, html, ok, text_of
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|sqlite3\.|NameError|KeyError")
PERIOD = "2024-06"  # the served box's clock (apibox.T0)


@pytest.fixture(scope="module")
def books(site: Site) -> Site:
    """Two purchases with matching invoices (AP owed) and one receipt of the seed's supplier."""
    for _ in range(2):
        assert enter_invoice(site)["status"] == "matched"
    return site


def read_csv(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.content.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the Chinese
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def read_xlsx(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 200, response.text
    assert "spreadsheetml" in response.headers["content-type"]
    sheet = load_workbook(io.BytesIO(response.content), read_only=True).worksheets[0]
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def amount(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


# --- vouchers --------------------------------------------------------------------------------------------------


def test_vouchers_list_and_export_to_csv_and_xlsx(books: Site) -> None:
    site = books
    vouchers = ok(api(site, "GET", "/api/v1/vouchers?limit=1000", Role.ACCOUNTANT))
    lines = sum(len(v["lines"]) for v in vouchers)
    with site.login(Role.ACCOUNTANT) as client:
        page = client.get("/finance/vouchers")
        assert page.status_code == 200
        shown = html(page).xpath("//tbody[@class='voucher']/@data-voucher")
        assert shown == [v["voucher_no"] for v in vouchers][: len(shown)] and shown
        first = vouchers[0]
        block = text_of(page, f"//tbody[@data-voucher='{first['voucher_no']}']")
        assert first["lines"][0]["account"] in block and first["lines"][0]["account_name"] in block

        rows = read_csv(client.get("/finance/vouchers?format=csv"))
        assert rows[0][:3] == ["凭证号", "日期", "摘要"] and "借方金额(元)" in rows[0]
        assert len(rows) - 1 == lines
        debit, credit = rows[0].index("借方金额(元)"), rows[0].index("贷方金额(元)")
        assert sum(amount(r[debit]) for r in rows[1:]) == sum(amount(r[credit]) for r in rows[1:]) > 0
        expected = sum(line["debit_fen"] for v in vouchers for line in v["lines"])
        assert sum(amount(r[debit]) for r in rows[1:]) * 100 == expected

        book = read_xlsx(client.get("/finance/vouchers?format=xlsx&since=2024-06-01&until=2024-06-01"))
        assert book[0] == rows[0] and len(book) - 1 == lines
        xdebit = sum(amount(r[debit]) for r in book[1:])
        assert xdebit * 100 == expected and all(isinstance(r[debit], (int, float)) for r in book[1:])

        nothing = read_csv(client.get("/finance/vouchers?format=csv&since=2024-06-02"))
        assert nothing == [rows[0]]
        empty = client.get("/finance/vouchers?since=2024-06-02")
        assert "没有凭证" in text_of(empty)
    with site.login(Role.ACCOUNTANT, lang="en") as client:
        rows = read_csv(client.get("/finance/vouchers?format=csv"))
        assert rows[0][:3] == ["Voucher", "Date", "Memo"]


def test_an_end_date_before_the_start_is_shown_at_the_field(books: Site) -> None:
    with books.login(Role.ACCOUNTANT) as client:
        page = client.get("/finance/vouchers?since=2024-06-02&until=2024-06-01")
        assert page.status_code == 422
        assert "截止日期不能早于起始日期" in text_of(page, "//*[@id='e-until']")
        assert not html(page).xpath("//table[@id='vouchers']")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=st.text(max_size=50), until=st.text(max_size=50), fmt=st.sampled_from(["", "csv", "xlsx", "pdf"]))
def test_garbage_voucher_filters_are_refused_next_to_the_field(site: Site, since: str, until: str, fmt: str) -> None:
    with site.login(Role.ACCOUNTANT) as client:
        response = client.get("/finance/vouchers", params={"since": since, "until": until, "format": fmt})
    assert response.status_code in (200, 422), response.text
    assert not TRACE.search(response.text)
    if response.status_code == 422 and response.headers["content-type"].startswith("text/html"):
        assert html(response).xpath("//*[@id='e-since' or @id='e-until']") or "请求无效" in response.text


# --- trial balance ---------------------------------------------------------------------------------------------


def test_trial_balance_shows_the_month_and_exports_it(books: Site) -> None:
    site = books
    report = ok(api(site, "GET", f"/api/v1/books/trial-balance?period={PERIOD}", Role.ACCOUNTANT))
    with site.login(Role.ACCOUNTANT) as client:
        page = client.get(f"/finance/trial-balance?period={PERIOD}")
        assert page.status_code == 200
        assert "借贷平衡" in text_of(page, "//*[@id='balanced']")
        codes = html(page).xpath("//table[@id='trial-balance']/tbody/tr/@data-account")
        assert codes == [row["code"] for row in report["rows"]] and "220201" in codes
        payable = text_of(page, "//tr[@data-account='220201']")
        row = next(r for r in report["rows"] if r["code"] == "220201")
        assert f"¥{row['credit_fen'] // 100:,}.{row['credit_fen'] % 100:02d}" in payable

        rows = read_csv(client.get(f"/finance/trial-balance?period={PERIOD}&format=csv"))
        assert rows[0][:2] == ["科目代码", "科目名称"]
        assert [r[0] for r in rows[1:]] == codes
        level = rows[0].index("级次")
        first_level = [r for r in rows[1:] if r[level] == "1"]
        for debit, credit in (("期初借方(元)", "期初贷方(元)"), ("本期借方(元)", "本期贷方(元)")):
            d, c = rows[0].index(debit), rows[0].index(credit)
            assert sum(amount(r[d]) for r in first_level) == sum(amount(r[c]) for r in first_level)
        d = rows[0].index("本期借方(元)")
        assert sum(amount(r[d]) for r in first_level) * 100 == report["totals"]["debit_fen"]

        book = read_xlsx(client.get(f"/finance/trial-balance?period={PERIOD}&format=xlsx"))
        assert [str(r[0]) for r in book[1:]] == codes
        assert sum(amount(r[d]) for r in book[1:] if r[level] == 1) * 100 == report["totals"]["debit_fen"]

        everything = client.get(f"/finance/trial-balance?period={PERIOD}&include_empty=true")
        assert len(html(everything).xpath("//table[@id='trial-balance']/tbody/tr")) > len(codes)
    with site.login(Role.ACCOUNTANT, lang="en") as client:
        page = client.get(f"/finance/trial-balance?period={PERIOD}")
        assert "Debits equal credits" in page.text and "Accounts payable" in page.text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(period=st.text(max_size=30) | st.from_regex(r"\A[0-9]{4}-[0-9]{1,3}\Z"))
def test_garbage_periods_are_refused_next_to_the_field(site: Site, period: str) -> None:
    with site.login(Role.ACCOUNTANT) as client:
        response = client.get("/finance/trial-balance", params={"period": period, "format": "csv"})
    assert response.status_code in (200, 422), response.text
    assert not TRACE.search(response.text)
    if response.status_code == 422:
        assert "text/html" in response.headers["content-type"]
        assert html(response).xpath("//*[@id='e-period']") or "请求无效" in response.text


# --- AP ageing -------------------------------------------------------------------------------------------------


def test_ap_ageing_shows_what_is_owed_and_exports_it(books: Site) -> None:
    site = books
    report = ok(api(site, "GET", "/api/v1/books/ap-ageing", Role.ACCOUNTANT))
    owed = next(s for s in report["suppliers"] if s["supplier"] == "sup-inv")
    assert owed["balance_fen"] > 0
    with site.login(Role.ACCOUNTANT) as client:
        page = client.get("/finance/ap-ageing")
        assert page.status_code == 200
        row = text_of(page, "//tr[@data-supplier='sup-inv']")
        assert "华润饮料(上海)有限公司" in row and f"¥{owed['balance_fen'] // 100:,}." in row
        assert "与总账一致" in text_of(page, "//*[@id='agrees']")

        rows = read_csv(client.get("/finance/ap-ageing?format=csv"))
        assert rows[0] == [
            "供应商编号",
            "供应商",
            "应付余额(元)",
            "0-30 天(元)",
            "31-60 天(元)",
            "61-90 天(元)",
            "90 天以上(元)",
            "未核销(元)",
        ]
        mine = next(r for r in rows[1:] if r[0] == "sup-inv")
        assert amount(mine[2]) * 100 == owed["balance_fen"] == amount(mine[3]) * 100
        book = read_xlsx(client.get("/finance/ap-ageing?as_of=2024-06-01&format=xlsx"))
        assert book[0] == rows[0]
        assert sum(amount(r[2]) for r in book[1:]) * 100 == report["total_fen"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(as_of=st.text(max_size=40))
def test_garbage_ageing_dates_are_refused_next_to_the_field(site: Site, as_of: str) -> None:
    with site.login(Role.ACCOUNTANT) as client:
        response = client.get("/finance/ap-ageing", params={"as_of": as_of})
    assert response.status_code in (200, 422), response.text
    assert not TRACE.search(response.text)
    if response.status_code == 422:
        assert html(response).xpath("//*[@id='e-as_of']") or "请求无效" in response.text


# --- who sees the books ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/finance/vouchers",
        "/finance/vouchers?format=csv",
        f"/finance/trial-balance?period={PERIOD}",
        f"/finance/trial-balance?period={PERIOD}&format=xlsx",
        "/finance/ap-ageing",
        "/finance/ap-ageing?format=csv",
    ],
)
def test_the_clerk_does_not_see_the_books(site: Site, path: str) -> None:
    with site.login(Role.CLERK) as client:
        response = client.get(path)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "没有权限" in response.text and "¥" not in text_of(response)
        menu = client.get("/")
        assert 'href="/finance' not in menu.text


def test_the_auditor_reads_the_books(books: Site) -> None:
    with books.login(Role.AUDITOR) as client:
        for path in ("/finance/vouchers", f"/finance/trial-balance?period={PERIOD}", "/finance/ap-ageing"):
            assert client.get(path).status_code == 200, path
        assert 'href="/finance/trial-balance"' in client.get("/").text
