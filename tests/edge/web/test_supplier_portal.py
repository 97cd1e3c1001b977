"""The supplier API over the ASGI app: supplier keys instead of tokens, only one's own POs and ASNs, ASNs as JSON
and through connector templates with every problem at its line, limits, and the OpenAPI subset of the pack."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from edge.bus.event_kinds import device_event_kinds
from edge.bus.payloads import Ack, DecodedEvent, decode_event
from edge.config import Settings
from edge.db import connect
from edge.devices.asn import AsnLine, Difference, mark_received
from edge.devices.asn_templates import AsnImportRejected, convert, load_template_text
from edge.devices.supplier_keys import create_api_key, link_supplier_device, revoke_api_keys
from edge.finance.rulebook import rule_book
from edge.ledger.masterdata import add_supplier
from edge.ledger.posting import PostingContext
from edge.security.devices import create_device
from edge.web.api import create_api
from edge.web.routes.supplier_portal import supplier_openapi
from tests.edge.devices.test_asn_templates import assert_says_the_same
from tests.edge.web.apibox import COLA_CASE, COLA_PIECE, MILK_BARCODE, Box, Clock, assert_error_shape, build_deps

pytestmark = pytest.mark.anyio
T = TypeVar("T")
DOCS = Path(__file__).resolve().parents[3] / "docs"
SHIP = "2024-05-31"
MILK_EXPIRY = "2024-06-07"


def write(db_path: Path, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(conn, *args)` in one transaction of its own, beside the running writer (WAL, busy timeout)."""
    conn = connect(db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        result = fn(conn, *args, **kwargs)
        conn.execute("COMMIT")
        return result
    finally:
        conn.close()


def issue_key(db_path: Path, supplier: str, clock: Clock, **kwargs: Any) -> str:
    return write(db_path, create_api_key, supplier, now=clock(), actor="test", **kwargs).key


async def post_po(client: httpx.AsyncClient, headers: dict[str, str], supplier: str, key: str) -> dict[str, Any]:
    """A purchase order: 4 cases of cola (96 cans) and 20 bottles of milk."""
    body = {
        "counterparty": supplier,
        "lines": [{"code": COLA_CASE, "qty": 4, "price_fen": 5400}, {"code": "MILK", "qty": 20, "price_fen": 900}],
    }
    response = await client.post(
        "/api/v1/documents/purchase_order", json=body, headers={**headers, "Idempotency-Key": key}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def asn(po_id: int, asn_id: str = "ASN-1", **changes: Any) -> dict[str, Any]:
    return {
        "asn_id": asn_id,
        "po_id": po_id,
        "ship_date": SHIP,
        "lines": [
            {"code": COLA_CASE, "qty": 2},
            {"code": MILK_BARCODE, "qty": 20, "lot": "M0601", "expiry": MILK_EXPIRY},
        ],
        **changes,
    }


class Supplier:
    """A supplier's view of the API: its key on every request."""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client = client
        self.key = key

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(f"/api/v1/supplier/{path}", params=params, headers={"X-Api-Key": self.key})

    async def send(self, body: Any) -> httpx.Response:
        return await self.client.post("/api/v1/supplier/asns", json=body, headers={"X-Api-Key": self.key})

    async def upload(self, template: str, data: bytes, content_type: str = "text/csv") -> httpx.Response:
        return await self.client.post(
            "/api/v1/supplier/asns/import",
            params={"template": template},
            content=data,
            headers={"X-Api-Key": self.key, "Content-Type": content_type},
        )


@pytest.fixture
async def po(box: Box) -> dict[str, Any]:
    write(box.db_path, add_supplier, "sup-2", "另一家供应商")
    return await post_po(box.client, box.auth("purchaser"), "sup-1", "po-1")


@pytest.fixture
def sup1(box: Box, po: dict[str, Any]) -> Supplier:
    return Supplier(box.client, issue_key(box.db_path, "sup-1", box.clock, label="ERP"))


@pytest.fixture
def sup2(box: Box, po: dict[str, Any]) -> Supplier:
    return Supplier(box.client, issue_key(box.db_path, "sup-2", box.clock))


def count(box: Box, table: str) -> int:
    return box.count(table)


# --- keys, not tokens --------------------------------------------------------------------------


async def test_me_names_the_key_s_supplier_and_scopes(sup1: Supplier) -> None:
    response = await sup1.get("me")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["supplier"], body["name"], body["requests_per_minute"]) == ("sup-1", "华润饮料", 60)
    assert set(body["scopes"]) == {
        "supplier:profile:read",
        "supplier:purchase_orders:read",
        "supplier:asns:read",
        "supplier:asns:write",
    }


async def test_without_a_key_or_with_a_user_token_or_a_bad_key_it_is_401(box: Box, sup1: Supplier) -> None:
    for headers in ({}, box.auth("admin"), {"X-Api-Key": sup1.key[:-1] + "x"}, {"X-Api-Key": "garbage"}):
        response = await box.client.get("/api/v1/supplier/purchase-orders", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == 'ApiKey header="X-Api-Key"'
        body = assert_error_shape(response)
        assert body["code"] == ("invalid_api_key" if "X-Api-Key" in headers else "not_authenticated")


async def test_a_revoked_key_stops_at_once(box: Box, sup1: Supplier) -> None:
    assert (await sup1.get("me")).status_code == 200
    write(box.db_path, revoke_api_keys, "sup-1", now=box.clock(), actor="test")
    assert (await sup1.get("me")).status_code == 401


async def test_a_key_without_the_scope_gets_403_naming_the_permission(box: Box, po: dict[str, Any]) -> None:
    reader = Supplier(box.client, issue_key(box.db_path, "sup-1", box.clock, scopes=["supplier:asns:read"]))
    response = await reader.send(asn(po["document_id"]))
    assert response.status_code == 403
    body = assert_error_shape(response)
    assert body["code"] == "permission_denied"
    assert body["detail"]["permission"] == "supplier:asns:write"
    assert (await reader.get("asns")).status_code == 200
    assert count(box, "asns") == 0


async def test_requests_over_the_rate_get_429_with_retry_after(box: Box, po: dict[str, Any]) -> None:
    settings = Settings(data_dir=box.db_path.parent, supplier_api_requests_per_minute=3)
    app = create_api(build_deps(box.db_path, box.clock, box.writer, settings=settings))
    key = issue_key(box.db_path, "sup-1", box.clock)
    other = issue_key(box.db_path, "sup-2", box.clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://box") as client:
        statuses = [(await client.get("/api/v1/supplier/me", headers={"X-Api-Key": key})).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await client.get("/api/v1/supplier/me", headers={"X-Api-Key": key})
        assert assert_error_shape(limited)["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 20
        assert (await client.get("/api/v1/supplier/me", headers={"X-Api-Key": other})).status_code == 200


# --- purchase orders -----------------------------------------------------------------------------


async def test_a_supplier_sees_its_own_open_purchase_orders_with_what_remains(
    box: Box, po: dict[str, Any], sup1: Supplier, sup2: Supplier
) -> None:
    other = await post_po(box.client, box.auth("purchaser"), "sup-2", "po-2")
    response = await sup1.get("purchase-orders")
    assert response.status_code == 200
    (order,) = response.json()
    assert (order["po_id"], order["po_no"], order["supplier"]) == (po["document_id"], po["doc_no"], "sup-1")
    assert [(i["sku"], i["ordered"], i["remaining"]) for i in order["items"]] == [("COLA", 96, 96), ("MILK", 20, 20)]
    assert (await sup1.get(f"purchase-orders/{po['document_id']}")).json() == order
    assert [o["po_id"] for o in (await sup2.get("purchase-orders")).json()] == [other["document_id"]]
    for missing in (other["document_id"], 999_999):
        response = await sup1.get(f"purchase-orders/{missing}")
        assert response.status_code == 404
        assert assert_error_shape(response)["code"] == "unknown_purchase_order"
    assert (await sup1.send(asn(po["document_id"]))).status_code == 201
    (order,) = (await sup1.get("purchase-orders")).json()
    assert [(i["announced"], i["remaining"]) for i in order["items"]] == [(48, 48), (20, 0)]


# --- ASNs as JSON ----------------------------------------------------------------------------------


async def test_an_asn_is_created_then_unchanged_on_resend_then_revised(
    box: Box, po: dict[str, Any], sup1: Supplier
) -> None:
    body = asn(po["document_id"], note="第一车")
    first = await sup1.send(body)
    assert first.status_code == 201, first.text
    created = first.json()
    assert (created["asn_id"], created["revision"], created["outcome"], created["state"]) == (
        "ASN-1",
        1,
        "created",
        "open",
    )
    assert [(ln["sku"], ln["qty_base"], ln["lot"]) for ln in created["lines"]] == [
        ("COLA", 48, None),
        ("MILK", 20, "M0601"),
    ]
    assert created["source"]["channel"] == "http" and created["source"]["key_id"]
    again = await sup1.send(body)
    assert (again.status_code, again.json()["outcome"], again.json()["revision"]) == (200, "unchanged", 1)
    body["lines"][0]["qty"] = 3
    revised = await sup1.send(body)
    assert (revised.status_code, revised.json()["outcome"], revised.json()["revision"]) == (201, "revised", 2)
    shown = (await sup1.get("asns/ASN-1")).json()
    assert (shown["revision"], shown["outcome"], shown["lines"][0]["qty"]) == (2, "stored", 3)
    assert [a["asn_id"] for a in (await sup1.get("asns")).json()] == ["ASN-1"]


async def test_the_po_may_be_named_by_its_number(box: Box, po: dict[str, Any], sup1: Supplier) -> None:
    body = asn(po["document_id"])
    del body["po_id"]
    response = await sup1.send({**body, "po_no": po["doc_no"]})
    assert response.status_code == 201, response.text
    assert response.json()["po_id"] == po["document_id"]
    response = await sup1.send({**body, "asn_id": "ASN-2", "po_no": "PO20990101-000009"})
    assert response.status_code == 422
    (problem,) = assert_error_shape(response)["detail"]["problems"]
    assert problem["code"] == "unknown_purchase_order" and "PO20990101-000009" in problem["message_en"]
    both = await sup1.send({**body, "asn_id": "ASN-3", "po_no": po["doc_no"], "po_id": po["document_id"]})
    assert both.status_code == 422 and assert_error_shape(both)["code"] == "validation_error"


async def test_a_refused_asn_lists_every_problem_with_its_line_and_records_nothing(
    box: Box, po: dict[str, Any], sup1: Supplier
) -> None:
    body = asn(
        po["document_id"],
        lines=[
            {"code": "6900000000007", "qty": 1},
            {"code": MILK_BARCODE, "qty": 2},
            {"code": COLA_PIECE, "qty": 97},
            {"code": "RICE", "qty": 1},
        ],
    )
    response = await sup1.send(body)
    assert response.status_code == 422
    error = assert_error_shape(response)
    assert error["code"] == "asn_rejected"
    found = [(p["line"], p["code"]) for p in error["detail"]["problems"]]
    assert found == [
        (1, "unknown_item"),
        (2, "missing_lot"),
        (2, "missing_expiry"),
        (3, "over_po_remaining"),
        (4, "not_on_po"),
    ]
    assert all(p["message"] and p["message_en"] for p in error["detail"]["problems"])
    assert error["message"].startswith("发货通知被拒绝: 第 1 行")
    assert (count(box, "asns"), count(box, "asn_sources")) == (0, 0)


async def test_bad_json_is_a_validation_error_naming_the_line_index(po: dict[str, Any], sup1: Supplier) -> None:
    body = asn(po["document_id"])
    body["lines"][1]["qty"] = "20"
    response = await sup1.send(body)
    assert response.status_code == 422
    (error,) = assert_error_shape(response)["detail"]["errors"]
    assert error["field"] == "lines[1].qty"
    for garbage in ([], "x", {"asn_id": "a b"}, {**body, "extra": 1}):
        assert (await sup1.send(garbage)).status_code == 422


async def test_every_validation_problem_of_an_asn_says_the_same_in_chinese_and_english(
    po: dict[str, Any], sup1: Supplier
) -> None:
    body = asn(po["document_id"], ship_date="2024-13-01", note="x" * 501)
    body["lines"][1]["expiry"] = "2024-02-30"
    body["lines"][0]["qty"] = 0
    body["lines"][0]["lot"] = "a b"
    response = await sup1.send(body)
    assert response.status_code == 422
    error = assert_error_shape(response)
    found = {p["field"]: (p["message"], p["message_en"]) for p in error["detail"]["errors"]}
    assert found["ship_date"] == ("月份必须在 1 到 12 之间", "month must be 1 to 12")
    assert found["lines[1].expiry"] == ("2024-02 的日期必须在 1 到 29 之间", "day must be 1 to 29 in 2024-02")
    assert set(found) == {"ship_date", "note", "lines[0].qty", "lines[0].lot", "lines[1].expiry"}
    for message, message_en in found.values():
        assert_says_the_same(message, message_en)
    assert_says_the_same(error["message"].split("字段 ", 1)[1], error["message_en"].split("field ", 1)[1])
    both = asn(po["document_id"], po_no=po["doc_no"])
    (problem,) = assert_error_shape(await sup1.send(both))["detail"]["errors"]
    assert problem["message"].startswith("采购订单请用 po_id") and "limits" not in problem
    assert_says_the_same(problem["message"], problem["message_en"])
    for ship_date in ("2024-6-1", "0000-01-01", 20240601):
        (problem,) = assert_error_shape(await sup1.send(asn(po["document_id"], ship_date=ship_date)))["detail"][
            "errors"
        ]
        assert_says_the_same(problem["message"], problem["message_en"])


async def test_another_supplier_s_asn_and_po_are_not_found(
    box: Box, po: dict[str, Any], sup1: Supplier, sup2: Supplier
) -> None:
    assert (await sup1.send(asn(po["document_id"]))).status_code == 201
    response = await sup2.get("asns/ASN-1")
    assert response.status_code == 404 and assert_error_shape(response)["code"] == "unknown_asn"
    assert (await sup2.get("asns")).json() == []
    refused = await sup2.send(asn(po["document_id"]))
    assert [p["code"] for p in assert_error_shape(refused)["detail"]["problems"]] == ["unknown_purchase_order"]
    assert (await sup1.get("asns/" + "x" * 200)).status_code == 404


async def test_the_asn_shows_receipts_and_differences_once_received(
    box: Box, po: dict[str, Any], sup1: Supplier
) -> None:
    assert (await sup1.send(asn(po["document_id"]))).status_code == 201
    short = Difference("short", "COLA", 48, 40, line_no=1)
    write(box.db_path, mark_received, "sup-1", "ASN-1", po["document_id"], [short])
    shown = (await sup1.get("asns/ASN-1")).json()
    assert shown["state"] == "received" and shown["receipt_ids"] == [po["document_id"]]
    assert shown["differences"] == [short.to_dict()]
    assert [a["asn_id"] for a in (await sup1.get("asns", state="received")).json()] == ["ASN-1"]
    assert (await sup1.get("asns", state="open")).json() == []
    changed = asn(po["document_id"])
    changed["lines"][0]["qty"] = 1
    response = await sup1.send(changed)
    assert response.status_code == 409 and assert_error_shape(response)["code"] == "asn_already_received"


# --- ASNs as files through templates -----------------------------------------------------------------


def generic_csv(po_id: int, rows: list[str]) -> bytes:
    head = "asn_id,po,ship_date,item,qty,unit,lot,expiry,price\n"
    return (head + "".join(row.replace("{po}", str(po_id)) + "\n" for row in rows)).encode()


async def test_a_csv_with_two_asns_is_recorded_through_the_template(
    box: Box, po: dict[str, Any], sup1: Supplier
) -> None:
    data = generic_csv(
        po["document_id"],
        [
            f"C-1,{{po}},{SHIP},{COLA_CASE},1,,,,54.00",
            f"C-2,{{po}},{SHIP},{MILK_BARCODE},5,,M0601,{MILK_EXPIRY},9",
            f",,,{MILK_BARCODE},5,,M0602,{MILK_EXPIRY},9",
        ],
    )
    response = await sup1.upload("generic-csv", data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["template"] == "generic-csv"
    assert [(a["asn_id"], len(a["lines"]), a["outcome"]) for a in body["asns"]] == [
        ("C-1", 1, "created"),
        ("C-2", 2, "created"),
    ]
    assert body["asns"][0]["lines"][0]["price_fen"] == 5400
    assert body["asns"][1]["source"]["channel"] == "import" and body["asns"][1]["source"]["template"] == "generic-csv"
    again = await sup1.upload("generic-csv", data)
    assert [a["outcome"] for a in again.json()["asns"]] == ["unchanged", "unchanged"]


async def test_a_csv_is_recorded_whole_or_not_at_all_with_problems_at_file_lines(
    box: Box, po: dict[str, Any], sup1: Supplier
) -> None:
    data = generic_csv(
        po["document_id"],
        [
            f"C-1,{{po}},{SHIP},{COLA_CASE},1,,,,",
            f"C-2,{{po}},{SHIP},{COLA_PIECE},1,,,,",
            f",,,{MILK_BARCODE},5,,,,",
        ],
    )
    response = await sup1.upload("generic-csv", data)
    assert response.status_code == 422
    error = assert_error_shape(response)
    assert error["code"] == "asn_import_rejected"
    found = [(p["where"], p["line"], p["asn_id"], p["asn_line"], p["code"]) for p in error["detail"]["problems"]]
    assert found == [
        ("line 4", 4, "C-2", 2, "missing_lot"),
        ("line 4", 4, "C-2", 2, "missing_expiry"),
    ]
    assert error["message_en"].startswith("ASN file refused (template generic-csv): line 4:")
    assert count(box, "asns") == 0  # C-1 was fine, but the file is recorded whole or not at all
    bad_cell = await sup1.upload("generic-csv", generic_csv(po["document_id"], [f"C-1,{{po}},{SHIP},X,1.5,,,,"]))
    (problem,) = assert_error_shape(bad_cell)["detail"]["problems"]
    assert (problem["where"], problem["field"], problem["code"]) == ("line 2", "lines.qty", "invalid_qty")


async def test_a_gbk_erp_export_is_read_with_its_chinese_headers(box: Box, po: dict[str, Any], sup1: Supplier) -> None:
    text = (
        "送货单,,,,,,,,,\r\n"
        "送货单号,采购订单号,发货日期,商品条码,数量,单位,批号,有效期至,含税单价,备注\r\n"
        f"DN-7,{po['doc_no']},2024/05/31,{COLA_CASE},2,箱,,,54.00,冷链\r\n"
        f",,,{MILK_BARCODE},20,瓶,M0601,20240607,9.00,\r\n"
        "合计,,,,22,,,,,\r\n"
    )
    response = await sup1.upload("erp-gbk-csv", text.encode("gbk"))
    assert response.status_code == 201, response.text
    (recorded,) = response.json()["asns"]
    assert (recorded["asn_id"], recorded["po_id"], recorded["note"]) == ("DN-7", po["document_id"], "冷链")
    assert [(ln["unit"], ln["qty_base"]) for ln in recorded["lines"]] == [("case", 48), ("bottle", 20)]
    wrong = await sup1.upload("erp-gbk-csv", text.encode("utf-8"))
    assert [p["code"] for p in assert_error_shape(wrong)["detail"]["problems"]] == ["wrong_encoding"]


async def test_nested_json_goes_through_its_template(box: Box, po: dict[str, Any], sup1: Supplier) -> None:
    doc = {
        "shipments": [
            {
                "shipmentNo": "J-1",
                "order": {"poNumber": po["doc_no"]},
                "shipDate": "20240531",
                "items": [{"sku": {"gtin": int(COLA_CASE)}, "quantity": 1, "uom": "CS"}],
            }
        ]
    }
    response = await sup1.upload("nested-json", json.dumps(doc).encode(), "application/json")
    assert response.status_code == 201, response.text
    assert response.json()["asns"][0]["lines"][0]["qty_base"] == 24


async def test_unknown_templates_and_garbage_files_are_refused_cleanly(
    box: Box, po: dict[str, Any], sup1: Supplier
) -> None:
    missing = await sup1.upload("nope", b"x")
    assert missing.status_code == 404
    assert assert_error_shape(missing)["detail"]["available"] == ["erp-gbk-csv", "generic-csv", "nested-json"]
    for data in (b"", b"\x00\xff" * 100, b"asn_id\n" * 10):
        response = await sup1.upload("generic-csv", data)
        assert response.status_code == 422 and assert_error_shape(response)["code"] == "asn_import_rejected"
    no_template = await sup1.client.post("/api/v1/supplier/asns/import", content=b"x", headers={"X-Api-Key": sup1.key})
    assert no_template.status_code == 422
    too_big = await sup1.upload("generic-csv", b"x" * (1024 * 1024 + 1))
    assert too_big.status_code == 413
    assert count(box, "asns") == 0


async def test_templates_are_listed_with_their_fields_and_yaml(sup1: Supplier) -> None:
    listed = (await sup1.get("asn-templates")).json()
    assert [t["name"] for t in listed] == ["erp-gbk-csv", "generic-csv", "nested-json"]
    erp = (await sup1.get("asn-templates/erp-gbk-csv")).json()
    assert erp["encoding"] == "gbk" and erp["fields"]["lines.lot"] == "批号 / 批次号"
    assert "skip_rows_starting_with" in erp["yaml"]
    assert (await sup1.get("asn-templates/nope")).status_code == 404


@pytest.fixture
async def extra_box(box: Box, po: dict[str, Any], tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    folder = tmp_path / "templates"
    folder.mkdir()
    settings = Settings(data_dir=box.db_path.parent, asn_templates_dir=folder)
    app = create_api(build_deps(box.db_path, box.clock, box.writer, settings=settings))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://box") as client:
        yield client, folder


async def test_a_store_template_from_the_extra_dir_is_used_and_a_broken_one_hides_its_paths(
    box: Box, po: dict[str, Any], extra_box: tuple[httpx.AsyncClient, Path]
) -> None:
    client, folder = extra_box
    (folder / "semicolon.yaml").write_text(
        "description: semicolons\nformat: csv\ncsv: {delimiter: ';'}\n"
        "asn: {id: n, po: p, ship_date: {column: d, formats: ['%d.%m.%Y']}}\nlines: {item: i, qty: q}\n",
        "utf-8",
    )
    (folder / "broken.yaml").write_text("description: x\nformat: csv\nasn: {}\nlines: {}\n", "utf-8")
    supplier = Supplier(client, issue_key(box.db_path, "sup-1", box.clock))
    data = f"n;p;d;i;q\nS-1;{po['document_id']};31.05.2024;{COLA_CASE};2\n".encode()
    response = await supplier.upload("semicolon", data)
    assert response.status_code == 201, response.text
    broken = await supplier.upload("broken", data)
    assert broken.status_code == 422
    error = assert_error_shape(broken)
    assert error["code"] == "invalid_asn_template"
    assert str(folder) not in broken.text and error["detail"]["issues"][0]["file"] == "broken.yaml"


# --- the pack: OpenAPI subset and docs/api.md -------------------------------------------------------


async def test_the_openapi_subset_in_docs_is_the_one_the_box_serves(box: Box) -> None:
    served = (await box.client.get("/api/v1/openapi.json")).json()
    subset = supplier_openapi(served)
    written = json.loads((DOCS / "supplier-api" / "openapi.json").read_text("utf-8"))
    assert written == subset, "regenerate: storebox supplier openapi -o docs/supplier-api/openapi.json"
    assert all(path.startswith("/api/v1/supplier/") for path in subset["paths"])
    for item in subset["paths"].values():
        for operation in item.values():
            assert operation["security"] == [{"SupplierApiKey": []}]
            assert operation["x-permission"].startswith("supplier:")
    assert subset["components"]["securitySchemes"]["SupplierApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Api-Key",
        "description": served["components"]["securitySchemes"]["SupplierApiKey"]["description"],
    }
    refs = json.dumps(subset)
    for name in subset["components"]["schemas"]:
        assert f'"#/components/schemas/{name}"' in refs


async def test_docs_api_md_lists_every_supplier_endpoint_with_its_permission(box: Box) -> None:
    served = (await box.client.get("/api/v1/openapi.json")).json()
    expected = {
        (method.upper(), path.removeprefix("/api/v1"), operation["x-permission"])
        for path, item in supplier_openapi(served)["paths"].items()
        for method, operation in item.items()
    }
    text = (DOCS / "api.md").read_text("utf-8")
    documented = set()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 2 and "/supplier/" in cells[0]:
            method, path = cells[0].strip("`").split(" ", 1)
            documented.add((method, path.split("?")[0].removeprefix("/api/v1"), cells[1].strip("`")))
    assert documented == expected


# --- the integrator's guide: every example in docs/supplier-api/README.md ------------------------------

GUIDE = DOCS / "supplier-api" / "README.md"
_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def guide(language: str, info: str) -> str:
    (body,) = [b for lang, i, b in _FENCE.findall(GUIDE.read_text("utf-8")) if lang == language and i.strip() == info]
    return str(body)


def guide_blocks(language: str, prefix: str) -> dict[str, str]:
    found = _FENCE.findall(GUIDE.read_text("utf-8"))
    return {
        i.strip().removeprefix(prefix): b for lang, i, b in found if lang == language and i.strip().startswith(prefix)
    }


@pytest.fixture
async def guide_supplier(box: Box) -> Supplier:
    """The guide's store: one PO of sup-1 (PO20240601-000001) for 100 cases of cola and 200 bottles of milk."""
    body = {
        "counterparty": "sup-1",
        "lines": [{"code": COLA_CASE, "qty": 100, "price_fen": 5400}, {"code": "MILK", "qty": 200, "price_fen": 900}],
    }
    response = await box.client.post(
        "/api/v1/documents/purchase_order", json=body, headers={**box.auth("purchaser"), "Idempotency-Key": "guide-po"}
    )
    assert response.status_code == 201 and response.json()["doc_no"] == "PO20240601-000001", response.text
    return Supplier(box.client, issue_key(box.db_path, "sup-1", box.clock))


async def test_the_guide_s_json_examples_are_what_the_box_answers(guide_supplier: Supplier) -> None:
    assert (await guide_supplier.get("purchase-orders")).json() == json.loads(guide("json", "po"))
    answer = await guide_supplier.send(json.loads(guide("json", "asn")))
    assert answer.status_code == 201, answer.text
    documented = json.loads(guide("json", "asn-answer"))
    documented["source"]["key_id"] = answer.json()["source"]["key_id"]
    assert answer.json() == documented
    refused = await guide_supplier.send(json.loads(guide("json", "asn-refused")))
    assert refused.status_code == 422
    expected = json.loads(guide("json", "asn-refused-answer"))
    body = refused.json()
    assert (body["code"], body["message"], body["message_en"]) == (
        expected["code"],
        expected["message"],
        expected["message_en"],
    )
    assert len(body["detail"]["problems"]) == len(expected["detail"]["problems"])
    for got, shown in zip(body["detail"]["problems"], expected["detail"]["problems"], strict=True):
        assert (got["line"], got["code"]) == (shown["line"], shown["code"])
        for key in ("message", "message_en"):  # a documented message may end in … where it goes on
            assert got[key].startswith(shown[key].split("…")[0]), (got[key], shown[key])


async def test_the_guide_s_files_go_through_their_templates(guide_supplier: Supplier) -> None:
    files = guide_blocks("csv", "template:")
    files.update(guide_blocks("json", "template:"))
    shipped = {name: data for name, data in files.items() if name != "semicolon-de"}
    assert set(shipped) == {"generic-csv", "erp-gbk-csv", "nested-json"}
    for name, text in shipped.items():
        data = text.encode("gbk" if name == "erp-gbk-csv" else "utf-8")
        response = await guide_supplier.upload(name, data)
        assert response.status_code == 201, (name, response.text)
        assert all(a["outcome"] == "created" for a in response.json()["asns"])
    refused = await guide_supplier.upload("generic-csv", guide("csv", "import-refused").encode())
    assert refused.status_code == 422
    assert refused.json() == json.loads(guide("json", "import-refused-answer"))


def test_the_guide_s_own_template_loads_and_reads_its_example_as_described() -> None:
    template = load_template_text(guide("yaml", "template:semicolon-de"), "semicolon-de.yaml", "semicolon-de")
    text = guide("csv", "template:semicolon-de")
    with pytest.raises(AsnImportRejected) as err:
        convert(template, text.encode(), today=date(2024, 6, 1))
    assert [(p.where, p.field) for p in err.value.problems] == [("line 2", "lines.price")]
    (read,) = convert(template, text.replace("54,00", "54.00").encode(), today=date(2024, 6, 1))
    assert (read.asn_id, read.po, read.note) == ("LS-4711", "PO20240601-000001", "EDI")
    assert read.lines == (
        AsnLine(COLA_CASE, 2, unit="case", price_fen=5400),
        AsnLine(MILK_BARCODE, 20, lot="M0601", expiry=date(2024, 6, 7)),
    )


async def test_the_guide_s_mqtt_event_is_recorded_and_acked_as_shown(box: Box, guide_supplier: Supplier) -> None:
    event = json.loads(guide("json", "event:asn"))
    decoded = decode_event("sup-acme", "asn", json.dumps(event).encode(), kinds=device_event_kinds())
    assert isinstance(decoded, DecodedEvent) and decoded.job is not None
    write(box.db_path, create_device, "sup-acme", "supplier", "sup-acme-password")
    write(box.db_path, link_supplier_device, "sup-acme", "sup-1", now=box.clock(), actor="test")
    context = PostingContext(now=box.clock(), business_date=box.clock().date(), rules=rule_book())
    outcome = write(box.db_path, decoded.job.fn, context, *decoded.job.args)
    assert json.loads(Ack.for_outcome(event["id"], outcome).to_json()) == json.loads(guide("json", "ack"))


def test_the_guide_names_every_endpoint_of_the_openapi_subset() -> None:
    spec = json.loads((DOCS / "supplier-api" / "openapi.json").read_text("utf-8"))
    rows = {
        (m.group(1), m.group(2).split("?")[0], m.group(3))
        for m in re.finditer(r"^\| `(GET|POST) (/[^`]+)` \| `([a-z_:]+)` \|", GUIDE.read_text("utf-8"), re.MULTILINE)
    }
    assert rows == {
        (method.upper(), path.removeprefix("/api/v1/supplier"), operation["x-permission"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
