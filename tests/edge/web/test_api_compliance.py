"""The cabinet over real HTTP against a real box (tests/edge/web/apibox.py): uploads with real OCR, confirmation,
the address check and its freeze, who may lift it, bank account changes, status, alerts, and compliance at the
purchase order (the ledger's guard behind POST /documents/purchase_order, and PO approval)."""

from __future__ import annotations

import hashlib
import struct
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import Settings
from edge.finance import compliance as cab
from edge.finance.papers import PaperFields, PaperKind, Reading
from edge.security.roles import Role
from edge.web.api import create_api
from tests.edge.web.apibox import Box, assert_error_shape, build_deps
from tools.render_licence import PaperFacts, render

pytestmark = pytest.mark.anyio

FACTS = PaperFacts()  # 上海华润饮料有限公司, 91310115MA1K3YJ71K, 上海市浦东新区张江路88号
TODAY = date(2024, 6, 1)  # the business date of the box's clock (apibox.T0 in Asia/Shanghai)
_keys = iter(range(10**9))


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"compliance-test-{next(_keys)}"}


async def create_supplier(box: Box, supplier_id: str, **fields: Any) -> dict[str, Any]:
    body = {"id": supplier_id, "name": FACTS.name, **fields}
    response = await box.client.post("/api/v1/suppliers", json=body, headers={**box.auth(Role.PURCHASER), **key()})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def upload(
    box: Box, supplier_id: str, kind: str, data: bytes, *, role: Role = Role.PURCHASER, **headers: str
) -> httpx.Response:
    return await box.client.post(
        f"/api/v1/suppliers/{supplier_id}/papers",
        data={"kind": kind},
        files={"file": ("paper.bin", data, "application/octet-stream")},
        headers={**box.auth(role), **(headers or key())},
    )


async def seed_paper(box: Box, supplier_id: str, kind: PaperKind, **over: Any) -> int:
    """A paper recorded as if uploaded (no OCR: the upload path is tested on its own); confirmed over HTTP."""
    base: dict[str, Any] = {
        "name": FACTS.name,
        "credit_code": FACTS.credit_code,
        "address": FACTS.address,
        "bank_name": FACTS.bank_name,
        "bank_account": FACTS.bank_account,
        "valid_to": date(2030, 1, 1),
        "licence_no": FACTS.licence_no,
    }
    fields = PaperFields(**{**base, **over})
    upload_ = cab.PaperUpload(
        supplier=supplier_id,
        kind=kind.value,
        sha256=hashlib.sha256(repr((supplier_id, kind, over)).encode()).hexdigest(),
        file_type="png",
        size_bytes=100,
        filename=None,
        ocr={"lines": [], "pages": 1, "seconds": 0.0},
        reading=Reading(fields, kind).to_json(),
    )
    created = await box.writer.execute(cab.record_paper, upload_, "purchaser", box.clock())
    return int(created.id)


async def confirm(box: Box, paper: int, role: Role = Role.PURCHASER, body: Any = None) -> httpx.Response:
    return await box.client.post(f"/api/v1/papers/{paper}/confirm", json=body, headers=box.auth(role))


async def complete_cabinet(box: Box, supplier_id: str) -> None:
    for kind in (PaperKind.BUSINESS_LICENCE, PaperKind.BANK_ACCOUNT, PaperKind.GENERAL_TAXPAYER):
        response = await confirm(box, await seed_paper(box, supplier_id, kind))
        assert response.status_code == 200, response.text


async def status(box: Box, supplier_id: str, on: date | None = None) -> dict[str, Any]:
    query = f"?on={on.isoformat()}" if on else ""
    response = await box.client.get(f"/api/v1/suppliers/{supplier_id}/compliance{query}", headers=box.auth("auditor"))
    assert response.status_code == 200, response.text
    return dict(response.json())


