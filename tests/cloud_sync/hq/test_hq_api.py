"""The HQ API over a chain fed through the store protocol: figures to the fen, paging, CSV and XLSX exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import openpyxl  # type: ignore[import-untyped]
import pytest

from cloud_sync.tables import sync_state
from tests.cloud_sync.hq.seed import NOW, HqClient, build_chain


@pytest.fixture
def hq(cloud_db_url: str) -> Iterator[HqClient]:
    app, token = build_chain(cloud_db_url)
    yield HqClient(app, token)
    app.state.engine.dispose()


def get(client: HqClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_sales_by_store_and_day_to_the_fen(hq: HqClient) -> None:
    page = get(hq, "/api/v1/hq/sales", group_by="store,day")
    rows = {(r["store"], r["day"]): r for r in page["items"]}
    assert page["total"] == 5
    assert rows[("s1", "2026-11-30")] == {
        "store": "s1",
        "day": "2026-11-30",
        "qty": 2,
        "gross_fen": 600,
        "tax_fen": 69,
        "net_fen": 531,
        "cost_fen": 800,
        "margin_fen": -269,
    }
    assert (rows[("s1", "2026-12-01")]["qty"], rows[("s1", "2026-12-01")]["gross_fen"]) == (4, 1550)
    assert rows[("s1", "2026-12-01")]["tax_fen"] == 104 + 75
    assert rows[("s1", "2026-12-01")]["cost_fen"] == 1700
    # A customer return counts against sales, its cost too.
    ret = rows[("s1", "2026-12-02")]
    assert (ret["qty"], ret["gross_fen"], ret["tax_fen"], ret["cost_fen"]) == (-1, -300, -35, -400)
    assert rows[("s2", "2026-12-01")]["gross_fen"] == 1200
    assert rows[("s3", "2026-12-01")]["tax_fen"] == 58


def test_sales_grouped_by_category_with_filters(hq: HqClient) -> None:
    page = get(
        hq, "/api/v1/hq/sales", group_by="category", company="co-1", **{"from": "2026-12-01", "to": "2026-12-01"}
    )
    assert {r["category"]: (r["qty"], r["gross_fen"]) for r in page["items"]} == {
        "drinks": (3 + 4, 900 + 1200),
        "snacks": (1, 650),
    }
    one = get(hq, "/api/v1/hq/sales", group_by="sku,store", sku="COLA", store="s1,s2")
    assert [(r["sku"], r["store"], r["qty"]) for r in one["items"]] == [("COLA", "s1", 4), ("COLA", "s2", 4)]
    total = get(hq, "/api/v1/hq/sales", group_by="store", category="snacks")
    assert [(r["store"], r["gross_fen"]) for r in total["items"]] == [("s1", 650)]


def test_paging_walks_the_whole_result_once(hq: HqClient) -> None:
    seen: list[tuple[str, str]] = []
    offset: int | None = 0
    while offset is not None:
        page = get(hq, "/api/v1/hq/sales", group_by="store,day", limit=2, offset=offset)
        assert page["limit"] == 2 and page["offset"] == offset and page["total"] == 5
        seen += [(r["store"], r["day"]) for r in page["items"]]
        offset = page["next_offset"]
    assert seen == sorted(seen) and len(set(seen)) == 5


def test_stock_by_store_and_sku_keeps_transit_apart(hq: HqClient) -> None:
    page = get(hq, "/api/v1/hq/stock", store="s1")
    rows = {r["sku"]: r for r in page["items"]}
    cola = rows["COLA"]
    assert (cola["qty"], cola["value_fen"]) == (100 - 2 - 3 + 1 - 5, 40000 - 800 - 1200 + 400 - 2000)
    assert (cola["transit_qty"], cola["transit_value_fen"]) == (5, 2000)
    assert (cola["name"], cola["category"]) == ("可乐", "drinks")
    assert (rows["CHIPS"]["qty"], rows["CHIPS"]["value_fen"]) == (49, 24500)
    snacks = get(hq, "/api/v1/hq/stock", category="snacks")
    assert [(r["store"], r["sku"]) for r in snacks["items"]] == [("s1", "CHIPS")]
    transit = get(hq, "/api/v1/hq/stock", location="transit")
    assert [(r["store"], r["sku"], r["qty"], r["transit_qty"]) for r in transit["items"]] == [("s1", "COLA", 0, 5)]


def test_consolidated_trial_balance_balances_and_matches_by_hand(hq: HqClient) -> None:
    tb = get(hq, "/api/v1/hq/trial-balance", company="co-1", period="2026-12")
    rows = {r["account"]: r for r in tb["items"]}
    assert set(rows) == {"1001", "1405", "2202", "5001", "22210102", "5401"}
    assert rows["1405"] == {
        "account": "1405",
        "account_name": "库存商品",
        "account_name_en": "Merchandise inventory",
        "opening_debit_fen": 64200,
        "opening_credit_fen": 0,
        "debit_fen": 4900,
        "credit_fen": 3500,
        "closing_debit_fen": 65600,
        "closing_credit_fen": 0,
    }
    assert (rows["2202"]["opening_credit_fen"], rows["2202"]["credit_fen"], rows["2202"]["closing_credit_fen"]) == (
        65000,
        4500,
        69500,
    )
    assert (rows["5001"]["debit_fen"], rows["5001"]["credit_fen"], rows["5001"]["closing_credit_fen"]) == (
        265,
        2433,
        2699,
    )
    assert rows["22210102"]["account_name"] == "应交增值税-销项税额"
    assert tb["totals"] == {
        "opening_debit_fen": 65600,
        "opening_credit_fen": 65600,
        "debit_fen": 11450,
        "credit_fen": 11450,
        "closing_debit_fen": 72550,
        "closing_credit_fen": 72550,
        "balanced": True,
    }
    other = get(hq, "/api/v1/hq/trial-balance", company="co-2", period="2026-12")
    assert other["totals"]["debit_fen"] == 500 + 100 and other["totals"]["balanced"]


def test_vouchers_by_company_and_period_grouped_by_voucher(hq: HqClient) -> None:
    page = get(hq, "/api/v1/hq/vouchers", company="co-1", period="2026-11")
    assert [(v["store"], v["voucher_no"]) for v in page["items"]] == [("s1", "记-1"), ("s1", "记-2"), ("s1", "记-3")]
    sale3 = page["items"][2]
    assert sale3["lines"][0] == {
        "line_no": 1,
        "account": "1001",
        "account_name": "库存现金",
        "account_name_en": "Cash on hand",
        "debit_fen": 600,
        "credit_fen": 0,
    }
    assert sale3["debit_fen"] == sale3["credit_fen"] == 1400
    # An account keeps the vouchers touching it or its sub-accounts; a store narrows further.
    vat = get(hq, "/api/v1/hq/vouchers", company="co-1", period="2026-12", account="2221")
    assert [(v["store"], v["doc_no"]) for v in vat["items"]] == [
        ("s1", "SA-4"),
        ("s1", "SA-5"),
        ("s2", "SA-2"),
        ("s1", "CR-6"),
    ]
    assert get(hq, "/api/v1/hq/vouchers", company="co-1", period="2026-12", account="2202", store="s2")["total"] == 1


def test_supplier_compliance_across_stores(hq: HqClient) -> None:
    page = get(hq, "/api/v1/hq/suppliers", attention="true")
    rows = {(r["store"], r["supplier"]): r for r in page["items"]}
    assert set(rows) == {("s1", "sup-milk"), ("s2", "sup-milk")}
    milk = rows[("s1", "sup-milk")]
    assert milk["frozen"] and milk["freeze_reason"] == "证照过期"
    assert (milk["next_expiry"], milk["days_to_expiry"], milk["expiring"]) == ("2026-12-20", 15, True)
    assert [p["number"] for p in milk["expiring_papers"]] == ["JY1"]
    frozen = get(hq, "/api/v1/hq/suppliers", frozen="true")
    assert [(r["store"], r["supplier"]) for r in frozen["items"]] == [("s1", "sup-milk")]
    assert get(hq, "/api/v1/hq/suppliers", attention="true", days=10)["total"] == 1  # only the frozen one
    assert get(hq, "/api/v1/hq/suppliers", attention="true", days=300)["total"] == 4


def test_stores_and_sync_lag(hq: HqClient) -> None:
    engine = hq.app.state.engine
    with engine.begin() as conn:
        conn.execute(
            sync_state.update()
            .where(sync_state.c.store != "s3")
            .values(last_contact_at=(NOW - timedelta(minutes=1)).isoformat(), pending_rows=0)
        )
        conn.execute(
            sync_state.update()
            .where(sync_state.c.store == "s3")
            .values(
                last_contact_at=(NOW - timedelta(hours=2)).isoformat(),
                head_seq=40,
                pending_rows=39,
                oldest_pending_at=(NOW - timedelta(hours=3)).isoformat(),
            )
        )
    stores = get(hq, "/api/v1/hq/stores")
    assert [(s["store"], s["company"], s["company_name"], s["stale"]) for s in stores["items"]] == [
        ("s1", "co-1", "公司 co-1", False),
        ("s2", "co-1", "公司 co-1", False),
        ("s3", "co-2", "公司 co-2", True),
    ]
    lag = get(hq, "/api/v1/hq/sync-lag", stale="true")
    assert lag["total"] == 1
    s3 = lag["items"][0]
    assert s3["store"] == "s3" and s3["applied_through"] == 1 and s3["missing_batches"] == 0
    assert (s3["rows_behind"], s3["pending_rows"], s3["oldest_pending_age_s"], s3["last_contact_age_s"]) == (
        39,
        39,
        3 * 3600,
        2 * 3600,
    )


def test_store_totals_for_hq(hq: HqClient) -> None:
    totals = get(hq, "/api/v1/hq/stores/s2/totals")
    assert totals["documents"] == 2
    assert totals["stock"] == {"qty": 6, "value_fen": 2700}
    assert totals["sales"] == {"qty": 4, "gross_fen": 1200, "tax_fen": 138, "cost_fen": 1800}
    missing = hq.get("/api/v1/hq/stores/nope/totals")
    assert missing.status_code == 404 and missing.json()["code"] == "store_unknown"


def test_csv_export_is_the_whole_result_with_bom_and_yuan(hq: HqClient) -> None:
    response = hq.get("/api/v1/hq/sales", params={"group_by": "store,day", "format": "csv", "limit": 1})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["门店 Store", "日期 Day", "数量 Qty"]
    assert len(rows) == 1 + 5  # not just one page
    ret = next(r for r in rows if r[:2] == ["s1", "2026-12-02"])
    assert ret[2:] == ["-1", "-3.00", "-0.35", "-2.65", "-4.00", "1.35"]


def test_xlsx_export_has_exact_amounts_and_chinese_headers(hq: HqClient) -> None:
    response = hq.get("/api/v1/hq/trial-balance", params={"company": "co-1", "period": "2026-12", "format": "xlsx"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("科目编码 Account", "科目名称 Account name", "期初借方 Opening debit")
    by_account = {r[0]: r for r in rows[1:]}
    assert by_account["1405"][2] == 642.0 and by_account["2202"][7] == 695.0
    assert by_account["合计"][4] == by_account["合计"][5] == 114.5
    # The cell holds the exact decimal text, not a float's 16 digits.
    assert by_account["22210102"][7] == 3.51


def test_voucher_export_has_one_row_per_line(hq: HqClient) -> None:
    response = hq.get("/api/v1/hq/vouchers", params={"company": "co-1", "period": "2026-11", "format": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 1 + 2 + 2 + 5
    assert rows[-1][2:] == ["记-3", "SA-3", "sale", "5", "1405", "库存商品", "0.00", "8.00"]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_empty_export_still_has_its_header(hq: HqClient, fmt: str) -> None:
    response = hq.get("/api/v1/hq/stock", params={"store": "nowhere", "format": fmt})
    assert response.status_code == 200
    if fmt == "csv":
        assert response.content.decode("utf-8-sig").splitlines()[0].startswith("门店 Store")
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True).worksheets[0]
        assert next(sheet.iter_rows(values_only=True))[0] == "门店 Store"


def test_hq_queries_are_counted_in_metrics(hq: HqClient) -> None:
    get(hq, "/api/v1/hq/stock")
    text = hq.get("/metrics").text
    assert 'storebox_cloud_hq_requests_total{endpoint="stock"} 1.0' in text
    assert 'storebox_cloud_hq_query_seconds_count{endpoint="stock"} 1.0' in text
