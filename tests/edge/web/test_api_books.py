"""The books over the API: trial balance, general ledger, AP ageing, valuation, check and the voucher export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import httpx
import openpyxl  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.finance import books
from edge.ledger.commands import DocType, PostEntry
from tests.edge.web.apibox import Box, ServedBox, assert_error_shape, readonly

pytestmark = pytest.mark.anyio


async def get(box: Box, path: str, role: str = "accountant", **params: Any) -> httpx.Response:
    return await box.client.get(f"/api/v1/books/{path}", params=params, headers=box.auth(role))


async def ok(box: Box, path: str, role: str = "accountant", **params: Any) -> Any:
    response = await get(box, path, role, **params)
    assert response.status_code == 200, response.text
    return response.json()


def plain(report: Any) -> Any:
    """A domain report as the API's JSON (dates as text)."""
    return json.loads(json.dumps(asdict(report), default=str))


async def business(box: Box) -> None:
    """June: 48 cola received at 2.26 and invoiced; July: 10 sold for cash, 100.00 paid to the supplier."""
    await box.receive("COLA", 48)
    invoice = PostEntry(
        "pi-1",
        DocType.PURCHASE_INVOICE,
        (("estimate", 9600), ("net", 9600), ("tax", 1248)),
        counterparty="sup-1",
        actor="accountant",
    )
    assert (await box.writer.post(invoice)).ok
    box.clock.advance(timedelta(days=35))  # 2024-07-06
    box.tokens.clear()  # the ones issued before have expired
    sale = {"payment": "cash", "lines": [{"code": "COLA", "qty": 10}]}
    assert (await box.post("sale", sale, key="sale-1")).status_code == 201
    payment = PostEntry("py-1", DocType.SUPPLIER_PAYMENT, (("paid", 10000),), counterparty="sup-1")
    assert (await box.writer.post(payment)).ok


async def test_trial_balance_is_the_domain_report(box: Box) -> None:
    await business(box)
    body = await ok(box, "trial-balance", period="2024-07")
    conn = readonly(box.db_path)
    try:
        assert body == plain(books.trial_balance(conn, "2024-07"))
    finally:
        conn.close()
    rows = {r["code"]: r for r in body["rows"]}
    assert (rows["1405"]["opening_side"], rows["1405"]["opening_debit_fen"], rows["1405"]["credit_fen"]) == (
        "借",
        9600,
        2000,
    )
    assert (rows["220201"]["closing_side"], rows["220201"]["closing_credit_fen"]) == ("贷", 848)
    assert body["balanced"] and body["totals"]["debit_fen"] == body["totals"]["credit_fen"]
    everything = await ok(box, "trial-balance", period="2024-07", include_empty="true")
    assert len(everything["rows"]) > len(body["rows"])


async def test_general_ledger_ap_ageing_valuation_and_check(box: Box) -> None:
    await business(box)
    ledger = await ok(box, "general-ledger", account="1405", period="2024-07", role="auditor")
    assert (ledger["opening_side"], ledger["opening_fen"], ledger["closing_fen"]) == ("借", 9600, 7600)
    assert [(ln["doc_type"], ln["credit_fen"], ln["balance_fen"]) for ln in ledger["lines"]] == [("sale", 2000, 7600)]
    ageing = await ok(box, "ap-ageing")  # as of today: the store's date
    assert ageing["as_of"] == "2024-07-06"
    assert [(s["supplier"], s["balance_fen"], s["buckets"]["31-60"]) for s in ageing["suppliers"]] == [
        ("sup-1", 848, 848)
    ]
    assert ageing["agrees"] and ageing["gl_balance_fen"] == 848
    june = await ok(box, "ap-ageing", as_of="2024-06-30")
    assert june["suppliers"][0]["buckets"]["0-30"] == 10848
    valuation = await ok(box, "valuation", role="manager")
    assert [(r["sku"], r["location"], r["qty"], r["value_fen"]) for r in valuation["rows"]] == [
        ("COLA", "floor", 38, 7600)
    ]
    assert valuation["agrees"] and valuation["inventory_gl_fen"] == 7600
    check = await ok(box, "check")
    assert check["ok"] and check["problems"] == [] and check["checked"]["vouchers"] == 4