def purchase_order(supplier_id: str, qty: int, price_fen: int = 6000) -> dict[str, Any]:
    return {"counterparty": supplier_id, "lines": [{"code": "COLA", "qty": qty, "price_fen": price_fen}]}


# --- the whole path of one licence ---


async def test_uploaded_licence_is_read_confirmed_and_its_address_mismatch_freezes_payments(box: Box) -> None:
    await create_supplier(box, "sup-hr", registered_address="上海市徐汇区漕溪北路1号")
    data = render("business_licence", FACTS, width=1000)
    response = await upload(box, "sup-hr", "business_licence", data, **{"Idempotency-Key": "up-licence"})
    assert response.status_code == 201, response.text
    paper = response.json()
    assert (paper["state"], paper["file_type"], paper["kind"]) == ("uploaded", "png", "business_licence")
    proposed = paper["proposed"]["fields"]
    assert (proposed["name"], proposed["credit_code"], proposed["address"]) == (
        FACTS.name,
        FACTS.credit_code,
        FACTS.address,
    )
    assert (proposed["valid_from"], proposed["valid_to"]) == ("2018-05-10", "2038-05-09")
    assert paper["proposed"]["detected_kind"] == "business_licence"

    replay = await upload(box, "sup-hr", "business_licence", data, **{"Idempotency-Key": "up-licence"})
    assert (replay.status_code, replay.json()["id"], replay.headers["idempotent-replayed"]) == (
        201,
        paper["id"],
        "true",
    )
    assert box.count("supplier_papers") == 1

    image = await box.client.get(f"/api/v1/papers/{paper['id']}/file", headers=box.auth("auditor"))
    assert (image.status_code, image.headers["content-type"], image.content) == (200, "image/png", data)
    ocr = await box.client.get(f"/api/v1/papers/{paper['id']}/ocr", headers=box.auth("auditor"))
    assert "统一社会信用代码" in [line["text"] for line in ocr.json()["lines"]]
    assert ocr.json()["pages"] == 1 and ocr.json()["seconds"] > 0

    confirmed = await confirm(box, paper["id"], Role.MANAGER)
    assert confirmed.status_code == 200, confirmed.text
    outcome = confirmed.json()
    assert outcome["paper"]["state"] == "confirmed" and outcome["paper"]["confirmed_by"] == "manager"
    assert outcome["address_check"]["differences"] == ["district", "street"]
    freeze, ticket = outcome["freeze"], outcome["ticket"]
    assert freeze and ticket

    state = await status(box, "sup-hr")
    assert state["frozen"] and not state["payable"]
    assert state["missing"] == ["bank_account", "general_taxpayer"]
    assert any("证照地址与登记地址不符" in p for p in state["problems"])

    tickets = await box.client.get("/api/v1/review-tickets?state=open", headers=box.auth("auditor"))
    assert [t["id"] for t in tickets.json()] == [ticket]

    # The manager confirmed the licence, so the manager may not lift its freeze; the purchaser may not review.
    own = await box.client.post(
        f"/api/v1/freezes/{freeze}/lift", json={"reason": "已核实"}, headers=box.auth(Role.MANAGER)
    )
    assert own.status_code == 409
    assert assert_error_shape(own)["code"] == "approval_refused"
    assert own.json()["detail"]["reason"] == "own_request"
    denied = await box.client.post(
        f"/api/v1/freezes/{freeze}/lift", json={"reason": "已核实"}, headers=box.auth(Role.PURCHASER)
    )
    assert denied.status_code == 403
    no_reason = await box.client.post(f"/api/v1/freezes/{freeze}/lift", json={}, headers=box.auth(Role.ADMIN))
    assert no_reason.status_code == 422
    lifted = await box.client.post(
        f"/api/v1/freezes/{freeze}/lift",
        json={"reason": "供应商已搬迁 moved, see ticket"},
        headers=box.auth(Role.ADMIN),
    )
    assert lifted.status_code == 200, lifted.text
    assert (lifted.json()["open"], lifted.json()["lifted_by"]) == (False, "admin")
    assert not (await status(box, "sup-hr"))["frozen"]
    detail = await box.client.get(f"/api/v1/review-tickets/{ticket}", headers=box.auth("auditor"))
    assert detail.json()["state"] == "resolved"

    again = await confirm(box, paper["id"], Role.PURCHASER)
    assert again.status_code == 409 and again.json()["code"] == "compliance_state"


