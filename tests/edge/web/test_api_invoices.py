"""Invoices over real HTTP: entering, importing, the exception queue and its resolutions, refusals."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from edge.config import Settings
from edge.db import connect
from edge.ledger.masterdata import add_supplier
from edge.web.api import create_api
from tests.edge.web.apibox import Box, ServedBox, assert_error_shape, build_deps

pytestmark = pytest.mark.anyio

DATA = Path(__file__).parents[1] / "finance" / "data"
SELLER = "91310000MA1FL0000N"
BUYER = "91110000100000000R"


def add_seller(db_path: Path, supplier_id: str = "sup-9", code: str = SELLER) -> None:
    """The seed's supplier has no valid credit code; add the invoices' seller as a supplier of its own."""
    conn = connect(db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        add_supplier(conn, supplier_id, "华润饮料(上海)有限公司", credit_code=code)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def purchase(box: Box, cases: int = 2, bottles: int = 20, supplier: str = "sup-9") -> tuple[int, int]:
    """A PO and its receipt: cola by the case at 54.24, milk at 9.00 a bottle (VAT included)."""
    lines = [{"code": "COLA", "qty": cases, "unit": "case", "price_fen": 5424}]
    if bottles:
        lines.append({"code": "MILK", "qty": bottles, "price_fen": 900})
    po = await box.post(
        "purchase_order", {"counterparty": supplier, "lines": lines}, role="purchaser", key=f"po-{uuid.uuid4()}"
    )
    assert po.status_code == 201, po.text
    po_id = int(po.json()["document_id"])
    rc = await box.post(
        "receipt",
        {"counterparty": supplier, "ref_id": po_id, "lines": lines},
        role="purchaser",
        key=f"rc-{uuid.uuid4()}",
    )
    assert rc.status_code == 201, rc.text
    return po_id, int(rc.json()["document_id"])


def body(number: str = "24312000000012345678", cola_amount: str = "96.00", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "invoice_no": number,
        "issue_date": "2024-06-01",
        "seller_name": "华润饮料(上海)有限公司",
        "seller_credit_code": SELLER,
        "buyer_name": "演示商贸有限公司",
        "buyer_credit_code": BUYER,
        "lines": [
            {
                "item_name": "*饮料*可乐 330ml",
                "unit": "case",
                "qty": 2,
                "amount": cola_amount,
                "tax_rate": "13%",
                "tax": "12.48",
            },
            {"item_name": "*乳制品*鲜牛奶 1L", "qty": 20, "amount": "165.14", "tax_rate": "9%", "tax": "14.86"},
        ],
    }
    data.update(overrides)
    return data


async def enter(box: Box, data: dict[str, Any], *, role: str = "purchaser", key: str | None = None) -> httpx.Response:
    headers = {**box.auth(role), "Idempotency-Key": key or str(uuid.uuid4())}
    return await box.client.post("/api/v1/invoices", json=data, headers=headers)


async def upload(
    box: Box, name: str, content: bytes, *, key: str | None = None, role: str = "purchaser", mime: str = "text/csv"
) -> httpx.Response:
    headers = {**box.auth(role), "Idempotency-Key": key or str(uuid.uuid4())}
    return await box.client.post("/api/v1/invoices/import", files={"file": (name, content, mime)}, headers=headers)


async def act(box: Box, exception_id: int, action: str, role: str, note: str | None = None) -> httpx.Response:
    payload = {"note": note} if note else None
    return await box.client.post(
        f"/api/v1/invoices/exceptions/{exception_id}/{action}", json=payload, headers=box.auth(role)
    )


def invoice_count(box: Box) -> int:
    return box.count("invoices")


# --- entering -----------------------------------------------------------------------------------


async def test_a_matching_invoice_posts_tax_trusted_and_a_replay_answers_the_same(box: Box) -> None:
    add_seller(box.db_path)
    await purchase(box)
    box.clock.advance(timedelta(hours=2))
    response = await enter(box, body(), key="inv-1")
    assert response.status_code == 201, response.text
    (invoice,) = response.json()["invoices"]
    assert invoice["status"] == "matched" and invoice["tax_trusted"] is True
    assert invoice["supplier_id"] == "sup-9" and invoice["document_id"]
    assert [line["matched_sku"] for line in invoice["lines"]] == ["COLA", "MILK"]
    document = await box.client.get(f"/api/v1/documents/{invoice['document_id']}", headers=box.auth("accountant"))
    assert document.json()["type"] == "purchase_invoice"
    assert document.json()["voucher"]["lines"]
    again = await enter(box, body(), key="inv-1")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["invoices"] == response.json()["invoices"]
    duplicate = await enter(box, body(), key="inv-2")
    assert duplicate.status_code == 409
    error = assert_error_shape(duplicate)
    assert error["code"] == "duplicate_invoice" and error["detail"]["invoice_no"] == "24312000000012345678"
    reused = await enter(box, body(number="24312000000012345679"), key="inv-1")
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    assert invoice_count(box) == 1


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"invoice_no": "2431200000001234567"}, 422, "invalid_invoice", "invoice_no"),
        ({"seller_credit_code": "91310000MA1FL0000X"}, 422, "invalid_invoice", "seller_credit_code"),
        ({"issue_date": "yesterday"}, 422, "invalid_invoice", "issue_date"),
        ({"lines": []}, 422, "validation_error", None),
        ({"colour": "red"}, 422, "validation_error", None),
    ],
)
async def test_bad_invoices_are_refused_naming_the_field_and_nothing_is_written(
    box: Box, change: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    response = await enter(box, body(**change))
    assert response.status_code == status, response.text
    error = assert_error_shape(response)
    assert error["code"] == code
    if field:
        assert error["detail"]["field"] == field
    assert invoice_count(box) == 0


async def test_money_as_json_numbers_or_an_unknown_rate_is_refused(box: Box) -> None:
    numbers = body()
    numbers["lines"][0]["amount"] = 96.0
    assert (await enter(box, numbers)).json()["code"] == "validation_error"
    rate = body()
    rate["lines"][0]["tax_rate"] = "17%"
    error = assert_error_shape(await enter(box, rate))
    assert error["code"] == "invalid_invoice" and error["detail"]["field"] == "lines[0].tax_rate"
    assert "13%、9%、6%、3%、0" in error["message"]


async def test_the_buyer_must_be_the_company_when_configured(box: Box) -> None:
    settings_ = Settings(data_dir=box.db_path.parent, company_credit_code="91440300MA5F000007")
    app = create_api(build_deps(box.db_path, box.clock, box.writer, settings=settings_))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://box") as client:
        headers = {**box.auth("purchaser"), "Idempotency-Key": "b-1"}
        response = await client.post("/api/v1/invoices", json=body(), headers=headers)
    assert response.status_code == 422
    assert assert_error_shape(response)["code"] == "buyer_mismatch"


async def test_writing_invoices_needs_the_permission_and_a_key(box: Box) -> None:
    assert (await enter(box, body(), role="clerk")).status_code == 403
    response = await box.client.post("/api/v1/invoices", json=body(), headers=box.auth("purchaser"))
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_missing"


# --- importing ----------------------------------------------------------------------------------


async def test_the_sample_csv_imports_two_invoices(box: Box) -> None:
    add_seller(box.db_path)
    box.clock.advance(timedelta(days=2))
    response = await upload(box, "invoices.csv", (DATA / "invoices_sample.csv").read_bytes())
    assert response.status_code == 201, response.text
    result = response.json()
    assert [i["invoice_no"] for i in result["invoices"]] == ["24312000000000000101", "24312000000000000102"]
    assert all(i["source"] == "csv" for i in result["invoices"])
    assert result["ignored_columns"] == ["备注"]
    # Nothing was ordered from sup-9: both wait in the queue, each line saying why.
    queue = (await box.client.get("/api/v1/invoices/exceptions", headers=box.auth("auditor"))).json()
    assert {e["invoice_no"] for e in queue} == {"24312000000000000101", "24312000000000000102"}
    assert {r["code"] for e in queue for r in e["reasons"]} == {"no_po"}


async def test_the_xml_sample_imports_and_matches(box: Box) -> None:
    add_seller(box.db_path)
    await purchase(box)
    response = await upload(box, "dzfp.xml", (DATA / "invoice_sample.xml").read_bytes(), mime="application/xml")
    assert response.status_code == 201, response.text
    (invoice,) = response.json()["invoices"]
    assert invoice["source"] == "xml" and invoice["status"] == "matched"


async def test_an_xlsx_imports(box: Box) -> None:
    add_seller(box.db_path)
    await purchase(box, cases=2, bottles=0)
    book = Workbook()
    sheet = book.active
    header = ["发票号码", "开票日期", "销售方名称", "销售方纳税人识别号", "购买方名称", "购买方纳税人识别号"]
    sheet.append([*header, "项目名称", "单位", "数量", "金额", "税率", "税额"])
    sheet.append(
        [
            "24312000000000000301",
            "2024-06-01",
            "华润饮料",
            SELLER,
            "演示商贸",
            BUYER,
            "可乐 330ml",
            "case",
            2,
            96,
            0.13,
            12.48,
        ]
    )
    out = io.BytesIO()
    book.save(out)
    mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = await upload(box, "invoices.xlsx", out.getvalue(), mime=mime)
    assert response.status_code == 201, response.text
    assert response.json()["invoices"][0]["status"] == "matched"


async def test_a_bad_file_is_refused_as_a_whole_naming_the_row(box: Box) -> None:
    text = (DATA / "invoices_sample.csv").read_text("utf-8").replace(",9%,14.86,", ",10%,14.86,")
    response = await upload(box, "invoices.csv", text.encode())
    assert response.status_code == 422
    error = assert_error_shape(response)
    assert error["detail"]["row"] == 4 and error["detail"]["field"] == "tax_rate"
    assert error["message"].startswith("第 4 行 税率")
    assert invoice_count(box) == 0


async def test_an_oversized_or_foreign_file_is_refused(box: Box) -> None:
    too_big = await upload(box, "big.csv", b"a" * (600 * 1024))
    assert too_big.status_code == 413 and assert_error_shape(too_big)["code"] == "import_too_large"
    pdf = await upload(box, "invoice.pdf", b"%PDF-1.7\n", mime="application/pdf")
    assert pdf.status_code == 422 and assert_error_shape(pdf)["code"] == "invalid_invoice"
    bomb = b'<!DOCTYPE e [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><EInvoice>&b;</EInvoice>'
    assert (await upload(box, "bomb.xml", bomb, mime="application/xml")).status_code == 422
    missing = await box.client.post(
        "/api/v1/invoices/import", headers={**box.auth("purchaser"), "Idempotency-Key": "x"}
    )
    assert missing.status_code == 422
    assert invoice_count(box) == 0


# --- the exception queue ------------------------------------------------------------------------


async def test_accepting_a_difference_needs_another_users_approval(box: Box) -> None:
    add_seller(box.db_path)
    await purchase(box)
    entered = (await enter(box, body(cola_amount="98.50"))).json()["invoices"][0]
    assert entered["status"] == "exception"
    reasons = entered["exception"]["reasons"]
    assert [r["code"] for r in reasons] == ["price_difference"]
    assert reasons[0]["message"].startswith("第 1 行: 价差 250 分")
    exception_id = entered["exception"]["id"]
    listed = (await box.client.get("/api/v1/invoices/exceptions", headers=box.auth("purchaser"))).json()
    assert [e["id"] for e in listed] == [exception_id]
    accepted = await act(box, exception_id, "accept", "purchaser", note="供应商涨价已确认")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["invoice"]["status"] == "pending_approval"
    assert (await act(box, exception_id, "approve", "purchaser")).status_code == 403  # no invoices:approve
    approved = await act(box, exception_id, "approve", "accountant")
    assert approved.status_code == 200, approved.text
    invoice = approved.json()["invoice"]
    assert invoice["status"] == "accepted" and invoice["tax_trusted"] is False
    assert approved.json()["approved_by"] == "accountant"
    assert (await box.client.get("/api/v1/invoices/exceptions", headers=box.auth("purchaser"))).json() == []
    again = await act(box, exception_id, "approve", "accountant")
    assert again.status_code == 409 and assert_error_shape(again)["code"] == "invoice_state"


async def test_no_one_approves_their_own_acceptance(box: Box) -> None:
    entered = (await enter(box, body(), role="manager")).json()["invoices"][0]
    exception_id = entered["exception"]["id"]
    add_seller(box.db_path)
    await act(box, exception_id, "recheck", "manager")  # now a known supplier without a PO: still an exception
    assert (await act(box, exception_id, "accept", "manager")).status_code == 200
    own = await act(box, exception_id, "approve", "manager")
    assert own.status_code == 409
    assert assert_error_shape(own)["code"] == "approval_refused"


async def test_a_credit_note_over_http_is_netted_and_both_post(box: Box) -> None:
    add_seller(box.db_path)
    await purchase(box, cases=2, bottles=0)
    over = body(
        lines=[
            {"item_name": "可乐 330ml", "unit": "case", "qty": 3, "amount": "144.00", "tax_rate": "13%", "tax": "18.72"}
        ]
    )
    entered = (await enter(box, over)).json()["invoices"][0]
    assert [r["code"] for r in entered["exception"]["reasons"]] == ["short_delivery"]
    requested = await act(box, entered["exception"]["id"], "request-credit-note", "purchaser", note="少送一箱")
    assert requested.json()["invoice"]["status"] == "awaiting_credit_note"
    note = body(
        number="24312000000099999999",
        original_invoice_no=entered["invoice_no"],
        lines=[
            {
                "item_name": "可乐 330ml",
                "unit": "case",
                "qty": -1,
                "amount": "-48.00",
                "tax_rate": "13%",
                "tax": "-6.24",
            }
        ],
    )
    credited = await enter(box, note)
    assert credited.status_code == 201, credited.text
    assert credited.json()["invoices"][0]["status"] == "posted"
    original = (await box.client.get(f"/api/v1/invoices/{entered['id']}", headers=box.auth("auditor"))).json()
    assert original["status"] == "credited" and original["credit_notes"][0]["status"] == "posted"


async def test_reject_and_recheck_over_http(box: Box) -> None:
    add_seller(box.db_path)
    first = (await enter(box, body())).json()["invoices"][0]
    rejected = await act(box, first["exception"]["id"], "reject", "purchaser", note="未订货")
    assert rejected.status_code == 200 and rejected.json()["invoice"]["status"] == "rejected"
    second = (await enter(box, body(number="24312000000012345679"))).json()["invoices"][0]
    await purchase(box)
    rechecked = await act(box, second["exception"]["id"], "recheck", "purchaser")
    assert rechecked.json()["invoice"]["status"] == "matched"
    listed = (
        await box.client.get("/api/v1/invoices", params={"status": "rejected"}, headers=box.auth("auditor"))
    ).json()
    assert [i["invoice_no"] for i in listed] == ["24312000000012345678"]


async def test_unknown_ids_are_404(box: Box) -> None:
    for path in ("/api/v1/invoices/99", "/api/v1/invoices/exceptions/99"):
        response = await box.client.get(path, headers=box.auth("auditor"))
        assert response.status_code == 404 and assert_error_shape(response)["code"].startswith("unknown_invoice")
    assert (await act(box, 99, "recheck", "purchaser")).status_code == 404
    assert (await box.client.get("/api/v1/invoices/abc", headers=box.auth("auditor"))).status_code in (404, 422)


# --- garbage over real HTTP ---------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def http(served_box: ServedBox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served_box.url, timeout=30) as client:
        yield client


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(st.sampled_from([*body(), "lines"]), json_values, max_size=4),
    st.lists(st.dictionaries(st.sampled_from([*body()["lines"][0], "sku", "unit_price"]), json_values), max_size=3),
)
def test_garbage_invoice_bodies_are_refused_never_a_500(
    served_box: ServedBox, http: httpx.Client, overrides: dict[str, Any], lines: list[dict[str, Any]]
) -> None:
    data = body(**overrides)
    if lines:
        data["lines"] = [{**body()["lines"][0], **line} for line in lines]
    headers = {**served_box.auth("purchaser"), "Idempotency-Key": str(uuid.uuid4())}
    response = http.post(
        "/api/v1/invoices", content=json.dumps(data), headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code in (201, 409, 422), response.text
    if response.status_code != 201:
        assert_error_shape(response)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000), st.sampled_from(["a.csv", "a.xml", "a.xlsx", "a.bin"]))
def test_garbage_uploads_are_refused_never_a_500(
    served_box: ServedBox, http: httpx.Client, data: bytes, name: str
) -> None:
    headers = {**served_box.auth("purchaser"), "Idempotency-Key": str(uuid.uuid4())}
    response = http.post("/api/v1/invoices/import", files={"file": (name, data)}, headers=headers)
    assert response.status_code in (201, 409, 413, 422), response.text
    if response.status_code != 201:
        assert_error_shape(response)