@pytest.mark.parametrize(
    ("path", "params", "code", "words"),
    [
        ("trial-balance", {"period": "2024-13"}, "invalid_period", "YYYY-MM"),
        ("trial-balance", {"period": "七月"}, "invalid_period", "YYYY-MM"),
        ("general-ledger", {"account": "9999", "period": "2024-07"}, "unknown_account", "account"),
        ("general-ledger", {"account": "1405", "period": "2024/07"}, "invalid_period", "YYYY-MM"),
        ("export", {"period": "2024-7", "layout": "kingdee", "format": "csv"}, "invalid_period", "YYYY-MM"),
        ("export", {"period": "2024-07", "layout": "sap", "format": "csv"}, "validation_error", "layout"),
        ("export", {"period": "2024-07", "layout": "kingdee", "format": "pdf"}, "validation_error", "format"),
        ("ap-ageing", {"as_of": "2024-02-30"}, "validation_error", "as_of"),
        ("trial-balance", {}, "validation_error", "period"),
        ("trial-balance", {"period": "2" * 21}, "validation_error", "period"),
    ],
)
async def test_bad_periods_accounts_and_choices_are_422_in_chinese_and_english(
    box: Box, path: str, params: dict[str, str], code: str, words: str
) -> None:
    response = await get(box, path, role="admin", **params)
    assert response.status_code == 422, response.text
    body = assert_error_shape(response)
    assert body["code"] == code and words in body["message_en"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["message"]), body["message"]


async def test_export_downloads_the_file_in_the_chosen_layout(box: Box) -> None:
    await business(box)
    response = await get(box, "export", period="2024-07", layout="kingdee", format="csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="vouchers-2024-07-kingdee.csv"'
    assert response.headers["x-voucher-count"] == "2" and response.headers["x-line-count"] == "7"
    assert int(response.headers["content-length"]) == len(response.content)
    header, *rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert header[:4] == ["日期", "凭证字", "凭证号", "附单据数"] and len(header) == 14
    assert [(r[5], r[7], r[8]) for r in rows][:2] == [("1001", "35.00", "0.00"), ("5001", "0.00", "30.97")]
    gbk = await get(box, "export", period="2024-07", layout="yonyou", format="csv", encoding="gbk")
    assert gbk.headers["content-type"] == "text/csv; charset=gbk"
    assert next(csv.reader(io.StringIO(gbk.content.decode("gbk")))) == [
        "日期",
        "凭证字",
        "凭证号",
        "摘要",
        "科目代码",
        "借方金额",
        "贷方金额",
        "制单人",
    ]
    xlsx = await get(box, "export", period="2024-06", layout="yonyou", format="xlsx", role="manager")
    assert xlsx.status_code == 200 and xlsx.headers["content-disposition"].endswith('vouchers-2024-06-yonyou.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    values = list(sheet.iter_rows(min_row=2, values_only=True))
    assert [(v[4], v[5], v[6], v[7]) for v in values][-1] == ("220201", 0, 108.48, "accountant")


async def test_books_are_for_the_roles_that_keep_them(box: Box) -> None:
    for role, status in (("clerk", 403), ("purchaser", 403), ("auditor", 200), ("manager", 200)):
        assert (await get(box, "check", role=role)).status_code == status, role
    export = {"period": "2024-06", "layout": "kingdee", "format": "csv"}
    for role, status in (("clerk", 403), ("auditor", 403), ("accountant", 200), ("manager", 200), ("admin", 200)):
        assert (await get(box, "export", role=role, **export)).status_code == status, role
    denied = assert_error_shape(await get(box, "export", role="auditor", **export))
    assert denied["detail"] == {"permission": "books:export", "role": "auditor"}
    anonymous = await box.client.get("/api/v1/books/trial-balance", params={"period": "2024-06"})
    assert anonymous.status_code == 401


@pytest.fixture(scope="module")
def client(served_box: ServedBox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served_box.url, headers=served_box.auth("admin"), timeout=10) as http:
        yield http


@settings(max_examples=40, deadline=None)
@given(
    path=st.sampled_from(["trial-balance", "general-ledger", "ap-ageing", "export"]),
    period=st.text(max_size=12) | st.from_regex(r"\A[0-9]{4}-[0-9]{2}\Z"),
    account=st.text(max_size=10) | st.sampled_from(["1405", "2202", "220201"]),
    as_of=st.text(max_size=12),
)
def test_garbage_query_values_are_answered_never_crash(
    client: httpx.Client, path: str, period: str, account: str, as_of: str
) -> None:
    params = {"period": period, "account": account, "as_of": as_of, "layout": "kingdee", "format": "csv"}
    response = client.get(f"/api/v1/books/{path}", params=params)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert assert_error_shape(response)["code"] in (
            "invalid_period",
            "unknown_account",
            "validation_error",
            "invalid_date",
        )