# --- bad uploads ---


def _truncated_png() -> bytes:
    return render("bank_account", width=400)[:300]


@pytest.mark.parametrize(
    ("data", "status_code", "code"),
    [
        (b"", 422, "invalid_paper"),
        (b"GIF89a" + b"\0" * 100, 415, "unsupported_paper_type"),
        (b"<html>not a paper</html>", 415, "unsupported_paper_type"),
        (_truncated_png(), 422, "invalid_paper"),
        (b"%PDF-1.7\n%junk only\n%%EOF", 422, "invalid_paper"),
        (b"\xff\xd8\xff" + b"\x00" * 64, 422, "invalid_paper"),
    ],
)
async def test_bad_uploads_are_refused_clearly_and_record_nothing(
    box: Box, data: bytes, status_code: int, code: str
) -> None:
    await create_supplier(box, "sup-u")
    response = await upload(box, "sup-u", "business_licence", data)
    assert response.status_code == status_code, response.text
    body = assert_error_shape(response)
    assert body["code"] == code
    assert box.count("supplier_papers") == 0


async def test_upload_refusals_before_any_ocr(box: Box) -> None:
    await create_supplier(box, "sup-u")
    png = render("general_taxpayer", width=400)
    unknown = await upload(box, "nobody", "business_licence", png)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_supplier")
    bad_kind = await upload(box, "sup-u", "passport", png)
    assert bad_kind.status_code == 422 and bad_kind.json()["detail"]["errors"][0]["field"] == "kind"
    no_key = await box.client.post(
        "/api/v1/suppliers/sup-u/papers",
        data={"kind": "business_licence"},
        files={"file": ("p.png", png, "image/png")},
        headers=box.auth(Role.PURCHASER),
    )
    assert no_key.status_code == 400
    clerk = await upload(box, "sup-u", "business_licence", png, role=Role.CLERK)
    assert clerk.status_code == 403
    assert box.count("supplier_papers") == 0


async def test_oversized_upload_is_413(box: Box) -> None:
    small = Settings(data_dir=box.db_path.parent, papers_max_upload_bytes=2048)
    app = create_api(build_deps(box.db_path, box.clock, box.writer, settings=small))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://box") as client:
        png = render("general_taxpayer", width=600)
        assert len(png) > 2048
        response = await client.post(
            "/api/v1/suppliers/sup-1/papers",
            data={"kind": "general_taxpayer"},
            files={"file": ("p.png", png, "image/png")},
            headers={**box.auth(Role.PURCHASER), **key()},
        )
    assert response.status_code == 413
    assert assert_error_shape(response)["code"] == "paper_too_large"
    assert response.json()["detail"]["max_bytes"] == 2048


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"%PDF-1.4\n", b"GIF8"]), st.binary(max_size=300))
async def test_garbage_uploads_never_crash_the_box(box: Box, head: bytes, tail: bytes) -> None:
    response = await upload(box, "sup-1", "bank_account", head + tail)
    assert response.status_code in (413, 415, 422), response.text
    assert_error_shape(response)
    assert box.count("supplier_papers") == 0


async def test_png_header_claiming_a_huge_image_is_refused(box: Box) -> None:
    header = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    )
    response = await upload(box, "sup-1", "bank_account", header + b"\0" * 8)
    assert response.status_code == 422 and response.json()["code"] == "invalid_paper"


# --- confirmation ---


