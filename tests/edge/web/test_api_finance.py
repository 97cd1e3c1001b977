"""Finance over HTTP: payments, loss approvals, voucher rule versions, the chart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from edge.finance.rulebook import shipped_tables
from edge.ledger.errors import DomainError
from tests.edge.web.apibox import Box, assert_error_shape

pytestmark = pytest.mark.anyio


def test_every_refusal_code_names_one_kind_of_refusal() -> None:
    """The HTTP status of a posting's refusal is looked up by its code, so codes must be unique."""
    import edge.finance.ap  # load every module that defines refusals
    import edge.finance.compliance
    import edge.finance.entries
    import edge.security.errors  # noqa: F401

    seen: dict[str, type[DomainError]] = {}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" in cls.__dict__:
            assert cls.code not in seen or seen[cls.code] is cls, (cls, seen.get(cls.code))
            seen[cls.code] = cls


async def test_a_supplier_without_papers_cannot_be_paid(box: Box) -> None:
    before = box.counts()
    response = await box.client.post(
        "/api/v1/payments",
        json={"supplier": "sup-1", "amount_fen": 9600},
        headers={**box.auth("accountant"), "Idempotency-Key": "pay-1"},
    )
    assert response.status_code == 409, response.text
    body = assert_error_shape(response)
    assert body["code"] == "papers_incomplete"
    assert "business_licence" in str(body["detail"])
    assert box.counts() == before


@pytest.mark.parametrize(
    "body",
    [
        {"supplier": "sup-1", "amount_fen": 0},
        {"supplier": "sup-1", "amount_fen": -5},
        {"supplier": "sup-1", "amount_fen": "96.00"},
        {"supplier": "sup-1", "amount_fen": 9600, "bribe": True},
        {"supplier": "../etc", "amount_fen": 9600},
        {"amount_fen": 9600},
        [],
    ],
)
async def test_a_bad_payment_is_refused_and_writes_nothing(box: Box, body: Any) -> None:
    before = box.counts()
    response = await box.client.post(
        "/api/v1/payments", json=body, headers={**box.auth("accountant"), "Idempotency-Key": "pay-bad"}
    )
    assert response.status_code == 422, response.text
    assert_error_shape(response)
    assert box.counts() == before


async def test_only_the_roles_that_pay_may_pay(box: Box) -> None:
    for role in ("clerk", "purchaser", "manager", "auditor"):
        response = await box.client.post(
            "/api/v1/payments",
            json={"supplier": "sup-1", "amount_fen": 1},
            headers={**box.auth(role), "Idempotency-Key": f"pay-{role}"},
        )
        assert response.status_code == 403, role


async def test_a_write_off_is_approved_by_another_person_into_5711(box: Box) -> None:
    await box.receive("COLA", 24, price_fen=339)
    written = await box.post(
        "write_off", {"lines": [{"code": "COLA", "qty": 2}], "reason": "theft"}, role="manager", key="wo-1"
    )
    assert written.status_code == 201, written.text
    document_id = written.json()["document_id"]
    pending = await box.client.get("/api/v1/losses/pending", headers=box.auth("accountant"))
    # 2 cans at 3.00 net (3.39 incl. 13% VAT): cost 600, input VAT transferred out 78.
    assert [(p["id"], p["loss_fen"]) for p in pending.json()] == [(document_id, 678)]
    own = await box.client.post(
        f"/api/v1/losses/{document_id}/approve", headers={**box.auth("manager"), "Idempotency-Key": "la-own"}
    )
    assert own.status_code == 409 and own.json()["code"] == "approval_refused"
    approved = await box.client.post(
        f"/api/v1/losses/{document_id}/approve",
        json={"note": "监控确认被盗 theft confirmed on CCTV"},
        headers={**box.auth("accountant"), "Idempotency-Key": "la-1"},
    )
    assert approved.status_code == 201, approved.text
    voucher = approved.json()["document"]["voucher"]
    assert voucher["rule_version"] == "SE-2026.1" and voucher["tax_trusted"] is False
    assert [(v["account"], v["debit_fen"], v["credit_fen"]) for v in voucher["lines"]] == [
        ("5711", 678, 0),
        ("1901", 0, 678),
    ]
    again = await box.client.post(
        f"/api/v1/losses/{document_id}/approve",
        json={"note": "监控确认被盗 theft confirmed on CCTV"},
        headers={**box.auth("accountant"), "Idempotency-Key": "la-1"},
    )
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert (await box.client.get("/api/v1/losses/pending", headers=box.auth("accountant"))).json() == []
    missing = await box.client.post(
        "/api/v1/losses/999999/approve", headers={**box.auth("accountant"), "Idempotency-Key": "la-2"}
    )
    assert missing.status_code == 404


async def test_rule_versions_are_listed_shown_and_installed_effective_from_a_date(box: Box) -> None:
    listed = await box.client.get("/api/v1/books/rules", headers=box.auth("auditor"))
    assert [(v["version"], v["effective_from"]) for v in listed.json()] == [("SE-2026.1", "2020-01-01")]
    shown = await box.client.get("/api/v1/books/rules/SE-2026.1", headers=box.auth("auditor"))
    assert shown.json()["documents"]["receipt"][1]["account"] == "220202"
    assert (await box.client.get("/api/v1/books/rules/nope", headers=box.auth("auditor"))).status_code == 404
    table = {
        **shipped_tables("small_enterprise")[-1],
        "version": "SE-2027.1",
        "effective_from": (box.clock() + timedelta(days=30)).date().isoformat(),
    }
    headers = {**box.auth("accountant"), "Idempotency-Key": "rules-1"}
    refused = await box.client.post(
        "/api/v1/books/rules", json={**table, "effective_from": "2020-06-01"}, headers=headers
    )
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_voucher_rules"
    broken = {
        **table,
        "documents": {**table["documents"], "sale": [{"account": "1001", "side": "debit", "amount": "net"}]},
    }
    unbalanced = await box.client.post("/api/v1/books/rules", json=broken, headers=headers)
    assert unbalanced.status_code == 422 and "balance" in unbalanced.json()["message_en"]
    forbidden = await box.client.post(
        "/api/v1/books/rules", json=table, headers={**box.auth("manager"), "Idempotency-Key": "r"}
    )
    assert forbidden.status_code == 403
    installed = await box.client.post("/api/v1/books/rules", json=table, headers=headers)
    assert installed.status_code == 201, installed.text
    assert installed.json()["version"] == "SE-2027.1"
    listed = await box.client.get("/api/v1/books/rules", headers=box.auth("auditor"))
    assert [v["version"] for v in listed.json()] == ["SE-2026.1", "SE-2027.1"]


async def test_the_chart_lists_accounts_with_names_and_leaves(box: Box) -> None:
    response = await box.client.get("/api/v1/books/chart", headers=box.auth("accountant"))
    accounts = {a["code"]: a for a in response.json()}
    assert accounts["2202"]["leaf"] is False and accounts["220201"]["parent"] == "2202"
    assert accounts["22210103"]["name"] == "应交增值税-进项税额转出"
    assert accounts["5711"]["name_en"] == "Non-operating expenses"
    assert (await box.client.get("/api/v1/books/chart", headers=box.auth("clerk"))).status_code == 403