async def test_confirming_with_corrections_and_a_bad_code(box: Box) -> None:
    await create_supplier(box, "sup-c")
    paper = await seed_paper(box, "sup-c", PaperKind.GENERAL_TAXPAYER, credit_code="91310115MA1K3YJ71D")
    bad = await confirm(box, paper)
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_credit_code" and bad.json()["detail"]["expected"] == "K"
    fixed = {"fields": {"name": FACTS.name, "credit_code": FACTS.credit_code, "valid_from": "2019-01-01"}}
    good = await confirm(box, paper, body=fixed)
    assert good.status_code == 200, good.text
    assert good.json()["paper"]["fields"]["credit_code"] == FACTS.credit_code
    assert good.json()["supplier_set"] == {"credit_code": FACTS.credit_code}
    unknown_field = await confirm(
        box, await seed_paper(box, "sup-c", PaperKind.GENERAL_TAXPAYER, name="x"), body={"fields": {"nam": "x"}}
    )
    assert unknown_field.status_code == 422


# --- bank account changes ---


async def test_bank_account_change_needs_a_second_person(box: Box) -> None:
    await create_supplier(box, "sup-b")
    await complete_cabinet(box, "sup-b")
    assert (await status(box, "sup-b"))["payable"]
    body = {"bank_name": "招商银行上海分行", "bank_account": "6225880123456789", "reason": "换开户行"}
    request = await box.client.post(
        "/api/v1/suppliers/sup-b/bank-account-changes", json=body, headers={**box.auth(Role.MANAGER), **key()}
    )
    assert request.status_code == 201, request.text
    change = request.json()
    assert change["state"] == "pending" and change["freeze"]
    assert (await status(box, "sup-b"))["frozen"]
    own = await box.client.post(f"/api/v1/bank-account-changes/{change['id']}/approve", headers=box.auth(Role.MANAGER))
    assert own.status_code == 409 and own.json()["code"] == "approval_refused"
    purchaser = await box.client.post(
        f"/api/v1/bank-account-changes/{change['id']}/approve", headers=box.auth(Role.PURCHASER)
    )
    assert purchaser.status_code == 403
    approved = await box.client.post(
        f"/api/v1/bank-account-changes/{change['id']}/approve", json={"note": "回电核实"}, headers=box.auth("admin")
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved"
    assert (await status(box, "sup-b"))["payable"]
    suppliers = (
        await box.client.get("/api/v1/bank-account-changes?state=approved", headers=box.auth("auditor"))
    ).json()
    assert [c["id"] for c in suppliers] == [change["id"]]


# --- purchase orders ---


async def test_purchase_orders_are_checked_when_taken_and_when_approved(box: Box) -> None:
    await create_supplier(box, "sup-p", registered_address=FACTS.address)
    large = purchase_order("sup-p", 1000)  # 60,000.00 CNY, over the 50,000 threshold
    refused = await box.post("purchase_order", large, role=Role.PURCHASER, key="po-large-1")
    assert refused.status_code == 409, refused.text
    body = assert_error_shape(refused)
    assert body["code"] == "papers_incomplete"
    assert body["detail"]["missing"] == ["business_licence", "bank_account", "general_taxpayer"]
    assert "缺少营业执照" in body["message"] and "business licence missing" in body["message_en"]

    small = await box.post("purchase_order", purchase_order("sup-p", 10), role=Role.PURCHASER, key="po-small-1")
    assert small.status_code == 201, small.text
    approve = await box.client.post(
        f"/api/v1/purchase-orders/{small.json()['document_id']}/approve", headers=box.auth(Role.PURCHASER)
    )
    assert approve.status_code == 200, approve.text
    assert approve.json()["approved_by"] == "purchaser"

    await complete_cabinet(box, "sup-p")
    accepted = await box.post("purchase_order", large, role=Role.PURCHASER, key="po-large-2")
    assert accepted.status_code == 201, accepted.text

    freeze = await box.client.post(
        "/api/v1/suppliers/sup-p/freezes", json={"note": "涉嫌虚开发票"}, headers={**box.auth(Role.MANAGER), **key()}
    )
    assert freeze.status_code == 201
    frozen = await box.post("purchase_order", purchase_order("sup-p", 1), role=Role.PURCHASER, key="po-small-2")
    assert frozen.status_code == 409 and frozen.json()["code"] == "supplier_frozen"
    late = await box.client.post(
        f"/api/v1/purchase-orders/{accepted.json()['document_id']}/approve", headers=box.auth(Role.MANAGER)
    )
    assert late.status_code == 409 and late.json()["code"] == "supplier_frozen"
    assert late.json()["detail"]["freezes"][0]["id"] == freeze.json()["id"]


# --- alerts ---


async def test_expiry_alerts_are_listed(box: Box) -> None:
    await create_supplier(box, "sup-a")
    paper = await seed_paper(box, "sup-a", PaperKind.GENERAL_TAXPAYER, valid_to=TODAY + timedelta(days=20))
    assert (await confirm(box, paper)).status_code == 200
    # Confirming inside the 30-day window raised the alert at once; the daily run adds nothing more.
    assert await box.writer.execute(cab.due_expiry_alerts, TODAY) == []
    alerts = await box.client.get("/api/v1/compliance/alerts?supplier=sup-a", headers=box.auth("auditor"))
    assert alerts.status_code == 200
    (alert,) = alerts.json()
    assert (alert["kind"], alert["days_left"], alert["expires_on"]) == ("general_taxpayer", 20, "2024-06-21")
    assert "20 天" in alert["message"] and "20 days left" in alert["message_en"]
    state = await status(box, "sup-a")
    assert [e["kind"] for e in state["expiring"]] == ["general_taxpayer"]


async def test_supplier_changes_over_http(box: Box) -> None:
    created = await create_supplier(box, "sup-s", credit_code="y1310115ma1k3yj71x", food_supplier=True)
    assert created["credit_code"] == "Y1310115MA1K3YJ71X" and created["bank_account"] is None
    bad = await box.client.post(
        "/api/v1/suppliers",
        json={"id": "sup-t", "name": "x", "credit_code": "91310115MA1K3YJ71D"},
        headers={**box.auth(Role.PURCHASER), **key()},
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_credit_code"
    bank = await box.client.patch(
        "/api/v1/suppliers/sup-s", json={"bank_account": "123456789"}, headers=box.auth(Role.PURCHASER)
    )
    assert bank.status_code == 422
    patched = await box.client.patch(
        "/api/v1/suppliers/sup-s", json={"food_supplier": False, "phone": "021-5555"}, headers=box.auth(Role.PURCHASER)
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["supplier"]["phone"] == "021-5555"
    assert (await status(box, "sup-s"))["required"] == ["business_licence", "bank_account", "general_taxpayer"]
    listed = await box.client.get("/api/v1/suppliers", headers=box.auth("clerk"))
    assert "sup-s" in [s["id"] for s in listed.json()]


async def test_one_supplier_is_read_with_its_cabinet_fields(box: Box) -> None:
    await create_supplier(box, "sup-r", registered_address=FACTS.address, food_supplier=True)
    response = await box.client.get("/api/v1/suppliers/sup-r", headers=box.auth(Role.AUDITOR))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["name"], body["food_supplier"]) == ("sup-r", FACTS.name, True)
    assert body["registered_address"] == FACTS.address and body["bank_account"] is None
    missing = await box.client.get("/api/v1/suppliers/nobody", headers=box.auth(Role.AUDITOR))
    assert missing.status_code == 404 and assert_error_shape(missing)["code"]
    clerk = await box.client.get("/api/v1/suppliers/sup-r", headers=box.auth(Role.CLERK))
    assert clerk.status_code == 403
